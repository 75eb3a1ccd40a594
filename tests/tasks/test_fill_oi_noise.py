"""The observation-error nugget of optimal interpolation estimated from the observations
(``nugget="ml"``, :mod:`climgen.tasks.fill.oi_noise`)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import xarray as xr

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.baselines import sphere_kernel, unit_vectors
from climgen.tasks.fill.infiller import Infiller
from climgen.tasks.fill.masks import blob_masks
from climgen.tasks.fill.oi import GaussianFieldModel
from climgen.tasks.fill.oi_noise import estimate_noise
from climgen.tasks.fill.oi_reduced import ReducedGaussianFieldModel

H, W, T = 12, 24, 16


def _known_covariance():
    """A Matérn-3/2 covariance of the chordal distance on a 12 × 24 lat/lon grid, and the
    dense model whose learned covariance is exactly it (C = AᵀA/n with A = √N Lᵀ)."""
    lat = -90 + 180 / H * (np.arange(H) + 0.5)
    lon = 360 / W * (np.arange(W) + 0.5)
    cov = sphere_kernel(variance=1.0, length_scale=0.5, noise=1e-8)(
        unit_vectors(lat, lon).reshape(-1, 3)
    )
    chol = np.linalg.cholesky(cov)
    model = GaussianFieldModel(np.zeros((H, W)), anomalies=np.sqrt(len(cov)) * chol.T)
    return cov, chol, model


def _noisy_fields(chol, scale, tau2, seed):
    """T fields of N(0, scale·C + tau2·I) under blob masks covering half the grid."""
    rng = np.random.default_rng(seed)
    n = chol.shape[0]
    x = np.sqrt(scale) * (chol @ rng.standard_normal((n, T))).T
    x += np.sqrt(tau2) * rng.standard_normal((T, n))
    return x.reshape(T, H, W), blob_masks(T, (H, W), coverage=0.5, seed=seed).astype(bool)


@pytest.mark.parametrize(("scale", "tau2"), [(1.0, 0.1), (4.0, 0.05), (0.5, 0.25)])
def test_ml_recovers_the_noise_variance_and_the_covariance_scale(scale, tau2):
    cov, chol, model = _known_covariance()
    np.testing.assert_allclose(model.covariance, cov, atol=1e-12)
    x, observed = _noisy_fields(chol, scale, tau2, seed=1)
    est = estimate_noise(model, x, observed)
    assert abs(est.tau2 / tau2 - 1) < 0.2 and abs(est.scale / scale - 1) < 0.2, est
    assert est.n_observed == observed.sum() and est.n_masks == T
    # the maximised value is the Gaussian log-density of the observed cells (scipy's), per value
    density = sum(
        scipy.stats.multivariate_normal(
            np.zeros(m.sum()), est.scale * cov[np.ix_(m, m)] + est.tau2 * np.eye(m.sum())
        ).logpdf(v[m])
        for v, m in zip(x.reshape(T, -1), observed.reshape(T, -1))
    )
    assert est.log_likelihood == pytest.approx(density / est.n_observed, rel=1e-9)
    # and a maximum: the nugget and the scale both moved by 25 % score lower
    for factor in (0.8, 1.25):
        for s, t in ((est.scale, est.tau2 * factor), (est.scale * factor, est.tau2)):
            worse = sum(
                scipy.stats.multivariate_normal(
                    np.zeros(m.sum()), s * cov[np.ix_(m, m)] + t * np.eye(m.sum())
                ).logpdf(v[m])
                for v, m in zip(x.reshape(T, -1), observed.reshape(T, -1))
            )
            assert worse < density


def test_without_the_scale_a_mismatched_amplitude_biases_the_nugget():
    """Fields 4× the learned variance: the nugget alone (s = 1) must absorb the excess."""
    _, chol, model = _known_covariance()
    x, observed = _noisy_fields(chol, 4.0, 0.05, seed=1)
    joint, alone = (
        estimate_noise(model, x, observed),
        estimate_noise(model, x, observed, scale=False),
    )
    assert alone.scale == 1.0 and alone.tau2 > 3 * 0.05
    assert joint.log_likelihood > alone.log_likelihood


def test_the_reduced_model_gives_the_dense_estimate_and_with_noise_scales_the_conditional():
    cov, chol, dense = _known_covariance()
    lam, vecs = np.linalg.eigh(cov)
    reduced = ReducedGaussianFieldModel(
        np.zeros((H, W)), vecs * np.sqrt(np.clip(lam, 0, None)), np.zeros(H * W)
    )
    x, observed = _noisy_fields(chol, 2.0, 0.1, seed=3)
    x, observed = x[:3], observed[:3]
    a, b = estimate_noise(dense, x, observed), estimate_noise(reduced, x, observed)
    assert b.nugget == pytest.approx(a.nugget, rel=1e-4) and b.scale == pytest.approx(
        a.scale, rel=1e-4
    )
    # N(μ, s·C + s·r·I): the mean depends on r only, the variance is s times the unscaled one
    for model in (dense, reduced):
        base = model.with_noise(a.nugget)
        scaled = model.with_noise(a.nugget, a.scale)
        m0, s0, _ = base.condition(x[0], observed[0])
        m1, s1, _ = scaled.condition(x[0], observed[0])
        np.testing.assert_allclose(m1, m0, atol=1e-9)
        np.testing.assert_allclose(s1**2, a.scale * s0**2, rtol=1e-9)
        assert scaled.tau2 == pytest.approx(a.tau2, rel=1e-9)
    # space–time OI: every lagged covariance is scaled, zonal or not
    x = np.random.default_rng(0).standard_normal((12, 4, 6)).cumsum(0)
    cells = np.arange(24)
    for zonal in (True, False):
        model = GaussianFieldModel.fit(x, zonal=zonal, context=1, nugget=1e-3)
        scaled = model.with_noise(1e-2, 3.0)
        for lag in (0, 1, 2):
            np.testing.assert_allclose(
                scaled.block(lag, cells, cells), 3.0 * model.block(lag, cells, cells), rtol=1e-12
            )


def test_ml_nugget_fills_noisy_observations_the_tiny_nugget_refuses(tmp_path):
    """Smooth training fields, observations with errors of the training variance: nugget
    1e-14 explodes and is refused; ``--nugget ml`` on the same run estimates the error and
    fills (the `climgen fill` path for real observations)."""
    from climgen.cli import main

    da = grf_dataarray(24, 20, 40, kind="latlon", slope=-6.0, seed=1, name="tas", units="K")
    train, test = da.isel(time=slice(0, 20)), da.isel(time=slice(20, None))
    noise_var = float(train.var())
    noisy = test + np.sqrt(noise_var) * np.random.default_rng(0).standard_normal(test.shape)
    hide = blob_masks(4, (20, 40), coverage=0.3, seed=5).astype(bool)
    obs = noisy.where(xr.DataArray(hide, dims=noisy.dims, coords=noisy.coords))
    obs.to_dataset().to_netcdf(tmp_path / "obs.nc")
    Infiller("optimal-interpolation", nugget=1e-14, roll_fields=True, hemispheric=True).fit(
        train, run_dir=tmp_path / "run"
    )
    argv = ["fill", str(tmp_path / "run"), str(tmp_path / "obs.nc"), "--members", "2", "-q"]
    assert main([*argv, "-o", str(tmp_path / "a.nc")]) == 2  # refused: nugget 1e-14
    assert main([*argv, "-o", str(tmp_path / "b.nc"), "--nugget", "ml"]) == 0
    out = xr.load_dataset(tmp_path / "b.nc")
    assert out.attrs["climgen_oi_nugget_method"].startswith("ml")
    tau2 = out.attrs["climgen_oi_nugget"] * out.attrs["climgen_oi_covariance_scale"]
    learned = Infiller.load(tmp_path / "run").gaussian
    tau2 *= float(np.mean(learned.variance))
    assert 0.7 < tau2 / noise_var < 1.3
    filled = out.tas.values[~hide]
    sd = np.sqrt(learned.variance.max())
    assert np.isfinite(filled).all() and np.abs(filled).max() < 20 * sd
    # the filled mean beats the observations' own noise level at the hidden cells
    err = filled - test.values[~hide]
    assert np.sqrt(np.mean(err**2)) < np.sqrt(noise_var + float(test.var()))


def test_an_oi_prior_is_checked_too_and_takes_the_ml_nugget(tmp_path):
    """The residual infiller's OI inputs: refused when they explode (nugget 1e-14 on noisy
    observations of smooth fields), estimated from the observations with nugget ml."""
    da = grf_dataarray(24, 24, 48, kind="latlon", slope=-6.0, seed=1, name="tas", units="K")
    train, test = da.isel(time=slice(0, 20)), da.isel(time=slice(20, None))
    noisy = test + float(train.std()) * np.random.default_rng(0).standard_normal(test.shape)
    hide = blob_masks(4, (24, 48), coverage=0.3, seed=5).astype(bool)
    obs = noisy.where(xr.DataArray(hide, dims=noisy.dims, coords=noisy.coords))
    net = Infiller(
        "partialconv",
        prior="optimal-interpolation",
        residual=True,
        roll_fields=True,
        base_channels=4,
        n_synthetic=4,
        prior_options={"nugget": 1e-14, "hemispheric": True},
    )
    net.fit(train, run_dir=tmp_path, max_steps=1, batch_size=2, progress=False)
    with pytest.raises(ClimgenInputError, match=r"prior standard deviations.*nugget 1e-14"):
        net.fill(obs, progress=False)
    out = net.set_nugget("ml").fill(obs, progress=False)
    sd = np.sqrt(net.gaussian.variance.max())
    assert np.isfinite(out.tas.values).all() and float(np.abs(out.tas).max()) < 20 * sd


def test_bad_nugget_options_are_one_clear_error():
    with pytest.raises(ClimgenInputError, match="'ml'"):
        Infiller("optimal-interpolation", nugget="mll")
    with pytest.raises(ClimgenInputError, match="prior_options nugget"):
        Infiller("partialconv", prior="optimal-interpolation", prior_options={"nugget": -1})
    with pytest.raises(ClimgenInputError, match="kriging infiller has none"):
        Infiller("kriging").set_nugget("ml")
