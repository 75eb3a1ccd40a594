"""Spectra against analytic answers: GRF slopes, Parseval, single harmonics, pysteps' bias."""

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.samples import (
    expected_grf_power,
    gaussian_latitudes,
    grf_dataarray,
    make_grf,
    spherical_harmonic,
)
from climgen.errors import ClimgenInputError
from climgen.metrics.spectra import (
    field_spectrum,
    high_k_error,
    line_spectrum,
    log_spectral_distance,
    mean_spectrum,
    rapsd,
    ring_bins,
    spectral_errors,
    spherical_spectrum,
    zonal_spectrum,
)


def _fitted_slope(k, p):
    sel = k > 0
    return np.polyfit(np.log(k[sel]), np.log(p[sel]), 1)[0]


@pytest.mark.parametrize(
    "ny, nx, dy, dx",
    [(64, 256, 1.0, 1.0), (64, 256, 2.0, 0.5), (64, 256, 0.7, 1.3), (128, 128, 1.0, 1.0)],
)
def test_grf_slope_recovered_on_any_grid(ny, nx, dy, dx):
    field = make_grf(48, ny, nx, slope=-3.0, dy=dy, dx=dx, seed=3)
    k, power = rapsd(field, dy, dx)
    assert power.shape == (48, k.size)
    assert abs(_fitted_slope(k, power.mean(0)) + 3.0) < 0.1


def test_rapsd_matches_expected_grf_power_bin_by_bin():
    ny, nx, dy, dx = 64, 256, 1.0, 1.0
    field = make_grf(200, ny, nx, slope=-2.0, dy=dy, dx=dx, seed=0)
    k, power, counts = rapsd(field, dy, dx, return_counts=True)
    # Compare the ring mean with the mean of the analytic per-mode power over the same modes.
    ky = np.fft.fftfreq(ny, dy)[:, None]
    kx = np.fft.fftfreq(nx, dx)[None, :]
    kr = np.sqrt(ky**2 + kx**2)
    expected_mode = expected_grf_power(kr, ny, nx, slope=-2.0, dy=dy, dx=dx)
    ring = np.floor(kr / k[1] + 0.5).astype(int)
    for i in (1, 5, 20, 60):
        exp = expected_mode[ring == i].mean()
        # relative sampling error of a ring mean: 1/sqrt(n_samples * modes)
        tol = 5.0 / np.sqrt(200 * counts[i])
        assert abs(power[:, i].mean() / exp - 1) < tol


@pytest.mark.parametrize("shape", [(64, 256), (128, 128), (33, 70)])
def test_parseval_sum_of_rings_is_mean_square(shape):
    rng = np.random.default_rng(1)
    field = rng.standard_normal((3, *shape)) + 5.0
    _, power = rapsd(field, 0.5, 2.0, reduce="sum", drop_beyond_nyquist=False)
    variance = field.var(axis=(-2, -1))
    np.testing.assert_allclose(power.sum(-1), variance, rtol=1e-6, atol=0)


def test_counts_cover_every_mode_once():
    k, counts = ring_bins(64, 256, drop_beyond_nyquist=False)
    assert counts.sum() == 64 * 256
    k_drop, counts_drop = ring_bins(64, 256, 1.0, 1.0)
    assert k_drop[-1] <= 0.5 + 1e-12 and counts_drop.sum() < 64 * 256


