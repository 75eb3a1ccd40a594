"""Gap filling: masks, baselines (analytic cases), networks, the Infiller API, cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.bundled import bundled_path
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.baselines import crps_gaussian, fill_nearest, fill_zonal_mean
from climgen.tasks.fill.cross_validation import cross_validate
from climgen.tasks.fill.infiller import Infiller, available_fill_methods
from climgen.tasks.fill.masks import (
    band_masks,
    blob_masks,
    pair_masks,
    roll_longitude,
    synthetic_masks,
    track_masks,
)

HADCRUT = bundled_path("hadcrut4_tas_1877-09_1893-08")
HADCRUT_MASK = bundled_path("hadcrut4_mask_1877-09")


def _grid(ny=18, nx=36):
    lat = -90 + 180 / ny * (np.arange(ny) + 0.5)
    lon = 360 / nx * (np.arange(nx) + 0.5)
    return lat, lon


def _latlon(values, name="tas", units="K", times=None):
    values = np.asarray(values)
    ny, nx = values.shape[-2:]
    lat, lon = _grid(ny, nx)
    coords = {
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    dims = ("lat", "lon")
    if values.ndim == 3:
        dims = ("time", *dims)
        coords["time"] = np.arange(values.shape[0]) if times is None else times
    return xr.DataArray(
        values, dims=dims, coords=coords, name=name, attrs={"units": units, "long_name": "T"}
    )


def _smooth_fields(n=3, ny=18, nx=36, seed=0):
    """Low-order spherical patterns with random amplitudes: smooth, longitude-dependent."""
    rng = np.random.default_rng(seed)
    lat, lon = np.deg2rad(_grid(ny, nx)[0])[:, None], np.deg2rad(_grid(ny, nx)[1])[None]
    basis = np.stack(
        [
            np.cos(lat) * np.sin(lat) * np.cos(lon),
            np.cos(lat) ** 2 * np.sin(2 * lon),
            np.cos(lat) * np.sin(lon),
            np.sin(lat) + 0 * lon,
        ]
    )
    return np.einsum("nk,kyx->nyx", rng.standard_normal((n, 4)), basis)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- masks -----------------------------------------------------------------------------------


def test_pair_masks_broadcast_paired_cycle():
    da = _latlon(np.zeros((4, 18, 36)))
    one = _latlon(np.ones((1, 18, 36), np.int8), name="m")
    assert pair_masks(one, da).dims == ("lat", "lon")
    four = _latlon(np.ones((4, 18, 36), np.int8), name="m")
    paired = pair_masks(four.assign_coords(time=np.arange(10, 14)), da)
    assert paired.sizes["time"] == 4 and (paired.time.values == da.time.values).all()
    two = _latlon(np.stack([np.zeros((18, 36)), np.ones((18, 36))]).astype(np.int8), name="m")
    with pytest.raises(ClimgenInputError, match="2 times.*4"):
        pair_masks(two, da)
    cycled = pair_masks(two, da, mode="cycle")
    assert cycled.values[:, 0, 0].tolist() == [0, 1, 0, 1]


def test_mask_errors_name_the_problem():
    da = _latlon(np.zeros((2, 18, 36)))
    with pytest.raises(ClimgenInputError, match="lat size 9"):
        pair_masks(_latlon(np.ones((9, 36)), name="m"), da)
    with pytest.raises(ClimgenInputError, match="not 0/1"):
        pair_masks(_latlon(np.full((18, 36), 0.5), name="m"), da)


@pytest.mark.parametrize("coverage", [0.1, 0.45])
def test_synthetic_masks_coverage_and_shape(coverage):
    blobs = blob_masks(20, (18, 36), coverage=coverage, seed=0)
    assert blobs.dtype == np.int8 and blobs.shape == (20, 18, 36)
    np.testing.assert_allclose(blobs.mean(axis=(1, 2)), coverage, atol=1.5 / (18 * 36) + 0.01)
    bands = band_masks(20, (18, 36), coverage=coverage, raggedness=0.0, seed=0)
    # Without raggedness each mask is whole rows: every row is all-0 or all-1.
    assert set(np.unique(bands.mean(axis=2))) <= {0.0, 1.0}
    np.testing.assert_allclose(bands.mean(), coverage, atol=1 / 18)
    tracks = track_masks(10, (18, 36), tracks=2, seed=0)
    assert 0 < tracks.mean() < 0.5
    mixed = synthetic_masks(30, (18, 36), seed=1)
    assert set(np.unique(mixed)) <= {0, 1} and mixed.any(axis=(1, 2)).all()


def test_roll_longitude_is_a_periodic_shift():
    masks = blob_masks(5, (18, 36), coverage=0.3, seed=2)
    shifts = np.array([0, 1, 5, -3, 36])
    rolled = roll_longitude(masks, shifts)
    for m, r, s in zip(masks, rolled, shifts):
        assert np.array_equal(r, np.roll(m, s, axis=-1))


# -- baselines -------------------------------------------------------------------------------


def test_nearest_uses_great_circle_distance_across_the_dateline():
    lat, lon = _grid(18, 36)
    values = np.full((18, 36), np.nan)
    values[9, 35] = 1.0  # lon 355
    values[9, 18] = 2.0  # lon 185
    filled, _ = fill_nearest(values, lat, lon)
    assert filled[0, 9, 0] == 1.0  # lon 5 is 10° from lon 355 across the seam
    assert filled[0, 9, 17] == 2.0
    # One observed cell: every cell takes its value.
    single = np.full((18, 36), np.nan)
    single[3, 7] = -4.5
    assert np.all(fill_nearest(single, lat, lon)[0] == -4.5)


def test_zonal_mean_rows_and_fallbacks():
    lat, lon = _grid(6, 8)
    values = np.full((6, 8), np.nan)
    values[1, [0, 3]] = [1.0, 3.0]
    values[4, 5] = -2.0
    filled, _ = fill_zonal_mean(values, lat, lon)
    assert np.all(filled[0, 1] == [1, 2, 2, 3, 2, 2, 2, 2])
    assert np.all(filled[0, 4, [0, 1, 7]] == -2.0)
    w1, w4 = np.cos(np.deg2rad(lat[[1, 4]]))
    global_mean = (w1 * 4.0 + w4 * -2.0) / (2 * w1 + w4)
    np.testing.assert_allclose(filled[0, 0], global_mean)
    climatology = np.arange(48.0).reshape(6, 8)
    with_clim, _ = fill_zonal_mean(values, lat, lon, climatology=climatology)
    assert np.array_equal(with_clim[0, 5], climatology[5])


def test_zonal_mean_uses_the_fitted_climatology():
    clim_field = np.broadcast_to(np.linspace(-5, 5, 18)[:, None], (18, 36))
    train = _latlon(np.stack([clim_field - 1, clim_field + 1]))
    obs = np.full((18, 36), np.nan)
    obs[9, :4] = 0.5
    out = Infiller("zonal-mean").fit(train).fill(_latlon(obs))
    np.testing.assert_allclose(out.tas.values[0], clim_field[0])
    np.testing.assert_allclose(out.tas.values[9], 0.5)


def test_kriging_beats_zonal_mean_and_nearest_on_a_smooth_field():
    truth = _latlon(_smooth_fields(2))
    rng = np.random.default_rng(3)
    mask = _latlon((rng.random((18, 36)) < 0.35).astype(np.int8), name="m")
    scores = {m: cross_validate(m, truth, mask) for m in ("kriging", "zonal-mean", "nearest")}
    assert scores["kriging"]["rmse"] < 0.5 * scores["zonal-mean"]["rmse"]
    assert scores["kriging"]["rmse"] < scores["nearest"]["rmse"]


def test_kriging_spread_is_calibrated_on_fields_drawn_from_its_own_prior():
    from climgen.tasks.fill.baselines import sphere_kernel, unit_vectors

    lat, lon = _grid(18, 36)
    points = unit_vectors(lat, lon).reshape(-1, 3)
    cov = sphere_kernel(variance=2.0, length_scale=0.4, noise=0.01)(points)
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(0)
    truth = _latlon((chol @ rng.standard_normal((points.shape[0], 4))).T.reshape(4, 18, 36))
    mask = _latlon(blob_masks(4, (18, 36), coverage=0.4, seed=1), name="m")
    scores = cross_validate("kriging", truth, mask)
    assert 0.7 < scores["spread_skill"] < 1.4


def test_kriging_reports_fits_at_a_bound_in_one_line_not_a_warning_per_field(caplog):
    import logging
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    # Smooth low-order patterns: the nugget of every field's fit runs to its lower bound.
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error", ConvergenceWarning)
        out = Infiller("kriging").fill(_gappy_obs())
    lines = [r.getMessage() for r in caplog.records if "kriging" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "2 of 2 field(s)" in lines[0] and "noise_level at its lower bound" in lines[0]
    assert np.isfinite(out.tas.values).all()


def test_crps_gaussian_limits():
    # σ → 0 gives the absolute error; at y = μ the CRPS is σ (√2 − 1)/√π.
    np.testing.assert_allclose(crps_gaussian(1.0, 1e-12, 3.0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(crps_gaussian(0.0, 2.0, 0.0), 2 * (np.sqrt(2) - 1) / np.sqrt(np.pi))


# -- the Infiller API ------------------------------------------------------------------------


def test_available_methods():
    assert {"partialconv", "cvae", "kriging", "nearest", "zonal-mean"} <= set(
        available_fill_methods()
    )
    with pytest.raises(ClimgenInputError, match="unknown fill method"):
        Infiller("magic")


def _gappy_obs(seed=0):
    rng = np.random.default_rng(seed)
    values = _smooth_fields(2, seed=seed).astype(np.float32)
    values[rng.random(values.shape) < 0.6] = np.nan
    # Keep the user's layout: latitude north → south, longitude in [-180, 180).
    da = _latlon(values).isel(lat=slice(None, None, -1))
    da = da.assign_coords(lon=((da.lon + 180) % 360) - 180).sortby("lon")
    da.attrs["source"] = "test"
    return da.to_dataset().assign_attrs(title="gappy", packing="a solver diagnostic")


def test_fill_methods_come_from_one_registry(monkeypatch):
    from climgen.tasks.fill import methods

    with pytest.raises(ClimgenInputError, match="unknown fill method 'magic'.*zonal-mean"):
        methods.get_method("magic")
    assert available_fill_methods() == list(methods._METHODS)

    def global_mean(infiller, request):  # a new method: the observed mean of each field
        mean = np.broadcast_to(
            np.nanmean(request.gappy[request.targets], axis=(-2, -1))[:, None, None],
            request.gappy[request.targets].shape,
        )
        return mean, None, None, {"note": "global mean"}

    monkeypatch.setitem(methods._METHODS, "global-mean", None)  # restored after the test
    methods.register_fill_method(methods.FillMethod("global-mean", "baseline", global_mean))
    ds = _gappy_obs()
    out = Infiller("global-mean").fill(ds)
    observed = np.isfinite(ds.tas.values)
    expected = np.nanmean(ds.tas.values, axis=(-2, -1))[:, None, None]
    filled = np.where(observed, ds.tas.values, np.broadcast_to(expected, ds.tas.shape))
    np.testing.assert_allclose(out.tas.values, filled, rtol=1e-6)
    with pytest.raises(ClimgenInputError, match="no option"):
        Infiller("global-mean", nu=1.5)
    # Every list of names is the registry's: recipes and the CLI know the new method too.
    from climgen.tasks.fill.recipe import check_fill_method

    assert "global-mean" in methods.fill_method_names(kind="baseline", trained=False)
    assert "global-mean" not in methods.fill_method_names(trained=True)
    assert set(methods.fill_method_names(kind="network")) == {"partialconv", "cvae"}
    check_fill_method("global-mean", {})
    assert Infiller("global-mean", context=2).context == 0  # not trained: no context


@pytest.mark.parametrize("method", ["nearest", "zonal-mean", "kriging"])
def test_baselines_keep_observed_values_bit_for_bit_and_layout(method):
    ds = _gappy_obs()
    out = Infiller(method).fill(ds)
    observed = np.isfinite(ds.tas.values)
    assert out.tas.dtype == ds.tas.dtype
    assert np.array_equal(out.tas.values[observed], ds.tas.values[observed])
    assert np.isfinite(out.tas.values).all()
    assert out.tas.dims == ds.tas.dims
    assert np.array_equal(out.lat.values, ds.lat.values)
    assert np.array_equal(out.lon.values, ds.lon.values)
    assert out.tas.attrs["source"] == "test" and out.attrs["title"] == "gappy"
    assert out.attrs["climgen_fill_method"] == method
    # Global attributes: only the CF descriptive ones are the input's (provenance_attrs).
    assert "packing" not in out.attrs and "Infiller(" in out.attrs["history"]
    assert np.array_equal(out.tas_mask.values, observed.astype(np.int8))
    assert np.all(out.tas_spread.values[observed] == 0)
    if method == "kriging":
        assert np.all(out.tas_spread.values[~observed] > 0)


def test_fill_with_extra_mask_and_bad_inputs():
    ds = _gappy_obs()
    extra = xr.ones_like(ds.tas.isel(time=0), dtype=np.int8).rename("m")
    extra[:, :18] = 0
    out = Infiller("nearest").fill(ds, mask=extra)
    assert out.tas_mask.values[:, :, :18].sum() == 0
    empty = ds.copy()
    empty["tas"] = ds.tas.where(ds.time == 0)
    with pytest.raises(ClimgenInputError, match="no observed value at time index \\[1\\]"):
        Infiller("nearest").fill(empty)
    with pytest.raises(ClimgenInputError, match="lat size 9"):
        Infiller("nearest").fill(ds, mask=_latlon(np.ones((9, 36), np.int8), name="m"))
    with pytest.raises(ClimgenInputError, match="not 0/1"):
        Infiller("nearest").fill(ds, mask=extra * 2)


def test_lazy_observations_are_read_once():
    import dask
    import dask.array

    ds = _gappy_obs()
    reads = []

    def read():
        reads.append(1)
        return ds.tas.values

    lazy = dask.array.from_delayed(dask.delayed(read)(), ds.tas.shape, ds.tas.dtype)
    out = Infiller("zonal-mean").fill(ds.assign(tas=ds.tas.copy(data=lazy)))
    assert len(reads) == 1
    np.testing.assert_array_equal(out.tas.values, Infiller("zonal-mean").fill(ds).tas.values)


def test_units_and_magnitude_mismatch_are_caught():
    anomalies = _latlon(_smooth_fields(3), units="K")
    fitted = Infiller("zonal-mean").fit(anomalies)
    obs_v = _latlon(np.where(np.eye(18, 36) > 0, 1.0, np.nan), units="m s-1")
    with pytest.raises(ClimgenInputError, match="'m s-1'.*'K'"):  # degC converts: test_units.py
        fitted.fill(obs_v)
    # observations on another lat/lon grid are regridded to the training grid, gaps kept
    coarse = np.ones((9, 36))
    coarse[4, 5] = np.nan
    out = fitted.fill(_latlon(coarse))
    assert out.tas.shape == (18, 36) and "9x36" in out.attrs["climgen_fill_regrid"]
    hidden = out.tas_mask.values == 0
    assert 0 < hidden.sum() <= 4 * 2 and np.all(out.tas.values[~hidden] == 1.0)
    with pytest.raises(ClimgenInputError, match="regrid"):
        fitted.fill(grf_dataarray(1, 9, 36, kind="planar", name="tas", units="K").isel(time=0))


@pytest.fixture(scope="module")
def grf_series():
    da = grf_dataarray(96, 16, 32, kind="latlon", slope=-4.0, seed=0, name="tas", units="K")
    return da


@pytest.fixture(scope="module")
def trained_partialconv(grf_series, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pconv")
    infiller = Infiller("partialconv", base_channels=8, lr=2e-3, context=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures start before the autouse one-thread fixture
    try:
        infiller.fit(
            grf_series.isel(time=slice(0, 80)),
            run_dir=run_dir,
            max_steps=60,
            batch_size=16,
            log_every=10,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return infiller


def test_partialconv_trains_with_falling_losses_reported_separately(trained_partialconv):
    import csv

    with open(trained_partialconv.run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"loss", "valid_l1", "hole_l1"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < 0.9 * float(rows[0]["loss"])
    assert float(rows[-1]["hole_l1"]) < float(rows[0]["hole_l1"])


def test_partialconv_beats_zonal_mean_and_keeps_observations(trained_partialconv, grf_series):
    test = grf_series.isel(time=slice(80, 96))
    mask = xr.DataArray(
        blob_masks(1, (16, 32), coverage=0.35, seed=5)[0],
        dims=("lat", "lon"),
        coords={"lat": test.lat, "lon": test.lon},
        name="m",
    )
    net = cross_validate(trained_partialconv, test, mask)
    zonal = cross_validate("zonal-mean", test, mask)
    assert net["rmse"] < zonal["rmse"]
    out = trained_partialconv.fill(test.where(mask == 1))
    keep = np.broadcast_to(mask.values == 1, test.shape)
    assert np.array_equal(out.tas.values[keep], test.values[keep])
    assert np.isnan(out.tas_spread.values[~keep]).all()
    reloaded = Infiller.load(trained_partialconv.run_dir)
    again = reloaded.fill(test.where(mask == 1))
    np.testing.assert_allclose(again.tas.values, out.tas.values, rtol=1e-5, atol=1e-5)


def test_network_catches_anomaly_vs_absolute_confusion(trained_partialconv, grf_series):
    absolute = (grf_series.isel(time=slice(0, 2)) + 280.0).where(lambda x: x > 280)
    absolute.attrs["units"] = "K"
    with pytest.raises(ClimgenInputError, match="anomalies"):
        trained_partialconv.fill(absolute)


@pytest.mark.slow
def test_cvae_ensemble_keeps_observations_and_has_members(grf_series, tmp_path):
    infiller = Infiller("cvae", base_channels=8, latent_dim=8)
    infiller.fit(
        grf_series.isel(time=slice(0, 80)),
        run_dir=tmp_path,
        max_steps=40,
        batch_size=16,
        progress=False,
    )
    test = grf_series.isel(time=slice(80, 84))
    mask = xr.DataArray(
        blob_masks(1, (16, 32), coverage=0.4, seed=1)[0],
        dims=("lat", "lon"),
        coords={"lat": test.lat, "lon": test.lon},
    )
    out = infiller.fill(test.where(mask == 1), members=6)
    assert out.tas_members.sizes["member"] == 6
    keep = np.broadcast_to(mask.values == 1, test.shape)
    assert np.array_equal(out.tas.values[keep], test.values[keep])
    for k in range(6):
        assert np.array_equal(out.tas_members.values[k][keep], test.values[keep])
    assert np.all(out.tas_spread.values[~keep] > 0)
    np.testing.assert_allclose(
        out.tas_spread.values, out.tas_members.std("member", ddof=1).values, atol=1e-12
    )
    scores = cross_validate(infiller, test, mask, members=6)
    assert {"crps", "spread_skill"} <= set(scores) and scores["crps"] < scores["mae"]


# -- real observations -----------------------------------------------------------------------


@pytest.mark.slow
def test_hadcrut_1877_mask_on_1893_field_kriging_beats_zonal_mean():
    obs = xr.open_dataset(HADCRUT, engine="netcdf4").tas.isel(time=[1]).load()
    scores = {
        m: cross_validate(
            m, obs, HADCRUT_MASK, **({"max_fit_points": 600} if m == "kriging" else {})
        )
        for m in ("kriging", "zonal-mean", "nearest")
    }
    hidden = scores["kriging"]["n_hidden"]
    # Hidden: cells observed in 1893-08 but not in 1877-09 (696 of the 1 624 observed).
    assert 600 < hidden < 800
    assert scores["kriging"]["rmse"] < scores["zonal-mean"]["rmse"]
    assert scores["kriging"]["rmse"] < scores["nearest"]["rmse"]


def test_cli_fill_with_a_baseline(tmp_path):
    from climgen.cli import main

    obs_path = tmp_path / "obs.nc"
    _gappy_obs().to_netcdf(obs_path)
    out_path = tmp_path / "filled.nc"
    assert main(["fill", "nearest", str(obs_path), "-o", str(out_path)]) == 0
    out = xr.load_dataset(out_path)
    assert {"tas", "tas_spread", "tas_mask"} <= set(out.data_vars)
    assert np.isfinite(out.tas.values).all()
    assert main(["fill", "partialconv", str(obs_path), "-o", str(out_path)]) == 2


# -- training augmentation: roll_fields ------------------------------------------------------


def test_roll_fields_rolls_target_and_context_together_mask_independent():
    from climgen.data.dataset import FieldDataset
    from climgen.tasks.fill.networks import MaskedFields

    values = np.random.default_rng(0).standard_normal((5, 8, 16))
    da = _latlon(values)
    fields = FieldDataset(da.to_dataset(), ["tas"], sample_dim="time")
    bank = blob_masks(3, (8, 16), coverage=0.4, seed=1)
    plain = MaskedFields(fields, bank, context=1, aux=None, style="partialconv", seed=0)
    rolled = MaskedFields(fields, bank, context=1, aux=None, style="partialconv", seed=0, roll=True)
    assert torch.equal(plain[2]["x"][0], torch.from_numpy(values[2]).float())  # default: as is
    shifts, mask_shifts = set(), set()
    for _ in range(12):
        item = rolled[2]
        x = item["x"][0].numpy()
        shift = next(s for s in range(16) if np.allclose(x, np.roll(values[2], s, -1)))
        shifts.add(shift)
        # neighbours (days 1 and 3) rolled by the same number of cells as the target
        np.testing.assert_allclose(item["cond"][0].numpy(), np.roll(values[1], shift, -1))
        np.testing.assert_allclose(item["cond"][1].numpy(), np.roll(values[3], shift, -1))
        m = item["mask"][0].numpy()
        mask_shifts.add(next(s for b in bank for s in range(16) if (np.roll(b, s, -1) == m).all()))
    assert len(shifts) > 3 and len(mask_shifts) > 3  # random shifts, mask drawn separately


def test_roll_fields_bad_uses_are_clear_errors(tmp_path):
    with pytest.raises(ClimgenInputError, match="roll_fields must be true or false"):
        Infiller("partialconv", roll_fields="yes")
    da = _latlon(_smooth_fields(4))
    aux = _latlon(_smooth_fields(1)[0], name="lsm")
    with pytest.raises(ClimgenInputError, match="roll_fields=True cannot be used.*aux"):
        Infiller("partialconv", roll_fields=True, base_channels=4).fit(
            da, aux=aux, run_dir=tmp_path, max_steps=1, progress=False
        )


def test_fill_rolls_is_the_mean_of_rolled_fills_and_survives_load(tmp_path):
    da = _latlon(_smooth_fields(6, ny=8, nx=16))
    with pytest.raises(ClimgenInputError, match="fill_rolls > 1 needs.*roll_fields=True"):
        Infiller("partialconv", fill_rolls=4)
    with pytest.raises(ClimgenInputError, match="fill_rolls must be an int"):
        Infiller("partialconv", roll_fields=True, fill_rolls=0)
    net = Infiller("partialconv", roll_fields=True, base_channels=4, num_levels=2)
    net.fit(da, run_dir=tmp_path, max_steps=2, batch_size=4, progress=False)
    mask = blob_masks(1, (8, 16), coverage=0.5, seed=3)[0] > 0
    obs = da.isel(time=slice(0, 2)).where(mask)
    one = net.fill(obs).tas.values
    shifts = (0, 5, 11)  # round(k * 16 / 3): not multiples of the encoder's stride 4
    views = [net.fill(obs.copy(data=np.roll(obs.values, s, -1))).tas.values for s in shifts]
    manual = np.mean([np.roll(v, -s, -1) for v, s in zip(views, shifts)], axis=0)
    net.fill_rolls = 3
    three = net.fill(obs).tas.values
    np.testing.assert_allclose(three, manual, rtol=1e-5, atol=1e-6)
    assert not np.allclose(three, one)  # the views differ (strided encoder)
    np.testing.assert_array_equal(three[:, mask], obs.values[:, mask])  # observed cells kept
    loaded = Infiller.load(tmp_path)
    assert loaded.roll_fields and loaded.fill_rolls == 1  # fit saved its settings before
    loaded.fill_rolls = 3
    np.testing.assert_allclose(loaded.fill(obs).tas.values, three, rtol=1e-5, atol=1e-6)


# -- loss options: L2 reconstruction, area weights -----------------------------------------


def test_partialconv_l2_and_row_weighted_losses_follow_their_formulas():
    from climgen.families.infill import PartialConvInfiller

    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 16)
    m = (torch.rand(2, 1, 8, 16) > 0.4).float()
    rw = torch.linspace(0.2, 1.0, 8)
    for norm in ("l1", "l2"):
        torch.manual_seed(1)
        net = PartialConvInfiller(
            1, (8, 16), base_channels=4, num_levels=2, reconstruction=norm, row_weights=rw
        )
        out = net.predict(x, m).detach()
        err = (out - x).abs() if norm == "l1" else (out - x) ** 2
        a = (rw / rw.mean()).view(1, 1, 8, 1).expand_as(x)
        losses = {k: v.detach() for k, v in net.loss(x, m).items()}
        hole = (err * a * (1 - m)).sum() / (a * (1 - m)).sum()
        valid = (err * a * m).sum() / (a * m).sum()
        assert float(losses[f"hole_{norm}"]) == pytest.approx(float(hole), rel=1e-5)
        assert float(losses[f"valid_{norm}"]) == pytest.approx(float(valid), rel=1e-5)
        assert float(losses["loss"]) == pytest.approx(float(valid + 6 * hole), rel=1e-5)
    with pytest.raises(ClimgenInputError, match="reconstruction"):
        PartialConvInfiller(1, (8, 16), reconstruction="huber")
    with pytest.raises(ClimgenInputError, match="row_weights.*8"):
        PartialConvInfiller(1, (8, 16), row_weights=[1.0] * 7)
    with pytest.raises(ClimgenInputError, match="row_weights"):
        PartialConvInfiller(1, (8, 16), row_weights=[-1.0] + [1.0] * 7)


def test_infiller_area_row_weights_are_cos_latitude_and_survive_load(tmp_path):
    da = _latlon(_smooth_fields(6, ny=8, nx=16))
    net = Infiller("partialconv", base_channels=4, num_levels=2, row_weights="area")
    net.fit(da, run_dir=tmp_path, max_steps=2, batch_size=4, progress=False)
    lat = np.deg2rad(_grid(8, 16)[0])
    expected = np.cos(lat) / np.cos(lat).mean()
    np.testing.assert_allclose(net.family.config["row_weights"], expected, rtol=1e-6)
    loaded = Infiller.load(tmp_path)
    np.testing.assert_allclose(loaded.family.config["row_weights"], expected, rtol=1e-6)
    with pytest.raises(ClimgenInputError, match="row_weights must be 'area'"):
        Infiller("partialconv", base_channels=4, row_weights="cos").fit(
            da, run_dir=tmp_path / "bad", max_steps=1, progress=False
        )


# -- CRPS-trained ensemble U-Net ------------------------------------------------------------


def test_crps_partialconv_loss_is_the_fair_crps_of_its_members_and_never_reads_holes():
    from climgen.families.infill import PartialConvInfiller
    from climgen.metrics import crps_fair

    x = torch.randn(2, 1, 8, 16, generator=torch.Generator().manual_seed(0))
    m = (torch.rand(2, 1, 8, 16, generator=torch.Generator().manual_seed(1)) > 0.4).float()
    net = PartialConvInfiller(
        1, (8, 16), base_channels=4, num_levels=2, reconstruction="crps", crps_members=3
    )
    assert net.stochastic
    torch.manual_seed(7)
    losses = {k: float(v.detach()) for k, v in net.loss(x, m).items()}
    torch.manual_seed(7)  # the same noise draws, member by member
    members = net.predict(x.repeat_interleave(3, 0), m.repeat_interleave(3, 0)).detach()
    members = members.view(2, 3, 1, 8, 16).transpose(0, 1)
    hole = crps_fair(members, x, weights=(1 - m).expand_as(x))
    valid = crps_fair(members, x, weights=m.expand_as(x))
    assert losses["hole_crps"] == pytest.approx(float(hole), rel=1e-5)
    assert losses["valid_crps"] == pytest.approx(float(valid), rel=1e-5)
    assert losses["loss"] == pytest.approx(float(valid + 6 * hole), rel=1e-5)
    # draws differ in the holes, never at observed cells; a generator makes them repeatable
    g = [torch.Generator().manual_seed(s) for s in (3, 3, 4)]
    a, b, c = (net.infill(x, m, generator=gen).detach() for gen in g)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(a[m.bool()], x[m.bool()]) and torch.equal(c[m.bool()], x[m.bool()])
    poked = torch.where(m.bool(), x, torch.full_like(x, 1e6))
    assert torch.equal(net.infill(poked, m, generator=torch.Generator().manual_seed(3)), a)
    with pytest.raises(ClimgenInputError, match="crps_members"):
        PartialConvInfiller(1, (8, 16), reconstruction="crps", crps_members=1)


@pytest.mark.slow
def test_crps_partialconv_learns_a_known_conditional_spread(tmp_path):
    """North half c, south half c + ε with ε ~ N(0, σ²), the north observed: the hidden
    cells' conditional law is N(c, σ²), so a CRPS-trained ensemble must centre on c with
    spread σ (a deterministic infiller has none)."""
    rng = np.random.default_rng(0)
    n, sigma = 96, 0.5
    lat, _ = _grid(8, 16)
    c = rng.standard_normal(n)
    d = c + sigma * rng.standard_normal(n)
    north = lat > 0
    da = _latlon(
        np.where(north[None, :, None], c[:, None, None], d[:, None, None]) * np.ones((n, 8, 16))
    )
    mask = xr.ones_like(da.isel(time=0, drop=True)).where(da.lat > 0, 0).rename("mask")
    net = Infiller("partialconv", reconstruction="crps", base_channels=8, num_levels=2, lr=3e-3)
    assert net.is_ensemble
    net.fit(
        da.isel(time=slice(0, 64)),
        masks=mask,
        run_dir=tmp_path,
        max_steps=120,
        batch_size=8,
        progress=False,
    )
    test = da.isel(time=slice(64, n))
    out = net.fill(test.where(mask == 1), members=16, seed=1)
    assert out.tas_members.sizes["member"] == 16
    south = out.tas_spread.values[:, ~north]
    assert 0.35 < south.mean() < 0.65, south.mean()  # σ = 0.5
    centre = out.tas.values[:, ~north] - c[64:, None, None]
    assert np.sqrt((centre**2).mean()) < 0.35  # the mean is near c, not near 0
    kept = test.values[:, north]
    assert np.array_equal(out.tas.values[:, north], kept)
    assert all(np.array_equal(out.tas_members.values[k][:, north], kept) for k in range(16))
    np.testing.assert_allclose(out.tas_spread, out.tas_members.std("member", ddof=1), atol=1e-12)
    again = Infiller.load(tmp_path).fill(test.where(mask == 1), members=16, seed=1)
    np.testing.assert_allclose(again.tas_members, out.tas_members, rtol=1e-5, atol=1e-5)
