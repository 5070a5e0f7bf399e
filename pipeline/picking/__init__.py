"""Picking: EQTransformer detection and P/S picking (with MC-dropout uncertainty).

Entry points: :func:`load_eqt` (the model), :func:`pick_station_day` (one station-day, for the
flow), :func:`pick_all` (the stage with a progress bar) and :func:`merge_picks`; configuration
in :class:`PickerConfig` (import it from :mod:`pipeline.picking.params` to avoid loading
TensorFlow).
"""

from pipeline.picking.model import EQTransformer, load_eqt
from pipeline.picking.params import PickerConfig, StaLtaConfig
from pipeline.picking.stage import PickingError, merge_picks, pick_all, pick_station_day

__all__ = [
    "EQTransformer",
    "PickerConfig",
    "PickingError",
    "StaLtaConfig",
    "load_eqt",
    "merge_picks",
    "pick_all",
    "pick_station_day",
]
