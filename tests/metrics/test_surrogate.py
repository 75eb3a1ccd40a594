"""IAAFT surrogate: spectrum per ring and row marginals kept, planted structure destroyed."""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data.samples import make_grf
from climgen.metrics import euler_characteristic, iaaft_surrogate, rapsd


def _skewed_with_profile():
    """Skewed (lognormal-like, skewness ≈ 0.9) fields with a mean and spread that vary by row."""
    g = make_grf(16, 32, 64, slope=-3, seed=0)
    profile = np.linspace(0.5, 2.0, 32)[:, None]
    return np.exp(0.3 * g) * profile + 3 * profile


def _blobs(rng, n=8, ny=32, nx=64):
    """Sharp-edged disks on a flat background (+ weak noise): known numbers of components."""
    y, x = np.mgrid[0:ny, 0:nx]
    f = np.zeros((n, ny, nx))
    for i in range(n):
        for _ in range(4):
            cy, cx, r = rng.integers(ny), rng.integers(nx), rng.uniform(3, 5)
            dy, dx = (y - cy + ny / 2) % ny - ny / 2, (x - cx + nx / 2) % nx - nx / 2
            f[i] += np.hypot(dy, dx) < r
    return f + 0.05 * rng.standard_normal(f.shape)


def test_surrogate_keeps_row_marginals_exactly_and_spectrum_within_five_percent_per_ring():
    f = _skewed_with_profile()
    s = iaaft_surrogate(f, seed=1)
    assert s.shape == f.shape
    # every row of the set holds exactly the training set's values of that row
    for row in range(f.shape[1]):
        np.testing.assert_array_equal(np.sort(s[:, row].ravel()), np.sort(f[:, row].ravel()))
    k, p_ref = rapsd(f)
    _, p_sur = rapsd(s)
    ratio = p_sur.mean(0)[1:] / p_ref.mean(0)[1:]
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
    # and it is not the training data
    assert np.abs(s - f).mean() > 0.5 * np.abs(f - f.mean(axis=(0, 2), keepdims=True)).mean()


def test_surrogate_destroys_sharp_edged_blobs():
    f = _blobs(np.random.default_rng(0))
    s = iaaft_surrogate(f, seed=2)
    chi_f = euler_characteristic(f > 0.5, periodic=True)
    chi_s = euler_characteristic(s > 0.5, periodic=True)
    assert chi_f.max() <= 4
    # random phases break each disk into many fragments with the same spectrum and values
    assert chi_s.mean() > 2 * chi_f.mean() + 2
    np.testing.assert_array_equal(np.sort(s, axis=None), np.sort(f, axis=None))


def test_surrogate_is_seeded_and_keeps_dataarray_layout():
    f = _skewed_with_profile()[:4]
    lat = np.linspace(80, -80, 32)  # north → south: restored as given
    da = xr.DataArray(
        f,
        dims=("time", "lat", "lon"),
        coords={"time": np.arange(4), "lat": lat, "lon": np.arange(64) * 5.625},
        name="ta",
        attrs={"units": "K"},
    )
    a = iaaft_surrogate(da, seed=5, n_iter=20)
    b = iaaft_surrogate(da, seed=5, n_iter=20)
    xr.testing.assert_identical(a, b)
    assert a.dims == da.dims and a.attrs["units"] == "K" and "IAAFT" in a.attrs["surrogate"]
    np.testing.assert_array_equal(a["lat"], lat)
    np.testing.assert_array_equal(np.sort(a.values[:, 0].ravel()), np.sort(f[:, 0].ravel()))
    more = iaaft_surrogate(f, 6, seed=0, n_iter=20)
    assert more.shape == (6, 32, 64)


def test_zonal_phase_surrogate_keeps_each_row_spectrum_and_the_row_coherence():
    from climgen.metrics import line_spectrum

    f = _skewed_with_profile()[:6]
    s = iaaft_surrogate(f, seed=3, phases="x", end="spectrum", n_iter=30)
    # each zonal Fourier column of a field is the training column turned by one phase
    cf, cs = np.fft.rfft(f, axis=-1), np.fft.rfft(s, axis=-1)
    np.testing.assert_allclose(np.abs(cs), np.abs(cf), rtol=1e-9, atol=1e-9)
    cross_f = np.einsum("nym,nzm->nyzm", cf, cf.conj())
    cross_s = np.einsum("nym,nzm->nyzm", cs, cs.conj())
    np.testing.assert_allclose(cross_s, cross_f, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(line_spectrum(s)[1], line_spectrum(f)[1], rtol=1e-9)
    # but not the field itself: the zonal phases are new
    assert np.abs(s - f).mean() > 0.3 * np.abs(f - f.mean(axis=-1, keepdims=True)).mean()
    # ending on the rank step keeps the row marginals exactly instead
    m = iaaft_surrogate(f, seed=3, phases="x", n_iter=30)
    for row in (0, 15, 31):
        np.testing.assert_array_equal(np.sort(m[:, row].ravel()), np.sort(f[:, row].ravel()))
