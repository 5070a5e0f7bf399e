"""Configuration of the association stage (one pydantic section, composed into the build config).

Defaults suit a local aftershock network of ~50 km aperture and ~20 stations, like the
18-station 2000 Western Tottori deployment of the EQTransformer study (Mousavi et al. 2020).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from pipeline.sections import SECTION_CONFIG


def _within_table_reach(margin_km: float, field: str) -> None:
    """Refuse a search margin (km) beyond the travel-time table's reach: a source farther
    than :data:`pipeline.velocity.TABLE_MAX_DISTANCE_KM` from every station has no predicted
    time (PyOcto found no event at all with ``margin_km: 5000``, without a word)."""
    from pipeline.velocity import TABLE_MAX_DISTANCE_KM

    if margin_km > TABLE_MAX_DISTANCE_KM:
        raise ValueError(
            f"{field} = {margin_km} km: at most {TABLE_MAX_DISTANCE_KM:g} km, the reach of the "
            "travel-time table (no time is predicted for a source farther from every station)"
        )


class _Section(BaseModel):
    model_config = SECTION_CONFIG


class TimeAssociatorConfig(_Section):
    """Parameters of the time-based associator (:mod:`pipeline.association.timebased`)."""

    moving_window_s: float | None = Field(
        None,
        gt=0,
        description="length (s) of the window after a seed P pick in which P picks of the same "
        "event may lie; None = largest inter-station distance / slowest P velocity + "
        "pair_tolerance_s",
    )
    pair_tolerance_s: float = Field(
        0.5,
        ge=0,
        description="slack (s) added to the pair window |t_i - t_j| <= d_ij / v_min_P of two "
        "stations' P picks",
    )
    p_tolerance_s: float = Field(
        0.6, gt=0, description="largest |P residual| (s) at the best grid node for a P pick"
    )
    s_tolerance_s: float = Field(
        1.0, gt=0, description="largest |S residual| (s) at the event's grid node for an S pick"
    )
    max_anchors: int = Field(
        64,
        ge=1,
        description="picks of a window tried as the event's first arrival (the seed, then the "
        "later unused P picks up to the end of the window); the anchor fitting most stations "
        "wins",
    )
    anchor_nearest_stations: int = Field(
        3,
        ge=1,
        description="an anchor's source is searched only at grid nodes that have the anchor's "
        "station among their this-many nearest stations",
    )
    relocations: int = Field(
        1,
        ge=0,
        description="relocate-and-collect rounds when an event is formed (each adds the S "
        "picks that fit the source, relocates on P and S, and collects the P picks again)",
    )
    grid_spacing_km: float = Field(
        2.0, gt=0, le=20, description="horizontal spacing (km) of the coarse origin grid"
    )
    grid_margin_km: float = Field(
        10.0, ge=0, description="how far (km) the origin grid extends beyond the stations"
    )
    grid_depths_km: list[float] = Field(
        [2.0, 6.0, 10.0, 14.0, 18.0],
        min_length=1,
        description="depths (km below sea level) of the coarse origin grid",
    )

    @model_validator(mode="after")
    def _depths_in_range(self) -> TimeAssociatorConfig:
        if any(not 0.0 <= d <= 60.0 for d in self.grid_depths_km):
            raise ValueError("grid_depths_km must lie within 0-60 km")
        _within_table_reach(self.grid_margin_km, "grid_margin_km")
        return self


class PyOctoConfig(_Section):
    """Parameters passed to :class:`pyocto.OctoAssociator` (see its documentation).

    Defaults differ from PyOcto's (which target regional networks) where a ~50 km aftershock
    network needs it: smaller nodes, tighter tolerances, shorter inter-event time.
    """

    tolerance_s: float = Field(
        0.1,
        gt=0,
        description="velocity-model tolerance (s) of the octree's pick-in-node test; events keep "
        "the picks within pick_match_tolerance_s of the located origin, so this only widens "
        "the search. At 10^5 picks in benchmarks/association.py 0.5 cost 19% more CPU than "
        "0.2 for equal scores, and 0.1 cost 8% less than 0.2 for equal or better scores",
    )
    pick_match_tolerance_s: float = Field(
        0.6, gt=0, description="largest |residual| (s) for matching a pick to a located event"
    )
    min_node_size_km: float = Field(
        5.0,
        gt=0,
        description="smallest octree node (km) for association; 2 km finds a few more events "
        "at 20 events/min but ran 7x slower in our generated-pick runs",
    )
    min_node_size_location_km: float = Field(
        1.5,
        gt=0,
        description="smallest node (km) of the location search (PyOcto's default; 0.5 km "
        "cost 15% more CPU in benchmarks/association.py for no better score)",
    )
    location_split_depth: int = Field(
        4,
        ge=2,
        description="search depth of PyOcto's location splits (its default 6; 4 halved the "
        "location CPU time at equal scores in benchmarks/association.py)",
    )
    location_split_return: int = Field(
        2,
        ge=1,
        description="part of location_split_depth only sampled, not descended (with depth 4, "
        "1 evaluates 16 sub-volumes per 3 halvings instead of 16 per 2: 30% fewer location "
        "evaluations and equal scores at 10^5 generated picks, but 0.1-0.3 points less pick "
        "precision/recall on the demo replicas)",
    )
    min_interevent_time_s: float = Field(
        1.0, ge=0, description="minimum time (s) between two events"
    )
    n_picks: int = Field(5, ge=1, description="minimum number of picks per event")
    n_p_picks: int = Field(3, ge=0, description="minimum number of P picks per event")
    n_s_picks: int = Field(1, ge=0, description="minimum number of S picks per event")
    n_p_and_s_picks: int = Field(
        1, ge=0, description="minimum number of stations with both P and S per event"
    )
    min_pick_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="PyOcto's distance-based pick criterion (its default 0.25; 0 disables it: "
        "equal scores and 7% less CPU at 10^5 picks in benchmarks/association.py)",
    )
    max_pick_overlap: int = Field(4, ge=0, description="picks two events may share (PyOcto)")
    refinement_iterations: int = Field(
        3,
        ge=1,
        description="locate / re-match iterations (2 saves 3% CPU at 10^5 picks in "
        "benchmarks/association.py but loses 0.04% pick recall, 1 loses 0.6%)",
    )
    time_slicing_s: float = Field(1200.0, gt=0, description="length (s) of PyOcto's time blocks")
    time_before_s: float | None = Field(
        None,
        gt=0,
        description="overlap (s) of time blocks; None = largest S travel time across the "
        "search volume",
    )
    association_cutoff_stations: int | None = Field(
        5,
        ge=1,
        description="the octree's pick-in-node test uses only stations within the distance at "
        "which every point of the stations' bounding box has this many stations (PyOcto's "
        "association_cutoff_distance; locating and pick matching use all stations). Far "
        "stations' picks fit most large nodes; 5 halved the CPU time at 10^5 picks in "
        "benchmarks/association.py at equal scores. None = all stations",
    )
    margin_km: float = Field(
        10.0,
        ge=0,
        description="how far (km) the search volume extends beyond the stations (as the "
        "time-based grid's grid_margin_km); PyOcto's cost grows with the volume",
    )
    zlim_km: tuple[float, float] = Field(
        (0.0, 20.0),
        description="depth range (km below sea level) of the search volume (covers the "
        "time-based grid's default depths); PyOcto's cost grows with the volume",
    )
    table_spacing_km: float = Field(
        0.5, gt=0, le=5, description="node spacing (km) of the 1-D travel-time table"
    )
    n_threads: int | None = Field(None, ge=1, description="threads; None = all cores")

    @model_validator(mode="after")
    def _zlim_ordered(self) -> PyOctoConfig:
        low, high = self.zlim_km
        if not 0.0 <= low < high <= 60.0:
            raise ValueError("zlim_km must satisfy 0 <= min < max <= 60")
        _within_table_reach(self.margin_km, "margin_km")
        if self.location_split_return >= self.location_split_depth:
            raise ValueError("location_split_return must be smaller than location_split_depth")
        self._pyocto_rules()
        return self

    def _pyocto_rules(self) -> None:
        """Refuse settings outside the ranges PyOcto's documentation ("How to set the
        parameters", pyocto.readthedocs.io) and its search give them.

        - ``tolerance_s`` at most ``pick_match_tolerance_s``: an event keeps only the picks
          within the match tolerance of its location, so a wider pick-in-node test only keeps
          nodes alive (60 generated events, 18 stations: 0.6 s found the 60 events in 0.6 s;
          2 s found 63 in 1.7 s, 4 s 72 in 25 s, 8 s 59 in 101 s, with fewer picks assigned).
        - ``min_node_size_location_km`` below ``min_node_size_km`` ("should always be smaller").
        - ``time_slicing_s`` at least ``time_before_s`` when that is given (the blocks' overlap;
          shorter blocks process each pick more than twice); the automatic ``time_before_s``
          depends on the stations and is checked by :func:`pipeline.association.octo.
          timing_problems`.
        """
        if self.tolerance_s > self.pick_match_tolerance_s:
            raise ValueError(
                f"tolerance_s = {self.tolerance_s:g} s: expected 0 < tolerance_s <= "
                f"pick_match_tolerance_s ({self.pick_match_tolerance_s:g} s); a pick farther "
                "than that from its event's predicted time is dropped anyway, and a wider "
                "search only runs longer and adds false events"
            )
        if self.min_node_size_location_km >= self.min_node_size_km:
            raise ValueError(
                f"min_node_size_location_km = {self.min_node_size_location_km:g} km: expected "
                f"below min_node_size_km ({self.min_node_size_km:g} km), as PyOcto's "
                "documentation asks"
            )
        if self.time_before_s is not None and self.time_slicing_s < self.time_before_s:
            raise ValueError(
                f"time_slicing_s = {self.time_slicing_s:g} s: expected at least time_before_s "
                f"({self.time_before_s:g} s), the overlap of PyOcto's time blocks (shorter "
                "blocks process every pick more than twice)"
            )


class LeftoverConfig(_Section):
    """Per-event minimums of a second PyOcto pass over the picks the first pass left unassigned
    (:func:`pipeline.association.refine.add_leftover_events`); every other PyOcto setting is
    the ``pyocto`` section's."""

    n_picks: int = Field(5, ge=1, description="minimum number of picks per leftover event")
    n_p_picks: int = Field(0, ge=0, description="minimum number of P picks per leftover event")
    n_s_picks: int = Field(3, ge=0, description="minimum number of S picks per leftover event")
    n_p_and_s_picks: int = Field(
        0, ge=0, description="minimum number of stations with both P and S per leftover event"
    )


