"""Settings of a synthetic aftershock scenario (:class:`ScenarioConfig`) and its presets.

Defaults describe a replica of the 2000 Western Tottori (Mw 6.6) aftershock sequence: a
vertical left-lateral fault striking ~N150°E near 35.27°N, 133.35°E, ~25 km long, 2–15 km
deep, recorded by the 18 synthetic stations ``XX.X01``..``XX.X18`` of
``station_configs/replica_stations.csv`` (made-up sites, not Hi-net stations).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field, field_validator, model_validator

from pipeline.sections import SECTION_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATIONS_CSV = REPO_ROOT / "station_configs" / "replica_stations.csv"

#: Origin time of the 2000 Western Tottori mainshock (13:30:18 JST).
TOTTORI_MAINSHOCK = datetime(2000, 10, 6, 4, 30, 18, tzinfo=UTC)


class ScenarioConfig(BaseModel):
    """A seeded synthetic aftershock scenario: sequence, network, waveforms and noise."""

    model_config = SECTION_CONFIG

    seed: int = Field(2000, ge=0, description="seed of every random draw (same seed, same files)")
    # --- time span and sequence (Omori–Utsu rate, Gutenberg–Richter sizes)
    mainshock_time: datetime = Field(TOTTORI_MAINSHOCK, description="mainshock origin (UTC)")
    start_time: datetime = Field(
        datetime(2000, 10, 7, 5, 0, tzinfo=UTC), description="first sample of the records (UTC)"
    )
    duration_s: float = Field(3600.0, gt=0, le=120 * 86400, description="length of records (s)")
    omori_k: float = Field(
        10000.0, gt=0, description="Omori–Utsu K: events/day with M >= magnitude_min, at t=1 day"
    )
    omori_c_days: float = Field(0.05, gt=0, description="Omori–Utsu c (days)")
    omori_p: float = Field(1.1, gt=0, description="Omori–Utsu p")
    b_value: float = Field(1.0, gt=0, description="Gutenberg–Richter b of the true sequence")
    magnitude_min: float = Field(0.5, description="smallest simulated magnitude")
    magnitude_max: float = Field(5.5, description="largest simulated magnitude")
    # --- fault geometry (hypocentres on a plane with scatter)
    fault_latitude: float = Field(35.27, ge=-90, le=90, description="fault centre latitude (°N)")
    fault_longitude: float = Field(133.35, ge=-180, le=180, description="fault centre lon (°E)")
    fault_strike_deg: float = Field(150.0, ge=0, lt=360, description="strike (° from north)")
    fault_dip_deg: float = Field(90.0, gt=0, le=90, description="dip (°), 90 = vertical")
    fault_length_km: float = Field(25.0, gt=0, description="length along strike (km)")
    depth_min_km: float = Field(2.0, ge=0, description="shallowest hypocentre on the fault (km)")
    depth_max_km: float = Field(15.0, gt=0, le=40, description="deepest hypocentre (km)")
    scatter_km: float = Field(0.7, ge=0, description="Gaussian scatter off the plane (km, 1σ)")
    # --- network and recording
    stations_csv: Path = Field(DEFAULT_STATIONS_CSV, description="station list (see stations.py)")
    max_stations: int | None = Field(
        None, ge=1, description="use only the N stations nearest the fault centre"
    )
    channel_prefix: str = Field("HH", pattern=r"^[A-Z0-9]{2}$", description="band+instrument")
    sampling_rate: float = Field(100.0, gt=0, description="samples per second")
    sensitivity: float = Field(
        1.0e9, gt=0, description="overall sensitivity, counts per m/s (flat to velocity)"
    )
    velocity_model: str = Field("tottori", description="1-D model name or YAML path")
    # --- source, path and site (waveform shape; amplitudes follow the ML law below)
    stress_drop_bar: float = Field(30.0, gt=0, description="Brune stress drop (bar)")
    q0: float = Field(150.0, gt=0, description="S-wave Q(f) = q0 f^q_eta")
    q_eta: float = Field(0.6, ge=0, le=1, description="Q frequency exponent")
    kappa_s: float = Field(0.02, ge=0, description="site high-frequency decay kappa (s)")
    p_to_s_ratio: float = Field(
        0.3, gt=0, le=2, description="P/S peak-velocity scale (real NCEDC records: median 0.3)"
    )
    path_duration_s_per_km: float = Field(
        0.05, ge=0, description="direct-wave duration added per km of hypocentral distance (s)"
    )
    rise_fraction: float = Field(
        0.05, gt=0, le=1, description="onset rise time as a fraction of the direct duration"
    )
    coda_ratio: float = Field(0.2, ge=0, le=1, description="coda level / direct-wave peak")
    magnitude_scatter: float = Field(
        0.15, ge=0, description="1σ log10 scatter of station amplitudes about the ML law"
    )
    waveform_similarity: float = Field(
        0.8, ge=0, le=1, description="variance fraction shared by events of one source cell"
    )
    similarity_cell_km: float = Field(
        2.0, gt=0, description="source cell size (along strike and depth, km)"
    )
    wood_anderson_gain: float = Field(2080.0, gt=0, description="must match the ML stage")
    # --- background noise
    noise_velocity_m_s: float = Field(
        2.5e-7, gt=0, description="median rms ground-velocity noise above 1 Hz (m/s)"
    )
    noise_station_spread: float = Field(
        0.25, ge=0, description="1σ log10 spread of the noise level between stations"
    )
    microseism_ratio: float = Field(
        2.0, ge=0, description="rms of the 0.1–0.5 Hz microseism / rms of the >1 Hz noise"
    )
    diurnal_amplitude: float = Field(
        0.3, ge=0, lt=1, description="relative day/night variation of the >1 Hz noise"
    )
    utc_offset_hours: float = Field(9.0, description="local time offset for the diurnal cycle")
    glitches_per_day: float = Field(2.0, ge=0, description="spikes per channel-day")
    gaps_per_day: float = Field(0.5, ge=0, description="data gaps per station-day")
    gap_max_s: float = Field(60.0, gt=0, description="longest gap (s); lengths are uniform")

    @field_validator("mainshock_time", "start_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioConfig:
        if self.start_time <= self.mainshock_time:
            raise ValueError("start_time must be after mainshock_time (the aftershock window)")
        if self.magnitude_max <= self.magnitude_min:
            raise ValueError("magnitude_max must exceed magnitude_min")
        if self.depth_max_km <= self.depth_min_km:
            raise ValueError("depth_max_km must exceed depth_min_km")
        return self

    @property
    def end_time(self) -> datetime:
        """End of the records (exclusive)."""
        return self.start_time + timedelta(seconds=self.duration_s)


def preset(name: str, **overrides) -> ScenarioConfig:
    """A named scenario, optionally with fields overridden.

    - ``smoke``: 1 hour, 18 stations, one day after the mainshock (dense: ~380 events/h
      with M >= 0.5), for tests; a few seconds to generate.
    - ``demo``: 6 hours, 18 stations, two days after the mainshock (~175 events/h with
      M >= 0.5, ~1,060 in all), the embedded default of ``eqcat demo``: generation 26 s,
      EQTransformer picking 69 s, association to catalog 15 s on a shared 2-core machine.
    - ``replica``: the case-study span 2000-10-06 05:00 – 2000-11-17, 18 stations
      (~60,000 events with M >= 0.5), for ``benchmarks/replica_full.py``.
    """
    base: dict = {
        "smoke": {"duration_s": 3600.0},
        "demo": {"start_time": datetime(2000, 10, 8, 5, 0, tzinfo=UTC), "duration_s": 21600.0},
        "replica": {
            "start_time": datetime(2000, 10, 6, 5, 0, tzinfo=UTC),
            "duration_s": (
                datetime(2000, 11, 17, tzinfo=UTC) - datetime(2000, 10, 6, 5, 0, tzinfo=UTC)
            ).total_seconds(),
        },
    }.get(name)
    if base is None:
        raise ValueError(f"unknown scenario preset {name!r}: expected smoke, demo or replica")
    return ScenarioConfig(**{**base, **overrides})