def test_rapsd_beats_index_radius_binning_on_non_square_grid():
    """pysteps-style binning (index radius, frequencies labelled by the longest axis) puts the
    64-row grid's first ky mode at index radius 1 although its physical |k| is 4 bins out;
    physical binning keeps the known k^-3 law at the lowest wavenumbers."""
    ny, nx = 64, 256
    field = make_grf(64, ny, nx, slope=-3.0, seed=2)
    k, power = rapsd(field)
    expected = expected_grf_power(k, ny, nx, slope=-3.0)
    low = slice(1, 6)
    ours = np.abs(np.log(power.mean(0)[low] / expected[low])).max()
    # Index-radius binning for comparison.
    f = (
        np.fft.fftshift(
            np.abs(np.fft.fft2(field - field.mean((-2, -1), keepdims=True))) ** 2, axes=(-2, -1)
        )
        / (ny * nx) ** 2
    )
    yy, xx = np.ogrid[-ny // 2 : ny - ny // 2, -nx // 2 : nx - nx // 2]
    r = np.round(np.sqrt(yy**2 + xx**2)).astype(int)
    idx_power = np.array([f[..., r == i].mean() for i in range(1, 6)])
    theirs = np.abs(np.log(idx_power / expected[low])).max()
    assert ours < 0.35
    assert theirs > 1.0


def test_torch_input_is_differentiable_and_matches_numpy():
    field = make_grf(2, 32, 48, seed=0)
    k_np, p_np = rapsd(field)
    t = torch.tensor(field, requires_grad=True)
    k_t, p_t = rapsd(t)
    np.testing.assert_allclose(p_t.detach().numpy(), p_np, rtol=1e-12)
    p_t.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()
    # d/df of Σ power = gradient of the variance (within the Nyquist circle): non-zero
    assert t.grad.abs().sum() > 0


def test_window_keeps_power_of_stationary_field():
    field = make_grf(64, 64, 64, slope=-1.0, seed=5)
    _, plain = rapsd(field, reduce="sum", drop_beyond_nyquist=False)
    _, hann = rapsd(field, reduce="sum", drop_beyond_nyquist=False, window="hann")
    assert abs(hann.sum(-1).mean() / plain.sum(-1).mean() - 1) < 0.1


def test_dataarray_rapsd_uses_coordinate_spacing_and_keeps_dims():
    da = grf_dataarray(6, 32, 64, slope=-3.0, dy=2.0, dx=0.5, seed=0, name="b", units="K")
    out = rapsd(da)
    assert out.dims == ("time", "wavenumber")
    np.testing.assert_array_equal(out["time"], da["time"])
    k, p = rapsd(da.values, 2.0, 0.5)
    np.testing.assert_allclose(out["wavenumber"], k)
    np.testing.assert_allclose(out.values, p)
    assert out.attrs["units"] == "(K)^2"


def test_rapsd_rejects_nan_and_bad_spacing():
    field = np.ones((4, 8, 8))
    field[0, 1, 1] = np.nan
    with pytest.raises(ClimgenInputError, match="non-finite"):
        rapsd(field)
    with pytest.raises(ClimgenInputError, match="spacing"):
        rapsd(np.ones((8, 8)), dy=0.0)
    with pytest.raises(ClimgenInputError, match="reduce"):
        rapsd(np.ones((8, 8)), reduce="median")


@pytest.mark.parametrize(
    "lat, nlon",
    [
        (gaussian_latitudes(64), 128),
        (-90 + 2.5 * (np.arange(72) + 0.5), 144),
        (np.linspace(-90, 90, 65), 128),
    ],
    ids=["gaussian", "cell-centred", "equiangular"],
)
@pytest.mark.parametrize("ell, m", [(2, 0), (5, 3), (10, -7), (20, 15)])
def test_single_spherical_harmonic_power_in_its_degree(lat, nlon, ell, m):
    lon = np.arange(nlon) * 360.0 / nlon
    field = spherical_harmonic(ell, m, lat, lon)
    degrees, power = spherical_spectrum(field, lat=lat)
    assert power[ell] / power.sum() >= 0.99


def test_spherical_parseval_on_gaussian_grid():
    lat = gaussian_latitudes(32)
    lon = np.arange(64) * 360 / 64
    rng = np.random.default_rng(0)
    field = sum(
        rng.standard_normal() * spherical_harmonic(ell, m, lat, lon)
        for ell in range(0, 12)
        for m in range(-ell, ell + 1)
    )
    _, power = spherical_spectrum(field, grid="legendre-gauss")
    w = np.polynomial.legendre.leggauss(32)[1]  # Gaussian quadrature weights, Σ w = 2
    area_mean_square = (w[:, None] * field**2).sum() / (2 * 64)
    np.testing.assert_allclose(power.sum(), area_mean_square, rtol=1e-8)


def test_spherical_spectrum_of_dataarray_with_descending_lat():
    lat = gaussian_latitudes(32)[::-1]
    lon = np.arange(64) * 360 / 64
    data = np.stack([spherical_harmonic(4, 2, lat, lon)] * 3)
    da = xr.DataArray(data, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon}, name="z")
    out = field_spectrum(da)
    assert out.attrs["spectrum_kind"] == "spherical"
    assert out.dims == ("time", "degree")
    assert float(out.isel(time=0, degree=4) / out.isel(time=0).sum()) > 0.99


