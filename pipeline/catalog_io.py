"""Read an earthquake catalog made elsewhere (QuakeML or CSV) into one event table.

Used by ``eqcat mc`` to report the completeness of catalogs eqcat did not build.

Formats:

- **QuakeML** (read with :func:`obspy.read_events`, in batches of events streamed from the
  file so that memory does not grow with its size; tar and zip archives and gzip / bzip2
  files are read as ObsPy reads them): per event the preferred origin (else
  the first) and the preferred magnitude (else the first); with a magnitude-type filter,
  the event's magnitude of that type is used when it has one.
- **CSV** with a header row (fields separated by ',', ';', tabs or '|', as the header line
  shows; times in ISO 8601): ComCat-style exports (``time,latitude,longitude,depth,mag,
  magType,...``), FDSN/SED-style exports (``time,...,magnitude,magnitude_type``) and eqcat's
  own ``catalog.csv`` (``origin_time,...,depth_km,magnitude,magnitude_type``). Columns are
  recognised by the names in :data:`COLUMN_ALIASES` (case-insensitive); only a magnitude
  column is required.

Output columns (:data:`EVENT_COLUMNS`): ``origin_time`` (UTC Timestamp, NaT if absent),
``latitude``, ``longitude`` (degrees), ``depth_km`` (km below sea level), ``magnitude``
(NaN if absent), ``magnitude_type`` (str, "" if absent). A ``depth`` column is in km (the
ComCat convention) unless its largest absolute value exceeds :data:`DEPTH_METRES_ABOVE`,
in which case it is read as metres (FDSN text exports of some agencies, e.g. SED).
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd
from lxml import etree

from pipeline.errors import EqcatInputError

if TYPE_CHECKING:
    from obspy.core.event import Event

#: Standard column -> accepted CSV header names (compared case-insensitively), in order.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "origin_time": ("origin_time", "time", "origintime", "datetime", "date_time", "otime"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon", "long", "lng"),
    "depth_km": ("depth_km", "depth"),
    "magnitude": ("magnitude", "mag"),
    "magnitude_type": ("magnitude_type", "magtype", "mag_type"),
}

EVENT_COLUMNS = list(COLUMN_ALIASES)

#: A ``depth`` column whose largest |value| exceeds this is in metres (no hypocentre is
#: deeper than ~700 km).
DEPTH_METRES_ABOVE = 1000.0

QUAKEML_SUFFIXES = {".xml", ".qml", ".quakeml"}

#: QuakeML is read this many events at a time (a few MB of ObsPy objects with picks).
QUAKEML_BATCH_EVENTS = 200

#: Values outside these ranges are not a place or a size of an earthquake (a placeholder
#: such as -999 or 9999 for "unknown", or a wrong column): reading stops at the first.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "magnitude": (-10.0, 10.0),
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 360.0),
}


class CatalogReadError(EqcatInputError):
    """A catalog file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class CatalogFilter:
    """Which events to keep; every field None (or empty) keeps all.

    Times are UTC; the region is a latitude/longitude box in degrees (inclusive);
    ``magnitude_types`` are compared case-insensitively (e.g. ``("ML", "Mw")``).
    """

    starttime: pd.Timestamp | None = None
    endtime: pd.Timestamp | None = None
    minlatitude: float | None = None
    maxlatitude: float | None = None
    minlongitude: float | None = None
    maxlongitude: float | None = None
    magnitude_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a selection that can hold no event (start not before end, min above max)."""
        pairs = (
            ("--start", self.starttime, "before", "--end", self.endtime),
            ("--min-latitude", self.minlatitude, "below", "--max-latitude", self.maxlatitude),
            ("--min-longitude", self.minlongitude, "below", "--max-longitude", self.maxlongitude),
        )
        for low_name, low, word, high_name, high in pairs:
            if low is not None and high is not None and not low < high:
                raise EqcatInputError(f"{low_name} {low} must be {word} {high_name} {high}")
        for name, value, limit in (
            ("--min-latitude", self.minlatitude, 90),
            ("--max-latitude", self.maxlatitude, 90),
            ("--min-longitude", self.minlongitude, 180),
            ("--max-longitude", self.maxlongitude, 180),
        ):
            if value is not None and not -limit <= value <= limit:
                raise EqcatInputError(f"{name} {value}: expected degrees in [-{limit}, {limit}]")

    def describe(self) -> str:
        """One line for the report, e.g. ``time >= 2024-01-01T00:00:00+00:00; type in ML``."""
        parts = []
        if self.starttime is not None:
            parts.append(f"time ≥ {self.starttime.isoformat()}")
        if self.endtime is not None:
            parts.append(f"time < {self.endtime.isoformat()}")
        for name, low, high in (
            ("latitude", self.minlatitude, self.maxlatitude),
            ("longitude", self.minlongitude, self.maxlongitude),
        ):
            if low is not None or high is not None:
                parts.append(f"{_bound(low)} ≤ {name} ≤ {_bound(high)}")
        if self.magnitude_types:
            parts.append("magnitude type in " + ", ".join(self.magnitude_types))
        return "; ".join(parts) or "none"


def _bound(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def detect_format(path: Path) -> str:
    """'quakeml' for .xml/.qml/.quakeml files or content starting with '<', else 'csv'."""
    if path.suffix.lower() in QUAKEML_SUFFIXES:
        return "quakeml"
    with open(path, "rb") as fh:
        head = fh.read(256).lstrip()
    return "quakeml" if head.startswith(b"<") else "csv"


def read_catalog(
    path: str | Path,
    fmt: str = "auto",
    magnitude_column: str | None = None,
    time_column: str | None = None,
    magnitude_types: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Read a QuakeML or CSV catalog into :data:`EVENT_COLUMNS` (see module docstring).

    Args:
        path: the catalog file.
        fmt: 'auto' (:func:`detect_format`), 'quakeml' or 'csv'.
        magnitude_column, time_column: CSV column names overriding the detection.
        magnitude_types: for QuakeML, prefer an event's magnitude of one of these types.

    Raises:
        CatalogReadError: missing or empty file, unreadable QuakeML, no magnitude column,
            no event with a magnitude, a non-numeric or infinite number, a value outside
            :data:`PLAUSIBLE_RANGES` or an unreadable time (row named).
    """
    path = Path(path)
    if path.is_dir():
        raise CatalogReadError(f"{path}: is a folder; expected a QuakeML or CSV catalog file")
    if not path.is_file():
        raise CatalogReadError(f"{path}: catalog file not found")
    if path.stat().st_size == 0:
        raise CatalogReadError(f"{path}: empty file (expected a QuakeML or CSV catalog)")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "quakeml":
        table = _read_quakeml(path, magnitude_types)
    elif fmt == "csv":
        table = _read_csv(path, magnitude_column, time_column)
    else:
        raise CatalogReadError(f"{path}: unknown format {fmt!r} (expected auto, quakeml or csv)")
    check_ranges(path, table, "event" if fmt == "quakeml" else "row")
    if table["magnitude"].isna().all():
        raise CatalogReadError(
            f"{path}: none of its {len(table)} event(s) has a magnitude (expected a value in "
            "the magnitude column, or a QuakeML <magnitude> per event)"
        )
    return table


