"""HypoDD 2 file formats: writers for its inputs, readers for its outputs.

Tables used throughout :mod:`pipeline.relocation` (pandas, one row each):

events
    hypodd_id (int, > 0), origin_time (datetime64[ns, UTC], rounded to 0.01 s as event.dat
    stores it), latitude, longitude (degrees), depth_km (km below sea level), magnitude,
    erh_km, erz_km (horizontal / vertical error, km), rms_s (s).
phases
    hypodd_id, station (HypoDD label, <= 7 characters), phase ("P" | "S"), travel_time_s (pick
    time - origin time, s), weight (a-priori weight 0-1; negative = "always use", as in ph2dt).
stations
    station (label), latitude, longitude (degrees), elevation_m (m).
catalog differential times (dt.ct)
    id1, id2, station, t1, t2 (travel times, s), weight, phase.
cross-correlation differential times (dt.cc)
    id1, id2, station, dt (t1 - t2, differential travel time, s), weight (coefficient), phase.

Readers of HypoDD's own outputs (``hypoDD.reloc`` / ``.loc`` / ``.sta`` / ``.res``) split on
whitespace and name the columns as the HypoDD 2 manual (appendix B) does, lower-cased.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from pipeline.errors import EqcatInputError
from pipeline.rundir import atomic_write
from pipeline.velocity import VelocityModel

log = logging.getLogger(__name__)

#: Longest station label HypoDD 2 keeps (it reads ``a7``).
MAX_LABEL = 7

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "hypo_templates" / "hypoDD.inp.tmpl"

RELOC_COLUMNS = (
    "hypodd_id latitude longitude depth_km x_m y_m z_m ex_m ey_m ez_m year month day hour "
    "minute second magnitude n_cc_p n_cc_s n_ct_p n_ct_s rms_cc_s rms_ct_s cluster_id"
).split()
LOC_COLUMNS = (
    "hypodd_id latitude longitude depth_km x_m y_m z_m ex_m ey_m ez_m year month day hour "
    "minute second magnitude cluster_id"
).split()
STA_COLUMNS = (
    "station latitude longitude distance_m azimuth_deg n_cc_p n_cc_s n_ct_p n_ct_s rms_cc_s "
    "rms_ct_s cluster_id"
).split()
RES_COLUMNS = "station dt id1 id2 data_type weight residual_ms final_weight offset_m".split()


class HypoDDFormatError(EqcatInputError):
    """A HypoDD file does not have the layout its format requires."""


# --------------------------------------------------------------------------- writers


def _time_fields(times: pd.Series) -> pd.DataFrame:
    t = pd.DatetimeIndex(times).tz_convert("UTC")
    seconds = t.second + t.microsecond / 1e6 + t.nanosecond / 1e9
    return pd.DataFrame(
        {
            "year": t.year,
            "month": t.month,
            "day": t.day,
            "hour": t.hour,
            "minute": t.minute,
            "second": np.round(seconds, 2),
        }
    )


def write_station_dat(path: Path, stations: pd.DataFrame) -> Path:
    """``station.dat``: ``LABEL LAT LON ELEV_M`` per line."""
    with atomic_write(path) as fh:
        for row in stations.itertuples(index=False):
            fh.write(
                f"{row.station:<7s} {row.latitude:10.5f} {row.longitude:11.5f} "
                f"{row.elevation_m:7.1f}\n"
            )
    return Path(path)


def _event_header(ev, tf) -> str:
    return (
        f"# {tf.year:4d} {tf.month:2d} {tf.day:2d} {tf.hour:2d} {tf.minute:2d} {tf.second:5.2f} "
        f"{ev.latitude:10.6f} {ev.longitude:11.6f} {ev.depth_km:8.3f} {ev.magnitude:5.2f} "
        f"{ev.erh_km:6.2f} {ev.erz_km:6.2f} {ev.rms_s:5.2f} {ev.hypodd_id:10d}\n"
    )


def write_phase_dat(path: Path, events: pd.DataFrame, phases: pd.DataFrame) -> Path:
    """``phase.dat``: per event a ``#`` line, then ``STA TT WGHT PHA`` lines."""
    by_event = {eid: grp for eid, grp in phases.groupby("hypodd_id", sort=False)}
    fields = _time_fields(events["origin_time"])
    with atomic_write(path) as fh:
        for ev, tf in zip(
            events.itertuples(index=False), fields.itertuples(index=False), strict=True
        ):
            fh.write(_event_header(ev, tf))
            grp = by_event.get(ev.hypodd_id)
            if grp is None:
                continue
            for ph in grp.itertuples(index=False):
                fh.write(
                    f"{ph.station:<7s} {ph.travel_time_s:9.4f} {ph.weight:7.3f}   {ph.phase}\n"
                )
    return Path(path)


