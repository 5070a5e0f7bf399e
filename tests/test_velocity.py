"""Travel times of the 1-D layered model against closed-form cases."""

import numpy as np
import pytest

from pipeline.velocity import available_models, load_velocity_model, travel_time


def test_shipped_models_load():
    names = available_models()
    assert {"generic_crust", "tottori"} <= set(names)
    for name in names:
        model = load_velocity_model(name)
        assert model.vp_km_s.shape == model.layer_tops_km.shape
        assert np.all(model.vs_km_s < model.vp_km_s)


def test_vertical_ray_is_sum_of_layer_times():
    model = load_velocity_model("tottori")
    expected = 2.0 / 5.5 + 8.0 / 6.05
    assert travel_time(model, "P", 0.0, 10.0) == pytest.approx(expected, abs=1e-3)
    assert travel_time(model, "S", 0.0, 10.0) == pytest.approx(expected * model.vp_vs, abs=1e-3)


def test_half_space_direct_wave_is_straight_line(tmp_path):
    path = tmp_path / "half.yaml"
    path.write_text("name: half\nvp_vs: 1.75\nlayers:\n  - {top_km: 0.0, vp: 6.0}\n")
    model = load_velocity_model(path)
    dist = np.array([0.0, 3.0, 10.0, 40.0, 120.0])
    expected = np.hypot(dist, 8.0) / 6.0
    np.testing.assert_allclose(travel_time(model, "P", dist, 8.0), expected, atol=2e-3)


def test_head_wave_overtakes_direct_wave(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\nvp_vs: 1.73\nlayers:\n  - {top_km: 0.0, vp: 6.0}\n  - {top_km: 30.0, vp: 8.0}\n"
    )
    model = load_velocity_model(path)
    depth, dist = 10.0, 250.0
    eta = np.sqrt(1 / 6.0**2 - 1 / 8.0**2)
    head = dist / 8.0 + (30.0 + 20.0) * eta
    assert head < np.hypot(dist, depth) / 6.0
    assert travel_time(model, "P", dist, depth) == pytest.approx(head, abs=2e-3)


def test_bad_model_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("layers:\n  - {top_km: 1.0, vp: 6.0}\n")
    with pytest.raises(ValueError, match="top_km"):
        load_velocity_model(path)
    with pytest.raises(FileNotFoundError, match="shipped models"):
        load_velocity_model("no_such_model")


def test_no_head_wave_inside_the_critical_distance(tmp_path):
    """Below the critical distance only the direct wave exists (regression: x_crit was
    computed with a spurious 1/v² factor, so head waves appeared far too close)."""
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\nvp_vs: 1.73\nlayers:\n  - {top_km: 0.0, vp: 5.5}\n  - {top_km: 16.0, vp: 6.5}\n"
    )
    model = load_velocity_model(path)
    depth = 15.0
    tan_c = (5.5 / 6.5) / np.sqrt(1.0 - (5.5 / 6.5) ** 2)
    x_crit = (2 * 16.0 - depth) * tan_c  # ~26.9 km
    near = np.array([0.0, 3.0, 10.0, 20.0, 0.95 * x_crit])
    np.testing.assert_allclose(
        travel_time(model, "P", near, depth), np.hypot(near, depth) / 5.5, atol=2e-3
    )
    eta = np.sqrt(1 / 5.5**2 - 1 / 6.5**2)
    far = 120.0  # beyond the crossover the head wave is first
    head = far / 6.5 + (2 * 16.0 - depth) * eta
    assert head < np.hypot(far, depth) / 5.5
    assert travel_time(model, "P", far, depth) == pytest.approx(head, abs=2e-3)


def test_generic_crust_is_the_hadley_kanamori_model():
    """Tops and Vp as tabulated by the SCSN-model copies cited in generic_crust.yaml."""
    model = load_velocity_model("generic_crust")
    np.testing.assert_array_equal(model.layer_tops_km, [0.0, 5.5, 16.0, 32.0])
    np.testing.assert_array_equal(model.vp_km_s, [5.5, 6.3, 6.7, 7.8])
    np.testing.assert_allclose(model.vp_km_s / model.vs_km_s, 1.73)
    assert "Hadley & Kanamori (1977)" in model.source
