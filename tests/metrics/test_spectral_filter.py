"""Spectral filters: a gain g(k) multiplies the diagnostics' spectrum by g² exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.data.samples import gaussian_latitudes, grf_dataarray, spherical_harmonic
from climgen.errors import ClimgenInputError
from climgen.metrics import field_spectrum
from climgen.metrics.spectral_filter import apply_spectral_gain, spectral_gain, spectrum_kind_of

pytest.importorskip("torch_harmonics", reason="spherical transforms need the 'sphere' extra")


def _mean_power(da):
    s = field_spectrum(da)
    return s.mean(s.dims[0]).values


def _walls(n=6, nz=16, nx=64, seed=0):
    """Periodic in x only (walls in z), like Rayleigh–Bénard."""
    da = grf_dataarray(n, nz, nx, seed=seed, name="b")
    da = da.rename(y="z")
    da["z"].attrs = {"units": "1", "axis": "Z", "long_name": "height", "positive": "up"}
    return da


def _t42(n=3, seed=0):
    lat, lon = gaussian_latitudes(64), np.arange(128) * 360.0 / 128
    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(n):
        f = sum(
            rng.normal() * spherical_harmonic(ell, m, lat, lon)
            for ell, m in [(2, 1), (5, -3), (10, 0), (20, 7), (40, 40)]
        )
        fields.append(f)
    return xr.DataArray(
        np.stack(fields),
        dims=("time", "lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name="omega500",
        attrs={"units": "Pa s-1"},
    )


@pytest.mark.parametrize(
    "make, kind",
    [(_walls, "line"), (lambda: grf_dataarray(4, 32, 48, seed=1), "planar"), (_t42, "spherical")],
)
def test_unit_gain_is_identity_and_a_gain_scales_the_spectrum_by_its_square(make, kind):
    da = make()
    assert spectrum_kind_of(da) == kind
    p = _mean_power(da)
    same = apply_spectral_gain(da, np.ones(p.size))
    np.testing.assert_allclose(same.values, da.values, atol=1e-9 * float(np.abs(da).max()))
    assert same.dims == da.dims and same.attrs == da.attrs
    xr.testing.assert_identical(same.coords.to_dataset(), da.coords.to_dataset())

    gain = np.linspace(0.5, 2.0, p.size)
    p2 = _mean_power(apply_spectral_gain(da, gain))
    live = p > 1e-12 * p.max()
    np.testing.assert_allclose(p2[live], gain[live] ** 2 * p[live], rtol=1e-6)


def test_spherical_filter_keeps_latitude_order_of_descending_grids():
    da = _t42(n=2)
    flipped = da.isel(lat=slice(None, None, -1))
    gain = np.where(np.arange(64) == 20, 0.0, 1.0)
    out = apply_spectral_gain(flipped, gain)
    assert np.all(np.diff(out.lat.values) < 0)
    # Removing ℓ = 20 takes out exactly the (20, 7) component.
    p, q = _mean_power(da), _mean_power(out)
    assert q[20] < 1e-12 * p[20]
    np.testing.assert_allclose(q[[2, 5, 10, 40]], p[[2, 5, 10, 40]], rtol=1e-6)


def test_gain_carries_one_spectrum_onto_another():
    a = grf_dataarray(64, 32, 32, slope=-2.0, seed=2)
    b = grf_dataarray(64, 32, 32, slope=-4.0, seed=3)
    g = spectral_gain(_mean_power(a), _mean_power(b))
    fresh = grf_dataarray(64, 32, 32, slope=-2.0, seed=4)
    p_out, p_b = _mean_power(apply_spectral_gain(fresh, g)), _mean_power(b)
    ratio = np.log10(p_out[1:] / p_b[1:])
    # Independent draws: only sampling noise (64 fields) is left, no slope error.
    assert np.abs(ratio).mean() < 0.1
    slope = np.polyfit(np.log(np.arange(1, p_b.size)), np.log(p_out[1:]), 1)[0]
    assert slope == pytest.approx(-4.0, abs=0.3)


def test_bad_inputs_name_the_problem():
    da = grf_dataarray(2, 8, 8, seed=0)
    with pytest.raises(ClimgenInputError, match="need 5"):
        apply_spectral_gain(da, np.ones(3))
    bad = da.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ClimgenInputError, match="NaN"):
        apply_spectral_gain(bad, np.ones(5))
    regional = grf_dataarray(2, 8, 16, seed=0, kind="latlon").isel(lon=slice(0, 8))
    with pytest.raises(ClimgenInputError, match="global"):
        spectrum_kind_of(regional)


def test_row_gain_scales_each_rows_x_spectrum_and_keeps_the_descending_latitude_layout():
    from climgen.metrics.spectral_filter import row_spectrum

    da = _t42(n=4).isel(lat=slice(None, None, -1))  # north → south on file
    p = row_spectrum(da)
    assert p.shape == (64, 65)
    rng = np.random.default_rng(3)
    gain = rng.uniform(0.2, 3.0, size=p.shape)
    out = apply_spectral_gain(da, gain, "rows")
    assert out.dims == da.dims
    np.testing.assert_array_equal(out.lat.values, da.lat.values)
    # The rows are those of the canonical (south → north) order, whatever the file's order.
    np.testing.assert_allclose(row_spectrum(out), gain**2 * p, rtol=1e-8, atol=1e-12 * p.max())
    with pytest.raises(ClimgenInputError, match="rows × x-wavenumbers"):
        apply_spectral_gain(da, gain[:, :10], "rows")


def test_per_row_calibration_carries_the_variance_profile_that_an_isotropic_gain_cannot():
    from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

    # "data": white-in-x rows whose amplitude grows with height; "model": the same texture
    # with a flat profile. Their x-spectra pooled over rows are identical, so the one-stage
    # (line) gain is ~1 and leaves the profile wrong; the per-row stage fixes it.
    def fields(n, seed, profile):
        da = _walls(n=n, seed=seed)
        return da * profile[:, None]

    z = np.linspace(0.5, 1.5, 16)
    z = z / np.sqrt(np.mean(z**2))
    data = fields(64, 0, z).to_dataset()
    model = fields(64, 1, np.ones(16)).to_dataset(name="b").rename(time="sample")
    one = SpectralCalibration.fit(model, data, ["b"])
    two = SpectralCalibration.fit(model, data, ["b"], per_row=True)
    assert [k for k, _ in two.stages["b"]] == ["rows", "line"]
    fresh = fields(64, 2, np.ones(16)).to_dataset(name="b").rename(time="sample")

    def profile_error(ds):
        std = ds.b.std(("sample", "x")).values
        return float(np.max(np.abs(std / data.b.std(("time", "x")).values - 1)))

    assert profile_error(one.apply(fresh)) > 0.25
    assert profile_error(two.apply(fresh)) < 0.1


def test_calibration_json_round_trips_both_stages_and_reads_version_1(tmp_path):
    import json

    from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

    data = _walls(n=8, seed=0).to_dataset()
    model = (2 * _walls(n=8, seed=1)).to_dataset().rename(time="sample")
    cal = SpectralCalibration.fit(model, data, ["b"], per_row=True)
    again = SpectralCalibration.load(cal.save(tmp_path / "cal.json"))
    np.testing.assert_array_equal(again.apply(model).b.values, cal.apply(model).b.values)
    v1 = {"version": 1, "n_fit": 8, "variables": {"b": {"kind": "line", "gain": [0.5] * 33}}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = SpectralCalibration.load(tmp_path / "v1.json")
    np.testing.assert_allclose(old.apply(model).b.values, 0.5 * model.b.values, atol=1e-6)


def _skewed_rows(n, seed, skew):
    """Walls fields made non-Gaussian row by row: exp(s(z) g) − its mean, s growing with z."""
    da = _walls(n=n, seed=seed)
    g = da / float(da.std())
    s = xr.DataArray(skew, dims="z")
    return np.exp(s * g) - np.exp(s**2 / 2)


def test_marginal_stage_maps_each_rows_one_point_distribution_and_keeps_ranks():
    from scipy.stats import wasserstein_distance

    from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

    skew = np.linspace(0.0, 1.0, 16)
    data = _skewed_rows(96, 0, skew).to_dataset(name="b")
    model = (0.7 * _walls(n=96, seed=1)).to_dataset(name="b").rename(time="sample")
    spectral = SpectralCalibration.fit(model, data, ["b"], per_row=True)
    full = SpectralCalibration.fit(model, data, ["b"], per_row=True, marginal=True, n_quantiles=200)
    assert [k for k, _ in full.stages["b"]] == ["rows", "quantiles-rows", "line"]
    assert full.stages["b"][1][1].shape == (2, 16, 200)
    fresh = (0.7 * _walls(n=96, seed=2)).to_dataset(name="b").rename(time="sample")
    before, after = spectral.apply(fresh).b, full.apply(fresh).b
    reference = _skewed_rows(96, 3, skew)  # fresh draws of the data's distribution

    def w1(a, iz):
        return wasserstein_distance(
            a.isel(z=iz).values.ravel(), reference.isel(z=iz).values.ravel()
        )

    for iz in (12, 13, 14, 15):  # the skewed rows: linear stages cannot make them skewed
        assert w1(after, iz) < 0.3 * w1(before, iz)
    # The map alone is monotone in every row: sorted by the input, the output never decreases.
    only_map = SpectralCalibration({"b": [full.stages["b"][1]]})
    x = fresh.b.values
    y = only_map.apply(fresh).b.values
    order = np.argsort(x, axis=-1)
    assert (np.diff(np.take_along_axis(y, order, axis=-1), axis=-1) >= 0).all()
    assert not np.allclose(y, x)
    assert "quantile mapping" in full.apply(fresh).attrs["climgen_spectral_calibration"]


def test_marginal_stage_follows_latitudes_on_descending_grids_and_round_trips(tmp_path):
    from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

    south_to_north = _t42(n=6, seed=0)
    offset = xr.DataArray(np.linspace(-3, 3, 64), dims="lat", coords={"lat": south_to_north.lat})
    data = (south_to_north + offset).to_dataset(name="omega500")
    model = _t42(n=6, seed=1).isel(lat=slice(None, None, -1))  # north → south, no offset
    model = model.to_dataset(name="omega500").rename(time="sample")
    cal = SpectralCalibration.fit(model, data, ["omega500"], marginal=True, n_quantiles=50)
    out = cal.apply(model).omega500
    np.testing.assert_array_equal(out.lat.values, model.lat.values)
    row_means = out.mean(("sample", "lon")).sortby("lat").values
    data_means = data.omega500.mean(("time", "lon")).values
    np.testing.assert_allclose(row_means, data_means, atol=0.05 * np.ptp(data_means))
    again = SpectralCalibration.load(cal.save(tmp_path / "cal.json"))
    np.testing.assert_array_equal(again.apply(model).omega500.values, out.values)
    with pytest.raises(ClimgenInputError, match="tables of shape"):
        bad = SpectralCalibration({"omega500": [("quantiles-rows", np.zeros((2, 3, 5)))]})
        bad.apply(model)
