"""Scheduled builds: a deployment that extends a catalog with the latest days.

``eqcat serve CONFIG --cron "0 2 * * *" --days 2`` serves :func:`extend_catalog`; each run
builds up to the last UTC midnight, from N days before it or from the config's
``starttime`` (or an earlier scheduled run's start), whichever is earliest: the span only
grows. Station-days already picked are cached, so only the new days are downloaded and
picked, then the downstream stages run on the extended picks table.

A scheduled run has no terminal of its own: what it says is its log (the ``eqcat serve``
console, a worker's log, the Prefect UI). A run stopped by an input problem (a config edited
into an invalid one between runs, the run directory held by a run still going on, a
credential missing, an unreadable archive) ends ``Failed`` with that problem's line as its
state message, logged once without a traceback; a run that finishes logs what went wrong
with the data (the lines ``eqcat build`` prints at its end). Other failures (defects) keep
Prefect's traceback.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prefect import flow, get_run_logger
from prefect.states import Failed, State

from flows.build import build_catalog
from pipeline.config import load_config
from pipeline.errors import flow_failed_on_input, input_problem
from pipeline.report.data_quality import terminal_lines
from pipeline.rundir import RunDir, write_text_atomic


def extended_span(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The span of the last ``days`` whole UTC days before ``now``."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


@flow(name="extend_catalog")
def extend_catalog(config_path: str, days: int = 2, end: datetime | None = None) -> dict | State:
    """Build ``config_path`` over the last ``days`` days (a config copy in the run directory).

    ``end``: the end of the span (UTC); default the last UTC midnight. Given explicitly, a run
    can catch up a missed day or, on an archive, extend the catalog to a chosen time.

    Returns:
        The stage summaries of the build, or a ``Failed`` state whose message is the input
        problem that stopped it (module docstring).
    """
    quiet_input_failures()
    logger = get_run_logger()
    try:
        results, run = _extend(config_path, days, end)
    except Exception as exc:
        problem = input_problem(exc)
        if problem is None:
            raise
        logger.error("%s", problem)
        return Failed(message=str(problem))
    for line in terminal_lines(run):
        logger.warning("%s", line)
    return results


def _extend(config_path: str, days: int, end: datetime | None) -> tuple[dict, RunDir]:
    """The build of :func:`extend_catalog`: (its stage summaries, its run directory)."""
    cfg = load_config(config_path)
    if end is None:
        start, end = extended_span(datetime.now(UTC), days)
    else:
        end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
        start = end - timedelta(days=days)
    scheduled = Path(cfg.run_dir) / "config.scheduled.yaml"
    # held from before the config copy is written: an overlapping run must not change the
    # span under a running one (each stage reads the copy again)
    run = RunDir(cfg.run_dir)
    with run.exclusive():
        # keep the catalog's history: extend, never shrink (a later start would also change
        # the part of its first day that is picked, and re-pick it)
        start = min(start, cfg.starttime, *_scheduled_start(scheduled))
        spec = cfg.model_dump(mode="json")
        spec.update(starttime=start.isoformat(), endtime=end.isoformat())
        write_text_atomic(scheduled, yaml.safe_dump(spec, sort_keys=False))
        return build_catalog(str(scheduled)), run


class _InputFailureFilter(logging.Filter):
    """Drops Prefect's traceback records of flows that failed on an input problem
    (:func:`~pipeline.errors.flow_failed_on_input`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not flow_failed_on_input(record)


def quiet_input_failures() -> None:
    """Add :class:`_InputFailureFilter` to every console (stream) handler of this process: a
    stage that fails on an input problem was logged with its traceback once per flow around
    it (stage, build, scheduled run). Prefect's API log handler, which is not a stream
    handler, still gets them."""
    loggers = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if isinstance(handler, logging.StreamHandler) and not any(
            isinstance(f, _InputFailureFilter) for f in handler.filters
        ):
            handler.addFilter(_InputFailureFilter())


def _scheduled_start(path: Path) -> list[datetime]:
    """The start of the span an earlier scheduled run wrote to ``path`` ([] when there is
    none or it cannot be read: that run's span is then not kept)."""
    try:
        start = yaml.safe_load(path.read_text(encoding="utf-8"))["starttime"]
        start = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError):
        return []
    return [start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)]