def check_ranges(path: Path, table: pd.DataFrame, unit: str = "row") -> None:
    """Raise at the first value of ``table`` outside :data:`PLAUSIBLE_RANGES` (NaN passes).

    ``unit`` names an entry in the message: "row" (CSV, with its line) or "event" (QuakeML).
    """
    for column, (low, high) in PLAUSIBLE_RANGES.items():
        values = table[column].to_numpy(dtype=float)
        bad = ~np.isnan(values) & ((values < low) | (values > high))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = f"row {row + 1} (line {row + 2})" if unit == "row" else f"event {row + 1}"
            raise CatalogReadError(
                f"{path}: {column} {values[row]:g} in {where} is outside [{low:g}, {high:g}] "
                "(a placeholder for an unknown value? leave it empty)"
            )


def _read_quakeml(path: Path, magnitude_types: tuple[str, ...]) -> pd.DataFrame:
    """The event table of QuakeML ``path``, read in batches of :data:`QUAKEML_BATCH_EVENTS`
    events (:func:`_quakeml_batches`) so that memory stays bounded for any file size; each
    batch is read by :func:`obspy.read_events`, so rows equal a read of the whole file."""
    import obspy

    wanted = {t.lower() for t in magnitude_types}
    rows = []
    for batch in (b for source in _xml_sources(path) for b in _quakeml_batches(path, source)):
        try:
            catalog = obspy.read_events(io.BytesIO(batch), format="QUAKEML")
        except Exception as exc:  # obspy raises many types for malformed XML
            raise CatalogReadError(f"{path}: not readable as QuakeML ({exc})") from None
        rows.extend(_event_row(event, wanted) for event in catalog)
        del catalog
    if not rows:
        raise CatalogReadError(f"{path}: QuakeML without events")
    table = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    table["origin_time"] = pd.to_datetime(table["origin_time"], utc=True)
    return table