def write_event_dat(path: Path, events: pd.DataFrame) -> Path:
    """``event.dat``: ``YYYYMMDD HHMMSSss LAT LON DEP MAG EH EZ RMS ID`` per line."""
    fields = _time_fields(events["origin_time"])
    with atomic_write(path) as fh:
        for ev, tf in zip(
            events.itertuples(index=False), fields.itertuples(index=False), strict=True
        ):
            hhmmss = int(round(tf.hour * 1e6 + tf.minute * 1e4 + tf.second * 100))
            fh.write(
                f"{tf.year:04d}{tf.month:02d}{tf.day:02d} {hhmmss:8d} {ev.latitude:10.6f} "
                f"{ev.longitude:11.6f} {ev.depth_km:8.3f} {ev.magnitude:5.2f} {ev.erh_km:6.2f} "
                f"{ev.erz_km:6.2f} {ev.rms_s:5.2f} {ev.hypodd_id:10d}\n"
            )
    return Path(path)


def _blocks(dt: pd.DataFrame):
    """(id1, id2, rows) per run of consecutive rows of one event pair, in table order."""
    if dt.empty:
        return
    ids = dt[["id1", "id2"]].to_numpy()
    starts = np.flatnonzero(np.r_[True, (ids[1:] != ids[:-1]).any(axis=1)])
    ends = np.r_[starts[1:], len(dt)]
    for a, b in zip(starts, ends, strict=True):
        yield int(ids[a, 0]), int(ids[a, 1]), dt.iloc[a:b]


def write_dt_ct(path: Path, dt: pd.DataFrame) -> Path:
    """``dt.ct``: ``# ID1 ID2`` per pair, then ``STA T1 T2 WGHT PHA`` lines."""
    with atomic_write(path) as fh:
        for id1, id2, grp in _blocks(dt):
            fh.write(f"# {id1:9d} {id2:9d}\n")
            fh.writelines(
                f"{s:<7s} {a:9.4f} {b:9.4f} {w:6.4f} {p}\n"
                for s, a, b, w, p in zip(
                    grp["station"], grp["t1"], grp["t2"], grp["weight"], grp["phase"], strict=True
                )
            )
    return Path(path)


def write_dt_cc(path: Path, dt: pd.DataFrame) -> Path:
    """``dt.cc``: ``# ID1 ID2 0.0`` per pair (no origin-time correction), then
    ``STA DT CC PHA`` lines."""
    with atomic_write(path) as fh:
        for id1, id2, grp in _blocks(dt):
            fh.write(f"# {id1:9d} {id2:9d} 0.0\n")
            fh.writelines(
                f"{s:<7s} {d:10.5f} {w:6.4f} {p}\n"
                for s, d, w, p in zip(
                    grp["station"], grp["dt"], grp["weight"], grp["phase"], strict=True
                )
            )
    return Path(path)


