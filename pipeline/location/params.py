"""Configuration of the location stage (HypoInverse 1.40)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from pipeline.sections import SECTION_CONFIG


class LocationConfig(BaseModel):
    """HypoInverse settings: pick weighting, trial hypocentre and the program's weighting commands.

    The numbers go into the command file rendered from ``hypo_templates/hypoinverse.hyp.tmpl``;
    command names are those of the HypoInverse-2000 manual (Klein 2002, hyp1.40 notes).
    """

    model_config = SECTION_CONFIG

    crust_model_type: Literal["CRH", "CRE"] = Field(
        "CRH",
        description="CRH: layers below a flat station datum (elevations ignored); CRE: "
        "hypoellipse layers with station elevations and depths below sea level",
    )
    elevation_correction: bool = Field(
        True,
        description="CRH only: add elevation / Vp of the top layer (s) to each station's P "
        "delay, the vertical path above the model's sea-level datum that CRH ignores "
        "(HypoInverse takes S delays as Vp/Vs times P delays); depths are then below sea level",
    )
    max_elevation_km: float = Field(
        3.0, ge=0, le=9, description="CRE only: highest elevation (km) a hypocentre may reach"
    )
    probability_thresholds: list[float] = Field(
        [0.9, 0.7, 0.5, 0.3],
        min_length=4,
        max_length=4,
        description="pick probability at or above which weight codes 0, 1, 2, 3 are assigned "
        "(below the last: code 4, unweighted)",
    )
    probability_std_factor: float = Field(
        1.0,
        ge=0,
        description="the probability used for the weight code is mean - factor * MC-dropout std",
    )
    time_std_thresholds_s: list[float] = Field(
        [0.02, 0.05, 0.1, 0.2],
        min_length=4,
        max_length=4,
        description="pick-time std (s) at or below which codes 0, 1, 2, 3 are assigned; the "
        "worse of the probability and time-std codes is used where time_std_s is known",
    )
    weights: list[float] = Field(
        [1.0, 0.5, 0.2, 0.1],
        min_length=4,
        max_length=4,
        description="WET: weight factors of codes 0-3 (codes 4-9 get no weight)",
    )
    trial_depth_km: float = Field(10.0, ge=0, le=60, description="ZTR: trial depth (km)")
    fix_depth: bool = Field(False, description="ZTR: hold every depth at the trial depth")
    trial_depths_km: list[float] = Field(
        [5.0, 10.0, 15.0],
        max_length=10,
        description="further trial depths (km): each event is located again from each (with "
        "the same trial epicentre and time); a solution replaces the primary one (from the "
        "associator's origin) when its RMS is clearly lower with no fewer weighted readings. "
        "HypoInverse 1.40 has no multiple trial-depth option. [] locates once. Unused when "
        "fix_depth",
    )
    use_association_trial: bool = Field(
        True,
        description="start from the associator's origin time, epicentre and depth (when known) "
        "instead of HypoInverse's default (2 s before the first arrival, under that station)",
    )
    min_stations: int = Field(
        3,
        ge=3,
        description="stations with weighted picks (code < 4) an event needs to be sent to "
        "HypoInverse; 3 stations with P and S give up to 6 readings for the 4 unknowns",
    )
    min_phases: int = Field(
        4,
        ge=4,
        description="MIN: weighted P and S readings needed to attempt a location (HypoInverse "
        "counts phases, not stations, and accepts no fewer than 4); events with fewer are not "
        "sent",
    )
    reading_error_s: float = Field(0.10, gt=0, description="ERR: reading and timing error (s)")
    distance_weighting: list[float] = Field(
        [4, 50, 1, 3],
        min_length=4,
        max_length=4,
        description="DIS: start iteration, DISCUT (km), DISW1, DISW2",
    )
    residual_weighting: list[float] = Field(
        [4, 0.16, 1.5, 3],
        min_length=4,
        max_length=4,
        description="RMS: start iteration, RMSCUT (s), RMSW1, RMSW2",
    )
    timeout_s: float = Field(
        600.0,
        gt=0,
        description="wall-clock budget (s) of all the stage's HypoInverse runs: every trial "
        "depth start and the reruns that isolate an event the program fails on. A run over "
        "all events may take a third of what is left (the rest isolates a failing event; "
        "the full replica's 28,069 events took about 40 s per start); a start left without "
        "time is named in the failures",
    )

    @field_validator("trial_depths_km")
    @classmethod
    def _depths_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 <= z <= 60 for z in value):
            raise ValueError("trial_depths_km must lie in 0-60 km")
        return value

    @field_validator("probability_thresholds")
    @classmethod
    def _probabilities_decrease(cls, value: list[float]) -> list[float]:
        if any(not 0 <= p <= 1 for p in value) or sorted(value, reverse=True) != value:
            raise ValueError("probability_thresholds must lie in [0, 1] and decrease")
        return value

    @field_validator("time_std_thresholds_s")
    @classmethod
    def _stds_increase(cls, value: list[float]) -> list[float]:
        if any(s <= 0 for s in value) or sorted(value) != value:
            raise ValueError("time_std_thresholds_s must be positive and increase")
        return value
