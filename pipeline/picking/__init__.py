"""Picking: EQTransformer detection and P/S picking (with MC-dropout uncertainty).

Entry points: :func:`load_eqt` (the model), :func:`pick_station_day` (one station-day, for the
flow), :func:`pick_all` (the stage with a progress bar) and :func:`merge_picks`; configuration
in :class:`PickerConfig`. TensorFlow is imported only when one of the model or stage names is
first used, so reading a config stays fast.
"""

from importlib import import_module

from pipeline.picking.params import PickerConfig, StaLtaConfig

#: Name -> the submodule (relative to this package) that defines it, imported on first use.
_LAZY = {
    "EQTransformer": "model",
    "load_eqt": "model",
    "PickingError": "stage",
    "merge_picks": "stage",
    "pick_all": "stage",
    "pick_station_day": "stage",
}

__all__ = ["PickerConfig", "StaLtaConfig", *_LAZY]


def __getattr__(name: str) -> object:
    """A name of :data:`_LAZY`, imported from its submodule on first use."""
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
