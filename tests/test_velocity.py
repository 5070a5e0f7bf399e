"""Travel times of the 1-D layered model against closed-form cases."""

import numpy as np
import pytest

from pipeline.velocity import (
    available_models,
    load_velocity_model,
    travel_time,
    travel_time_below_surface,
)
from pipeline.waveforms.params import elevation_problem


def test_shipped_models_load():
    names = available_models()
    assert {"generic_crust", "tottori"} <= set(names)
    for name in names:
        model = load_velocity_model(name)
        assert model.vp_km_s.shape == model.layer_tops_km.shape
        assert np.all(model.vs_km_s < model.vp_km_s)


def test_vertical_ray_is_sum_of_layer_times():
    model = load_velocity_model("tottori")
    depth = 10.0
    thickness = np.clip(np.minimum(np.append(model.layer_tops_km[1:], depth), depth)
                        - model.layer_tops_km, 0.0, None)  # fmt: skip
    for phase in ("P", "S"):
        expected = np.sum(thickness / model.velocities(phase))
        assert travel_time(model, phase, 0.0, depth) == pytest.approx(expected, abs=1e-3)


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


#: JMA's travel-time table for JMA2001, ``tjma2001`` (tjma2001.zip at
#: https://www.data.jma.go.jp/eqev/data/bulletin/catalog/appendix/trtime/), at epicentral
#: distance 0: vertical one-way times (s) from these depths (km), read from the copy in
#: github.com/syntagmatic/moonshine docs/japan-earthquakes/shared/data/07-eew-jma.json at
#: 920d0e94106ba695184e8bd252c195bf7dc9a124 (``tt.P`` / ``tt.S``, first column, 1/100 s).
#: JMA computes this table from the velocity table the tottori model is derived from.
TJMA2001_VERTICAL_S = {
    "P": {6.0: 1.10, 12.0: 2.10, 18.0: 3.07, 24.0: 3.99},
    "S": {6.0: 1.86, 12.0: 3.57, 18.0: 5.22, 24.0: 6.81, 30.0: 8.33, 36.0: 9.79, 42.0: 11.20,
          48.0: 12.58},
}  # fmt: skip


def test_tottori_is_jma2001_by_its_stated_rule():
    """20 layers of 3 km over 0-60 km whose velocities keep JMA2001's vertical travel times:
    at layer tops the vertical P and S times are JMA's own tjma2001 times (its 0.01 s
    rounding plus the layers' 0.01 km/s rounding; the previous hand-rounded model was 0.075 s
    fast at 6 km for P)."""
    model = load_velocity_model("tottori")
    np.testing.assert_array_equal(model.layer_tops_km, np.arange(0.0, 60.0, 3.0))
    assert "vjma2001" in model.source
    for phase, times in TJMA2001_VERTICAL_S.items():
        for depth, expected in times.items():
            assert travel_time(model, phase, 0.0, depth) == pytest.approx(expected, abs=0.01)


