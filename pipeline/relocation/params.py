"""Configuration of the relocation stage (one pydantic section, composed into the build config).

Defaults follow the HypoDD 2.1 manual (Waldhauser 2001, appendix A: ph2dt defaults) and the
weighting scheme of its example 1 (catalog data first, cross-correlation data weighted up in
later iteration sets), which suits a tight aftershock cluster like the 2000 Western Tottori
sequence of the EQTransformer study (Mousavi et al. 2020).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from pipeline.sections import SECTION_CONFIG


class _Section(BaseModel):
    model_config = SECTION_CONFIG


class Ph2dtConfig(_Section):
    """Catalog differential times (what HypoDD's ``ph2dt`` does); names follow ``ph2dt.inp``."""

    min_weight: float = Field(
        0.0, ge=0, le=1, description="MINWGHT: picks with 0 <= weight < this are ignored"
    )
    max_dist_km: float = Field(
        200.0, gt=0, description="MAXDIST: largest distance (km) between event pair and station"
    )
    max_sep_km: float = Field(
        10.0, gt=0, description="MAXSEP: largest hypocentral separation (km) of a pair"
    )
    max_neighbours: int = Field(
        10, ge=1, description="MAXNGH: strong neighbours searched per event"
    )
    min_links: int = Field(
        8, ge=1, description="MINLNK: phase pairs that make a neighbour a strong one"
    )
    min_obs: int = Field(8, ge=1, description="MINOBS: fewest phase pairs of a pair saved")
    max_obs: int = Field(
        20, ge=1, description="MAXOBS: most phase pairs (positive weights) saved per pair"
    )
    outlier_vp_km_s: float = Field(
        4.0, gt=0, description="P velocity (km/s) of ph2dt's outlier test |dt| > sep/v + slack"
    )
    outlier_vs_km_s: float = Field(
        2.3, gt=0, description="S velocity (km/s) of ph2dt's outlier test"
    )
    outlier_slack_s: float = Field(
        0.5, ge=0, description="slack (s) of the outlier test for initial-location errors"
    )

    @model_validator(mode="after")
    def _obs_ordered(self) -> Ph2dtConfig:
        if self.min_obs > self.max_obs:
            raise ValueError("ph2dt.min_obs must not exceed ph2dt.max_obs")
        return self


class CrossCorrelationConfig(_Section):
    """Waveform cross-correlation differential times (``dt.cc``)."""

    enabled: bool = Field(True, description="compute dt.cc from <run>/waveforms")
    p_window_s: tuple[float, float] = Field(
        (0.2, 0.8), description="window (s before, s after) the P pick"
    )
    s_window_s: tuple[float, float] = Field(
        (0.2, 1.2), description="window (s before, s after) the S pick"
    )
    max_lag_s: float = Field(
        0.3, gt=0, le=5, description="largest shift (s) searched on either side of the pick"
    )
    freqmin_hz: float = Field(1.0, gt=0, description="bandpass lower corner (Hz)")
    freqmax_hz: float = Field(15.0, gt=0, description="bandpass upper corner (Hz)")
    min_cc: float = Field(
        0.7, ge=0, le=1, description="smallest normalised coefficient kept in dt.cc"
    )
    max_sep_km: float | None = Field(
        None, gt=0, description="correlate only pairs closer than this (km); None = all dt.ct pairs"
    )
    all_pairs_within_km: float | None = Field(
        None,
        gt=0,
        description="also correlate every event pair closer than this (km) at the starting "
        "locations, linked in dt.ct or not (ph2dt keeps only max_neighbours per event); "
        "None = dt.ct pairs only",
    )
    workers: int | None = Field(
        None, ge=1, description="stations correlated in parallel; None = min(4, CPU count)"
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> CrossCorrelationConfig:
        if self.freqmin_hz >= self.freqmax_hz:
            raise ValueError("cross_correlation.freqmin_hz must be below freqmax_hz")
        for name in ("p_window_s", "s_window_s"):
            before, after = getattr(self, name)
            if before < 0 or after <= 0:
                raise ValueError(f"cross_correlation.{name} needs before >= 0 and after > 0")
        return self


class IterationSet(_Section):
    """One weighting set of ``hypoDD.inp`` (NITER WTCCP WTCCS WRCC WDCC WTCTP WTCTS WRCT WDCT
    DAMP); -999 switches a residual / distance cut off."""

    niter: int = Field(ge=1, description="NITER: iterations with these weights")
    wtccp: float = Field(ge=0, description="WTCCP: a-priori weight of cross-correlation P")
    wtccs: float = Field(ge=0, description="WTCCS: a-priori weight of cross-correlation S")
    wrcc: float = Field(description="WRCC: residual cut-off factor, cross data (-999 off)")
    wdcc: float = Field(description="WDCC: max pair separation (km), cross data (-999 off)")
    wtctp: float = Field(ge=0, description="WTCTP: a-priori weight of catalog P")
    wtcts: float = Field(ge=0, description="WTCTS: a-priori weight of catalog S")
    wrct: float = Field(description="WRCT: residual cut-off factor, catalog data (-999 off)")
    wdct: float = Field(description="WDCT: max pair separation (km), catalog data (-999 off)")
    damp: float = Field(gt=0, description="DAMP: LSQR damping (ignored by SVD)")


def _default_iterations() -> list[IterationSet]:
    """HypoDD example 1's weights and residual cut-offs with wider pair-distance cut-offs.

    Example 1's cut-offs (catalog pairs down to 2 km, cross pairs to 1 km) suit its dense
    cluster; in an aftershock zone tens of km long an event often has no neighbour that
    close, and HypoDD drops it (on the demo build 28 of 129 linked events). Catalog pairs
    within 10 → 5 km and cross pairs within 5 → 3 km keep those events (demo: 6 dropped)
    and still let the nearest pairs dominate the last sets. The S weights written are example
    1's half of P unless :attr:`HypoDDConfig.s_weight_ratio` sets them (by default from the
    HypoInverse residuals of the build).
    """
    rows = [
        (1, 0.01, 0.005, -999, -999, 1.0, 0.5, 20, -999, 20),
        (3, 0.01, 0.005, -999, -999, 1.0, 0.5, 10, 10, 20),
        (3, 1.0, 0.5, 6, 5, 1.0, 0.5, 10, 8, 20),
        (3, 1.0, 0.5, 5, 4, 0.1, 0.05, 9, 6, 20),
        (3, 1.0, 0.5, 4, 3, 0.01, 0.005, 8, 5, 20),
    ]
    names = list(IterationSet.model_fields)
    return [IterationSet(**dict(zip(names, row, strict=True))) for row in rows]


class HypoDDConfig(_Section):
    """``hypoDD.inp`` (version 2) settings; the 1-D model comes from the build's velocity model."""

    phases: Literal["P", "S", "PS"] = Field("PS", description="IPHA: phases used")
    max_dist_km: float = Field(
        200.0, gt=0, description="DIST: max distance (km) between cluster centroid and station"
    )
    obs_cc: int = Field(
        0, ge=0, description="OBSCC: min cross-correlation links per pair to cluster (0 = off)"
    )
    obs_ct: int = Field(
        8, ge=0, description="OBSCT: min catalog links per pair to cluster (0 = off)"
    )
    min_pair_station_km: float = Field(
        -999.0, description="MINDIST: min pair-station distance (km, -999 = off)"
    )
    max_pair_station_km: float = Field(
        -999.0, description="MAXDIST: max pair-station distance (km, -999 = off)"
    )
    max_gap_deg: float = Field(-999.0, description="MAXGAP: max azimuthal gap (-999 = off)")
    start: Literal["network", "centroid"] = Field(
        "network", description="ISTART: start at catalog locations or the cluster centroid"
    )
    solver: Literal["auto", "svd", "lsqr"] = Field(
        "auto", description="ISOLV; auto = SVD up to svd_max_events events, else LSQR"
    )
    svd_max_events: int = Field(
        100, ge=2, description="largest catalog solved with SVD when solver = auto"
    )
    remove_airquakes: bool = Field(True, description="IAQ: drop events relocated above ground")
    iterations: list[IterationSet] = Field(
        default_factory=_default_iterations,
        min_length=1,
        description="weighting sets (default: HypoDD example 1 with wider distance cut-offs)",
    )
    s_weight_ratio: Literal["auto"] | float | None = Field(
        "auto",
        description="a-priori weight of S data relative to P in every set (WTCTS = ratio x "
        "WTCTP, WTCCS = ratio x WTCCP). 'auto': median |HypoInverse residual| of the P picks "
        "over that of the S picks, clipped to [0.5, 1] (S weighted as P when HypoInverse fits "
        "them as well, down to example 1's half weight); a number: that ratio; None: the "
        "sets' own WTCTS / WTCCS",
    )

    @model_validator(mode="after")
    def _ratio_positive(self) -> HypoDDConfig:
        ratio = self.s_weight_ratio
        if isinstance(ratio, float) and not 0 < ratio <= 10:
            raise ValueError("hypodd.s_weight_ratio must be 'auto', None or in (0, 10]")
        return self

    cluster_id: int = Field(0, ge=0, description="CID: cluster to relocate (0 = all)")


class RelocationConfig(_Section):
    """The relocation stage: engine choice, ph2dt, cross-correlation and hypoDD.inp settings."""

    engine: Literal["auto", "binary", "python"] = Field(
        "auto",
        description="'binary': a hypoDD program on PATH; 'python': the hypodd package; "
        "'auto': the binary when present, else the package",
    )
    binary: str = Field("hypoDD", min_length=1, description="name of the HypoDD program on PATH")
    timeout_s: float = Field(3600.0, gt=0, description="engine time limit (s)")
    weight_from: Literal["probability", "uniform"] = Field(
        "probability",
        description="a-priori pick weight in phase.dat: the picker probability, or 1",
    )
    drop_locator_outliers: bool = Field(
        True,
        description="leave out of phase.dat the picks HypoInverse's residual and distance "
        "weighting gave zero weight (location/phase_residuals.parquet): outliers of the "
        "starting locations would otherwise enter dt.ct",
    )
    ph2dt: Ph2dtConfig = Ph2dtConfig()
    cross_correlation: CrossCorrelationConfig = CrossCorrelationConfig()
    hypodd: HypoDDConfig = HypoDDConfig()