def test_zonal_spectrum_of_wave_number_m():
    lat = np.array([-60.0, 0.0, 45.0])
    lon = np.arange(128) * 360 / 128
    field = np.cos(np.deg2rad(5 * lon))[None, :] * np.ones((3, 1))
    da = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="u")
    spec = zonal_spectrum(da)
    assert int(spec.argmax("zonal_wavenumber")[0]) == 5
    circ = 2 * np.pi * 6.371e6 * np.cos(np.deg2rad(lat))
    # Σ_m E/L = mean square along the circle = 1/2 for a unit cosine
    np.testing.assert_allclose((spec / circ[:, None]).sum("zonal_wavenumber"), 0.5, rtol=1e-10)
    np.testing.assert_allclose(spec["wavelength"].sel(zonal_wavenumber=5), circ / 5)


def test_spectral_errors_known_ratios():
    k = np.arange(10.0)
    ref = np.r_[0.0, 1.0 / k[1:] ** 3]
    half = ref * 0.25
    err = spectral_errors(half, ref, k)
    assert err["mean_abs_log_ratio"] == pytest.approx(np.log10(4))
    assert err["log_spectral_distance"] == pytest.approx(np.log10(4))
    assert err["effective_resolution"] == 1.0
    tail_lost = ref.copy()
    tail_lost[6:] *= 0.1
    assert spectral_errors(tail_lost, ref, k)["effective_resolution"] == 6.0
    assert np.isnan(spectral_errors(ref, ref, k)["effective_resolution"])
    assert log_spectral_distance(ref, ref) == 0.0


def test_log_spectral_distance_is_a_differentiable_loss():
    ref = torch.linspace(1, 2, 8, dtype=torch.float64)
    gen = (ref * 2).requires_grad_()
    d = log_spectral_distance(gen, ref)
    d.backward()
    assert float(d.detach()) == pytest.approx(np.log10(2))
    assert torch.all(gen.grad > 0)


def test_line_spectrum_parseval_and_peak():
    rng = np.random.default_rng(0)
    x = np.arange(64) * 0.25
    field = np.cos(2 * np.pi * 1.0 * x)[None, :] + 0.1 * rng.standard_normal((3, 8, 64)) + 2.0
    k, power = line_spectrum(field, 0.25)
    assert power.shape == (3, 33)
    assert k[np.argmax(power.mean(0))] == pytest.approx(1.0)
    np.testing.assert_allclose(power.sum(-1), field.var(axis=-1).mean(-1), rtol=1e-10)


def test_field_spectrum_between_walls_is_taken_along_the_periodic_axis():
    """RBC-like layout: a strong mean gradient in z (walls) must not leak into the spectrum."""
    z = (np.arange(16) + 0.5) / 16
    x = np.arange(64) / 16
    wave = 0.05 * np.cos(2 * np.pi * 2 * x)[None, :]
    data = np.stack([(1 - z)[:, None] + wave] * 4)
    da = xr.DataArray(
        data,
        dims=("time", "z", "x"),
        name="b",
        coords={
            "z": ("z", z, {"axis": "Z"}),
            "x": ("x", x, {"axis": "X", "long_name": "x, periodic"}),
        },
    )
    spec = field_spectrum(da)
    assert spec.attrs["spectrum_kind"] == "line"
    peak = float(spec["wavenumber"][int(spec.isel(time=0).argmax("wavenumber"))])
    assert peak == pytest.approx(2.0)
    assert float(spec.isel(time=0).sum()) == pytest.approx(0.05**2 / 2, rel=1e-8)


def test_high_k_error_counts_decades_in_the_upper_half():
    k = np.arange(33.0)
    truth = np.where(k > 0, (k + 1e-9) ** -3.0, 0.0)
    assert high_k_error(k, truth, truth) == 0.0
    assert high_k_error(k, 10 * truth, truth) == pytest.approx(1.0)
    # Only k ≥ k_max/2 counts: a wrong low-k half changes nothing.
    low_wrong = np.where(k < 16, 100 * truth, truth)
    assert high_k_error(k, low_wrong, truth) == pytest.approx(0.0)
    # Zero power is floored (10⁻¹² of the peak), a large error rather than a dropped bin.
    assert high_k_error(k, np.where(k >= 16, 0.0, truth), truth) > 5


def test_mean_spectrum_averages_samples():
    da = grf_dataarray(4, 16, 32, seed=1)
    k, p = mean_spectrum(da)
    k1, p1 = mean_spectrum(da.isel(time=slice(0, 1)))
    assert k.shape == p.shape == k1.shape and (p >= 0).all()
    assert not np.allclose(p, p1)  # an average over 4 fields, not the first one
