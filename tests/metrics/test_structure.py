"""Structure functions, flatness, covariance fidelity and EOF spectra on analytic fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import climgen.metrics.structure as structure
from climgen.errors import ClimgenInputError
from climgen.metrics import (
    covariance_error,
    covariance_matrix,
    eof_explained_variance,
    flatness,
    structure_functions,
)


def _smooth_fields(rng, n, ny=12, nx=16, length=3.0):
    """Random fields with a Gaussian spatial correlation (correlation length in grid steps)."""
    white = rng.normal(size=(n, ny, nx))
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    filt = np.exp(-((2 * np.pi * length) ** 2) * (kx**2 + ky**2) / 2)
    return np.fft.ifft2(np.fft.fft2(white) * filt).real


def test_sinusoid_second_order_structure_function_is_analytic():
    n_x, period = 64, 64
    x = np.arange(n_x)
    field = np.broadcast_to(np.sin(2 * np.pi * x / period), (3, 5, n_x))
    lags, s = structure_functions(field, orders=(2,))
    assert lags.tolist() == list(range(1, 33))
    np.testing.assert_allclose(s[0], 1 - np.cos(2 * np.pi * lags / period), atol=1e-12)


def test_linear_ramp_non_periodic_gives_power_law():
    slope = 0.3
    field = np.broadcast_to(slope * np.arange(40.0), (2, 7, 40))
    lags, s = structure_functions(field, periodic=False, max_lag=39)
    orders = np.arange(1, 7)[:, None]
    np.testing.assert_allclose(s, (slope * lags[None, :]) ** orders, rtol=1e-12)
    # along the other (constant) axis the increments vanish
    _, s_y = structure_functions(field, axis=-2, periodic=False)
    assert np.all(s_y == 0)


def test_flatness_of_gaussian_field_is_three():
    rng = np.random.default_rng(0)
    field = _smooth_fields(rng, 200, 32, 32, length=1.5)
    lags, f = flatness(field, max_lag=8)
    np.testing.assert_allclose(f, 3.0, atol=0.1)
    _, f_y = flatness(field, axis=-2, periodic=True, max_lag=4)
    np.testing.assert_allclose(f_y, 3.0, atol=0.1)


def test_flatness_at_chosen_lags_equals_those_of_the_full_curve():
    rng = np.random.default_rng(1)
    field = np.sign(_smooth_fields(rng, 20, 16, 32, length=2.0)) + 0.1 * rng.normal(
        size=(20, 16, 32)
    )  # sharp fronts: intermittent increments, flatness ≫ 3 at small lags
    _, full = flatness(field, max_lag=16)
    lags, few = flatness(field, lags=(1, 2, 4, 8, 16))
    assert lags.tolist() == [1, 2, 4, 8, 16]
    np.testing.assert_allclose(few, full[[0, 1, 3, 7, 15]], rtol=1e-12)
    assert few[0] > 5
    t = torch.from_numpy(field).requires_grad_()
    _, f_t = flatness(t, lags=(1, 4))
    np.testing.assert_allclose(f_t.detach().numpy(), full[[0, 3]], rtol=1e-12)
    with pytest.raises(ClimgenInputError, match="lags"):
        flatness(field, lags=(0, 2))
    with pytest.raises(ClimgenInputError, match="lags"):
        flatness(field, lags=(40,))


def test_structure_functions_torch_and_errors():
    t = torch.randn(4, 8, 8, dtype=torch.float64, requires_grad=True)
    lags, s = structure_functions(t, orders=(2,))
    assert isinstance(s, torch.Tensor) and s.shape == (1, 4)
    s.sum().backward()
    assert t.grad is not None
    with pytest.raises(ClimgenInputError, match="max_lag"):
        structure_functions(np.zeros((2, 8)), max_lag=8)
    with pytest.raises(ClimgenInputError, match="axis"):
        structure_functions(np.zeros((2, 8)), axis=2)


def test_covariance_matrix_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3, 4))
    np.testing.assert_allclose(covariance_matrix(x), np.cov(x.reshape(30, 12), rowvar=False))
    sub = covariance_matrix(x, patch=(slice(0, 2), slice(1, 3)))
    np.testing.assert_allclose(sub, np.cov(x[:, :2, 1:3].reshape(30, 4), rowvar=False))


def test_covariance_error_zero_for_identical_and_grows_with_perturbation():
    rng = np.random.default_rng(2)
    ref = _smooth_fields(rng, 300)
    assert covariance_error(ref, ref) == pytest.approx(0.0, abs=1e-12)
    noise = rng.normal(size=ref.shape) * ref.std()
    errors = [covariance_error(ref + eps * noise, ref) for eps in (0.1, 0.3, 1.0)]
    assert 0 < errors[0] < errors[1] < errors[2]
    # an independent sample of the same distribution is closer than a perturbed one
    other = _smooth_fields(rng, 300)
    assert covariance_error(other, ref) < errors[2]
    for kw in ({}, {"n_eofs": 5}, {"patch_size": 6}, {"patch_size": (4, 100)}):
        assert covariance_error(ref, ref, **kw) == pytest.approx(0.0, abs=1e-12)
        # scaling by c scales Σ by c²: relative error |c² − 1| whatever the projection
        assert covariance_error(1.5 * ref, ref, **kw) == pytest.approx(1.25, rel=1e-10)


def test_gram_route_equals_explicit_covariance(monkeypatch):
    rng = np.random.default_rng(3)
    ref, gen = _smooth_fields(rng, 40), 1.3 * _smooth_fields(rng, 25)
    direct = covariance_error(gen, ref)
    monkeypatch.setattr(structure, "FULL_COVARIANCE_MAX_POINTS", 10)
    assert covariance_error(gen, ref) == pytest.approx(direct, rel=1e-8)


def test_covariance_error_is_differentiable_and_checks_shapes():
    rng = np.random.default_rng(4)
    ref = torch.tensor(_smooth_fields(rng, 50))
    gen = (ref * 1.2).requires_grad_(True)
    err = covariance_error(gen, ref)
    err.backward()
    assert isinstance(err, torch.Tensor) and gen.grad.abs().sum() > 0
    with pytest.raises(ClimgenInputError, match=r"\(50, 12, 16\).*\(50, 12, 15\)"):
        covariance_error(ref, ref[..., :15])


def test_eof_fractions_recover_planted_rank_two_structure():
    rng = np.random.default_rng(5)
    ny, nx, n = 10, 12, 2000
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    p1 = np.sin(2 * np.pi * xx / nx)
    p2 = np.cos(2 * np.pi * yy / ny) * np.cos(2 * np.pi * xx / nx)  # orthogonal to p1
    a1, a2 = rng.normal(0, 2, n), rng.normal(0, 1, n)
    x = a1[:, None, None] * p1 + a2[:, None, None] * p2 + 0.01 * rng.normal(size=(n, ny, nx))
    frac = eof_explained_variance(x, n_eofs=5)
    assert frac.shape == (5,)
    assert frac.sum() <= 1 + 1e-12
    assert np.all(np.diff(frac) <= 0)
    # variances 4 |p1|² : 1 |p2|²  with |p1|² = ny nx / 2, |p2|² = ny nx / 4
    assert frac[0] == pytest.approx(8 / 9, abs=0.02)
    assert frac[1] == pytest.approx(1 / 9, abs=0.02)
    assert frac[2:].sum() < 0.01
    all_frac = eof_explained_variance(x, n_eofs=10_000)
    assert all_frac.sum() == pytest.approx(1.0)


def test_eof_dataarray_uses_sqrt_coslat_weights():
    rng = np.random.default_rng(6)
    lat = np.linspace(-75, 75, 6)
    x = rng.normal(size=(40, 6, 8))
    da = xr.DataArray(
        x, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": np.arange(8) * 45.0}
    )
    w = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], (6, 8))
    w = w / w.mean()
    np.testing.assert_allclose(
        eof_explained_variance(da, 4), eof_explained_variance(x, 4, weights=w)
    )
    np.testing.assert_allclose(
        eof_explained_variance(x * np.sqrt(w), 4), eof_explained_variance(x, 4, weights=w)
    )


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("axis", [-1, -2])
def test_fast_path_matches_autograd_path(periodic, axis):
    rng = np.random.default_rng(7)
    field = rng.normal(size=(5, 9, 70)).cumsum(axis=-1)
    orders = (1, 2, 2.5, 6)
    _, fast = structure_functions(field, axis=axis, periodic=periodic, orders=orders)
    _, slow = structure_functions(
        torch.tensor(field, requires_grad=True), axis=axis, periodic=periodic, orders=orders
    )
    np.testing.assert_allclose(fast, slow.detach().numpy(), rtol=1e-12)


def test_report_lags_keep_every_lag_up_to_128_then_thin_out_geometrically():
    from climgen.metrics.structure import report_lags

    assert report_lags(256) == list(range(1, 129))  # every grid in the benchmarks: unchanged
    assert report_lags(512, periodic=False) == list(range(1, 129))
    assert report_lags(8, periodic=False) == [1, 2]
    lags = report_lags(1440)  # 0.25°: r_max = 720
    assert lags[:128] == list(range(1, 129)) and lags[-1] == 720
    assert all(b > a for a, b in zip(lags, lags[1:]))
    ratios = np.array(lags[129:]) / np.array(lags[128:-1])
    assert ratios.max() <= 2 ** (1 / 32) + 1 / 128 and ratios.min() > 1
    assert abs(len(lags) - (128 + 32 * np.log2(720 / 128))) <= 2  # 208, not 720


def test_report_structure_distance_uses_report_lags_on_wide_grids():
    from climgen.data.grids import detect_grid
    from climgen.data.samples import grf_dataarray
    from climgen.metrics.structure import report_lags
    from climgen.report.eval_measures import measure_structure

    gen = grf_dataarray(4, 4, 600, kind="latlon", seed=1, name="v")
    ref = grf_dataarray(4, 4, 600, kind="latlon", seed=2, name="v")
    grid = detect_grid(ref)
    distances, st = measure_structure(gen.values, ref.values, grid, 2.0)
    lags = report_lags(600)
    assert len(lags) < 300 and np.allclose(st["lags"] / grid.dx, lags)
    _, sg = structure_functions(gen.values, orders=(2,), lags=lags)
    _, sr = structure_functions(ref.values, orders=(2,), lags=lags)
    expected = np.mean(np.abs(np.log(sg[0] / sr[0])))
    assert distances["structure_s2"].value == pytest.approx(expected, rel=1e-12)
