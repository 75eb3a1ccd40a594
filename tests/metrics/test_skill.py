"""Area-weighted skill scores on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics import acc, bias, mae, rmse

LAT = np.array([-60.0, 0.0, 60.0])  # cos-lat weights 0.5 : 1 : 0.5
LON = np.arange(4) * 90.0


def _da(values):
    return xr.DataArray(values, dims=("lat", "lon"), coords={"lat": LAT, "lon": LON})


def test_coslat_weighted_scores_by_hand():
    target = np.zeros((3, 4))
    pred = np.array([[2.0] * 4, [0.0] * 4, [-2.0] * 4])  # error ±2 at ±60°, 0 at the equator
    # weights 0.5, 1, 0.5: mean square error = (0.5·4 + 0 + 0.5·4) / 2 = 2
    assert rmse(_da(pred), _da(target)) == pytest.approx(np.sqrt(2.0))
    assert mae(_da(pred), _da(target)) == pytest.approx(1.0)
    assert bias(_da(pred), _da(target)) == pytest.approx(0.0, abs=1e-15)
    assert rmse(pred, target) == pytest.approx(np.sqrt(8 / 3))  # unweighted differs
    w = np.cos(np.deg2rad(LAT))[:, None] * np.ones(4)
    assert rmse(pred, target, weights=w) == pytest.approx(np.sqrt(2.0))


def test_dataarrays_are_aligned_by_canonical_orientation():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4))
    flipped = _da(values).isel(lat=slice(None, None, -1))
    assert rmse(flipped, _da(values)) == pytest.approx(0.0, abs=1e-15)


def test_mask_scores_hidden_points_only():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(2, 3, 4))
    pred = target.copy()
    hidden = np.zeros((3, 4))
    hidden[1, 1:3] = 1
    pred[..., hidden == 1] += 3.0  # errors only where hidden
    pred[..., 0, 0] += 100.0  # a visible point: must not count
    assert rmse(pred, target, mask=hidden) == pytest.approx(3.0)
    assert bias(pred, target, mask=hidden) == pytest.approx(3.0)
    with pytest.raises(ClimgenInputError, match="mask is zero everywhere"):
        rmse(pred, target, mask=np.zeros((3, 4)))


def test_acc_known_cases():
    clim = np.full((3, 4), 10.0)
    lon = np.deg2rad(LON)
    anom = np.broadcast_to(np.sin(lon), (3, 4)) + np.array([[0.0], [1.0], [0.0]])
    target = _da(clim + anom)
    assert acc(_da(clim + 2 * anom), target, clim) == pytest.approx(1.0)
    assert acc(_da(clim - anom), target, clim) == pytest.approx(-1.0)
    ortho = clim + np.broadcast_to(np.cos(lon), (3, 4))
    sin_only = clim + np.broadcast_to(np.sin(lon), (3, 4))
    assert acc(_da(ortho), _da(sin_only), clim) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ClimgenInputError, match="undefined"):
        acc(clim, target, clim)


def test_acc_averages_per_sample():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 3, 4))
    pred = np.stack([a[0], -a[1]])
    assert acc(pred, a, 0.0) == pytest.approx(0.0, abs=1e-12)  # (+1 + −1) / 2


def test_torch_and_shape_errors():
    p = torch.ones(2, 3, 4, requires_grad=True)
    r = rmse(p, torch.zeros(2, 3, 4))
    r.backward()
    assert isinstance(r, torch.Tensor) and r.item() == pytest.approx(1.0)
    with pytest.raises(ClimgenInputError, match=r"\(2, 3, 4\).*\(2, 3, 5\)"):
        mae(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)))
    with pytest.raises(ClimgenInputError, match="pred contains"):
        bias(np.array([np.nan]), np.zeros(1))
