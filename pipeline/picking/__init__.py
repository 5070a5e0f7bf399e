"""Picking: EQTransformer detection and P/S picking (with MC-dropout uncertainty).

Entry points: :func:`load_eqt` (the model), :func:`pick_station_day` (one station-day, for the
flow), :func:`pick_all` (the stage with a progress bar) and :func:`merge_picks`; configuration
in :class:`PickerConfig`. TensorFlow is imported only when one of the model or stage names is
first used, so reading a config stays fast.
"""

from importlib import import_module

from pipeline.picking.params import PickerConfig, StaLtaConfig

_LAZY = {
    "EQTransformer": "pipeline.picking.model",
    "load_eqt": "pipeline.picking.model",
    "PickingError": "pipeline.picking.stage",
    "merge_picks": "pipeline.picking.stage",
    "pick_all": "pipeline.picking.stage",
    "pick_station_day": "pipeline.picking.stage",
}

__all__ = ["PickerConfig", "StaLtaConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.picking' has no attribute {name!r}")
