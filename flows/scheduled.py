"""Scheduled builds: a deployment that extends a catalog with the latest days.

``eqcat serve CONFIG --cron "0 2 * * *" --days 2`` serves :func:`extend_catalog`; each run
builds up to the last UTC midnight, from N days before it or from the config's
``starttime`` (or an earlier scheduled run's start), whichever is earliest: the span only
grows. Station-days already picked are cached, so only the new days are downloaded and
picked, then the downstream stages run on the extended picks table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prefect import flow

from flows.build import build_catalog
from pipeline.config import load_config
from pipeline.rundir import RunDir, write_text_atomic


def extended_span(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The span of the last ``days`` whole UTC days before ``now``."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


@flow(name="extend_catalog")
def extend_catalog(config_path: str, days: int = 2, end: datetime | None = None) -> dict:
    """Build ``config_path`` over the last ``days`` days (a config copy in the run directory).

    ``end``: the end of the span (UTC); default the last UTC midnight. Given explicitly, a run
    can catch up a missed day or, on an archive, extend the catalog to a chosen time.
    """
    cfg = load_config(config_path)
    if end is None:
        start, end = extended_span(datetime.now(UTC), days)
    else:
        end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
        start = end - timedelta(days=days)
    scheduled = Path(cfg.run_dir) / "config.scheduled.yaml"
    # held from before the config copy is written: an overlapping run must not change the
    # span under a running one (each stage reads the copy again)
    with RunDir(cfg.run_dir).exclusive():
        # keep the catalog's history: extend, never shrink (a later start would also change
        # the part of its first day that is picked, and re-pick it)
        start = min(start, cfg.starttime, *_scheduled_start(scheduled))
        spec = cfg.model_dump(mode="json")
        spec.update(starttime=start.isoformat(), endtime=end.isoformat())
        write_text_atomic(scheduled, yaml.safe_dump(spec, sort_keys=False))
        return build_catalog(str(scheduled))


def _scheduled_start(path: Path) -> list[datetime]:
    """The start of the span an earlier scheduled run wrote to ``path`` ([] when there is
    none or it cannot be read: that run's span is then not kept)."""
    try:
        start = yaml.safe_load(path.read_text(encoding="utf-8"))["starttime"]
        start = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError):
        return []
    return [start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)]
