"""Masks: 1 = observed, 0 = missing; derivation from NaNs, application, loading, grid checks."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.data.masks import apply_mask, check_mask, load_mask, mask_from_nans
from climgen.errors import ClimgenInputError


@pytest.fixture
def observed(latlon_da) -> xr.DataArray:
    return latlon_da.where(latlon_da.lon < 180)  # western half missing


def test_mask_from_nans_is_int8_one_where_observed(observed):
    mask = mask_from_nans(observed)
    assert mask.dtype == np.int8 and mask.dims == observed.dims
    np.testing.assert_array_equal(mask.values, np.isfinite(observed.values).astype(np.int8))
    assert float(mask.mean()) == pytest.approx(0.5)
    lazy = mask_from_nans(observed.chunk({"time": 1}))
    assert lazy.chunks is not None  # stays lazy on dask input


def test_apply_mask_reproduces_gaps(latlon_da, observed):
    hidden = apply_mask(latlon_da, mask_from_nans(observed))
    xr.testing.assert_identical(hidden, observed)
    static = mask_from_nans(observed.isel(time=[0]))  # one time step broadcasts
    np.testing.assert_array_equal(np.isnan(apply_mask(latlon_da, static)), np.isnan(observed))


def test_load_mask_accepts_01_bool_and_nan(tmp_path, observed):
    m = mask_from_nans(observed).astype(float).where(observed.lat > -70)  # NaN fill → 0
    m.to_dataset(name="tas").to_netcdf(tmp_path / "m.nc")
    loaded = load_mask(tmp_path / "m.nc")
    assert loaded.dtype == np.int8
    expected = (np.isfinite(observed) & (observed.lat > -70)).astype(np.int8)
    np.testing.assert_array_equal(loaded.values, expected.values)
    mask_from_nans(observed).astype(bool).to_dataset(name="ok").to_netcdf(tmp_path / "b.nc")
    assert load_mask(tmp_path / "b.nc").sum() == mask_from_nans(observed).sum()


def test_load_mask_rejects_other_values(tmp_path, latlon_da):
    latlon_da.to_dataset(name="tas").to_netcdf(tmp_path / "field.nc")
    with pytest.raises(ClimgenInputError, match=r"'tas' in '.*field\.nc' has 640 value.*not 0/1"):
        load_mask(tmp_path / "field.nc")
    two = xr.Dataset({"a": latlon_da * 0, "b": latlon_da * 0})
    two.to_netcdf(tmp_path / "two.nc")
    with pytest.raises(ClimgenInputError, match=r"2 variables \['a', 'b'\]"):
        load_mask(tmp_path / "two.nc")
    assert load_mask(tmp_path / "two.nc", "b").sum() == 0


def test_check_mask_names_dims_and_sizes(latlon_da):
    mask = mask_from_nans(latlon_da)
    with pytest.raises(ClimgenInputError, match="lat size 4 but the field 'tas' has lat size 8"):
        check_mask(mask.isel(lat=slice(0, 4)), latlon_da)
    with pytest.raises(ClimgenInputError, match="spatial dim 'lon' \\(size 16\\)"):
        check_mask(mask.isel(lon=0, drop=True), latlon_da)
    with pytest.raises(ClimgenInputError, match="different lat coordinate values"):
        check_mask(mask.assign_coords(lat=mask.lat + 1.0), latlon_da)
    with pytest.raises(ClimgenInputError, match="dim 'time' of size 3"):
        check_mask(mask.isel(time=slice(0, 3)), latlon_da)
    assert check_mask(mask.isel(time=[0]), latlon_da).dims == ("lat", "lon")
