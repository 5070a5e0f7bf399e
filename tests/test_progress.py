"""The build progress display (pipeline.progress): bars per stage, no-ops without a display."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from pipeline import progress


def _console(buffer: io.StringIO) -> Console:
    return Console(file=buffer, width=150, force_terminal=False, color_system=None)


def test_stage_bars_count_units_and_name_the_last():
    buffer = io.StringIO()
    with progress.display(_console(buffer)) as bars:
        with progress.stage("run: pick"):
            progress.set_total(3, "station-days")
            for label in ("XX.X01 2000-10-08", "XX.X02 2000-10-08", "XX.X03 2000-10-08"):
                progress.advance(label)
                assert bars.tasks[0].fields["last"] == label  # the bar names the last one done
        with progress.stage("run: locate"):
            pass
    text = buffer.getvalue()
    pick = next(line for line in text.splitlines() if "run: pick" in line)
    assert "3/3" in pick and "station-days" in pick
    locate = next(line for line in text.splitlines() if "run: locate" in line)
    assert "1/1" in locate


def test_failed_stage_is_shown_failed():
    buffer = io.StringIO()
    with progress.display(_console(buffer)):
        with pytest.raises(RuntimeError), progress.stage("run: relocate"):
            progress.set_total(4, "events")
            progress.advance("ev1")
            raise RuntimeError("engine died")
    line = next(x for x in buffer.getvalue().splitlines() if "run: relocate" in x)
    assert "1/4" in line and "failed" in line


def test_without_display_every_call_is_a_no_op(capsys):
    with progress.stage("run: pick"):
        progress.set_total(2, "station-days")
        progress.advance("XX.X01 2000-10-08")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
