"""Held–Suarez recipe: pressure interpolation, option checks and (with dinosaur) a short run."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from climgen.errors import ClimgenInputError, MissingDependencyError
from climgen.sim.heldsuarez import interpolate_to_pressure, simulate_heldsuarez

HAS_DINOSAUR = all(importlib.util.find_spec(m) is not None for m in ("dinosaur", "jax"))


def test_interpolation_is_exact_for_fields_linear_in_pressure():
    rng = np.random.default_rng(0)
    sigma = (np.arange(10) + 0.5) / 10
    ps = rng.uniform(9e4, 1.05e5, size=(4, 5))
    pressure = sigma[:, None, None] * ps
    slope, intercept = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    field = intercept + slope * pressure
    got = interpolate_to_pressure(field, pressure, 5e4)
    np.testing.assert_allclose(got, intercept + slope * 5e4, rtol=1e-12, atol=1e-12)


def test_interpolation_outside_the_column_takes_the_nearest_level():
    pressure = np.array([100.0, 200.0, 300.0])[:, None]
    field = np.array([1.0, 2.0, 3.0])[:, None]
    assert interpolate_to_pressure(field, pressure, 50.0)[0] == 1.0
    assert interpolate_to_pressure(field, pressure, 400.0)[0] == 3.0
    assert interpolate_to_pressure(field, pressure, 250.0)[0] == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"truncation": "T40"}, "truncation"),
        ({"levels": 1}, "levels"),
        ({"spinup_days": -1}, "spinup_days"),
        ({"dt_minutes": 7.0}, "dt_minutes"),
        ({"variables": ("omega850",)}, "omega850"),
        ({"time_stepping": "euler"}, "euler"),
        ({"delta_t_y": -5.0}, "delta_t_y"),
        ({"delta_t_y": float("nan")}, "delta_t_y"),
    ],
)
def test_bad_options_are_named(kwargs, needle):
    with pytest.raises(ClimgenInputError, match=needle):
        simulate_heldsuarez(**kwargs)


def test_missing_dinosaur_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dinosaur", None)
    with pytest.raises(MissingDependencyError, match=r"climgen\[gcm\]"):
        simulate_heldsuarez(truncation="T21", spinup_days=0, n_days=1, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DINOSAUR, reason="dinosaur/JAX not installed (optional extra 'gcm')")
def test_short_t21_run():
    ds = simulate_heldsuarez(truncation="T21", levels=8, spinup_days=2, n_days=2, progress=False)
    assert dict(ds.sizes) == {"time": 2, "lat": 32, "lon": 64}
    np.testing.assert_allclose(ds["time"], [3.0, 4.0])
    assert np.all(np.diff(ds["lat"]) > 0) and ds["lat"][0] < -80
    np.testing.assert_allclose(ds["lon"], np.arange(64) * 360 / 64)
    assert ds["omega500"].attrs["units"] == "Pa s-1" and ds["tas"].attrs["units"] == "K"
    for key in ("spinup_days", "resolution", "time_stepping", "sigma_centres", "seed"):
        assert key in ds.attrs
    assert ds.attrs["spinup_days"] == 2
    # Mass above an isobaric surface is p·A/g, constant in time: the area mean of omega on
    # 500 hPa vanishes (up to quadrature and interpolation error).
    weights = np.cos(np.radians(ds["lat"]))
    mean = ds["omega500"].weighted(weights).mean(("lat", "lon"))
    spread = ds["omega500"].std(("lat", "lon"))
    assert np.all(np.abs(mean) < 1e-2 * spread) and np.all(spread > 0)
    # Started isothermal at 288 K and relaxed towards Teq ∈ [200, 315] K for a few days.
    assert 250 < float(ds["tas"].min()) and float(ds["tas"].max()) < 320
    assert np.isfinite(ds["omega500"]).all()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DINOSAUR, reason="dinosaur/JAX not installed (optional extra 'gcm')")
def test_weaker_equator_to_pole_forcing_gives_a_weaker_surface_gradient():
    """ΔT_y sets the radiative-equilibrium gradient the surface relaxes to (4-day time scale
    in the tropics): after 12 days the equator–pole tas contrast grows with ΔT_y."""

    def contrast(delta_t_y):
        ds = simulate_heldsuarez(
            truncation="T21",
            levels=8,
            spinup_days=11,
            n_days=1,
            delta_t_y=delta_t_y,
            progress=False,
            variables=("tas",),
        )
        zonal = ds["tas"].isel(time=0).mean("lon")
        tropics = zonal.where(abs(ds["lat"]) < 20).mean()
        poles = zonal.where(abs(ds["lat"]) > 60).mean()
        assert ds.attrs["delta_t_y_K"] == delta_t_y
        return float(tropics - poles)

    weak, standard = contrast(20.0), contrast(60.0)
    assert 0 < weak < standard - 5
