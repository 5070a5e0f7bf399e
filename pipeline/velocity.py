"""1-D layered velocity models and first-arrival travel times.

A model is a stack of constant-velocity layers over a half-space (flat Earth,
``hypo_templates/velocity/<name>.yaml``)::

    name: tottori
    source: "where the numbers come from"
    vp_vs: 1.729           # used for layers without an explicit vs
    layers:
      - {top_km: 0, vp: 5.20, vs: 3.07}     # vs optional per layer
      - {top_km: 3, vp: 5.75, vs: 3.39}

Shipped models carry values from a cited source (their header says which and by what rule);
:mod:`pipeline.velocity_profile` derives layers from a velocity-depth table.

:func:`travel_time` returns the first arrival (direct wave or any head wave) from a
source at depth to a receiver at the surface, through a precomputed table
(distance × depth) that is interpolated bilinearly; the table is built once per
model and phase and is exact at its nodes to < 1 ms.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.interpolate import RegularGridInterpolator

from pipeline.yamlfile import DuplicateKeyError, load_user_yaml

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "hypo_templates" / "velocity"

#: Extent and spacing of the travel-time tables (km).
TABLE_MAX_DISTANCE_KM = 400.0
TABLE_MAX_DEPTH_KM = 60.0
TABLE_STEP_KM = 0.5


@dataclass(frozen=True)
class VelocityModel:
    """A flat 1-D layered model.

    Attributes:
        name: short name (the YAML file stem for shipped models).
        layer_tops_km: depth of each layer top, km, shape (L,), increasing, first 0.
        vp_km_s: P velocity per layer, km/s, shape (L,).
        vs_km_s: S velocity per layer, km/s, shape (L,).
        vp_vs: the nominal Vp/Vs ratio (used by locators that take one ratio).
        source: where the numbers come from.
    """

    name: str
    layer_tops_km: np.ndarray
    vp_km_s: np.ndarray
    vs_km_s: np.ndarray
    vp_vs: float
    source: str = ""

    def velocities(self, phase: str) -> np.ndarray:
        """Layer velocities (km/s) for ``phase`` ("P" or "S")."""
        phase = phase.upper()
        if phase == "P":
            return self.vp_km_s
        if phase == "S":
            return self.vs_km_s
        raise ValueError(f"phase must be 'P' or 'S', got {phase!r}")

    def __hash__(self) -> int:  # arrays are not hashable; the content is what counts
        return hash(
            (
                self.name,
                self.layer_tops_km.tobytes(),
                self.vp_km_s.tobytes(),
                self.vs_km_s.tobytes(),
                self.vp_vs,
            )
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VelocityModel) and hash(self) == hash(other)


def available_models() -> list[str]:
    """Names of the models shipped in ``hypo_templates/velocity``."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def model_path(name_or_path: str | Path) -> Path:
    """The YAML file of a model given by shipped name (e.g. ``"tottori"``) or path (a
    ``.yaml``/``.yml`` name, an existing file, or anything with a folder in it)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file() or len(path.parts) > 1:
        return path
    return TEMPLATE_DIR / f"{name_or_path}.yaml"


def load_velocity_model(name_or_path: str | Path) -> VelocityModel:
    """Load a model by shipped name (e.g. ``"tottori"``) or from a YAML path.

    Raises:
        FileNotFoundError: naming the path and the shipped models when not found.
        ValueError: naming the file and field when the content is invalid.
    """
    path = model_path(name_or_path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected a velocity model YAML file")
    if not path.is_file():
        raise FileNotFoundError(
            f"velocity model {str(name_or_path)!r} not found at {path}; "
            f"shipped models: {', '.join(available_models())}"
        )
    try:
        spec = load_user_yaml(path.read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML text ({exc})".replace("\n", " ")) from None
    if not isinstance(spec, dict):
        raise ValueError(
            f"{path}: expected a YAML mapping with 'layers', got {type(spec).__name__}"
        )
    return _model_from_spec(spec, path)


#: The keys of a model file and of each of its layers: any other key is refused (a misspelt
#: ``Vs:`` or ``vpvs:`` used to be ignored, giving vs = vp / 1.73 without a word).
MODEL_KEYS = ("name", "source", "vp_vs", "layers")
LAYER_KEYS = ("top_km", "vp", "vs")


def _unknown_keys(given: dict, allowed: tuple[str, ...], where: str) -> None:
    """Raise ValueError naming ``where`` when ``given`` has a key outside ``allowed``."""
    unknown = [str(key) for key in given if key not in allowed]
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(allowed)}"
        )


def _number(value: object, where: str) -> float:
    """``value`` as a finite float (YAML number or numeric text); ValueError naming ``where``
    for anything else (text, ``true``, ``null``, ``.nan``, ``.inf``)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where} = {value!r}: expected a finite number")
    return number


