"""Detections and P/S picks from combined probability traces (with optional MC-dropout passes).

- A detection is a run of detector probability >= ``detection_threshold`` lasting at least
  ``min_detection_s``; its probability is the mean detector value over the run (as in the
  EQTransformer predictor).
- A pick candidate is a run of P (or S) probability >= its threshold; its time is the run's
  maximum, refined to a fraction of a sample by a parabola through the three samples around it.
- A candidate is kept when it lies inside a detection or within ``detection_margin_s`` of one.
  Each detection keeps its strongest P and S; a further, separate candidate of the same phase
  is kept only when its peak reaches ``extra_pick_threshold`` (the probabilities show a second
  arrival). Of two picks of one phase closer than ``min_pick_separation_s``, the weaker goes.
- Inside gaps, and within ``gap_guard_s`` of a gap or of the ends of the data, the
  probabilities are set to zero: no detection or pick is made there.

With MC dropout, positions come from the deterministic pass; the reported probability is the
mean over the passes at the pick sample, ``probability_std`` the std there, and ``time_std_s``
the std over passes of each pass's peak time within ``mc_time_window_s`` of the pick.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.picking.params import PickerConfig

#: Columns of :func:`extract_picks` output (positions in samples of the record).
PICK_FIELDS = (
    "sample",
    "phase",
    "probability",
    "probability_std",
    "time_std_s",
    "detection_probability",
    "detection_probability_std",
    "detection_start",
    "detection_end",
)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indices of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def find_detections(detector: np.ndarray, threshold: float, min_samples: int) -> np.ndarray:
    """(K, 2) int64 start/end (exclusive) samples of detector runs >= threshold."""
    starts, ends = runs(detector >= threshold)
    keep = (ends - starts) >= max(1, min_samples)
    return np.stack([starts[keep], ends[keep]], axis=1).astype(np.int64).reshape(-1, 2)


def subsample_peaks(prob: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Peak positions (samples, float64) from a parabola through ``prob[i-1:i+2]`` per index.

    An index at either end of ``prob``, or without a concave parabola, stays where it is.
    """
    index = np.asarray(index, dtype=np.int64)
    peaks = index.astype(np.float64)
    inner = (index > 0) & (index < len(prob) - 1)
    i = index[inner]
    left, mid, right = (prob[i + k].astype(np.float64) for k in (-1, 0, 1))
    denom = left - 2.0 * mid + right
    concave = denom < 0
    shift = np.zeros(len(i))
    shift[concave] = 0.5 * (left - right)[concave] / denom[concave]
    peaks[inner] += shift
    return peaks


def pick_candidates(prob: np.ndarray, threshold: float) -> pd.DataFrame:
    """One candidate per run of ``prob >= threshold``: columns index, sample, value."""
    starts, ends = runs(prob >= threshold)
    index = np.array(
        [s + int(np.argmax(prob[s:e])) for s, e in zip(starts, ends, strict=True)], dtype=np.int64
    )
    return pd.DataFrame(
        {
            "index": index,
            "sample": subsample_peaks(prob, index),
            "value": prob[index].astype(np.float64),
        }
    )


def thin(sample: np.ndarray, value: np.ndarray, min_separation: float) -> np.ndarray:
    """Indices kept when, of two positions closer than ``min_separation``, the weaker goes.

    Greedy by decreasing ``value``; returned indices are sorted by position.
    """
    order = np.argsort(-value, kind="stable")
    kept_positions: list[float] = []
    kept: list[int] = []
    for i in order:
        pos = float(sample[i])
        j = np.searchsorted(kept_positions, pos)
        near_left = j > 0 and pos - kept_positions[j - 1] < min_separation
        near_right = j < len(kept_positions) and kept_positions[j] - pos < min_separation
        if not (near_left or near_right):
            kept_positions.insert(j, pos)
            kept.append(int(i))
    return np.array(sorted(kept, key=lambda i: sample[i]), dtype=np.int64)


def _assign(candidates: pd.DataFrame, detections: np.ndarray, margin: int) -> np.ndarray:
    """Detection row of each candidate (-1 when none is within ``margin`` samples).

    A candidate inside a detection belongs to it; otherwise to the nearest one within reach.
    """
    if len(detections) == 0 or len(candidates) == 0:
        return np.full(len(candidates), -1, dtype=np.int64)
    pos = candidates["sample"].to_numpy()[:, None]
    distance = np.maximum(detections[None, :, 0] - pos, pos - (detections[None, :, 1] - 1))
    distance = np.maximum(distance, 0.0)
    best = np.argmin(distance, axis=1)
    reach = distance[np.arange(len(best)), best] <= margin
    return np.where(reach, best, -1)


def _select(candidates: pd.DataFrame, extra_threshold: float) -> pd.DataFrame:
    """Strongest candidate per detection, plus further ones reaching ``extra_threshold``."""
    table = candidates[candidates["detection"] >= 0].sort_values(
        ["detection", "value"], ascending=[True, False], kind="stable"
    )
    strongest = ~table["detection"].duplicated()
    return table[strongest.to_numpy() | (table["value"] >= extra_threshold).to_numpy()]


