"""Waveform and station acquisition: FDSN, local SDS and Hi-net sources into the run's SDS.

Entry points: :func:`download_waveforms` (the stage) and :func:`waveform_root` (where later
stages read the SDS archive). Config sections: :data:`StationSourceConfig`,
:class:`WaveformConfig`.
"""

from pipeline.waveforms.download import download_waveforms, waveform_root
from pipeline.waveforms.params import StationSourceConfig, WaveformConfig

__all__ = ["StationSourceConfig", "WaveformConfig", "download_waveforms", "waveform_root"]