def _layer(layer: object, k: int, n: int, path: Path, vp_vs: float) -> tuple[float, float, float]:
    """(top_km, vp, vs) of layer ``k`` (0-based) of ``n``, checked; vs defaults to vp / vp_vs.

    Raises:
        ValueError: naming the file, the layer (1-based) and the field.
    """
    where = f"{path}: layer {k + 1} of {n} in 'layers'"
    if not isinstance(layer, dict):
        raise ValueError(f"{where}: expected a mapping {{top_km, vp}} (vs optional), got {layer!r}")
    _unknown_keys(layer, LAYER_KEYS, where)
    for key in ("top_km", "vp"):
        if key not in layer:
            raise ValueError(f"{where}: field {key!r} is missing")
    top = _number(layer["top_km"], f"{where}, field 'top_km'")
    vp = _number(layer["vp"], f"{where}, field 'vp'")
    if vp <= 0:
        raise ValueError(f"{where}, field 'vp' = {vp}: expected a velocity > 0 km/s")
    vs = _number(layer["vs"], f"{where}, field 'vs'") if "vs" in layer else vp / vp_vs
    if not 0 < vs < vp:
        raise ValueError(f"{where}, field 'vs' = {vs}: expected 0 < vs < vp ({vp} km/s)")
    return top, vp, vs


def _model_from_spec(spec: dict, path: Path) -> VelocityModel:
    """The model of a parsed model file (module docstring), every field checked.

    Raises:
        ValueError: one line naming the file and the field (and layer) and what is expected.
    """
    _unknown_keys(spec, MODEL_KEYS, str(path))
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{path}: field 'layers' must be a non-empty list of {{top_km, vp}}")
    vp_vs = _number(spec.get("vp_vs", 1.73), f"{path}: field 'vp_vs'")
    if not 1.4 <= vp_vs <= 2.5:
        raise ValueError(f"{path}: field 'vp_vs' = {vp_vs} outside the plausible range 1.4–2.5")
    for key in ("name", "source"):
        if not isinstance(spec.get(key, ""), str):
            raise ValueError(f"{path}: field {key!r} = {spec[key]!r}: expected text")
    rows = [_layer(layer, k, len(layers), path, vp_vs) for k, layer in enumerate(layers)]
    tops, vp, vs = (np.array(column) for column in zip(*rows, strict=True))
    if tops[0] != 0.0:
        raise ValueError(
            f"{path}: layer 1, field 'top_km' = {tops[0]}: the first layer starts at 0"
        )
    shallower = np.flatnonzero(np.diff(tops) <= 0) + 1
    if shallower.size:
        k = int(shallower[0])
        raise ValueError(
            f"{path}: layer {k + 1}, field 'top_km' = {tops[k]}: expected deeper than the "
            f"layer above ({tops[k - 1]} km); layer tops must increase strictly"
        )
    return VelocityModel(
        name=spec.get("name", path.stem),
        layer_tops_km=tops,
        vp_km_s=vp,
        vs_km_s=vs,
        vp_vs=vp_vs,
        source=spec.get("source", ""),
    )


def _thicknesses_above(tops: np.ndarray, depth_km: float) -> np.ndarray:
    """Thickness (km) of each layer crossed between the surface and ``depth_km``, shape (L,)."""
    bottoms = np.append(tops[1:], np.inf)
    return np.clip(np.minimum(bottoms, depth_km) - tops, 0.0, None)


def _direct_times(tops, v, depth_km, distances_km) -> np.ndarray:
    """Direct-wave travel times (s) from ``depth_km`` to surface points at ``distances_km``."""
    thick = _thicknesses_above(tops, depth_km)
    used = thick > 0
    if not used.any():  # source at the surface: straight line in the top layer
        return distances_km / v[0]
    h, vel = thick[used], v[used]
    v_max = vel.max()
    # Ray parameters from vertical to almost horizontal in the fastest layer crossed.
    sin_max = 1.0 - np.geomspace(1e-9, 1.0, 4000)[::-1]
    p = np.unique(np.concatenate([sin_max, [0.0]])) / v_max
    pv = p[:, None] * vel[None, :]
    cos = np.sqrt(1.0 - pv**2)
    x = (h[None, :] * pv / cos).sum(axis=1)
    t = (h[None, :] / (vel[None, :] * cos)).sum(axis=1)
    order = np.argsort(x)
    times = np.interp(distances_km, x[order], t[order], right=np.inf)
    return times


