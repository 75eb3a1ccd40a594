"""Rayleigh–Bénard recipe: bundled sample, numerics helpers and (with Dedalus) a tiny run."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import xarray as xr

from climgen.data.bundled import available_bundled, bundled_path
from climgen.errors import ClimgenInputError, MissingDependencyError
from climgen.sim.rbc import _is_steady, _next_dt, chebyshev_to_uniform_matrix, simulate_rbc

HAS_DEDALUS = importlib.util.find_spec("dedalus") is not None
needs_dedalus = pytest.mark.skipif(
    not HAS_DEDALUS, reason="Dedalus is not installed (optional extra 'sim')"
)


# --- bundled sample -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> xr.Dataset:
    with xr.open_dataset(bundled_path("rbc"), engine="netcdf4") as ds:
        yield ds.load()


def test_bundled_file_is_small_and_int16_packed():
    path = bundled_path("rbc")
    assert path.stat().st_size <= 5 * 1024**2
    with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as raw:
        assert raw["b"].dtype == np.int16
        assert {"scale_factor", "add_offset"} <= set(raw["b"].attrs)


def test_bundled_file_has_the_documented_attributes(bundled):
    attrs = bundled.attrs
    assert attrs["Conventions"] == "CF-1.8"
    assert attrs["Rayleigh"] == 1e6 and attrs["Prandtl"] == 1.0
    assert attrs["snapshot_dt"] == 0.5 and attrs["n_snapshots"] == bundled.sizes["time"] == 300
    assert attrs["spinup_time"] >= 40.0
    assert 1.0 < attrs["Nusselt"] < 50.0
    assert "range/65000" in attrs["packing"]
    assert "climgen data rbc" in attrs["history"]
    assert dict(bundled["b"].sizes) == {"time": 300, "z": 32, "x": 128}
    assert bundled["z"].attrs["positive"] == "up"
    assert "periodic" in bundled["x"].attrs["long_name"]
    assert bundled["b"].attrs["quantisation_step"] < 1e-4


def test_bundled_grid_is_uniform_cell_centred_and_periodic(bundled):
    nz, nx = bundled.sizes["z"], bundled.sizes["x"]
    np.testing.assert_allclose(bundled["z"], (np.arange(nz) + 0.5) / nz)
    np.testing.assert_allclose(bundled["x"], np.arange(nx) * bundled.attrs["Lx"] / nx)
    np.testing.assert_allclose(np.diff(bundled["time"]), bundled.attrs["snapshot_dt"])
    assert bundled["time"][0] == pytest.approx(
        bundled.attrs["spinup_time"] + bundled.attrs["snapshot_dt"]
    )


def test_bundled_buoyancy_is_bounded_and_heated_from_below(bundled):
    b = bundled["b"]
    tol = 2 * b.attrs["quantisation_step"]
    assert float(b.min()) >= -tol and float(b.max()) <= 1 + tol  # maximum principle
    profile = b.mean(("time", "x")).values
    assert profile[0] > 0.8 and profile[-1] < 0.2
    half = len(profile) // 2
    assert profile[:half].mean() > profile[half:].mean()
    # Boussinesq up-down symmetry: the volume mean of b is 1/2.
    assert float(b.mean()) == pytest.approx(0.5, abs=0.02)


def test_bundled_path_names_the_choices():
    names = available_bundled()
    assert "rbc" in names and all(bundled_path(n).exists() for n in names)
    with pytest.raises(ClimgenInputError, match="rbc"):
        bundled_path("nope")


# --- helpers (no Dedalus needed) ------------------------------------------------------------


def test_chebyshev_interpolation_is_exact_for_polynomials():
    n = 12
    nodes = 0.5 * (1 + np.cos(np.pi * (np.arange(n) + 0.5) / n))  # Gauss-Chebyshev on [0, 1]
    targets = (np.arange(20) + 0.5) / 20
    matrix = chebyshev_to_uniform_matrix(nodes, targets)
    rng = np.random.default_rng(3)
    coeffs = rng.normal(size=n)  # degree n - 1
    poly = np.polynomial.Polynomial(coeffs)
    np.testing.assert_allclose(
        matrix @ poly(nodes), poly(targets), atol=1e-9 * np.abs(coeffs).sum()
    )
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)  # constants reproduced


@pytest.mark.parametrize("dt_cfl", [1e-3, 0.013, 0.07, 0.2, 5.0])
@pytest.mark.parametrize("remaining", [0.5, 0.37, 1e-3])
def test_next_dt_lands_on_the_snapshot_and_respects_cfl(dt_cfl, remaining):
    dt = _next_dt(0.1, remaining, dt_cfl)
    steps = remaining / dt
    assert abs(steps - round(steps)) < 1e-9 and round(steps) >= 1
    assert dt <= dt_cfl


def test_next_dt_keeps_a_valid_step():
    assert _next_dt(0.05, 0.5, 0.055) == 0.05  # within the head-room: no refactorisation


def test_steadiness_test_on_synthetic_series():
    t = np.arange(1, 121) * 0.5
    flat = {
        "Nu_vol": [9.0] * 120,
        "Nu_bot": [9.1] * 120,
        "Nu_top": [9.05] * 120,
        "KE": [0.05] * 120,
    }
    assert _is_steady(t, flat, 15.0)[0]
    rising = {k: list(np.asarray(v) * (1 + 0.01 * t)) for k, v in flat.items()}
    assert not _is_steady(t, rising, 15.0)[0]
    walls_disagree = {**flat, "Nu_top": [12.0] * 120}
    assert not _is_steady(t, walls_disagree, 15.0)[0]
    assert not _is_steady(t[:40], {k: v[:40] for k, v in flat.items()}, 15.0)[0]  # too short


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"nx": 33}, "nx"),
        ({"rayleigh": -1.0}, "rayleigh"),
        ({"variables": ("b", "temperature")}, "temperature"),
        ({"spinup": "soon"}, "spinup"),
        ({"interval": 0.0}, "interval"),
    ],
)
def test_bad_options_are_named(kwargs, needle):
    with pytest.raises(ClimgenInputError, match=needle):
        simulate_rbc(**kwargs)


def test_missing_dedalus_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dedalus", None)
    with pytest.raises(MissingDependencyError, match=r"climgen\[sim\]"):
        simulate_rbc(nx=32, nz=16, n_snapshots=1, spinup=0.0, progress=False)


# --- a tiny Dedalus run ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run() -> xr.Dataset:
    if not HAS_DEDALUS:
        pytest.skip("Dedalus is not installed (optional extra 'sim')")
    return simulate_rbc(
        rayleigh=1e4,
        nx=32,
        nz=16,
        spinup=1.0,
        n_snapshots=3,
        interval=0.5,
        variables=("b", "u", "w", "vorticity"),
        series=True,
        progress=False,
    )


@needs_dedalus
def test_tiny_run_dims_coords_and_attrs(tiny_run):
    for name in ("b", "u", "w", "vorticity"):
        assert tiny_run[name].dims == ("time", "z", "x")
        assert tiny_run[name].dtype == np.float32
        assert tiny_run[name].attrs["units"] == "nondimensional"
    assert dict(tiny_run.sizes) == {"time": 3, "z": 16, "x": 32}
    np.testing.assert_allclose(tiny_run["time"], [1.5, 2.0, 2.5])
    np.testing.assert_allclose(tiny_run["z"], (np.arange(16) + 0.5) / 16)
    for key in ("Rayleigh", "Prandtl", "Nusselt", "spinup_time", "snapshot_dt", "seed"):
        assert key in tiny_run.attrs
    assert tiny_run.attrs["spinup_time"] == 1.0 and tiny_run.attrs["snapshot_dt"] == 0.5


@needs_dedalus
def test_tiny_run_stays_near_the_conduction_state(tiny_run):
    # From b = 1 - z plus 1e-3 noise, at Ra = 1e4 the instability has barely grown by t = 2.5:
    # the spectral interpolation to the uniform grid must give back the linear profile, the
    # walls and the volume must all carry Nu = 1, and b has the symmetric mean 1/2.
    profile = tiny_run["b"].mean(("time", "x")).values
    np.testing.assert_allclose(profile, 1 - tiny_run["z"].values, atol=2e-3)
    assert float(tiny_run["b"].mean()) == pytest.approx(0.5, abs=1e-3)
    for key in ("Nu_vol", "Nu_bot", "Nu_top"):
        np.testing.assert_allclose(tiny_run[key], 1.0, atol=1e-3)
    assert float(np.abs(tiny_run["w"]).max()) < 1e-2


@needs_dedalus
def test_tiny_run_is_reproducible_with_its_seed(tiny_run):
    again = simulate_rbc(
        rayleigh=1e4, nx=32, nz=16, spinup=1.0, n_snapshots=1, interval=0.5, progress=False
    )
    np.testing.assert_array_equal(again["b"].isel(time=0), tiny_run["b"].isel(time=0))


@needs_dedalus
def test_cli_writes_a_packed_file(tmp_path):
    from climgen.cli import main

    out = tmp_path / "rbc.nc"
    argv = ["data", "rbc", "-o", str(out), "--rayleigh", "1e4", "--nx", "32", "--nz", "16"]
    assert main([*argv, "--spinup", "0.5", "--snapshots", "2", "-q"]) == 0
    with xr.open_dataset(out, engine="netcdf4", decode_cf=False) as raw:
        assert raw["b"].dtype == np.int16
        assert "climgen data rbc -o" in raw.attrs["history"]