class AssociationConfig(_Section):
    """The association stage: which associator runs and the gates both share."""

    associator: Literal["time", "pyocto"] = Field(
        "time", description="'time' (the Tottori study's approach) or 'pyocto'"
    )
    min_stations: int = Field(
        3, ge=2, description="minimum number of stations with a pick for an event"
    )
    max_probability_std: float | None = Field(
        0.25,
        ge=0,
        description="picks whose MC-dropout probability_std exceeds this stay unassigned; "
        "None disables the gate (std 0, i.e. MC off, always passes)",
    )
    std_weight: float = Field(
        1.0,
        ge=0,
        description="a pick's weight in conflicts is probability - std_weight * probability_std",
    )
    merge_window_s: float = Field(
        0.0,
        ge=0,
        description="events whose origins differ by at most this (s), share no station-phase "
        "and fit one source are merged (pipeline.association.refine); 0 disables",
    )
    leftover: LeftoverConfig | None = Field(
        None,
        description="a second PyOcto pass over the picks the first pass left unassigned, with "
        "these minimums (associator pyocto only; pipeline.association.refine). None (default) "
        "disables it: on dense generated picks (events 4 s apart) its events were mostly "
        "mixtures of picks of events already found (event precision 0.98 -> 0.81), while on "
        "the demo replica it added 2-6 true events per seed (station_configs/demo.yaml)",
    )
    merge_tolerance_s: float = Field(
        0.6,
        gt=0,
        description="largest |residual| (s) of every pick at the merged source (on the "
        "time-based associator's origin grid)",
    )
    merge_max_outliers: int = Field(
        1,
        ge=0,
        description="picks of two merged events that may miss the merged source (they become "
        "unassigned)",
    )
    time: TimeAssociatorConfig = TimeAssociatorConfig()
    pyocto: PyOctoConfig = PyOctoConfig()

    @model_validator(mode="after")
    def _leftover_needs_pyocto(self) -> AssociationConfig:
        if self.leftover is not None and self.associator != "pyocto":
            raise ValueError("leftover (a second PyOcto pass) needs associator: pyocto")
        return self


def minimums(cfg: AssociationConfig) -> dict[str, int]:
    """The per-event minimums of the configured associator ({name: value}).

    Names: ``n_picks``, ``n_p_picks``, ``n_s_picks``, ``n_p_and_s_picks`` (stations with both),
    ``min_stations`` (stations with any pick). The time-based associator needs P picks on
    ``min_stations`` stations (``n_p_picks``).
    """
    if cfg.associator == "time":
        return {"n_p_picks": cfg.min_stations, "min_stations": cfg.min_stations}
    o = cfg.pyocto
    return {
        "n_picks": o.n_picks,
        "n_p_picks": o.n_p_picks,
        "n_s_picks": o.n_s_picks,
        "n_p_and_s_picks": o.n_p_and_s_picks,
        "min_stations": cfg.min_stations,
    }
