"""Repeated timing for the benchmark scripts: wall and CPU seconds, min / median.

Every benchmark repeats each timed case (``--repeats``, 3 by default) and prints the min and
the median wall time: the min is the least disturbed run on a shared machine, the median a
typical one. A script imports this module as ``timing`` (its own folder is first on
``sys.path``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class Timed(NamedTuple, Generic[T]):
    """The times of repeated calls of one case and the last call's result."""

    #: wall seconds of each call
    walls: list[float]
    #: CPU seconds of each call (this process, summed over its threads)
    cpus: list[float]
    #: what the last call returned
    result: T


def timed(call: Callable[[], T], repeats: int) -> Timed[T]:
    """Call ``call`` ``repeats`` times, one after the other, and time each call.

    Args:
        call: the timed case, called without arguments.
        repeats: number of calls (at least 1).

    Returns:
        Wall and CPU seconds of each call, and the last call's result.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    return Timed(walls, cpus, result)


def min_median(seconds: list[float], spec: str = ".2f") -> str:
    """``"min/median"`` of the times (s) of a case's repeated runs, e.g. ``"1.23/1.31"``;
    each number formatted with ``spec`` (as in ``format(value, spec)``)."""
    return f"{min(seconds):{spec}}/{statistics.median(seconds):{spec}}"