def run_means(values: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """(K,) float64 mean of ``values`` (n,) over each ``[start, end)`` row of ``spans`` (K, 2)."""
    sums = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return (sums[spans[:, 1]] - sums[spans[:, 0]]) / np.maximum(spans[:, 1] - spans[:, 0], 1)


def _mc_stats(
    passes: np.ndarray, index: np.ndarray, half_window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over passes at ``index`` and std (samples) of each pass's peak position.

    ``passes`` is (M, n); the peak of pass m is sought in ``index ± half_window``.
    """
    mean = passes[:, index].mean(axis=0).astype(np.float64)
    std = passes[:, index].std(axis=0).astype(np.float64)
    spread = np.empty(len(index))
    n = passes.shape[1]
    for k, i in enumerate(index):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        spread[k] = np.std(lo + np.argmax(passes[:, lo:hi], axis=1))
    return mean, std, spread


#: Fate of a pick candidate (:func:`pick_candidate_fates`): ``kept`` (a pick), ``no_detection``
#: (no detection within ``detection_margin_s``), ``weaker_in_detection`` (its detection keeps a
#: stronger one and it stays below ``extra_pick_threshold``), ``thinned`` (a stronger pick of the
#: phase lies within ``min_pick_separation_s``).
FATES = ("kept", "no_detection", "weaker_in_detection", "thinned")


def detections_of(curves: dict[str, np.ndarray], cfg: PickerConfig, sampling_rate: float):
    """(K, 2) start/end samples of the detections of combined curves (module docstring)."""
    return find_detections(
        curves["detector"], cfg.detection_threshold, int(round(cfg.min_detection_s * sampling_rate))
    )


def pick_candidate_fates(
    curves: dict[str, np.ndarray], detections: np.ndarray, cfg: PickerConfig, sampling_rate: float
) -> pd.DataFrame:
    """Every P and S candidate of combined curves with what extraction does with it.

    Args:
        curves: ``detector``, ``picker_P``, ``picker_S``, each (n,) (blocked samples zeroed).
        detections: (K, 2) from :func:`detections_of`.

    Returns:
        Table with columns phase, index (integer peak sample), sample (sub-sample peak),
        value (peak probability), detection (row in ``detections``, -1 none) and fate
        (:data:`FATES`), sorted by phase then sample.
    """
    margin = int(round(cfg.detection_margin_s * sampling_rate))
    tables = []
    for phase, key, threshold in (
        ("P", "picker_P", cfg.p_threshold),
        ("S", "picker_S", cfg.s_threshold),
    ):
        candidates = pick_candidates(curves[key], threshold)
        owner = _assign(candidates, detections, margin)
        table = candidates.assign(phase=phase, detection=owner, fate="no_detection")
        chosen = _select(table, cfg.extra_pick_threshold)
        table.loc[(owner >= 0) & ~table.index.isin(chosen.index), "fate"] = "weaker_in_detection"
        kept = chosen.index[
            thin(
                chosen["sample"].to_numpy(),
                chosen["value"].to_numpy(),
                cfg.min_pick_separation_s * sampling_rate,
            )
        ]
        table.loc[chosen.index, "fate"] = "thinned"
        table.loc[kept, "fate"] = "kept"
        tables.append(table)
    columns = ["phase", "index", "sample", "value", "detection", "fate"]
    return pd.concat(tables, ignore_index=True)[columns]


def extract_picks(
    curves: dict[str, np.ndarray],
    cfg: PickerConfig,
    sampling_rate: float,
    blocked: np.ndarray | None = None,
    passes: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Picks of one combined record.

    Args:
        curves: ``detector``, ``picker_P``, ``picker_S``, each (n,) deterministic probabilities.
        cfg: thresholds and rules (module docstring).
        sampling_rate: samples per second.
        blocked: (n,) True where no detection or pick may be made (gaps and a guard around
            data edges, :meth:`Record.near_gaps`); the curves are zeroed there in place.
        passes: the same keys, each (M, n), the combined MC-dropout passes (None = MC off).

    Returns:
        Table with :data:`PICK_FIELDS`, sorted by sample; positions and detection bounds in
        samples, ``time_std_s`` in seconds (NaN without MC), stds 0 without MC.
    """
    if blocked is not None:
        for values in curves.values():
            values[blocked] = 0.0
    detections = detections_of(curves, cfg, sampling_rate)
    det_prob = run_means(curves["detector"], detections)
    det_std = np.zeros(len(detections))
    if passes is not None and len(detections):
        per_pass = np.stack([passes["detector"][:, s:e].mean(axis=1) for s, e in detections])
        det_prob, det_std = per_pass.mean(axis=1), per_pass.std(axis=1)
    candidates = pick_candidate_fates(curves, detections, cfg, sampling_rate)
    tables = []
    for phase, key in (("P", "picker_P"), ("S", "picker_S")):
        chosen = candidates[(candidates["phase"] == phase) & (candidates["fate"] == "kept")]
        index = chosen["index"].to_numpy()
        det = chosen["detection"].to_numpy()
        if passes is not None:
            half = int(round(cfg.mc_time_window_s * sampling_rate))
            prob, prob_std, spread = _mc_stats(passes[key], index, half)
            time_std = spread / sampling_rate
        else:
            prob = chosen["value"].to_numpy()
            prob_std = np.zeros(len(index))
            time_std = np.full(len(index), np.nan)
        tables.append(
            pd.DataFrame(
                {
                    "sample": chosen["sample"].to_numpy(),
                    "phase": phase,
                    "probability": prob,
                    "probability_std": prob_std,
                    "time_std_s": time_std,
                    "detection_probability": det_prob[det],
                    "detection_probability_std": det_std[det],
                    "detection_start": detections[det, 0],
                    "detection_end": detections[det, 1],
                }
            )
        )
    picks = pd.concat(tables, ignore_index=True)
    return picks.sort_values("sample", kind="stable").reset_index(drop=True)
