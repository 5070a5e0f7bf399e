"""QuakeML read in bounded memory: batches of events streamed to ObsPy give the table of a
whole-file read, and damaged files the same one-line errors.

Catalogs: the ``catalog.xml`` eqcat exports for a generated run (picks at 8 stations, as in
``benchmarks/quakeml_read.py``) and the real SED QuakeML of ``tests/test_catalog_mc.py``
(shipped in the seismostats wheel, no picks).
"""

from __future__ import annotations

import bz2
import gzip
import subprocess
import sys
import tarfile
from pathlib import Path

import obspy
import pandas as pd
import pytest
from test_catalog_report import make_run

from pipeline import catalog_io
from pipeline.catalog import export_catalog
from pipeline.catalog_io import CatalogReadError, read_catalog

REPO = Path(__file__).resolve().parents[1]
N_EVENTS = 14


@pytest.fixture(scope="module")
def catalog_xml(tmp_path_factory) -> Path:
    """eqcat's QuakeML export of a run of :data:`N_EVENTS` events with picks at 8 stations."""
    run = make_run(tmp_path_factory.mktemp("run"), n_events=N_EVENTS, picked_stations=8)
    export_catalog(run)
    return run.root / "catalog" / "catalog.xml"


@pytest.fixture
def read_calls(monkeypatch) -> list[int]:
    """Batches of 3 events; the number of events of each ObsPy read, in order."""
    monkeypatch.setattr(catalog_io, "QUAKEML_BATCH_EVENTS", 3)
    calls: list[int] = []
    original = obspy.read_events

    def counted(*args, **kwargs):
        catalog = original(*args, **kwargs)
        calls.append(len(catalog))
        return catalog

    monkeypatch.setattr(obspy, "read_events", counted)
    return calls


def _whole_file_rows(path: Path) -> pd.DataFrame:
    """Origin time, place and magnitude of each event of a whole-file ObsPy read."""
    rows = []
    for event in obspy.read_events(str(path)):
        origin = event.preferred_origin() or event.origins[0]
        magnitude = event.preferred_magnitude() or event.magnitudes[0]
        rows.append(
            (
                pd.Timestamp(origin.time.datetime, tz="UTC"),
                origin.latitude,
                origin.longitude,
                origin.depth / 1000.0,
                magnitude.mag,
                magnitude.magnitude_type,
            )
        )
    return pd.DataFrame(rows, columns=catalog_io.EVENT_COLUMNS)


def _sed_quakeml() -> Path:
    seismostats = pytest.importorskip("seismostats")
    return Path(seismostats.__file__).parent / "catalogs" / "tests" / "data" / "query_full.xml"


@pytest.mark.parametrize("which", ["eqcat-export", "sed-fdsn"])
def test_batches_give_the_whole_file_table(catalog_xml, read_calls, which):
    path = catalog_xml if which == "eqcat-export" else _sed_quakeml()
    expected = _whole_file_rows(path)
    read_calls.clear()
    table = read_catalog(path)
    assert max(read_calls) == 3 and sum(read_calls) == len(expected) > 3  # never the whole file
    expected["origin_time"] = expected["origin_time"].astype(table["origin_time"].dtype)
    pd.testing.assert_frame_equal(table, expected)  # values and dtypes


def _damaged(good: bytes, case: str) -> bytes:
    """``good`` (a QuakeML document) damaged as ``case`` says."""
    middle = good.index(b"<event ", len(good) // 2)  # an event after the first batches
    return {
        "truncated": good[:middle],
        "garbage-after-first-batches": good[:middle] + b"<<&" + good[middle:],
        "not-quakeml-root": good.replace(b"q:quakeml", b"q:other"),
        "no-eventParameters": good.replace(b"eventParameters", b"eventParams"),
        "stationxml": b'<?xml version="1.0"?><FDSNStationXML xmlns="http://www.fdsn.org/xml/'
        b'station/1" schemaVersion="1.1"><Source>x</Source></FDSNStationXML>',
        "no-events": good[: good.index(b"<event ")] + b"</eventParameters></q:quakeml>",
        "xml-declaration-only": b'<?xml version="1.0"?>\n',
    }[case]


@pytest.mark.parametrize(
    "case, reason",
    [
        ("truncated", "not readable as QuakeML (Could not parse '{path}' to an etree element.)"),
        (
            "garbage-after-first-batches",
            "not readable as QuakeML (Could not parse '{path}' to an etree element.)",
        ),
        (
            "not-quakeml-root",
            "not readable as QuakeML ('NoneType' object has no attribute 'groups')",
        ),
        ("no-eventParameters", "not readable as QuakeML (Not a QuakeML compatible file or string)"),
        ("stationxml", "not readable as QuakeML (Not a QuakeML compatible file or string)"),
        ("no-events", "QuakeML without events"),
        (
            "xml-declaration-only",
            "not readable as QuakeML (Could not parse '{path}' to an etree element.)",
        ),
    ],
)
def test_damaged_quakeml_gives_the_whole_file_error(
    tmp_path, catalog_xml, read_calls, case, reason
):
    """The messages are those of ObsPy's whole-file read (before the reads were batched)."""
    bad = tmp_path / "bad.xml"
    bad.write_bytes(_damaged(catalog_xml.read_bytes(), case))
    with pytest.raises(CatalogReadError) as raised:
        read_catalog(bad)
    assert str(raised.value) == f"{bad}: " + reason.format(path=bad)


def test_damaged_quakeml_one_line_from_eqcat_mc(tmp_path, catalog_xml):
    bad = tmp_path / "bad.xml"
    bad.write_bytes(_damaged(catalog_xml.read_bytes(), "truncated"))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "mc", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {bad}: not readable as QuakeML (Could not parse '{bad}' to an etree element.)"
    ]


def _compressed(path: Path, kind: str, folder: Path) -> Path:
    """``path`` as a gzip or bzip2 file, or twice in a tar archive."""
    if kind == "tar":
        packed = folder / "catalogs.tar"
        with tarfile.open(packed, "w") as archive:
            archive.add(path, "a.xml")
            archive.add(path, "b.xml")
        return packed
    packed = folder / f"catalog.xml.{kind}"
    packed.write_bytes({"gz": gzip.compress, "bz2": bz2.compress}[kind](path.read_bytes()))
    return packed


@pytest.mark.parametrize("kind", ["gz", "bz2", "tar"])
def test_compressed_quakeml_read_as_obspy_reads_it(tmp_path, catalog_xml, read_calls, kind):
    """``--format quakeml`` on a compressed file or archive: ObsPy's reader decompressed it;
    the batched read streams the decompressed content (every file of an archive)."""
    plain = read_catalog(catalog_xml)
    packed = read_catalog(_compressed(catalog_xml, kind, tmp_path), fmt="quakeml")
    copies = 2 if kind == "tar" else 1
    expected = pd.concat([plain] * copies, ignore_index=True)
    pd.testing.assert_frame_equal(packed, expected)
    assert max(read_calls) == 3


def test_xml_comments_between_events_are_skipped(tmp_path, catalog_xml, read_calls):
    """Comments outside events (valid XML) stay out of the documents handed to ObsPy, whose
    whole-file read failed on them ("... object is not subscriptable")."""
    commented = tmp_path / "commented.xml"
    good = catalog_xml.read_bytes()
    commented.write_bytes(
        good.replace(b"<eventParameters", b"<!-- first --><eventParameters", 1).replace(
            b"<event ", b"<!-- an event --><event "
        )
    )
    pd.testing.assert_frame_equal(read_catalog(commented), read_catalog(catalog_xml))
