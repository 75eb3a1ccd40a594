"""Spectra along x per latitude / height band: peaks, Parseval, weights and distances."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics import band_spectra, band_spectrum_distance, line_spectrum


def test_each_band_sees_its_own_wavenumber_and_parseval_holds():
    x = np.arange(64) / 64
    rows = [np.cos(2 * np.pi * 3 * x)] * 4 + [2 * np.cos(2 * np.pi * 7 * x)] * 4
    field = np.stack([np.stack(rows)] * 2) + 5.0  # (2, 8, 64), a mean that must not count
    k, p, edges = band_spectra(field, [0, 3.5, 7], dx=1 / 64)
    assert p.shape == (2, 2, 33)
    assert k[np.argmax(p[0, 0])] == 3 and k[np.argmax(p[0, 1])] == 7
    np.testing.assert_allclose(p.sum(-1)[0], [0.5, 2.0], rtol=1e-12)  # row variances
    # one band over all rows is the line spectrum
    _, one, _ = band_spectra(field, 1, dx=1 / 64)
    np.testing.assert_allclose(one[:, 0], line_spectrum(field, 1 / 64)[1], rtol=1e-12)


def test_latlon_dataarray_bands_are_area_weighted_in_zonal_wavenumber():
    lat = np.array([-75.0, -45.0, -15.0, 15.0, 50.0, 80.0])
    lon = np.arange(72) * 5.0
    amp = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 3.0])
    field = amp[:, None] * np.cos(np.deg2rad(4 * lon))[None, :]
    da = xr.DataArray(
        field[None],
        dims=("time", "lat", "lon"),
        coords={"lat": lat, "lon": lon},
        name="w",
        attrs={"units": "Pa/s"},
    )
    out = band_spectra(da)
    assert out.dims == ("time", "band", "wavenumber")
    np.testing.assert_array_equal(out["band_lower"], [-75, -60, -30, 0, 30, 60])
    assert int(out["wavenumber"][out.isel(time=0, band=0).argmax("wavenumber")]) == 4
    # 50°N alone in [30, 60], 80°N alone in [60, 80]
    np.testing.assert_allclose(out.isel(time=0).sum("wavenumber"), [0.5] * 5 + [4.5], rtol=1e-12)


def test_rows_in_a_band_are_weighted_by_cos_latitude():
    lat = np.array([10.0, 25.0])
    lon = np.arange(36) * 10.0
    field = np.stack([np.cos(np.deg2rad(2 * lon)), 2 * np.cos(np.deg2rad(2 * lon))])
    da = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="v")
    out = band_spectra(da, [0, 30])
    w = np.cos(np.deg2rad(lat))
    assert float(out.sum("wavenumber")[0]) == pytest.approx((w @ [0.5, 2.0]) / w.sum())


def test_band_spectrum_distance_of_doubled_amplitude_is_log10_four():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((4, 12, 32))
    assert band_spectrum_distance(f, f, 3) == 0.0
    assert band_spectrum_distance(2 * f, f, 3) == pytest.approx(np.log10(4))


def test_bad_bands_are_one_clear_error():
    with pytest.raises(ClimgenInputError, match="hold no row"):
        band_spectra(np.zeros((4, 16)), [0, 0.5, 0.8, 3])
    with pytest.raises(ClimgenInputError, match="increasing"):
        band_spectra(np.zeros((4, 16)), [3, 0])