def test_generic_crust_is_the_hadley_kanamori_model():
    """Tops and Vp as tabulated by the SCSN-model copies cited in generic_crust.yaml."""
    model = load_velocity_model("generic_crust")
    np.testing.assert_array_equal(model.layer_tops_km, [0.0, 5.5, 16.0, 32.0])
    np.testing.assert_array_equal(model.vp_km_s, [5.5, 6.3, 6.7, 7.8])
    np.testing.assert_allclose(model.vp_km_s / model.vs_km_s, 1.73)
    assert "Hadley & Kanamori (1977)" in model.source


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("layers:\n  - {top_km: 0.0, vp: .nan}\n", ["layer 1 of 1", "'vp' = nan", "finite"]),
        ("layers:\n  - {top_km: 0.0, vp: .inf}\n", ["layer 1 of 1", "'vp' = inf", "finite"]),
        (
            "layers:\n  - {top_km: 0.0, vp: 5.0}\n  - {top_km: .nan, vp: 6.0}\n",
            ["layer 2 of 2", "'top_km' = nan"],
        ),
        ("layers:\n  - {top_km: 0.0, vp: true}\n", ["layer 1 of 1", "'vp' = True"]),
        ("layers:\n  - {top_km: 0.0, vp: 5.0, vs: null}\n", ["'vs' = None"]),
        (
            "layers:\n  - {top_km: 0.0, vp: 5.0, Vs: 3.0}\n",
            ["unknown key(s) 'Vs'", "top_km, vp, vs"],
        ),
        ("vpvs: 1.8\nlayers:\n  - {top_km: 0.0, vp: 5.0}\n", ["unknown key(s) 'vpvs'", "vp_vs"]),
        ("layers:\n  - [0.0, 5.0]\n", ["layer 1 of 1", "expected a mapping"]),
        ("layers:\n  - {vp: 5.0}\n", ["layer 1 of 1", "'top_km' is missing"]),
        ("layers:\n  - {top_km: 0.0, vp: -5.0}\n", ["'vp' = -5.0", "> 0 km/s"]),
        ("layers:\n  - {top_km: 0.0, vp: 5.0, vs: 6.0}\n", ["'vs' = 6.0", "vs < vp"]),
        (
            "layers:\n  - {top_km: 0.0, vp: 5.0}\n  - {top_km: 5.0, vp: 6.0}\n"
            "  - {top_km: 5.0, vp: 7.0}\n",
            ["layer 3", "'top_km' = 5.0", "layer above (5.0 km)"],
        ),
        ("layers:\n  - {top_km: -2.0, vp: 5.0}\n", ["layer 1", "'top_km' = -2.0", "starts at 0"]),
        ("name: [a]\nlayers:\n  - {top_km: 0.0, vp: 5.0}\n", ["'name'", "expected text"]),
        ("vp_vs: abc\nlayers:\n  - {top_km: 0.0, vp: 5.0}\n", ["'vp_vs' = 'abc'"]),
    ],
)
def test_each_bad_value_is_named_with_its_layer_and_field(tmp_path, text, needles):
    """NaN and infinite values, booleans and misspelt keys used to load without a word (a
    NaN velocity made NaN travel times; ``Vs:`` was ignored); every refusal names the file,
    the layer and the field."""
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        load_velocity_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_folder_is_not_a_model(tmp_path):
    folder = tmp_path / "model.yaml"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder; expected a velocity model YAML file"):
        load_velocity_model(folder)


@pytest.mark.parametrize(("source_km", "receiver_km"), [(8.0, 3.0), (3.0, 8.0), (5.0, 5.0)])
def test_a_receiver_below_the_surface_of_a_half_space_sees_a_straight_ray(
    tmp_path, source_km, receiver_km
):
    path = tmp_path / "half.yaml"
    path.write_text("name: half\nvp_vs: 1.75\nlayers:\n  - {top_km: 0.0, vp: 6.0}\n")
    model = load_velocity_model(path)
    dist = np.array([0.0, 3.0, 10.0, 40.0])
    expected = np.hypot(dist, source_km - receiver_km) / 6.0
    got = travel_time_below_surface(model, "P", dist, source_km, receiver_km)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_a_receiver_below_the_surface_of_a_layered_model():
    """At the surface it is the table's time; below, reciprocal, and a vertical ray sums
    the layer times between the two depths (an ocean-bottom station 9 km down and a source
    2 km down: 1.22 s, where the surface time plus the elevation term gave -1.35 s)."""
    model = load_velocity_model("tottori")
    dist = np.array([0.0, 5.0, 20.0, 60.0, 150.0])
    for depth in (0.0, 2.0, 7.5, 20.0):
        np.testing.assert_allclose(
            travel_time_below_surface(model, "P", dist, depth, 0.0),
            travel_time(model, "P", dist, depth),
            atol=2e-3,
        )
    np.testing.assert_allclose(
        travel_time_below_surface(model, "S", dist, 2.0, 9.0),
        travel_time_below_surface(model, "S", dist, 9.0, 2.0),
    )
    vertical = 1.0 / model.vp_km_s[0] + 3.0 / model.vp_km_s[1] + 3.0 / model.vp_km_s[2]
    got = travel_time_below_surface(model, "P", np.array([0.0]), 2.0, 9.0)[0]
    assert got == pytest.approx(vertical, abs=1e-3) and got == pytest.approx(1.221, abs=1e-3)
    surface_with_term = travel_time(model, "P", 0.0, 2.0) - 9.0 / model.vp_km_s[0]
    assert surface_with_term < -1.3


@pytest.mark.parametrize("elevation_m", [-10994.0, -9000.0, -3000.0, 0.0, 4500.0, 8848.0])
def test_station_elevations_of_real_sites_pass(elevation_m):
    assert elevation_problem(elevation_m) is None


@pytest.mark.parametrize("elevation_m", [-99999.0, -15000.0, 9000.0, 29029.0, float("nan")])
def test_station_elevations_no_site_has_are_named(elevation_m):
    assert elevation_problem(elevation_m).startswith(
        f"elevation_m = {elevation_m:g}: expected -12262 to 8848.86 m above sea level"
    )
