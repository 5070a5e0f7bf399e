"""Shared records of the associators: picks as arrays in, events and assignments out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import EqcatInputError


class AssociationInputError(EqcatInputError):
    """Picks, stations or settings that the associators cannot use; the message names what
    and where."""


@dataclass(frozen=True)
class PickArrays:
    """The usable picks handed to an associator, all arrays of shape (N,).

    Attributes:
        time_s: pick time, s after a reference epoch (float64).
        station: index into the :class:`~pipeline.association.geometry.StationGeometry`.
        is_p: True for P, False for S.
        weight: probability - std_weight * probability_std (higher wins a conflict).
    """

    time_s: np.ndarray
    station: np.ndarray
    is_p: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.time_s)


@dataclass(frozen=True)
class RawAssociation:
    """What an associator found, before the shared clean-up in :mod:`.stage`.

    Attributes:
        events: one row per event: origin_s (s after the reference epoch), x_km, y_km,
            depth_km (local frame; NaN where unknown).
        assignments: one row per (event, pick): event (row of ``events``), pick (index into
            the :class:`PickArrays`), residual_s (NaN where unknown). A pick may appear more
            than once here; the clean-up keeps one.
    """

    events: pd.DataFrame
    assignments: pd.DataFrame

    @classmethod
    def empty(cls) -> RawAssociation:
        return cls(
            events=pd.DataFrame(
                {c: pd.Series(dtype=float) for c in ("origin_s", "x_km", "y_km", "depth_km")}
            ),
            assignments=pd.DataFrame(
                {
                    "event": pd.Series(dtype=np.int64),
                    "pick": pd.Series(dtype=np.int64),
                    "residual_s": pd.Series(dtype=float),
                }
            ),
        )