def _event_row(event: Event, wanted: set[str]) -> dict[str, object]:
    """One :data:`EVENT_COLUMNS` row of an ObsPy event (module docstring); ``wanted`` are
    lower-case magnitude types to prefer."""
    origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
    magnitude = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
    if wanted and (magnitude is None or (magnitude.magnitude_type or "").lower() not in wanted):
        magnitude = next(
            (m for m in event.magnitudes if (m.magnitude_type or "").lower() in wanted),
            magnitude,
        )
    depth_m = origin.depth if origin is not None else None
    return {
        "origin_time": pd.Timestamp(origin.time.datetime, tz="UTC")
        if origin is not None and origin.time is not None
        else pd.NaT,
        "latitude": _float(origin.latitude if origin is not None else None),
        "longitude": _float(origin.longitude if origin is not None else None),
        "depth_km": _float(depth_m) / 1000.0,
        "magnitude": _float(magnitude.mag if magnitude is not None else None),
        "magnitude_type": (magnitude.magnitude_type or "") if magnitude else "",
    }


def _xml_sources(path: Path) -> Iterator[IO[bytes]]:
    """The XML documents in ``path`` as ObsPy's reader finds them, each opened for streaming:
    every file of a tar or zip archive, the content of a bzip2 or gzip file, else the file
    itself."""
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if member.isfile() and member.size:
                    yield archive.extractfile(member)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    yield member
    else:
        with open(path, "rb") as fh:
            magic = fh.read(3)
        opener = bz2.open if magic == b"BZh" else gzip.open if magic[:2] == b"\x1f\x8b" else open
        with opener(path, "rb") as stream:
            yield stream


def _quakeml_batches(path: Path, source: IO[bytes]) -> Iterator[bytes]:
    """QuakeML documents of at most :data:`QUAKEML_BATCH_EVENTS` children of the
    eventParameters of ``source`` (an XML document of ``path``) each, streamed with
    :func:`lxml.etree.iterparse`.

    Each document has the source's root element and eventParameters (tag, attributes,
    namespaces) around the batch, so ObsPy applies to it the checks it applies to the whole
    file (root tag, eventParameters in the namespace of the root's first child, which
    children are events). Elements are removed from the parsed tree once passed on, and
    anything outside eventParameters is dropped as soon as it is parsed. A file without
    eventParameters gives one document of the root and its first child, for ObsPy to
    refuse; one without children of eventParameters gives one empty document.

    Raises:
        CatalogReadError: ``path`` is not well-formed XML (ObsPy's message, as before).
    """
    root = params = first = None
    in_params = False
    batch: etree._Element | None = None
    sent = depth = 0
    try:
        for action, elem in etree.iterparse(source, events=("start", "end")):
            if action == "start":
                depth += 1
                if depth == 1:
                    root = elem
                elif depth == 2 and first is None:
                    first = _copy(elem)
                if depth == 2 and params is None and _is_params(elem, first):
                    params, in_params = elem, True
                continue
            depth -= 1
            if in_params and depth == 2:
                batch = batch if batch is not None else _batch_document(root, params)
                batch[0].append(elem)  # moves it out of the parsed tree
                if len(batch[0]) >= QUAKEML_BATCH_EVENTS:
                    document, batch, sent = _document(batch), None, sent + 1
                    yield document  # the batch's tree is freed while ObsPy reads it
            elif in_params and depth == 1:
                in_params = False
            elif not in_params and depth >= 1:
                elem.clear()
    except (etree.LxmlError, OSError, EOFError):  # EOFError: a truncated .gz or .bz2
        message = f"Could not parse '{path}' to an etree element."  # ObsPy's words
        raise CatalogReadError(f"{path}: not readable as QuakeML ({message})") from None
    if params is None:
        skeleton = _copy(root)
        if first is not None:
            skeleton.append(first)
        yield _document(skeleton)
    elif batch is not None or not sent:
        yield _document(batch if batch is not None else _batch_document(root, params))


