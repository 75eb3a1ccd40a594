"""Shared fixtures: tiny lat/lon and planar fields, and the path of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test (tiny models: threads only add contention);
    modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def seeded_torch():
    """Seed torch's global generator before the test, so the starting weights of the models it
    builds (and any unseeded ``torch.randn``) do not depend on which tests ran before it;
    modules opt in with ``pytestmark = pytest.mark.usefixtures("seeded_torch")``."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def latlon_da(rng) -> xr.DataArray:
    """(time 5, lat 8 south→north, lon 16 over [0, 360)) float64 with CF attrs."""
    lat = np.linspace(-78.75, 78.75, 8)
    lon = np.arange(16) * 22.5 + 11.25
    time = np.arange("2000-01-01", "2000-01-06", dtype="datetime64[D]").astype("datetime64[ns]")
    values = 280.0 + 10.0 * rng.standard_normal((5, 8, 16))
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name="tas",
        attrs={"units": "K", "long_name": "near-surface air temperature"},
    )


@pytest.fixture
def planar_da(rng) -> xr.DataArray:
    """(time 4, z 8 between walls, x 12 periodic) float64, like the Rayleigh–Bénard files."""
    z = (np.arange(8) + 0.5) / 8
    x = np.arange(12) * 4.0 / 12
    values = rng.standard_normal((4, 8, 12))
    return xr.DataArray(
        values,
        dims=("time", "z", "x"),
        coords={
            "time": np.arange(4) * 0.5,
            "z": ("z", z, {"long_name": "vertical coordinate, walls at 0 and 1"}),
            "x": ("x", x, {"long_name": "horizontal coordinate, periodic"}),
        },
        name="b",
        attrs={"long_name": "buoyancy"},
    )


@pytest.fixture
def shared_data() -> Path:
    """Path of ../shared/data (real data for development); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA.resolve()} is absent (developer-only data)")
    return SHARED_DATA.resolve()
