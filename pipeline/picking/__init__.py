"""Picking: EQTransformer detection and P/S picking (with MC-dropout uncertainty)."""

from pipeline.picking.model import EQTransformer, load_eqt

__all__ = ["EQTransformer", "load_eqt"]