def _document(root: etree._Element) -> bytes:
    """The UTF-8 XML document of the tree under ``root``."""
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)


def _batch_document(root: etree._Element, params: etree._Element) -> etree._Element:
    """A new root like ``root`` holding an empty eventParameters like ``params``."""
    document = _copy(root)
    document.append(_copy(params))
    return document


def _is_params(elem: etree._Element, first: etree._Element) -> bool:
    """Whether ``elem`` is an eventParameters in the namespace of the root's first child
    ``first`` (where ObsPy looks for it)."""
    return elem.tag == etree.QName(etree.QName(first).namespace, "eventParameters").text


def _copy(elem: etree._Element) -> etree._Element:
    """A new element with ``elem``'s tag, attributes and namespaces in scope, no children."""
    return etree.Element(elem.tag, attrib=dict(elem.attrib), nsmap=elem.nsmap)


def _float(value: object) -> float:
    return math.nan if value is None else float(value)


def _find_column(path: Path, columns: pd.Index, standard: str, override: str | None) -> str | None:
    """The file's column for ``standard`` (override first, then the aliases), or None."""
    if override is not None:
        if override not in columns:
            raise CatalogReadError(
                f"{path}: no column {override!r} (columns: {', '.join(map(str, columns))})"
            )
        return override
    lower = {str(c).strip().lower(): c for c in columns}
    return next((lower[a] for a in COLUMN_ALIASES[standard] if a in lower), None)


#: Field separators a catalog CSV may use (exports of spreadsheets: ';' or tabs).
SEPARATORS = (",", ";", "\t", "|")


