"""Run HypoInverse so that a failure caused by one event's phase block costs that event only.

HypoInverse reads every event of a phase file in one run; one block it cannot take (a trial
hypocentre far outside the station network made hyp1.40 end with SIGSEGV, losing every
other event of the run) would otherwise stop the location of all of them.
:func:`run_isolating` runs all events at once, which is all it does when the program
succeeds; after a failure it reruns the events in halves, recursively, until each failing run
holds one event, and keeps what the other runs wrote.

Two bounds hold whatever the events do:

- runs: a batch of ``n`` events costs at most :func:`max_runs` HypoInverse runs,
  ``2 + 2 ceil(log2 n)^2``: the run over all, one without events, and the halving, which
  costs at most ``2 ceil(log2 n)`` runs per failing event (two halves at each of the
  ``ceil(log2 n)`` levels), for up to ``ceil(log2 n)`` failing events (4 of 16 events, 16
  of 65,536). More failing events than that are not a few bad blocks: the events left in
  failed or unrun parts are reported unlocated, naming the bound, without more runs;
- time: every run of a stage draws on one :class:`TimeBudget` (``location.timeout_s``). A
  run over all events may take a third of what is left (:data:`FIRST_RUN_SHARE`); the
  other two thirds are kept to isolate a failing event: each part gets its share of that
  limit (at least :data:`MIN_PART_TIMEOUT_S`), so the parts holding a looping event take a
  half, a quarter, ... of it, about the limit again in all. A part runs only when its
  share is left, so no event is blamed for a run the budget cut short; parts that cannot
  run are reported unlocated, naming the budget.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.location.runner import HypoInverseError, run_hypoinverse
from pipeline.rundir import write_text_atomic

log = logging.getLogger(__name__)

#: Folder (in the run's folder) holding the input and log of each event HypoInverse failed on.
FAILED_DIR = "failed_events"
LOG_NAME = "hypoinverse.log"
#: Least time limit of a run over part of the events, s (HypoInverse locates an event in ms).
MIN_PART_TIMEOUT_S = 10.0
#: Share of the time left that a run over all events of a batch may take.
FIRST_RUN_SHARE = 1 / 3


class TimeBudget:
    """The wall-clock seconds that a stage's HypoInverse runs may take in all (a deadline)."""

    def __init__(self, seconds: float, what: str = "location.timeout_s") -> None:
        self.seconds = seconds
        self.what = what
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left before the deadline (0 when it has passed)."""
        return max(0.0, self.deadline - time.monotonic())

    def spent(self) -> str:
        """Why a run was not made: the budget, named."""
        return f"the time budget of HypoInverse's runs ({self.what} {self.seconds:g} s) was spent"


def max_runs(n_events: int) -> int:
    """Most HypoInverse runs of one batch of ``n_events`` events (module docstring):
    ``2 + 2 ceil(log2 n)^2`` (2 for one event: its failure needs no halving)."""
    levels = math.ceil(math.log2(n_events)) if n_events > 1 else 0
    return 2 + 2 * levels * levels


def phase_text(blocks: dict[int, str]) -> str:
    """The phase file of ``blocks`` (HypoInverse id -> that event's lines, each ending in a
    newline), in their order."""
    return "".join(blocks.values())


def run_isolating(
    command: str,
    inputs: dict[str, str],
    phase_file: str,
    blocks: dict[int, str],
    outputs: list[str],
    folder: Path,
    budget: TimeBudget,
) -> tuple[Path, dict[int, str]]:
    """Run HypoInverse on the events ``blocks`` in ``folder``; a failure costs its event only.

    One run over every event comes first, limited to a third of what ``budget`` has left. When
    it fails (a crash, an error message, its time limit: one event made hyp1.40 loop
    forever) and the same commands succeed on an empty phase file (so the failure is an
    event's, not the station file's or the model's), the events run again in halves,
    recursively, until each failing run holds one event, within :func:`max_runs` runs and
    the budget (module docstring). ``folder`` then holds the full phase file, the outputs
    of the runs that succeeded, concatenated in the order of ``blocks``, and a log with one
    section per run; ``folder/failed_events/<id>/`` holds each failed event's input and log.

    Args:
        command: the command file text (reads ``phase_file`` and writes ``outputs``).
        inputs: the other input files, name -> text.
        phase_file: name of the phase file the commands read.
        blocks: HypoInverse event id -> the event's phase-file lines (ending in a newline).
        outputs: names of the files the commands write.
        folder: where the program's files end up.
        budget: the time the runs may take, shared with the stage's other runs.

    Returns:
        (log path, failed): failed maps the id of each event left without a solution to
        why: the error of its one-event run (naming its log in ``failed_events/<id>/``), or
        the error of a run of several events that the bounds left undivided.

    Raises:
        HypoInverseError: the program fails (or runs past its limit) with no event too,
            or fails with no events given, or the budget is spent before the first run.
    """
    shutil.rmtree(folder / FAILED_DIR, ignore_errors=True)  # an earlier run's failures
    limit = budget.left() * FIRST_RUN_SHARE
    if limit <= 0:
        raise HypoInverseError(f"not run: {budget.spent()}")
    try:
        path = run_hypoinverse(
            command, {**inputs, phase_file: phase_text(blocks)}, outputs, folder, limit
        )
        return path, {}
    except HypoInverseError as exc:
        if not blocks:
            raise
        first = exc
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".isolate-", dir=folder) as tmp:
        scratch = Path(tmp)
        try:
            run_hypoinverse(
                command,
                {**inputs, phase_file: ""},
                outputs,
                scratch / "no-events",
                max(min(MIN_PART_TIMEOUT_S, budget.left()), 1e-3),
            )
        except HypoInverseError:
            raise first from None  # not an event's doing (or no time left to tell)
        log.warning("location: %s; running its %d events in parts", first, len(blocks))
        count = iter(range(1, 2**31))
        runs_left = max_runs(len(blocks)) - 2

        def run(part: dict[int, str]) -> tuple[Path | None, HypoInverseError | None]:
            nonlocal runs_left
            share = part_timeout_s(limit, len(part), len(blocks))
            if runs_left <= 0:
                bound = f"the batch's bound of {max_runs(len(blocks))} HypoInverse runs"
                return None, HypoInverseError(f"not run: {bound} was reached")
            if budget.left() < share:
                return None, HypoInverseError(f"not run: {budget.spent()}")
            runs_left -= 1
            where = scratch / f"run{next(count)}"
            text = phase_text(part)
            try:
                run_hypoinverse(command, {**inputs, phase_file: text}, outputs, where, share)
            except HypoInverseError as exc:
                return where, exc
            return where, None

        if len(blocks) == 1:  # the run over all was the event's own: nothing to halve
            parts = [(blocks, _keep_first(folder, scratch, phase_file), first)]
        else:
            parts = _halves(blocks, run, first)
        log_path = _combine(parts, outputs, folder, first)
        return log_path, _keep_failed(parts, folder, phase_file)


def part_timeout_s(timeout_s: float, n_part: int, n_all: int) -> float:
    """Time limit of a run over ``n_part`` of ``n_all`` events, s: their share of
    ``timeout_s`` (the limit of the run over all), at least :data:`MIN_PART_TIMEOUT_S`
    (never more than ``timeout_s``)."""
    return min(timeout_s, max(MIN_PART_TIMEOUT_S, timeout_s * n_part / n_all))


#: Per run of a part of the events: (the part, the run's folder or None when it was not run,
#: its error or None).
Part = tuple[dict[int, str], Path | None, HypoInverseError | None]


def _keep_first(folder: Path, scratch: Path, phase_file: str) -> Path:
    """A copy in ``scratch`` of the failed run over all events' phase file and log (which
    the failed run left in ``folder``), as the run folder of its one event."""
    where = scratch / "run0"
    where.mkdir()
    for name in (phase_file, LOG_NAME):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, where / name)
    return where


def _halves(
    blocks: dict[int, str],
    run: Callable[[dict[int, str]], tuple[Path | None, HypoInverseError | None]],
    failure: HypoInverseError,
) -> list[Part]:
    """``run`` on halves of ``blocks`` (whose run failed with ``failure``), split again until
    each failing part is one event, or until ``run`` refuses to run (it returns no folder).

    Returns:
        The runs kept, in the order of ``blocks``: those that succeeded, the failed
        one-event runs, and the parts ``run`` refused, with an error saying why, naming
        the failure of the run that held them.
    """
    ids = list(blocks)
    middle = (len(ids) + 1) // 2
    results: list[Part] = []
    for half in (ids[:middle], ids[middle:]):
        part = {i: blocks[i] for i in half}
        where, error = run(part)
        if where is None:
            cause = str(failure).split("; see ")[0]
            error = HypoInverseError(f"{cause} on a run of {len(blocks)} events with it; {error}")
            results.append((part, where, error))
        elif error is None or len(part) == 1:
            results.append((part, where, error))
        else:
            results += _halves(part, run, error)
    return results


def _combine(parts: list[Part], outputs: list[str], folder: Path, first: HypoInverseError) -> Path:
    """Write into ``folder`` the concatenated outputs of the runs that succeeded and the log."""
    done = [where for _, where, error in parts if error is None]
    for name in outputs:
        text = "".join((where / name).read_text(encoding="ascii", errors="replace")
                       for where in done)  # fmt: skip
        write_text_atomic(folder / name, text)
    sections = [f"eqcat: the run over all events failed ({first}); the events ran in parts\n"]
    for part, where, error in parts:
        ids = f"events {min(part)}-{max(part)}" if len(part) > 1 else f"event {min(part)}"
        if where is None:
            sections.append(f"\n===== eqcat: {ids}: {error} =====\n")
            continue
        body = (where / LOG_NAME).read_text(encoding="ascii", errors="replace")
        status = "" if error is None else f" (failed: {error})"
        sections.append(f"\n===== eqcat: HypoInverse run on {ids}{status} =====\n{body}")
    log_path = folder / LOG_NAME
    write_text_atomic(log_path, "".join(sections))
    return log_path


def _keep_failed(parts: list[Part], folder: Path, phase_file: str) -> dict[int, str]:
    """Move each failed event's run folder (its phase file and log) to
    ``folder/failed_events/<id>``, and write there the phase block of each event of a part
    that was not run; returns id -> the error, naming that folder."""
    failed: dict[int, str] = {}
    for part, where, error in parts:
        if error is None:
            continue
        if where is None:
            for hyp_id, block in part.items():
                write_text_atomic(folder / FAILED_DIR / str(hyp_id) / phase_file, block)
                failed[hyp_id] = str(error)
            continue
        (hyp_id,) = part
        if not (where / phase_file).is_file():  # a run past its time limit keeps no input
            write_text_atomic(where / phase_file, phase_text(part))
        kept = folder / FAILED_DIR / str(hyp_id)
        kept.parent.mkdir(exist_ok=True)
        os.replace(where, kept)
        failed[hyp_id] = str(error).replace(str(where), str(kept))
    return failed
