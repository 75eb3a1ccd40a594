"""The data layer on real files: the HadCRUT4 coverage bundled with climgen, and the simulation
files of ../shared/data (those tests are marked ``shared_data`` and skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.bundled import bundled_path
from climgen.data.dataset import FieldDataset, to_xarray
from climgen.data.grids import area_weights, detect_grid
from climgen.data.io import open_fields
from climgen.data.masks import check_mask, load_mask, mask_from_nans
from climgen.data.normalize import Normalizer

HADCRUT = "hadcrut4_tas_1877-09_1893-08"


def _file(shared_data, name):
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{name} is not in {shared_data}")
    return path


def test_hadcrut_coverage_from_nans():
    ds = open_fields(bundled_path(HADCRUT), "tas")
    mask = mask_from_nans(ds["tas"]).load()
    coverage = mask.mean(("lat", "lon")).values
    np.testing.assert_allclose(coverage, [0.23, 0.31], atol=0.02)
    assert mask.dtype == np.int8 and set(np.unique(mask.values)) == {0, 1}
    grid = detect_grid(ds["tas"])
    assert (grid.kind, grid.y_dim, grid.x_dim) == ("latlon", "lat", "lon")
    assert grid.periodic_x and not grid.periodic_y and grid.dy == grid.dx / 2 == 2.5
    w = area_weights(ds["tas"])
    assert float(w.mean()) == pytest.approx(1.0)
    cos_lat = np.cos(np.deg2rad(ds.lat.values.astype(np.float64)))
    np.testing.assert_allclose(w.values[:, 0] / w.values[36, 0], cos_lat / cos_lat[36], rtol=1e-12)
    # Observations are densest in the north: area weighting raises the coverage.
    weighted = mask.weighted(np.cos(np.deg2rad(ds.lat))).mean(("lat", "lon")).values
    assert (weighted > coverage).all()


def test_hadcrut_mask_file_matches_nans_and_round_trips():
    ds = open_fields(bundled_path(HADCRUT), "tas")
    mask = load_mask(bundled_path("hadcrut4_mask_1877-09"))
    static = check_mask(mask, ds["tas"])
    np.testing.assert_array_equal(static.values, mask_from_nans(ds["tas"].isel(time=0)).values)
    fd = FieldDataset(ds, return_mask=True)
    x, m = fd[0]
    assert x.shape == m.shape == (1, 72, 72)
    back = to_xarray(m[0], ds["tas"].isel(time=0, drop=True))
    np.testing.assert_array_equal(back.values, static.values)
    np.testing.assert_array_equal(back.lat.values, ds.lat.values)
    assert back.lat.dtype == ds.lat.dtype == np.float32


@pytest.mark.shared_data
def test_held_suarez_is_latlon_and_streams(shared_data):
    ds = open_fields(_file(shared_data, "heldsuarez_train.nc"))
    grid = detect_grid(ds["omega500"])
    assert grid.kind == "latlon" and grid.periodic_x and not grid.periodic_y
    assert ds.sizes["lat"] == 64 and ds.sizes["lon"] == 128
    norm = Normalizer.fit(ds, ["omega500", "tas"])
    assert abs(norm.center["omega500"]) < 0.1 * norm.scale["omega500"]  # mass conservation
    assert 200 < norm.center["tas"] < 320
    fd = FieldDataset(ds, ["omega500", "tas"], normalizer=norm)
    batch = next(iter(torch.utils.data.DataLoader(fd, batch_size=4)))
    assert batch.shape == (4, 2, 64, 128) and torch.isfinite(batch).all()
    back = norm.inverse_transform(to_xarray(batch.double(), ds.isel(time=slice(0, 4))))
    xr.testing.assert_allclose(back, ds.isel(time=slice(0, 4)).load(), rtol=1e-5, atol=1e-6)


@pytest.mark.shared_data
def test_rbc_is_planar_with_periodic_x(shared_data):
    ds = open_fields(_file(shared_data, "rbc_ra2e6_train.nc"), "b")
    assert "periodic" in ds.x.attrs["long_name"]
    grid = detect_grid(ds["b"])
    assert (grid.kind, grid.y_dim, grid.x_dim) == ("planar", "z", "x")
    assert grid.periodic_x and not grid.periodic_y
    fd = FieldDataset(ds, patch_size=(32, 128), seed=0)
    patch = fd[10]
    assert patch.shape == (1, 32, 128)
    assert 0.0 <= float(patch.min()) and float(patch.max()) <= 1.05  # buoyancy between walls