def _numbers(values) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def render_hypodd_inp(
    cfg,
    model: VelocityModel,
    *,
    n_events: int,
    has_cc: bool,
    files: dict[str, str] | None = None,
) -> str:
    """Text of a version-2 ``hypoDD.inp`` from ``hypo_templates/hypoDD.inp.tmpl``.

    Args:
        cfg: a :class:`pipeline.relocation.params.HypoDDConfig`.
        model: the 1-D model; written as IMOD 1 (layer tops, Vp, Vp/Vs per layer).
        n_events: catalog size (chooses SVD or LSQR when ``cfg.solver`` is "auto").
        has_cc: whether dt.cc holds data (IDAT 3, else IDAT 2 = catalog only).
        files: file names overriding the defaults (keys as in the template: fn_cc, fn_ct,
            fn_event, fn_station, fn_loc, fn_reloc, fn_sta, fn_res, fn_src).
    """
    names = {
        "fn_cc": "dt.cc",
        "fn_ct": "dt.ct",
        "fn_event": "event.dat",
        "fn_station": "station.dat",
        "fn_loc": "hypoDD.loc",
        "fn_reloc": "hypoDD.reloc",
        "fn_sta": "hypoDD.sta",
        "fn_res": "hypoDD.res",
        "fn_src": "hypoDD.src",
    }
    names.update(files or {})
    solver = cfg.solver
    if solver == "auto":
        solver = "svd" if n_events <= cfg.svd_max_events else "lsqr"
    iteration_lines = "\n".join(
        f"  {it.niter:3d} {it.wtccp:7.3f} {it.wtccs:7.3f} {it.wrcc:7.1f} {it.wdcc:7.1f} "
        f"{it.wtctp:7.3f} {it.wtcts:7.3f} {it.wrct:7.1f} {it.wdct:7.1f} {it.damp:6.1f}"
        for it in cfg.iterations
    )
    ratios = model.vp_km_s / model.vs_km_s
    values = {
        **names,
        "idat": 3 if has_cc else 2,
        "ipha": {"P": 1, "S": 2, "PS": 3}[cfg.phases],
        "maxdist": f"{cfg.max_dist_km:.1f}",
        "obscc": cfg.obs_cc,
        "obsct": cfg.obs_ct,
        "mindist": f"{cfg.min_pair_station_km:.1f}",
        "maxdist_pair": f"{cfg.max_pair_station_km:.1f}",
        "maxgap": f"{cfg.max_gap_deg:.1f}",
        "istart": 2 if cfg.start == "network" else 1,
        "isolv": 1 if solver == "svd" else 2,
        "iaq": int(cfg.remove_airquakes),
        "nset": len(cfg.iterations),
        "iterations": iteration_lines,
        "model_name": model.name,
        "tops": _numbers(model.layer_tops_km),
        "vp": _numbers(model.vp_km_s),
        "ratios": _numbers(ratios),
        "cid": cfg.cluster_id,
    }
    return Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(values)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def empty_dt_ct() -> pd.DataFrame:
    """A dt.ct table without rows."""
    return _empty(
        {
            "id1": "int64",
            "id2": "int64",
            "station": "object",
            "t1": "float64",
            "t2": "float64",
            "weight": "float64",
            "phase": "object",
        }
    )


def empty_dt_cc() -> pd.DataFrame:
    """A dt.cc table without rows."""
    return _empty(
        {
            "id1": "int64",
            "id2": "int64",
            "station": "object",
            "dt": "float64",
            "weight": "float64",
            "phase": "object",
        }
    )


def empty_reloc() -> pd.DataFrame:
    """A hypoDD.reloc table without rows (as :func:`read_reloc` returns)."""
    table = _empty({c: "float64" for c in RELOC_COLUMNS})
    table["hypodd_id"] = table["hypodd_id"].astype("int64")
    return _with_times(table)


# --------------------------------------------------------------------------- readers


