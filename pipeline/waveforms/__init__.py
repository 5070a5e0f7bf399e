"""Waveform and station acquisition: FDSN, local SDS and Hi-net sources into the run's SDS.

Entry points: :func:`download_waveforms` (the stage) and :func:`waveform_root` (where later
stages read the SDS archive). Config sections: :data:`StationSourceConfig`,
:class:`WaveformConfig`.

:func:`download_waveforms` is imported on first use (:data:`_LAZY`): the stages that only
read the archive import this package, and its download code (FDSN, Hi-net) then stays out
of them and out of their cache keys (``flows/caching.py``, ``module_closure``).
"""

from importlib import import_module

from pipeline.waveforms.params import StationSourceConfig, WaveformConfig
from pipeline.waveforms.sds import waveform_root

#: Name -> the submodule (relative to this package) that defines it, imported on first use.
_LAZY = {"download_waveforms": "download"}

__all__ = ["StationSourceConfig", "WaveformConfig", "download_waveforms", "waveform_root"]


def __getattr__(name: str) -> object:
    """A name of :data:`_LAZY`, imported from its submodule on first use."""
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
