"""Configuration of the picking stage (one pydantic section, composed into the build config).

Defaults follow the EQTransformer study of the 2000 Western Tottori aftershocks (Mousavi et al.
2020): detection threshold 0.5, 30 % window overlap, batches of 500 windows, 1-45 Hz band-pass
on 100 Hz data, P threshold 0.3. The S threshold is 0.2 instead of the study's 0.3
(EQTransformer's predictor defaults to 0.1): 15 % more S picks correct on the demo replica
(seed 2000) and S recall 0.974 instead of 0.922 on the 77 labelled NCEDC waveforms (original
model), at S pick precision 0.99. P is averaged over the windows
(:mod:`pipeline.picking.windows`); P at 0.2 gave P recall 0.935 instead of 0.922 on NCEDC but
P pick precision 0.73 instead of 0.78 on the demo (seed 2000, equal event recall 0.74) and
fell below 0.9 in the synthetic scenario test, so P stays at 0.3.

Overlap 0.7 found more of the replica's small events next to larger ones (543 instead of 519
of the 599 true events >= M 0.8 picked at >= 3 stations, seed 2000) but lowered the original
model's P recall on the 77 labelled NCEDC waveforms from 0.935 (overlap 0.3, this code) to
0.883 (S 0.974 -> 0.961; ``tests/test_weights.py``) and costs 2.3 times the model calls, so
the default stays at the study's 0.3; a dense synthetic sequence is not reason enough to trade
real-data P recall and half the throughput.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from pipeline.picking.windows import WINDOW
from pipeline.sections import SECTION_CONFIG, refuse
from pipeline.weights import DEFAULT_MODEL, check_weights_spec


class _Section(BaseModel):
    model_config = SECTION_CONFIG


#: Sampling rate (Hz) of the data every picker works on (the band-passed, resampled record).
MODEL_RATE = 100.0
#: Most memory (bytes) the MC-dropout pass buffers of one chunk may take; two station-days
#: are picked at once. ``mc_samples`` 200 with ``chunk_s`` 86400 asked for 20.8 GB per
#: station-day, two at once; 200 with the default 3600 s takes 0.9 GB.
MC_BUFFER_LIMIT_BYTES = 4 * 2**30
#: Length (s) of one EQTransformer window. The settings that act around a pick or a
#: detection (its margin, the least detection, the twin separation, the MC peak search, the
#: guard from gaps and data ends) are at most one window: what the network labels lies in
#: one window, and each chunk is read with one window plus ``EDGE_S`` of data beyond it
#: (``pipeline.picking.stage.chunk_pad``), so a guard of at most one window leaves every
#: chunk's seam covered (a longer guard made the chunks' first seconds blind: no pick there).
WINDOW_S = WINDOW / MODEL_RATE
#: Longest read (s) before or after a chunk that a setting may ask for: reads then stay
#: within the neighbouring days that a station-day's cache key covers.
MAX_READ_S = 3600.0
#: Highest standard deviation of a probability: a value in [0, 1] has a variance of at most
#: 1/4 (Popoviciu's inequality on variances), reached by half the passes at 0 and half at 1.
MAX_PROBABILITY_STD = 0.5


def _at_most(name: str, value: float, limit: float, what: str, why: str) -> list[str]:
    """``[problem]`` when ``value`` of field ``name`` exceeds ``limit`` (``what`` names the
    limit, ``why`` says why it holds), else ``[]``."""
    if value <= limit:
        return []
    return [f"{name} = {value:g}: must be at most {what} ({limit:g}): {why}"]


class StaLtaConfig(_Section):
    """The classic baseline picker: recursive STA/LTA triggers refined by an AIC onset pick."""

    sta_s: float = Field(0.5, gt=0, description="short-term average length (s)")
    lta_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="long-term average length (s); each chunk is read with this much data "
        "before it (the LTA's warm-up), at most an hour so that reads stay within the "
        "neighbouring days the cache key covers",
    )
    p_trigger_on: float = Field(
        4.0, gt=1, description="STA/LTA ratio on the vertical that opens a P trigger"
    )
    p_trigger_off: float = Field(
        1.5, gt=0, description="STA/LTA ratio on the vertical that closes a P trigger"
    )
    s_trigger_on: float = Field(
        3.0,
        gt=1,
        description="STA/LTA ratio (larger of the two horizontals) an S candidate must reach",
    )
    s_min_delay_s: float = Field(0.8, ge=0, description="earliest S candidate after its P pick (s)")
    s_max_delay_s: float = Field(
        30.0,
        gt=0,
        le=MAX_READ_S,
        description="latest S candidate after its P pick (s); each chunk is read with this "
        "much more data before it (an S early in a chunk has its P before it), at most an hour",
    )
    aic_before_s: float = Field(
        2.0, gt=0, description="P: AIC search starts this long (s) before the trigger sample"
    )
    s_aic_before_s: float = Field(
        1.0,
        gt=0,
        description="S: AIC search starts this long (s) before the STA/LTA maximum (shorter "
        "than for P: the P coda before it is not stationary)",
    )
    aic_after_s: float = Field(
        0.5, ge=0, description="AIC search ends this long (s) after the trigger sample / maximum"
    )
    min_trigger_s: float = Field(
        0.2, ge=0, description="shorter P triggers (s) are discarded as spikes"
    )

    def max_ratio(self) -> float:
        """The highest STA/LTA ratio the recursive STA/LTA reaches on any data: ``nlta /
        nsta`` (lengths in samples of the picker's data).

        Each average is an exponentially weighted sum of the squared samples, weights
        ``c (1 - c)^j`` with ``c = 1/nsta`` and ``1/nlta``; their ratio is largest for the
        newest sample (``j = 0``), ``nlta / nsta``, so STA/LTA never exceeds it and reaches
        it only with all the energy in one sample after silence. ObsPy's ``trigger_onset``
        opens a trigger where the ratio exceeds the level: at or above it, never."""
        return round(self.lta_s * MODEL_RATE) / round(self.sta_s * MODEL_RATE)

    @model_validator(mode="after")
    def _consistent(self) -> StaLtaConfig:
        if self.sta_s < 1 / MODEL_RATE:  # 0 samples: no trigger, silently no picks
            raise ValueError(
                f"sta_s = {self.sta_s:g}: must be at least one sample of the picker's "
                f"{MODEL_RATE:g} Hz data ({1 / MODEL_RATE:g} s)"
            )
        if self.lta_s <= self.sta_s:
            raise ValueError(
                f"lta_s = {self.lta_s:g}: must be longer than sta_s ({self.sta_s:g} s)"
            )
        problems = []
        top = self.max_ratio()
        lows = (
            ("p_trigger_on", self.p_trigger_off, f"p_trigger_off ({self.p_trigger_off:g})"),
            ("s_trigger_on", 1.0, "1"),
        )
        for name, low, low_text in lows:
            value = getattr(self, name)
            if not low < value < top:
                problems.append(
                    f"{name} = {value:g}: must lie above {low_text} and below "
                    f"lta_s/sta_s ({top:g}), the highest ratio the recursive STA/LTA reaches "
                    "(it never triggers at or above it)"
                )
        for name in ("aic_before_s", "s_aic_before_s", "aic_after_s"):
            problems += _at_most(
                name, getattr(self, name), self.lta_s, "lta_s",
                "the AIC search stays within the noise the LTA measures the onset against",
            )  # fmt: skip
        problems += _at_most(
            "min_trigger_s", self.min_trigger_s, self.lta_s, "lta_s",
            "a signal lasting one LTA length has raised the LTA to its own level",
        )  # fmt: skip
        if self.s_max_delay_s <= self.s_min_delay_s:
            problems.append(
                f"s_max_delay_s = {self.s_max_delay_s:g}: must exceed s_min_delay_s "
                f"({self.s_min_delay_s:g} s)"
            )
        refuse(problems)
        return self


class PickerConfig(_Section):
    """Detection and P/S picking on continuous data (EQTransformer or STA/LTA)."""

    picker: Literal["eqt", "stalta"] = Field(
        "eqt", description="'eqt' (EQTransformer) or 'stalta' (recursive STA/LTA + AIC baseline)"
    )
    weights: str | Path = Field(
        DEFAULT_MODEL,
        description="EQTransformer model: 'original' (the authors' original model, used in "
        "their Tottori study; far more sensitive, the default), 'conservative' (the authors' "
        "conservative model: fewer false picks on noisy data, many fewer picks), or the path "
        "of a .keras or Keras-2 .h5 weights file. Named models are installed by set-up",
    )
    hard_sigmoid: Literal["keras2", "keras3"] = Field(
        "keras2",
        description="hard-sigmoid LSTM gates (the conservative model; the original model has "
        "sigmoid gates and ignores this): 'keras2' = clip(0.2x+0.5), what the weights were "
        "trained with; 'keras3' = clip(x/6+0.5), what Keras 3 computes for 'hard_sigmoid'",
    )
    detection_threshold: float = Field(
        0.5, ge=0, le=1, description="detector probability that makes a detection"
    )
    p_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="P probability of a P pick (of the mean over the windows), the study's "
        "0.3: at 0.2 the P picks lost precision (demo seed 2000: 0.73 vs 0.78; a synthetic "
        "scenario test fell below 0.9) for no event recall at overlap 0.3",
    )
    s_threshold: float = Field(
        0.2,
        ge=0,
        le=1,
        description="S probability of an S pick; between the study's 0.3 and EQTransformer's "
        "predictor default 0.1",
    )
    extra_pick_threshold: float = Field(
        0.4,
        ge=0,
        le=1,
        description="a detection keeps its strongest P and S; a further, separate probability "
        "peak of the same phase is kept only when it reaches this value (a second arrival). "
        "0.4, not 0.6: the cleared context windows' detector joins neighbouring events' "
        "detections, whose weaker S then went (demo replica, seed 2001, pick stage: 0.6 / "
        "0.4 / 0.3 -> 545 / 551 / 554 true events >= M 0.8 picked at >= 3 stations, "
        "8,197 / 8,858 / 9,147 correct S picks, 242 / 433 / 681 false; full builds of "
        "seeds 2000-2002 in README 'Context windows')",
    )
    detection_margin_s: float = Field(
        1.0,
        ge=0,
        le=WINDOW_S,
        description="a pick may lie this far (s) outside its detection (at most one 60 s window)",
    )
    min_detection_s: float = Field(
        0.1,
        ge=0,
        lt=WINDOW_S,
        description="shorter detections (s) are discarded (below one 60 s window: the "
        "detector labels an event within one window)",
    )
    min_pick_separation_s: float = Field(
        0.5,
        ge=0,
        le=WINDOW_S,
        description="of two picks of one phase closer than this (s), the weaker is dropped "
        "(at most one 60 s window: picks further apart are separate arrivals, not twins)",
    )
    gap_guard_s: float = Field(
        1.5,
        ge=0,
        le=WINDOW_S,
        description="no pick within this many seconds of a gap or of the ends of the data (the "
        "tapered data there rises like an emergent onset); at most one 60 s window, so that "
        "the data read beyond each chunk keeps its seams covered",
    )
    overlap: float = Field(
        0.3,
        ge=0,
        le=0.9,
        description="fraction of a 60 s window shared with the next window; the step is "
        "rounded down to an odd multiple of 0.25 s. 0.3 as in the Tottori study; 0.7 (about "
        "four windows over each sample) finds more small events next to larger ones on the "
        "demo replica, at 2.3 times the model calls and lower P recall on real labelled "
        "records (module docstring)",
    )
    context_windows: bool = Field(
        True,
        description="after the regular windows, run one more window per detection with "
        "picks, ending 1 s before its first pick, its data zeroed up to 1 s after the "
        "previous detection's last pick, and join its detector and S outputs by the "
        "maximum: a larger event in a window hides smaller arrivals near it. Demo replica "
        "(seeds 2000/2001/2002, overlap 0.3, full builds with extra_pick_threshold 0.4): "
        "573/551/586 true events >= M 0.8 picked at >= 3 stations (regular windows only, "
        "pick stage: 518/524/529), for 1.8 times the model calls "
        "(pipeline/picking/windows.py); false = regular windows only",
    )
    blind_samples: int = Field(
        500,
        ge=0,
        le=2000,
        description="samples at both edges of a window never used when windows are combined "
        "(except at the ends of the record), capped at half the overlap so that every sample "
        "stays covered; the P output is the mean over the windows using a sample, the "
        "detector and S the maximum",
    )
    batch_size: int = Field(500, ge=1, description="windows per model call")
    mc_samples: int = Field(
        0,
        ge=0,
        le=200,
        description="Monte-Carlo dropout passes (0 = off; >= 2), run on the windows used "
        "around each pick and its detection; their buffers (mc_samples x chunk x 3 outputs, "
        "float32 at 100 Hz) may take at most 4 GiB per station-day",
    )
    mc_time_window_s: float = Field(
        0.5,
        gt=0,
        le=WINDOW_S,
        description="half-width (s) of the interval around a pick in which each MC pass's "
        "peak is sought (for time_std_s)",
    )
    max_probability_std: float | None = Field(
        None,
        gt=0,
        le=MAX_PROBABILITY_STD,
        description="drop picks whose MC-dropout probability std exceeds this (None = keep "
        "all); needs mc_samples >= 2. At most 0.5, the largest std of a probability",
    )
    freqmin_hz: float = Field(1.0, gt=0, description="band-pass lower corner (Hz)")
    freqmax_hz: float = Field(
        45.0,
        gt=0,
        lt=MODEL_RATE / 2,
        description="band-pass upper corner (Hz), below 50 Hz: the Nyquist frequency of the "
        "picker's 100 Hz data",
    )
    chunk_s: float = Field(
        3600.0,
        ge=300,
        le=86400,
        description="a station-day is processed in chunks of this length (s), each read with "
        "one window of extra data on both sides; bounds memory",
    )
    stalta: StaLtaConfig = Field(
        default_factory=StaLtaConfig, description="parameters of the STA/LTA baseline"
    )

    def mc_buffer_bytes(self) -> int:
        """Bytes of the MC-dropout pass buffers of one chunk: ``mc_samples`` passes of the
        three outputs over the chunk and its two 70 s margins, float32 at 100 Hz."""
        samples = (self.chunk_s + 2 * 70.0) * MODEL_RATE
        return int(self.mc_samples * 3 * samples * 4)

    @field_validator("weights")
    @classmethod
    def _known_model(cls, value: str | Path) -> str | Path:
        return check_weights_spec(value)

    @model_validator(mode="after")
    def _consistent(self) -> PickerConfig:
        problems = []
        if self.mc_samples == 1:
            problems.append("mc_samples = 1: must be 0 (off) or at least 2")
        if self.mc_buffer_bytes() > MC_BUFFER_LIMIT_BYTES:
            problems.append(
                f"mc_samples = {self.mc_samples}: with chunk_s {self.chunk_s:g} needs "
                f"{self.mc_buffer_bytes() / 2**30:.1f} GiB per station-day for the MC passes "
                f"(at most {MC_BUFFER_LIMIT_BYTES / 2**30:g} GiB); lower mc_samples or chunk_s"
            )
        if self.max_probability_std is not None and self.mc_samples < 2:
            problems.append(
                f"max_probability_std = {self.max_probability_std:g}: needs mc_samples >= 2 "
                f"(got {self.mc_samples}: without MC passes every std is 0, nothing is dropped)"
            )
        if self.freqmax_hz <= self.freqmin_hz:
            problems.append(
                f"freqmax_hz = {self.freqmax_hz:g}: must exceed freqmin_hz ({self.freqmin_hz:g})"
            )
        refuse(problems)
        return self