def _separator(path: Path) -> str:
    """The separator of ``path``'s header line: the one of :data:`SEPARATORS` it holds most
    often (',' when it holds none, or the file is not text: the reader names the problem)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except (UnicodeDecodeError, OSError):
        return ","
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _read_csv(path: Path, magnitude_column: str | None, time_column: str | None) -> pd.DataFrame:
    try:
        raw = pd.read_csv(
            path,
            sep=_separator(path),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise CatalogReadError(f"{path}: empty file (expected a CSV header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CatalogReadError(f"{path}: not readable as CSV ({exc})") from None
    found = {
        standard: _find_column(
            path,
            raw.columns,
            standard,
            {"magnitude": magnitude_column, "origin_time": time_column}.get(standard),
        )
        for standard in EVENT_COLUMNS
    }
    if found["magnitude"] is None:
        raise CatalogReadError(
            f"{path}: no magnitude column (expected one of "
            f"{', '.join(COLUMN_ALIASES['magnitude'])}; columns: {', '.join(raw.columns)})"
        )
    if raw.empty:
        raise CatalogReadError(f"{path}: no events (header only)")
    table = pd.DataFrame(index=raw.index)
    table["origin_time"] = (
        _times(path, raw[found["origin_time"]]) if found["origin_time"] else pd.NaT
    )
    for standard in ("latitude", "longitude", "depth_km", "magnitude"):
        column = found[standard]
        table[standard] = (
            numeric_column(path, raw[column], standard) if column is not None else math.nan
        )
    if found["depth_km"] is not None and found["depth_km"].strip().lower() == "depth":
        if np.nanmax(np.abs(table["depth_km"].to_numpy(dtype=float)), initial=0) > (
            DEPTH_METRES_ABOVE
        ):
            table["depth_km"] = table["depth_km"] / 1000.0
    column = found["magnitude_type"]
    table["magnitude_type"] = raw[column].str.strip() if column is not None else ""
    table["origin_time"] = pd.to_datetime(table["origin_time"], utc=True)
    return table[EVENT_COLUMNS].reset_index(drop=True)


def numeric_column(path: Path, values: pd.Series, what: str) -> pd.Series:
    """Floats of a text column; blanks become NaN, other non-numbers and infinities raise
    (file, row and value named)."""
    text = values.str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce").astype(float)
    blank = (text == "") | text.str.lower().isin({"nan", "na", "null", "none"})
    bad = (numbers.isna() & ~blank) | np.isinf(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        kind = "infinite" if np.isinf(numbers.iloc[row]) else "non-numeric"
        raise CatalogReadError(
            f"{path}: {kind} {what.removesuffix('_km')} {text.iloc[row]!r} in row "
            f"{row + 1} (line {row + 2})"
        )
    return numbers


def _times(path: Path, values: pd.Series) -> pd.Series:
    """UTC timestamps of an ISO 8601 text column; blanks become NaT, others raise (row named).

    Only ISO 8601 is read: "08/10/2000" (day first in most of the world) was read as
    10 August by pandas' guessing parser, without a word.
    """
    text = values.str.strip()
    times = pd.to_datetime(text.where(text != ""), utc=True, errors="coerce", format="ISO8601")
    bad = times.isna() & (text != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CatalogReadError(
            f"{path}: unreadable time {text.iloc[row]!r} in row {row + 1} (line {row + 2}); "
            "expected ISO 8601, e.g. 2024-01-01T12:00:00Z"
        )
    return times


def filter_catalog(table: pd.DataFrame, selection: CatalogFilter, path: Path) -> pd.DataFrame:
    """Events of ``table`` (:data:`EVENT_COLUMNS`) that pass ``selection``.

    Raises:
        CatalogReadError: a filter needs a column the file did not have (all NaN), or no
            event passes it.
    """
    keep = pd.Series(True, index=table.index)

    def need(column: str, option: str) -> pd.Series:
        values = table[column]
        if values.isna().all():
            what = "origin time" if column == "origin_time" else column
            raise CatalogReadError(f"{path}: {option} needs an event {what}; the file has none")
        return values

    if selection.starttime is not None:
        keep &= need("origin_time", "--start") >= selection.starttime
    if selection.endtime is not None:
        keep &= need("origin_time", "--end") < selection.endtime
    for column, low, high in (
        ("latitude", selection.minlatitude, selection.maxlatitude),
        ("longitude", selection.minlongitude, selection.maxlongitude),
    ):
        if low is not None:
            keep &= need(column, f"--min-{column}") >= low
        if high is not None:
            keep &= need(column, f"--max-{column}") <= high
    if selection.magnitude_types:
        types = table["magnitude_type"].fillna("").str.lower()
        if (types == "").all():
            raise CatalogReadError(
                f"{path}: --magnitude-type needs a magnitude type column; the file has none"
            )
        keep &= types.isin({t.lower() for t in selection.magnitude_types})
    if not keep.any():
        present = ""
        if selection.magnitude_types:
            found = sorted(set(table["magnitude_type"].fillna("").str.strip()) - {""})
            present = f"; its magnitude types: {', '.join(found)}"
        raise CatalogReadError(
            f"{path}: none of its {len(table)} event(s) passes the selection "
            f"({selection.describe()}){present}"
        )
    return table[keep].reset_index(drop=True)


def mixed_magnitude_types(table: pd.DataFrame) -> str | None:
    """A warning when ``table`` holds more than one magnitude type (ML and Mw, ...), else None.

    Mc and b of mixed scales describe none of them; the text names each type's count and the
    option that keeps one. Types differing only in case are one type; blanks are not counted.
    """
    types = table["magnitude_type"].fillna("").str.strip()
    types = types[types != ""]
    counts = types.groupby(types.str.lower()).agg(["first", "size"])
    if len(counts) < 2:
        return None
    counts = counts.sort_values("size", ascending=False)
    listed = ", ".join(f"{row.first}: {row.size}" for row in counts.itertuples())
    return (
        f"mixed magnitude types ({listed}): Mc and b mix their scales; keep one with "
        f"--magnitude-type {counts.iloc[0]['first']}"
    )