def read_inp_files(path: Path) -> dict[str, str]:
    """The nine file names of a version-2 ``hypoDD.inp`` (keys as in the template; "" = none).

    Raises:
        HypoDDFormatError: naming ``path`` when it is not a version-2 control file.
    """
    lines = [
        line.strip()
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        if not line.strip().startswith("*")
    ]
    if not lines or not lines[0].startswith("hypoDD_2"):
        raise HypoDDFormatError(
            f"{path}: first non-comment line must be 'hypoDD_2' (version-2 hypoDD.inp)"
        )
    keys = ["fn_cc", "fn_ct", "fn_event", "fn_station"]
    keys += ["fn_loc", "fn_reloc", "fn_sta", "fn_res", "fn_src"]
    if len(lines) < 1 + len(keys):
        raise HypoDDFormatError(f"{path}: fewer than {len(keys)} file-name lines")
    return dict(zip(keys, lines[1 : 1 + len(keys)], strict=True))


def _parameter_lines(path: Path) -> tuple[int, list[tuple[int, list[str]]]]:
    """The line number of the last of the nine file names, and (line number, fields) of the
    non-blank, non-comment lines after it."""
    numbered = [
        (number, line.strip())
        for number, line in enumerate(
            Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1
        )
        if not line.strip().startswith("*")
    ]
    names_end = numbered[9][0] if len(numbered) > 9 else 0
    return names_end, [(number, line.split()) for number, line in numbered[10:] if line]


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


class _InpLines:
    """The parameter lines of a hypoDD.inp, taken one by one against their layout."""

    def __init__(self, path: Path):
        self.path = path
        self.last, lines = _parameter_lines(path)  # last: line number of the line taken last
        self.lines = iter(lines)

    def take(self, layout: str, numbers: int, whole: int = 0) -> list[str]:
        """Fields of the next line: at least ``numbers`` numbers first, the first ``whole`` of
        them integers.

        Raises:
            HypoDDFormatError: the file ended, or the line does not fit ``layout``.
        """
        number, fields = next(self.lines, (None, []))
        if number is None:
            raise HypoDDFormatError(
                f"{self.path}: ends after line {self.last}; expected a line '{layout}' next "
                "(parameter lines missing)"
            )
        self.last = number
        if not (
            len(fields) >= numbers
            and all(_number(f) for f in fields[:numbers])
            and all(_is_int(f) for f in fields[:whole])
        ):
            kinds = f"{numbers} numbers" + (f", the first {whole} whole" if whole else "")
            raise HypoDDFormatError(
                f"{self.path}:{number}: expected '{layout}' ({kinds}), "
                f"got {' '.join(fields)[:80]!r}"
            )
        return fields


def check_inp_parameters(path: Path) -> int:
    """Refuse a version-2 ``hypoDD.inp`` whose parameter lines the engine cannot read.

    Checked after the nine file names (:func:`read_inp_files`): the data-type, clustering and
    solution-control lines, NSET iteration lines, IMOD and its model lines (IMOD 0: NLAY
    RATIO, NLAY layer tops, NLAY velocities; IMOD 1: tops, velocities and Vp/Vs ratios, each
    list ending in -9, as many of each); the optional cluster id and event ids are integers.
    Other IMOD values (a 3-D model) are left to the engine.

    Returns:
        IMOD, the velocity model type.

    Raises:
        HypoDDFormatError: ``path:line``, the layout expected and the line found, or where
            the file ended and which line was still expected (the engine itself failed on a
            truncated file with "IndexError: list index out of range").
    """
    inp = _InpLines(path)
    inp.take("IDAT IPHA DIST", 3, 2)
    inp.take("OBSCC OBSCT MINDIST MAXDIST MAXGAP", 5, 2)
    nset = int(inp.take("ISTART ISOLV IAQ NSET", 4, 4)[3])
    for k in range(1, nset + 1):
        inp.take(f"NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT DAMP (set {k} of {nset})",
                 10, 1)  # fmt: skip
    imod = int(inp.take("IMOD", 1, 1)[0])
    if imod == 0:
        nlay = int(inp.take("NLAY RATIO", 2, 1)[0])
        inp.take(f"TOP (NLAY = {nlay} layer tops)", nlay)
        inp.take(f"VEL (NLAY = {nlay} velocities)", nlay)
    elif imod == 1:
        counts = []
        for name in ("TOP", "VEL", "RATIO"):
            fields = inp.take(f"{name} values ... -9 (IMOD 1)", 2)
            if fields[-1] != "-9" or not all(_number(f) for f in fields):
                raise HypoDDFormatError(
                    f"{path}:{inp.last}: expected '{name} values ... -9' (IMOD 1), "
                    f"got {' '.join(fields)[:80]!r}"
                )
            counts.append(len(fields) - 1)
        if len(set(counts)) > 1:
            raise HypoDDFormatError(
                f"{path}:{inp.last}: the IMOD 1 model has {counts[0]} layer tops, {counts[1]} "
                f"velocities and {counts[2]} Vp/Vs ratios; expected as many of each"
            )
    else:
        return imod
    for number, fields in inp.lines:
        if not all(_is_int(f) for f in fields):
            raise HypoDDFormatError(
                f"{path}:{number}: expected 'CID' or event ids (whole numbers), "
                f"got {' '.join(fields)[:80]!r}"
            )
    return imod


