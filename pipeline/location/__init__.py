"""Absolute locations with HypoInverse 1.40: file formats, runner and the location stage."""

from pipeline.location.params import LocationConfig
from pipeline.location.runner import HypoInverseError, find_hypoinverse
from pipeline.location.stage import locate, locate_picks

__all__ = ["HypoInverseError", "LocationConfig", "find_hypoinverse", "locate", "locate_picks"]
