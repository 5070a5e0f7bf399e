"""Layered 1-D models derived from a velocity-depth profile by slowness averaging.

A profile is a table of P and S velocities at increasing depths, the velocity linear in
depth between them: JMA's file of its JMA2001 model (``vjma2001`` in ``vjma2001.zip``,
https://www.data.jma.go.jp/eqev/data/bulletin/catalog/appendix/trtime/; Ueno et al. 2002,
Q. J. Seismol. 65) has one line per depth, ``Vp Vs depth`` (km/s, km/s, km), 0.5 km apart,
from 0 km down.

The rule (:func:`layered_from_profile`): ``n_layers`` layers of equal thickness span
``0 .. bottom_km``; each takes the velocity that keeps the profile's vertical travel time
across it, ``h / ∫ dz / v(z)`` (:func:`slowness_average`), rounded to 0.01 km/s, the
precision of HypoInverse's ``F5.2`` model lines (so the model HypoInverse reads is the one
the synthetic generator and the other stages use); the last layer continues as the
half-space. The nominal Vp/Vs is the ratio of the vertical S and P times from the surface to
``bottom_km`` through the layers. The defaults, 20 layers down to 60 km, are HypoInverse's
layer limit (:data:`pipeline.preflight.HYPOINVERSE_MAX_LAYERS`) and the depth of the
travel-time tables (:data:`pipeline.velocity.TABLE_MAX_DEPTH_KM`).

Command line (prints the ``vp_vs`` and ``layers`` lines of a model YAML, see
:mod:`pipeline.velocity`)::

    python -m pipeline.velocity_profile vjma2001 [--layers 20] [--bottom-km 60]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import EqcatInputError
from pipeline.preflight import HYPOINVERSE_MAX_LAYERS
from pipeline.velocity import TABLE_MAX_DEPTH_KM

#: Decimals of the derived velocities and layer tops (HypoInverse reads F5.2).
VELOCITY_DECIMALS = 2


@dataclass(frozen=True)
class Profile:
    """Velocities at depths, linear in between.

    Attributes:
        depth_km: node depths, km, shape (N,), strictly increasing from 0.
        vp_km_s: P velocity at each node, km/s, shape (N,).
        vs_km_s: S velocity at each node, km/s, shape (N,).
    """

    depth_km: np.ndarray
    vp_km_s: np.ndarray
    vs_km_s: np.ndarray


@dataclass(frozen=True)
class LayeredModel:
    """The layers derived from a profile (the fields of a model YAML).

    Attributes:
        tops_km: layer tops, km, shape (L,), the first 0.
        vp_km_s: P velocity per layer, km/s, shape (L,).
        vs_km_s: S velocity per layer, km/s, shape (L,).
        vp_vs: vertical S time over vertical P time from 0 to the profile bottom used.
    """

    tops_km: np.ndarray
    vp_km_s: np.ndarray
    vs_km_s: np.ndarray
    vp_vs: float


def read_profile(path: str | Path) -> Profile:
    """Read a ``Vp Vs depth`` table (the layout of JMA's ``vjma2001``).

    Raises:
        EqcatInputError: naming the file (and line) when it cannot be read, a line does not
            hold three numbers, the depths do not increase from 0, or a velocity is not
            positive with Vs < Vp.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise EqcatInputError(f"cannot read the profile ({exc})", path=path) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            vp, vs, depth = (float(value) for value in line.split())
        except ValueError:
            raise EqcatInputError(
                f"line {number}: expected three numbers 'Vp Vs depth' (km/s, km/s, km), "
                f"got {line.strip()!r}",
                path=path,
            ) from None
        rows.append((depth, vp, vs))
    if len(rows) < 2:
        raise EqcatInputError("needs at least two 'Vp Vs depth' lines", path=path)
    table = np.array(rows)
    if not np.all(np.isfinite(table)):
        raise EqcatInputError("every depth and velocity must be a finite number", path=path)
    depth, vp, vs = table.T
    if depth[0] != 0.0 or np.any(np.diff(depth) <= 0):
        raise EqcatInputError("depths must start at 0 km and increase line by line", path=path)
    if np.any(vs <= 0) or np.any(vs >= vp):
        raise EqcatInputError("velocities must be positive with Vs < Vp on every line", path=path)
    return Profile(depth_km=depth, vp_km_s=vp, vs_km_s=vs)


def vertical_time(depth_km: np.ndarray, velocity: np.ndarray, top: float, bottom: float) -> float:
    """Vertical travel time (s) from ``top`` to ``bottom`` (km) through a profile.

    Args:
        depth_km: node depths, km, shape (N,), increasing; ``bottom`` must not lie below
            the last.
        velocity: velocity at each node, km/s, shape (N,), linear in depth between nodes.
    """
    inside = depth_km[(depth_km > top) & (depth_km < bottom)]
    z = np.concatenate([[top], inside, [bottom]])
    v = np.interp(z, depth_km, velocity)
    h, v0, v1 = np.diff(z), v[:-1], v[1:]
    gradient = np.abs(v1 - v0) > 1e-12 * v0
    # Across a linear segment ∫ dz / v = h ln(v1 / v0) / (v1 - v0); h / v0 where v is constant.
    times = np.where(gradient, h * np.log(v1 / v0) / np.where(gradient, v1 - v0, 1.0), h / v0)
    return float(times.sum())


def slowness_average(
    depth_km: np.ndarray, velocity: np.ndarray, tops_km: np.ndarray, bottom_km: float
) -> np.ndarray:
    """Velocity of each layer ``[tops[i], tops[i + 1])`` (the last down to ``bottom_km``) that
    keeps the profile's vertical travel time across it: thickness over vertical time, km/s,
    shape (L,)."""
    bottoms = np.append(tops_km[1:], bottom_km)
    return np.array(
        [
            (bottom - top) / vertical_time(depth_km, velocity, top, bottom)
            for top, bottom in zip(tops_km, bottoms, strict=True)
        ]
    )


def layered_from_profile(
    profile: Profile,
    n_layers: int = HYPOINVERSE_MAX_LAYERS,
    bottom_km: float = TABLE_MAX_DEPTH_KM,
) -> LayeredModel:
    """``n_layers`` equal layers over ``0 .. bottom_km``, slowness-averaged and rounded.

    Raises:
        ValueError: when ``n_layers`` is not 1-20 (HypoInverse's limit) or ``bottom_km`` is
            not positive or lies below the profile's deepest node.
    """
    if not 1 <= n_layers <= HYPOINVERSE_MAX_LAYERS:
        raise ValueError(f"n_layers must be 1-{HYPOINVERSE_MAX_LAYERS}, got {n_layers}")
    if not 0 < bottom_km <= profile.depth_km[-1]:
        raise ValueError(
            f"bottom_km must lie in (0, {profile.depth_km[-1]:g}] km (the profile's depth), "
            f"got {bottom_km:g}"
        )
    tops = np.round(np.arange(n_layers) * (bottom_km / n_layers), VELOCITY_DECIMALS)
    vp, vs = (
        np.round(slowness_average(profile.depth_km, v, tops, bottom_km), VELOCITY_DECIMALS)
        for v in (profile.vp_km_s, profile.vs_km_s)
    )
    thickness = np.diff(np.append(tops, bottom_km))
    vp_vs = float(np.sum(thickness / vs) / np.sum(thickness / vp))
    return LayeredModel(tops_km=tops, vp_km_s=vp, vs_km_s=vs, vp_vs=round(vp_vs, 3))


def model_yaml_lines(model: LayeredModel) -> str:
    """The ``vp_vs`` and ``layers`` lines of a model YAML (:mod:`pipeline.velocity`)."""
    lines = [f"vp_vs: {model.vp_vs:.3f}", "layers:"]
    for top, vp, vs in zip(model.tops_km, model.vp_km_s, model.vs_km_s, strict=True):
        lines.append(f"  - {{top_km: {top:g}, vp: {vp:.2f}, vs: {vs:.2f}}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("profile", type=Path, help="'Vp Vs depth' table, e.g. JMA's vjma2001")
    parser.add_argument("--layers", type=int, default=HYPOINVERSE_MAX_LAYERS)
    parser.add_argument("--bottom-km", type=float, default=TABLE_MAX_DEPTH_KM)
    args = parser.parse_args(argv)
    try:
        model = layered_from_profile(read_profile(args.profile), args.layers, args.bottom_km)
    except ValueError as exc:  # EqcatInputError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(model_yaml_lines(model))
    return 0


if __name__ == "__main__":
    from pipeline.cli import script_main

    script_main(main)