def read_station_dat(path: Path) -> pd.DataFrame:
    """``station.dat`` -> stations table (elevation 0 when the file has none)."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise HypoDDFormatError(f"{path}:{lineno}: expected 'LABEL LAT LON [ELEV]'")
        elev = float(parts[3]) if len(parts) > 3 else 0.0
        rows.append((parts[0][:MAX_LABEL], float(parts[1]), float(parts[2]), elev))
    return pd.DataFrame(rows, columns=["station", "latitude", "longitude", "elevation_m"])


def read_phase_dat(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``phase.dat`` -> (events, phases) tables (see the module docstring)."""
    events, phases = [], []
    current = None
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "#":
                yr, mo, dy, hr, mn = (int(v) for v in parts[1:6])
                sec = float(parts[6])
                origin = pd.Timestamp(year=yr, month=mo, day=dy, hour=hr, minute=mn, tz="UTC")
                origin += pd.Timedelta(seconds=sec)
                lat, lon, dep, mag, eh, ez, rms = (float(v) for v in parts[7:14])
                current = int(parts[14])
                events.append((current, origin, lat, lon, dep, mag, eh, ez, rms))
            else:
                if current is None:
                    raise HypoDDFormatError(f"{path}:{lineno}: phase line before any '#' line")
                phases.append(
                    (current, parts[0][:MAX_LABEL], parts[3], float(parts[1]), float(parts[2]))
                )
        except (ValueError, IndexError) as exc:
            raise HypoDDFormatError(f"{path}:{lineno}: cannot parse {line!r} ({exc})") from exc
    ev = pd.DataFrame(
        events,
        columns=[
            "hypodd_id",
            "origin_time",
            "latitude",
            "longitude",
            "depth_km",
            "magnitude",
            "erh_km",
            "erz_km",
            "rms_s",
        ],
    )
    ph = pd.DataFrame(phases, columns=["hypodd_id", "station", "phase", "travel_time_s", "weight"])
    return ev, ph


def _read_pairs(path: Path, n_fields: int, names: list[str]) -> pd.DataFrame:
    """Read a ``#``-headed pair file (dt.ct / dt.cc) into a long table; a header's third
    value (dt.cc origin-time correction) is subtracted from the second column."""
    ids, rows = [], []
    id1 = id2 = None
    otc = 0.0
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "#":
            id1, id2 = int(parts[1]), int(parts[2])
            otc = float(parts[3]) if len(parts) > 3 and float(parts[3]) != -999 else 0.0
            continue
        if id1 is None or len(parts) < n_fields:
            raise HypoDDFormatError(f"{path}:{lineno}: unexpected line {line!r}")
        ids.append((id1, id2))
        if otc:
            parts[1] = str(float(parts[1]) - otc)
        rows.append(parts[:n_fields])
    table = pd.DataFrame(rows, columns=names)
    table.insert(0, "id2", [b for _, b in ids])
    table.insert(0, "id1", [a for a, _ in ids])
    for col in names[1:-1]:
        table[col] = table[col].astype(float)
    return table.astype({"id1": int, "id2": int})


