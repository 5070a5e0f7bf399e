"""Run HypoInverse so that a failure caused by one event's phase block costs that event only.

HypoInverse reads every event of a phase file in one run; one block it cannot take (a trial
hypocentre far outside the station network made hyp1.40 end with SIGSEGV, losing every
other event of the run) would otherwise stop the location of all of them.
:func:`run_isolating` runs all events at once, which is all it does when the program
succeeds; after a failure it reruns the events in halves, recursively, until each failing run
holds one event, and keeps what the other runs wrote.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
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
    timeout_s: float,
) -> tuple[Path, dict[int, str]]:
    """Run HypoInverse on the events ``blocks`` in ``folder``; a failure costs its event only.

    One run over every event comes first. When it fails (a crash, an error message, its time
    limit: one event made hyp1.40 loop forever) and the same commands succeed on an empty
    phase file (so the failure is an event's, not the station file's or the model's), the
    events run again in halves, recursively, until each failing run holds one event.
    ``folder`` then holds the full phase file, the outputs of the runs that succeeded,
    concatenated in the order of ``blocks``, and a log with one section per run;
    ``folder/failed_events/<id>/`` holds each failed event's input and log. With k failing
    events among n, about ``2 k log2(n)`` short runs are added.

    Args:
        command: the command file text (reads ``phase_file`` and writes ``outputs``).
        inputs: the other input files, name -> text.
        phase_file: name of the phase file the commands read.
        blocks: HypoInverse event id -> the event's phase-file lines (ending in a newline).
        outputs: names of the files the commands write.
        folder: where the program's files end up.
        timeout_s: time limit of the run over every event, s (a run over part of them gets
            :func:`part_timeout_s`).

    Returns:
        (log path, failed): failed maps the id of each event the program failed on alone to
        the error of that one-event run (naming its log in ``failed_events/<id>/``).

    Raises:
        HypoInverseError: the program fails (or runs past ``timeout_s``) with no event too,
            or fails with no events given.
    """
    shutil.rmtree(folder / FAILED_DIR, ignore_errors=True)  # an earlier run's failures
    try:
        path = run_hypoinverse(
            command, {**inputs, phase_file: phase_text(blocks)}, outputs, folder, timeout_s
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
                command, {**inputs, phase_file: ""}, outputs, scratch / "no-events", timeout_s
            )
        except HypoInverseError:
            raise first from None  # not an event's doing
        log.warning("location: %s; running its %d events in parts", first, len(blocks))
        count = iter(range(1, 2**31))

        def run(part: dict[int, str]) -> tuple[Path, HypoInverseError | None]:
            where = scratch / f"run{next(count)}"
            text = phase_text(part)
            limit = part_timeout_s(timeout_s, len(part), len(blocks))
            try:
                run_hypoinverse(command, {**inputs, phase_file: text}, outputs, where, limit)
            except HypoInverseError as exc:
                return where, exc
            return where, None

        parts = _halves(blocks, run)
        log_path = _combine(parts, outputs, folder, first)
        return log_path, _keep_failed(parts, folder, phase_file)


def part_timeout_s(timeout_s: float, n_part: int, n_all: int) -> float:
    """Time limit of a run over ``n_part`` of ``n_all`` events, s: their share of
    ``timeout_s``, at least :data:`MIN_PART_TIMEOUT_S` (never more than ``timeout_s``).

    An event that makes the program loop then costs about twice ``timeout_s`` in all (the
    run over every event, then halves of ever shorter limits), not ``timeout_s`` per split.
    """
    return min(timeout_s, max(MIN_PART_TIMEOUT_S, timeout_s * n_part / n_all))


#: Per run of a part of the events: (the part, the run's folder, its error or None).
Part = tuple[dict[int, str], Path, HypoInverseError | None]


def _halves(
    blocks: dict[int, str], run: Callable[[dict[int, str]], tuple[Path, HypoInverseError | None]]
) -> list[Part]:
    """``run`` on halves of ``blocks``, split again until each failing part is one event.

    Returns:
        The runs kept, in the order of ``blocks``: those that succeeded and the failed
        one-event runs.
    """
    ids = list(blocks)
    middle = (len(ids) + 1) // 2
    halves = [ids[:middle], ids[middle:]] if len(ids) > 1 else [ids]
    results: list[Part] = []
    for half in halves:
        part = {i: blocks[i] for i in half}
        where, error = run(part)
        results += [(part, where, error)] if error is None or len(part) == 1 else _halves(part, run)
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
        body = (where / LOG_NAME).read_text(encoding="ascii", errors="replace")
        status = "" if error is None else f" (failed: {error})"
        sections.append(f"\n===== eqcat: HypoInverse run on {ids}{status} =====\n{body}")
    log_path = folder / LOG_NAME
    write_text_atomic(log_path, "".join(sections))
    return log_path


def _keep_failed(parts: list[Part], folder: Path, phase_file: str) -> dict[int, str]:
    """Move each failed event's run folder (its phase file and log) to
    ``folder/failed_events/<id>``; returns id -> the error, naming that folder."""
    failed: dict[int, str] = {}
    for part, where, error in parts:
        if error is None:
            continue
        (hyp_id,) = part
        if not (where / phase_file).is_file():  # a run past its time limit keeps no input
            write_text_atomic(where / phase_file, phase_text(part))
        kept = folder / FAILED_DIR / str(hyp_id)
        kept.parent.mkdir(exist_ok=True)
        os.replace(where, kept)
        failed[hyp_id] = str(error).replace(str(where), str(kept))
    return failed
