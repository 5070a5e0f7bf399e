"""Layered models from a velocity-depth profile by slowness averaging (velocity_profile.py)."""

import numpy as np
import pytest

from pipeline.errors import EqcatInputError
from pipeline.velocity import load_velocity_model, travel_time
from pipeline.velocity_profile import (
    Profile,
    layered_from_profile,
    main,
    read_profile,
    slowness_average,
    vertical_time,
)


def _gradient_profile(v0: float, gradient: float, bottom: float, step: float = 0.5) -> Profile:
    """v = v0 + gradient * z (P) and v / 1.75 (S), sampled every ``step`` km."""
    depth = np.arange(0.0, bottom + step / 2, step)
    vp = v0 + gradient * depth
    return Profile(depth_km=depth, vp_km_s=vp, vs_km_s=vp / 1.75)


def test_slowness_average_of_a_linear_gradient_is_the_closed_form():
    """Across v = v0 + g z the vertical time is ln(v1 / v0) / g, whatever the node spacing."""
    profile = _gradient_profile(4.8, 0.3, 6.0, step=0.5)
    coarse = _gradient_profile(4.8, 0.3, 6.0, step=3.0)
    tops = np.array([0.0, 2.0, 3.5])
    v = 4.8 + 0.3 * np.array([0.0, 2.0, 3.5, 6.0])
    expected = 0.3 * np.diff([0.0, 2.0, 3.5, 6.0]) / np.log(v[1:] / v[:-1])
    for p in (profile, coarse):
        np.testing.assert_allclose(slowness_average(p.depth_km, p.vp_km_s, tops, 6.0), expected)
    constant = np.full(3, 6.0)
    assert vertical_time(np.array([0.0, 1.0, 2.0]), constant, 0.25, 1.75) == pytest.approx(0.25)


def test_layered_model_keeps_vertical_times_and_rounds_to_hypoinverse_precision():
    profile = _gradient_profile(5.0, 0.05, 60.0)
    model = layered_from_profile(profile, n_layers=4, bottom_km=60.0)
    np.testing.assert_array_equal(model.tops_km, [0.0, 15.0, 30.0, 45.0])
    assert np.all(model.vp_km_s == np.round(model.vp_km_s, 2))
    exact = slowness_average(profile.depth_km, profile.vp_km_s, model.tops_km, 60.0)
    np.testing.assert_allclose(model.vp_km_s, exact, atol=0.005)
    assert model.vp_vs == pytest.approx(1.75, abs=2e-3)  # vertical time ratio, ratios rounded
    with pytest.raises(ValueError, match="n_layers must be 1-20"):
        layered_from_profile(profile, n_layers=21)
    with pytest.raises(ValueError, match="bottom_km must lie in"):
        layered_from_profile(profile, n_layers=4, bottom_km=80.0)


def _write_profile(path, profile: Profile) -> None:
    rows = zip(profile.vp_km_s, profile.vs_km_s, profile.depth_km, strict=True)
    path.write_text("".join(f"{p:6.3f} {s:6.3f} {z:7.1f}\n" for p, s, z in rows))


def test_command_prints_model_lines_that_load(tmp_path, capsys):
    """The printed lines make a model YAML: its vertical times are the profile's."""
    source = tmp_path / "vgrad"
    _write_profile(source, _gradient_profile(4.8, 0.05, 60.0))
    assert main([str(source), "--layers", "6", "--bottom-km", "30"]) == 0
    path = tmp_path / "grad.yaml"
    path.write_text("name: grad\n" + capsys.readouterr().out)
    model = load_velocity_model(path)
    assert len(model.layer_tops_km) == 6
    profile = read_profile(source)
    expected = vertical_time(profile.depth_km, profile.vs_km_s, 0.0, 25.0)
    assert travel_time(model, "S", 0.0, 25.0) == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4.8 2.8 0.0\n5.0 2.9\n", "line 2: expected three numbers 'Vp Vs depth'"),
        ("4.8 2.8 0.5\n5.0 2.9 1.0\n", "depths must start at 0 km and increase"),
        ("4.8 2.8 0.0\n5.0 2.9 0.0\n", "depths must start at 0 km and increase"),
        ("4.8 2.8 0.0\n5.0 5.1 1.0\n", "Vs < Vp on every line"),
        ("4.8 2.8 0.0\nnan 2.9 1.0\n", "finite number"),
        ("4.8 2.8 0.0\n", "at least two"),
    ],
)
def test_bad_profile_names_file_and_problem(tmp_path, capsys, text, message):
    path = tmp_path / "vbad"
    path.write_text(text)
    with pytest.raises(EqcatInputError, match=message) as err:
        read_profile(path)
    assert str(err.value).startswith(str(path))
    assert main([str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and message in out.err


def test_missing_profile_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "vjma2001")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'vjma2001'}: cannot read") and err.count("\n") == 1
