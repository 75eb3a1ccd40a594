"""Normalizer: streaming statistics equal numpy's, invertibility, persistence, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError


def _weighted_quantile(values, weights, q):
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) / w.sum()
    return np.interp(q, cdf, v)


@pytest.fixture
def chunked(latlon_da, rng) -> xr.Dataset:
    ds = latlon_da.to_dataset()
    pr = rng.gamma(2.0, 3.0, latlon_da.shape)
    pr[0, 2, 3] = np.nan  # gaps are skipped, as in observational data
    ds["pr"] = (latlon_da.dims, pr)
    return ds.chunk({"time": 2, "lat": 4})


def test_standard_fit_equals_numpy_area_weighted(chunked):
    norm = Normalizer.fit(chunked)
    for v in ("tas", "pr"):
        x = chunked[v].values
        w = np.broadcast_to(np.cos(np.deg2rad(chunked.lat.values))[:, None], x.shape)
        ok = np.isfinite(x)
        mean = np.sum(w[ok] * x[ok]) / np.sum(w[ok])
        std = np.sqrt(np.sum(w[ok] * (x[ok] - mean) ** 2) / np.sum(w[ok]))
        assert norm.center[v] == pytest.approx(mean, rel=1e-12)
        assert norm.scale[v] == pytest.approx(std, rel=1e-10)


def test_standard_fit_precise_with_large_offset(planar_da):
    # A field with |mean| >> std: the shifted one-pass sums must not cancel.
    da = (planar_da * 1e-3 + 1e5).chunk({"time": 1})
    norm = Normalizer.fit(da)
    assert norm.center["b"] == pytest.approx(da.values.mean(), rel=1e-14)
    assert norm.scale["b"] == pytest.approx(da.values.std(), rel=1e-7)


def test_robust_fit_equals_weighted_quantiles(chunked):
    norm = Normalizer.fit(chunked, method="robust")
    x = chunked["pr"].values
    w = np.broadcast_to(np.cos(np.deg2rad(chunked.lat.values))[:, None], x.shape)
    ok = np.isfinite(x)
    q25, q50, q75 = (_weighted_quantile(x[ok], w[ok], q) for q in (0.25, 0.5, 0.75))
    spacing = np.diff(np.sort(x[ok])).max()  # quantile conventions differ within one gap
    assert abs(norm.center["pr"] - q50) < spacing
    assert abs(norm.scale["pr"] * 1.349 - (q75 - q25)) < 2 * spacing


def test_robust_scale_of_gaussian_is_sigma(rng):
    da = xr.DataArray(rng.normal(3.0, 2.0, (40, 50, 50)), dims=("time", "y", "x"), name="g")
    norm = Normalizer.fit(da.chunk({"time": 7}), method="robust")
    assert norm.center["g"] == pytest.approx(3.0, abs=0.02)
    assert norm.scale["g"] == pytest.approx(2.0, rel=0.02)


def test_xarray_transform_inverse_identity_keeps_coords_attrs(chunked):
    norm = Normalizer.fit(chunked)
    z = norm.transform(chunked)
    assert z["tas"].attrs == chunked["tas"].attrs
    w = np.cos(np.deg2rad(z.lat))
    assert float(z["tas"].weighted(w).mean()) == pytest.approx(0.0, abs=1e-12)
    back = norm.inverse_transform(z)
    xr.testing.assert_allclose(back, chunked)
    xr.testing.assert_identical(back.coords.to_dataset(), chunked.coords.to_dataset())
    da_back = norm.inverse_transform(norm.transform(chunked["tas"]))
    xr.testing.assert_allclose(da_back, chunked["tas"])


@pytest.mark.parametrize("shape", [(2, 8, 16), (3, 2, 8, 16)])
def test_tensor_transform_matches_xarray_and_inverts(chunked, shape):
    norm = Normalizer.fit(chunked, variables=["tas", "pr"])
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    z = norm.transform(x)
    expected_c1 = (x[..., 1, :, :] - norm.center["pr"]) / norm.scale["pr"]
    torch.testing.assert_close(z[..., 1, :, :], expected_c1)
    torch.testing.assert_close(norm.inverse_transform(z), x)
    z.sum().backward()
    assert torch.isfinite(x.grad).all()
    np.testing.assert_allclose(
        norm.inverse_transform(norm.transform(x.detach().numpy())), x.detach()
    )


def test_json_and_state_dict_round_trip(tmp_path, chunked):
    for method in ("standard", "robust"):
        norm = Normalizer.fit(chunked, ["pr", "tas"], method=method)
        norm.to_json(tmp_path / "norm.json")
        loaded = Normalizer.from_json(tmp_path / "norm.json")
        assert loaded == norm
        assert Normalizer.from_state_dict(norm.state_dict()) == norm
        assert loaded.variables == ["pr", "tas"]


def test_constant_variable_refused(latlon_da):
    ds = latlon_da.to_dataset()
    ds["flat"] = xr.full_like(latlon_da, 1.5)
    for method in ("standard", "robust"):
        with pytest.raises(ClimgenInputError, match="'flat'.*(std = 0|constant)"):
            Normalizer.fit(ds, method=method)


def test_nan_and_inf_statistics_refused(latlon_da):
    ds = latlon_da.to_dataset()
    ds["gone"] = xr.full_like(latlon_da, np.nan)
    ds["hot"] = latlon_da.where(latlon_da.time != latlon_da.time[1], np.inf)
    for v in ("gone", "hot"):
        for method in ("standard", "robust"):
            with pytest.raises(ClimgenInputError, match=f"'{v}'.*not finite"):
                Normalizer.fit(ds, [v], method=method)
    with pytest.raises(ClimgenInputError, match="'x'.*scale 0"):
        Normalizer(["x"], {"x": 0.0}, {"x": 0.0})
    with pytest.raises(ClimgenInputError, match="center of variable 'x' is nan"):
        Normalizer(["x"], {"x": float("nan")}, {"x": 1.0})


def test_bad_requests_name_the_culprit(chunked):
    with pytest.raises(ClimgenInputError, match="'zscore'"):
        Normalizer.fit(chunked, method="zscore")
    with pytest.raises(ClimgenInputError, match=r"\['psl'\].*available"):
        Normalizer.fit(chunked, ["psl"])
    norm = Normalizer.fit(chunked, ["tas"])
    with pytest.raises(ClimgenInputError, match="3 channels.*expected 1"):
        norm.transform(torch.zeros(3, 8, 16))
    with pytest.raises(ClimgenInputError, match="'pr'"):
        norm.transform(chunked["pr"])