def _head_times(tops, v, depth_km, distances_km) -> np.ndarray:
    """Earliest head-wave time (s) along any layer top below the source (inf where none)."""
    best = np.full_like(distances_km, np.inf, dtype=float)
    src_layer = np.searchsorted(tops, depth_km, side="right") - 1
    for j in range(src_layer + 1, len(tops)):
        vj = v[j]
        if np.any(v[:j] >= vj):
            continue  # no critical refraction under a faster layer
        p = 1.0 / vj
        down = _thicknesses_above(tops, tops[j]) - _thicknesses_above(tops, depth_km)
        up = _thicknesses_above(tops, tops[j])
        path = (up + down)[:j]
        eta = np.sqrt(1.0 / v[:j] ** 2 - p**2)
        x_crit = (path * p / eta).sum()  # Σ h_i tan(θ_i), sin θ_i = p v_i
        t = distances_km * p + (path * eta).sum()
        best = np.where(distances_km >= x_crit, np.minimum(best, t), best)
    return best


@functools.lru_cache(maxsize=16)
def _table(model: VelocityModel, phase: str) -> RegularGridInterpolator:
    v = model.velocities(phase)
    distances = np.arange(0.0, TABLE_MAX_DISTANCE_KM + TABLE_STEP_KM, TABLE_STEP_KM)
    depths = np.arange(0.0, TABLE_MAX_DEPTH_KM + TABLE_STEP_KM, TABLE_STEP_KM)
    grid = np.empty((distances.size, depths.size))
    for k, depth in enumerate(depths):
        direct = _direct_times(model.layer_tops_km, v, depth, distances)
        head = _head_times(model.layer_tops_km, v, depth, distances)
        grid[:, k] = np.minimum(direct, head)
    return RegularGridInterpolator((distances, depths), grid, bounds_error=False, fill_value=None)


def travel_time(
    model: VelocityModel,
    phase: str,
    distance_km: np.ndarray | float,
    depth_km: np.ndarray | float,
) -> np.ndarray:
    """First-arrival travel time (s) from a source at ``depth_km`` to a surface receiver.

    Args:
        model: the 1-D model.
        phase: "P" or "S".
        distance_km: epicentral distance(s), km (broadcast with ``depth_km``),
            within 0–400 km.
        depth_km: source depth(s) below the surface, km, within 0–60 km.

    Returns:
        Travel times, s, with the broadcast shape of the inputs.
    """
    distance_km, depth_km = np.broadcast_arrays(
        np.asarray(distance_km, dtype=float), np.asarray(depth_km, dtype=float)
    )
    if np.any(distance_km < 0) or np.any(distance_km > TABLE_MAX_DISTANCE_KM):
        raise ValueError(f"distance_km must lie in [0, {TABLE_MAX_DISTANCE_KM}] km")
    if np.any(depth_km < 0) or np.any(depth_km > TABLE_MAX_DEPTH_KM):
        raise ValueError(f"depth_km must lie in [0, {TABLE_MAX_DEPTH_KM}] km")
    points = np.stack([distance_km.ravel(), depth_km.ravel()], axis=-1)
    return _table(model, phase.upper())(points).reshape(distance_km.shape)


def travel_time_below_surface(
    model: VelocityModel,
    phase: str,
    distance_km: np.ndarray,
    source_depth_km: float,
    receiver_depth_km: float,
) -> np.ndarray:
    """First-arrival time (s) to a receiver below the surface (an ocean-bottom or borehole
    station under sea level), computed directly rather than from the table.

    A first arrival between two depths (direct wave, or head wave along an interface below
    both) crosses only the layers below the shallower of the two, so it is the surface time
    of the model cut at that depth, from the other point (as deep as their separation); a
    wave that turns above the shallower point (under a faster layer) is not considered, as
    in :func:`travel_time`.

    Args:
        model: the 1-D model.
        phase: "P" or "S".
        distance_km: epicentral distances, km, shape (N,).
        source_depth_km, receiver_depth_km: depths below the surface (sea level), km.

    Returns:
        Travel times, s, shape (N,).
    """
    shallow, deep = sorted((float(source_depth_km), float(receiver_depth_km)))
    tops = model.layer_tops_km
    first = int(np.searchsorted(tops, shallow, side="right")) - 1
    cut_tops = np.concatenate([[0.0], tops[first + 1 :] - shallow])
    velocity = model.velocities(phase)[first:]
    distance_km = np.asarray(distance_km, dtype=float)
    return np.minimum(
        _direct_times(cut_tops, velocity, deep - shallow, distance_km),
        _head_times(cut_tops, velocity, deep - shallow, distance_km),
    )