def read_dt_ct(path: Path) -> pd.DataFrame:
    """``dt.ct`` -> catalog differential-time table."""
    return _read_pairs(path, 5, ["station", "t1", "t2", "weight", "phase"])


def read_dt_cc(path: Path) -> pd.DataFrame:
    """``dt.cc`` -> cross-correlation table; dt = DT - OTC as HypoDD uses it."""
    return _read_pairs(path, 4, ["station", "dt", "weight", "phase"])


def _read_columns(path: Path, columns: list[str], str_columns=()) -> pd.DataFrame:
    text = Path(path).read_text(errors="replace")
    if not text.strip():
        return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    dtypes = {c: str for c in str_columns}
    try:
        return pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, names=columns, dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as exc:
        raise HypoDDFormatError(
            f"{path}: not a {len(columns)}-column HypoDD table ({exc})"
        ) from exc


def _with_times(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``origin_time`` (UTC) from the year … second columns (seconds may reach 60)."""
    if table.empty:
        table["origin_time"] = pd.Series(dtype="datetime64[ns, UTC]")
        return table
    base = pd.to_datetime(table[["year", "month", "day", "hour", "minute"]].astype(int), utc=True)
    table["origin_time"] = base + pd.to_timedelta(table["second"].astype(float), unit="s")
    return table


def read_reloc(path: Path) -> pd.DataFrame:
    """``hypoDD.reloc`` -> table (errors in m; rms in s; ``origin_time`` added)."""
    table = _read_columns(path, RELOC_COLUMNS)
    table["hypodd_id"] = table["hypodd_id"].astype(int)
    return _with_times(table)


def realign_origin_times(reloc: pd.DataFrame, loc: pd.DataFrame) -> pd.DataFrame:
    """``reloc`` with each event's ``origin_time`` (and ``magnitude``) attached to its own ID.

    HypoDD writes a relocated origin time as the event's catalog time minus its origin
    shift. The ``hypodd`` package (0.2.1, ``core/skip.py``) compacts only the ID and source
    arrays when it drops events of a cluster, so row j of a cluster in hypoDD.reloc then
    carries the date/time and magnitude of row j of that cluster in hypoDD.loc (the
    cluster's events before any was dropped) instead of its own: origin times off by minutes.
    Both readings of each row's shift are formed — against the hypoDD.loc row of the same
    ID, and against the same row of the cluster block — and the one with the smaller median
    absolute shift is taken (a relocation shifts origins by far less than the spacing of
    events; without dropped events the two agree). The time becomes the hypoDD.loc time of
    the event's own ID plus that shift.

    Args:
        reloc: :func:`read_reloc` table.
        loc: :func:`read_loc` table of the same run.

    Raises:
        HypoDDFormatError: an ID or cluster of ``reloc`` missing from ``loc``.
    """
    if reloc.empty:
        return reloc
    start = loc.drop_duplicates("hypodd_id").set_index("hypodd_id")
    missing = sorted(set(reloc["hypodd_id"]) - set(start.index))
    if missing:
        raise HypoDDFormatError(f"hypoDD.reloc IDs {missing[:5]} not in hypoDD.loc")
    own = start.loc[reloc["hypodd_id"]]
    own_time = pd.DatetimeIndex(own["origin_time"])
    by_id = (pd.DatetimeIndex(reloc["origin_time"]) - own_time).total_seconds().to_numpy()
    by_row = np.full(len(reloc), np.nan)
    for cid, rows in reloc.groupby("cluster_id", sort=False):
        block = pd.DatetimeIndex(loc.loc[loc["cluster_id"] == cid, "origin_time"])
        if len(block) < len(rows):
            raise HypoDDFormatError(
                f"cluster {cid}: {len(rows)} events in hypoDD.reloc, {len(block)} in hypoDD.loc"
            )
        shift = pd.DatetimeIndex(rows["origin_time"]) - block[: len(rows)]
        by_row[reloc.index.get_indexer(rows.index)] = shift.total_seconds()
    out = reloc.copy()
    shift_s = by_id
    if np.median(np.abs(by_row)) < np.median(np.abs(by_id)):
        log.debug(  # handled: the relocated times are right; nothing for the user to do
            "hypoDD.reloc origin times belong to other events (hypodd package bug when events "
            "are dropped); re-attached: median |shift| %.3f s instead of %.1f s",
            np.median(np.abs(by_row)),
            np.median(np.abs(by_id)),
        )
        shift_s = by_row
        out["magnitude"] = own["magnitude"].to_numpy()
    out["origin_time"] = own_time + pd.to_timedelta(shift_s, unit="s")
    return out


def read_loc(path: Path) -> pd.DataFrame:
    """``hypoDD.loc`` (HypoDD's copy of the starting locations) -> table."""
    table = _read_columns(path, LOC_COLUMNS)
    table["hypodd_id"] = table["hypodd_id"].astype(int)
    return _with_times(table)


def read_sta(path: Path) -> pd.DataFrame:
    """``hypoDD.sta`` -> per-station residual table."""
    return _read_columns(path, STA_COLUMNS, str_columns=("station",))


def read_res(path: Path) -> pd.DataFrame:
    """``hypoDD.res`` -> per-observation residual table (data_type 1/2 cc P/S, 3/4 ct P/S)."""
    return _read_columns(path, RES_COLUMNS, str_columns=("station",))


#: Layout of each HypoDD input a user's folder holds, line by line: (fields, how many at
#: least, indices of the numbers). dt.ct / dt.cc have a "#" pair line before each block.
INPUT_LAYOUTS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "fn_station": ("STA LAT LON [ELEV]", 3, (1, 2)),
    "fn_event": ("DATE TIME LAT LON DEPTH MAG EH EZ RMS ID", 10, (2, 3, 4, 5, 6, 7, 8, 9)),
    "fn_ct": ("STA T1 T2 WGHT PHA", 5, (1, 2, 3)),
    "fn_cc": ("STA DT WGHT PHA", 4, (1, 2)),
}


def _number(text: str) -> bool:
    """Whether ``text`` is a number HypoDD reads (a station coordinate may be ``deg:min``)."""
    try:
        float(text.replace(":", "", 1) if text.count(":") == 1 else text)
    except ValueError:
        return False
    return True


def check_input_lines(path: Path, key: str) -> None:
    """Refuse the first line of a HypoDD input file that its engine cannot read.

    ``key`` is the hypoDD.inp key of the file (:data:`INPUT_LAYOUTS`). Checked: the file is
    UTF-8 text, each data line has its fields with numbers where numbers belong, the phase of
    a differential time is P or S, and a ``#`` line of dt.ct / dt.cc names two event ids.

    Raises:
        HypoDDFormatError: ``path:line``, the layout expected and the line found (the
            engine itself failed on such a line with "could not convert string to float" or
            "list index out of range", or left the event out without a word).
    """
    layout, n_fields, numbers = INPUT_LAYOUTS[key]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HypoDDFormatError(
            f"{path}: not a text file ({exc.reason} at byte {exc.start})"
        ) from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if key in ("fn_ct", "fn_cc") and parts[0] == "#":
            ids = parts[1:3]
            ok = len(ids) == 2 and all(i.lstrip("-").isdigit() for i in ids)
            expected = "# ID1 ID2" + (" [OTC]" if key == "fn_cc" else "")
        else:
            optional = (3,) if key == "fn_station" and len(parts) > 3 else ()  # ELEV
            ok = len(parts) >= n_fields and all(_number(parts[i]) for i in numbers + optional)
            if ok and key in ("fn_ct", "fn_cc"):
                ok = parts[n_fields - 1].upper() in ("P", "S")
            expected = layout
        if not ok:
            raise HypoDDFormatError(
                f"{path}:{lineno}: expected '{expected}', got {line.strip()[:80]!r}"
            )
