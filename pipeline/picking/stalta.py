"""The classic baseline picker: recursive STA/LTA triggers with AIC onset refinement.

On a preprocessed :class:`~pipeline.picking.preprocess.Record` (band-passed, 100 Hz, E/N/Z):

- P: recursive STA/LTA on the vertical; a trigger opens at ``p_trigger_on`` and closes at
  ``p_trigger_off`` (ObsPy ``trigger_onset``). The onset is the minimum of the AIC function
  (ObsPy ``aic_simple``) of the vertical from ``aic_before_s`` before to ``aic_after_s`` after
  the trigger sample.
- S: recursive STA/LTA on each horizontal, the larger of the two per sample. Between
  ``s_min_delay_s`` and ``s_max_delay_s`` after a P pick (and before the next P trigger) the
  maximum of that function is the S candidate when it reaches ``s_trigger_on``; its onset is
  the minimum of the summed AIC functions of the horizontals from ``s_aic_before_s`` before
  to ``aic_after_s`` after it.
- The probability column carries ``1 - 1/peak ratio`` (0.75 at a ratio of 4), a monotonic
  stand-in for the deep-learning probabilities; the detection bounds are the P trigger's
  on/off samples. The STA/LTA of a component is zeroed inside its gaps and for one LTA
  length after each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from obspy.signal.trigger import aic_simple, recursive_sta_lta, trigger_onset

from pipeline.picking.extract import PICK_FIELDS
from pipeline.picking.params import StaLtaConfig
from pipeline.picking.preprocess import Record


def _blocked(gap_mask: np.ndarray, nlta: int) -> np.ndarray:
    """Gap samples plus ``nlta`` samples after each gap (LTA warm-up)."""
    blocked = gap_mask.copy()
    ends = np.flatnonzero(np.diff(gap_mask.astype(np.int8)) == -1) + 1
    for e in ends:
        blocked[e : e + nlta] = True
    return blocked


def _ratio(trace: np.ndarray, nsta: int, nlta: int, blocked: np.ndarray) -> np.ndarray:
    """Recursive STA/LTA of one component, zero where ``blocked``."""
    cf = recursive_sta_lta(np.ascontiguousarray(trace, dtype=np.float64), nsta, nlta)
    cf[blocked] = 0.0
    return cf


def _aic_onset(traces: list[np.ndarray], lo: int, hi: int) -> int:
    """Sample of the minimum of the (summed) AIC functions of ``traces[lo:hi]``."""
    aic = sum(aic_simple(np.asarray(t[lo:hi], dtype=np.float64)) for t in traces)
    return lo + int(np.argmin(aic[1:-1])) + 1


def stalta_picks(record: Record, cfg: StaLtaConfig) -> pd.DataFrame:
    """P and S picks of one record (columns :data:`~pipeline.picking.extract.PICK_FIELDS`).

    A record without a vertical gives no picks; one without horizontals gives P only.
    """
    fs = record.sampling_rate
    n = record.n_samples
    nsta, nlta = int(round(cfg.sta_s * fs)), int(round(cfg.lta_s * fs))
    columns = {c: [] for c in PICK_FIELDS}
    if record.channels[2] is None or n <= nlta:
        return pd.DataFrame(columns).astype({"sample": float, "probability": float})
    vertical = record.data[:, 2]
    live = [i for i in (0, 1) if record.channels[i] is not None]
    horizontals = [record.data[:, i] for i in live]
    cf_p = _ratio(vertical, nsta, nlta, _blocked(record.component_gap(2), nlta))
    cf_s = (
        np.max(
            [
                _ratio(record.data[:, i], nsta, nlta, _blocked(record.component_gap(i), nlta))
                for i in live
            ],
            axis=0,
        )
        if horizontals
        else None
    )
    triggers = trigger_onset(cf_p, cfg.p_trigger_on, cfg.p_trigger_off)
    triggers = [
        (int(on), int(off) + 1)
        for on, off in np.reshape(triggers, (-1, 2))
        if off + 1 - on >= cfg.min_trigger_s * fs
    ]
    before, after = int(round(cfg.aic_before_s * fs)), int(round(cfg.aic_after_s * fs))
    s_before = int(round(cfg.s_aic_before_s * fs))
    s_min, s_max = int(round(cfg.s_min_delay_s * fs)), int(round(cfg.s_max_delay_s * fs))

    def add(sample: int, phase: str, ratio: float, on: int, off: int) -> None:
        row = {
            "sample": float(sample),
            "phase": phase,
            "probability": 1.0 - 1.0 / ratio,
            "probability_std": 0.0,
            "time_std_s": np.nan,
            "detection_probability": np.nan,
            "detection_probability_std": np.nan,
            "detection_start": on,
            "detection_end": off,
        }
        for key, value in row.items():
            columns[key].append(value)

    for k, (on, off) in enumerate(triggers):
        lo, hi = max(0, on - before), min(n, on + after + 1)
        p = _aic_onset([vertical], lo, hi) if hi - lo > 3 else on
        add(p, "P", float(cf_p[on:off].max()), on, off)
        if cf_s is None:
            continue
        next_on = triggers[k + 1][0] if k + 1 < len(triggers) else n
        s_lo, s_hi = p + s_min, min(p + s_max, next_on, n)
        if s_hi - s_lo < 2:
            continue
        peak = s_lo + int(np.argmax(cf_s[s_lo:s_hi]))
        if cf_s[peak] < cfg.s_trigger_on:
            continue
        a_lo, a_hi = max(s_lo, peak - s_before), min(n, peak + after + 1)
        s = _aic_onset(horizontals, a_lo, a_hi) if a_hi - a_lo > 3 else peak
        add(s, "S", float(cf_s[peak]), on, off)
    table = pd.DataFrame(columns)
    return table.sort_values("sample", kind="stable").reset_index(drop=True)
