"""coarsen / coarsen_tensor: exact conservation, hand-computed blocks, shared definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.coarsen import coarsen, coarsen_tensor
from climgen.data.grids import area_weights
from climgen.errors import ClimgenInputError


def test_area_weighted_mean_conserved_exactly(latlon_da):
    w = area_weights(latlon_da)
    coarse = coarsen(latlon_da, (2, 4))
    block_w = w.coarsen(lat=2, lon=4).sum()  # coarse cell weight = summed fine weights
    fine_mean = latlon_da.weighted(w).mean(("lat", "lon"))
    coarse_mean = (coarse * block_w.values).sum(("lat", "lon")) / float(block_w.sum())
    np.testing.assert_allclose(coarse_mean.values, fine_mean.values, rtol=1e-14)
    assert coarse.sizes == {"time": 5, "lat": 4, "lon": 4}
    assert coarse.attrs == latlon_da.attrs and coarse.name == "tas"


def test_equals_hand_computed_block_means():
    lat = np.array([0.0, 60.0])  # cos: 1, 1/2
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    x = np.array([[1.0, 3.0, 5.0, 7.0], [4.0, 10.0, 6.0, 2.0]])
    da = xr.DataArray(x, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    out = coarsen(da, 2)
    # block 1: (1*1 + 3*1 + 4*0.5 + 10*0.5) / 3 = 11/3; block 2: (5 + 7 + 3 + 1) / 3 = 16/3
    np.testing.assert_allclose(out.values, [[11 / 3, 16 / 3]], rtol=1e-14)
    np.testing.assert_allclose(out.lat.values, [(0 * 1 + 60 * 0.5) / 1.5])  # weighted centre
    np.testing.assert_allclose(out.lon.values, [45.0, 225.0])


def test_nan_cells_left_out_of_their_block(planar_da):
    da = planar_da.isel(time=0)
    holes = da.where(~((da.z < 0.1) & (da.x < 0.2)))  # one NaN in the first block
    out = coarsen(holes, 2)
    first = holes.isel(z=slice(0, 2), x=slice(0, 2)).values
    assert out.values[0, 0] == pytest.approx(np.nanmean(first))
    np.testing.assert_allclose(out.values[1:], coarsen(da, 2).values[1:])
    assert np.isnan(coarsen(da.where(da.z > 0.3), 2).values[0]).all()  # empty block → NaN


def test_custom_weights_and_lazy(latlon_da):
    ones = np.ones((8, 16))
    out = coarsen(latlon_da.chunk({"time": 2}), 2, weights=ones)
    assert out.chunks is not None
    plain = latlon_da.coarsen(lat=2, lon=2).mean()
    np.testing.assert_allclose(out.values, plain.values, rtol=1e-14)


def test_not_divisible_names_dim_size_factor(latlon_da):
    with pytest.raises(ClimgenInputError, match="'lat' of size 8 by factor 3"):
        coarsen(latlon_da, (3, 2))
    with pytest.raises(ClimgenInputError, match="'W' of size 16 by factor 5"):
        coarsen_tensor(torch.zeros(8, 16), (2, 5))
    with pytest.raises(ClimgenInputError, match="factor must be >= 1"):
        coarsen(latlon_da, 0)


def test_tensor_version_same_definition_and_differentiable(latlon_da):
    w = area_weights(latlon_da)
    x = torch.as_tensor(latlon_da.values, dtype=torch.float64)
    expected = coarsen(latlon_da, (2, 4)).values
    torch.testing.assert_close(
        coarsen_tensor(x, (2, 4), torch.as_tensor(w.values)).numpy(), expected
    )
    lat_w = np.cos(np.deg2rad(latlon_da.lat.values))  # 1-D latitude weights broadcast
    torch.testing.assert_close(coarsen_tensor(x, (2, 4), lat_w).numpy(), expected)
    torch.testing.assert_close(coarsen_tensor(x, 2), x.reshape(5, 4, 2, 8, 2).mean((2, 4)))
    xg = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(4, 6, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda t: coarsen_tensor(t, (2, 3), weights), xg)
