"""The demo's side-by-side comparison of two scored builds (flows/demo.py)."""

from flows.demo import format_comparison


def _score(n_events: int, stages: list[tuple[str, int, int]] | None) -> dict:
    score = {"n_detected_events": n_events, "n_matched_events": 10, "mc_recovered": 1.25}
    if stages is not None:
        score["by_location_stage"] = [
            {"stage": s, "n": n, "n_matched": m, "precision": m / n} for s, n, m in stages
        ]
    return score


def test_comparison_rows_side_by_side():
    text = format_comparison(
        {
            "eqt": _score(40, [("hypodd", 30, 29), ("association", 10, 1)]),
            "stalta": _score(50, [("hypoinverse", 50, 5)]),
        }
    )
    rows = {line[:38].strip(): line[38:].split() for line in text.splitlines()[1:]}
    assert rows["catalog events"] == ["40", "50"]
    assert rows["events relocated by HypoDD"] == ["30", "0"]
    assert rows["events relocated by HypoDD, matched"] == ["29", "0"]
    assert rows["Mc recovered"] == ["1.2", "1.2"]
    assert rows["b recovered"] == ["—", "—"]  # missing values are shown, not invented


def test_comparison_without_location_stages():
    text = format_comparison({"eqt": _score(5, None), "stalta": _score(6, None)})
    rows = {line[:38].strip(): line[38:].split() for line in text.splitlines()[1:]}
    assert rows["events relocated by HypoDD"] == ["—", "—"]
