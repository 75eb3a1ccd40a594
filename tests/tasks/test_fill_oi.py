"""Optimal interpolation with a learned covariance (``Infiller("optimal-interpolation")``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.baselines import sphere_kernel, unit_vectors
from climgen.tasks.fill.cross_validation import calibrate_spread, cross_validate
from climgen.tasks.fill.infiller import Infiller, available_fill_methods
from climgen.tasks.fill.masks import blob_masks
from climgen.tasks.fill.oi import GaussianFieldModel

NY, NX = 12, 24


def _latlon(values, name="tas"):
    """``values`` (T, H, W) or (H, W) on a global cell-centred lat/lon grid, units K."""
    values = np.asarray(values)
    stack = values if values.ndim == 3 else values[None]
    like = grf_dataarray(len(stack), *stack.shape[-2:], kind="latlon", name=name, units="K")
    da = like.copy(data=stack)
    return da if values.ndim == 3 else da.isel(time=0, drop=True)


def _nonstationary_fields(n, seed=0):
    """Zonally homogeneous Gaussian fields that a stationary isotropic kernel misdescribes:
    zonally elongated (the polar axis stretched 3×), short-range anomalies strong near the
    poles and long-range ones in the tropics: b = a₁(φ)·g(ℓ=0.25) + a₂(φ)·g(ℓ=1.2)."""
    lat = -90 + 180 / NY * (np.arange(NY) + 0.5)
    lon = 360 / NX * (np.arange(NX) + 0.5)
    points = unit_vectors(lat, lon).reshape(-1, 3) * np.array([1.0, 1.0, 3.0])
    rng = np.random.default_rng(seed)

    def draws(length_scale):
        cov = sphere_kernel(variance=1.0, length_scale=length_scale, noise=1e-6)(points)
        z = rng.standard_normal((points.shape[0], n))
        return (np.linalg.cholesky(cov) @ z).T.reshape(n, NY, NX)

    s2 = np.sin(np.deg2rad(lat))[None, :, None] ** 2
    return draws(0.25) * (0.2 + 1.8 * s2) + draws(1.2) * (1.5 - 1.3 * s2)


def test_zonal_covariance_equals_the_sample_covariance_of_every_roll_and_mirror():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 6))
    model = GaussianFieldModel.fit(x, zonal=True, hemispheric=True)
    aug = np.concatenate([np.roll(x, s, axis=-1) for s in range(6)])
    aug = np.concatenate([aug, aug[:, ::-1]])
    mean = aug.mean(axis=(0, 2), keepdims=True)
    a = (aug - mean).reshape(len(aug), -1)
    np.testing.assert_allclose(model.covariance, a.T @ a / len(a), atol=1e-12)
    np.testing.assert_allclose(model.mean, np.broadcast_to(mean[0], (4, 6)), atol=1e-12)


def test_conditional_mean_std_and_draws_are_the_gaussian_conditional():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((30, 3, 4)) @ rng.standard_normal((4, 4))  # correlated
    model = GaussianFieldModel.fit(train, nugget=1e-3)
    cov, mu = model.covariance, model.mean.reshape(-1)
    observed = np.zeros((3, 4), bool)
    observed[0, :] = observed[2, 1] = True
    y = rng.standard_normal((3, 4))
    mean, std, draws = model.condition(y, observed, members=20000, rng=2)
    o, h = np.flatnonzero(observed), np.flatnonzero(~observed)
    k = cov[np.ix_(h, o)] @ np.linalg.inv(cov[np.ix_(o, o)] + model.tau2 * np.eye(o.size))
    expect_mean = mu[h] + k @ (y.reshape(-1)[o] - mu[o])
    expect_var = np.diag(cov[np.ix_(h, h)] - k @ cov[np.ix_(o, h)]) + model.tau2
    np.testing.assert_allclose(mean.reshape(-1)[h], expect_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(std.reshape(-1)[h] ** 2, expect_var, rtol=1e-8, atol=1e-10)
    assert np.array_equal(mean[observed], y[observed]) and np.all(std[observed] == 0)
    # Conditioned draws: observed cells exact; mean and variance those of the conditional.
    flat = draws.reshape(len(draws), -1)
    assert np.array_equal(flat[:, o], np.broadcast_to(y.reshape(-1)[o], (len(draws), o.size)))
    sd = np.sqrt(expect_var)
    assert np.all(np.abs(flat[:, h].mean(0) - expect_mean) < 5 * sd / np.sqrt(len(draws)))
    np.testing.assert_allclose(flat[:, h].var(0), expect_var, rtol=0.05)


def test_learned_covariance_beats_stationary_kriging_on_nonstationary_fields(tmp_path):
    ratios = []
    for seed in range(3):
        fields = _nonstationary_fields(136, seed=seed)
        train, truth = _latlon(fields[:120]), _latlon(fields[120:])
        mask = _latlon(blob_masks(16, (NY, NX), coverage=0.35, seed=3 + seed), name="m")
        oi = Infiller("optimal-interpolation", roll_fields=True).fit(train, run_dir=tmp_path)
        learned = cross_validate(oi, truth, mask)
        kriging = cross_validate("kriging", truth, mask)
        assert learned["rmse"] < kriging["rmse"] and learned["crps"] < kriging["crps"]
        assert 0.8 < learned["spread_skill"] < 1.2
        ratios.append(learned["rmse"] / kriging["rmse"])
    assert np.mean(ratios) < 0.95, ratios


def test_fill_keeps_observations_has_members_and_reloads_identically(tmp_path):
    fields = _nonstationary_fields(24, seed=1)
    train = _latlon(fields[:20])
    obs = _latlon(fields[20:])
    hide = blob_masks(4, (NY, NX), coverage=0.4, seed=5).astype(bool)
    obs = obs.where(xr.DataArray(hide, dims=obs.dims, coords=obs.coords))
    obs = obs.isel(lat=slice(None, None, -1))  # user layout: north → south
    inf = Infiller("optimal-interpolation", roll_fields=True, hemispheric=True, nugget=1e-4)
    assert "optimal-interpolation" in available_fill_methods() and inf.is_ensemble
    inf.fit(train, run_dir=tmp_path / "oi")
    out = inf.fill(obs, members=8, seed=3)
    seen = np.isfinite(obs.values)
    assert np.array_equal(out.tas.values[seen], obs.values[seen])
    assert np.isfinite(out.tas.values).all() and out.tas.dims == obs.dims
    assert np.array_equal(out.lat.values, obs.lat.values)
    assert out.tas_members.sizes["member"] == 8
    assert out.attrs["climgen_oi_nugget"] == 1e-4
    assert np.all(out.tas_spread.values[~seen] > 0) and np.all(out.tas_spread.values[seen] == 0)
    members = out.tas_members.values
    assert (members[:, seen] == obs.values[seen]).all()
    again = Infiller.load(tmp_path / "oi").fill(obs, members=8, seed=3)
    xr.testing.assert_identical(out.drop_attrs(), again.drop_attrs())
    # Spread inflation is fitted on validation fields and saved with the model.
    alpha = calibrate_spread(inf, _latlon(fields[:4]), _latlon(hide.astype(np.int8)), members=8)
    assert alpha > 0 and Infiller.load(tmp_path / "oi").spread_inflation == pytest.approx(alpha)


def test_optimal_interpolation_bad_inputs_are_clear_errors(tmp_path):
    fields = _nonstationary_fields(6)
    with pytest.raises(ClimgenInputError, match="no option"):
        Infiller("optimal-interpolation", length_scale=2.0)
    with pytest.raises(ClimgenInputError, match="not trained"):
        Infiller("optimal-interpolation").fill(_latlon(fields[0]))
    bad = fields.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ClimgenInputError, match="1 NaN"):
        Infiller("optimal-interpolation").fit(_latlon(bad), run_dir=tmp_path / "a")
    planar = xr.DataArray(fields, dims=("time", "y", "x"), name="tas")
    with pytest.raises(ClimgenInputError, match="not periodic"):
        Infiller("optimal-interpolation", roll_fields=True).fit(planar, run_dir=tmp_path / "b")
    with pytest.raises(ClimgenInputError, match="hemispheric=True needs a lat/lon grid"):
        Infiller("optimal-interpolation", hemispheric=True).fit(planar, run_dir=tmp_path / "c")
    with pytest.raises(ClimgenInputError, match="nugget"):
        Infiller("optimal-interpolation", nugget=-1.0).fit(_latlon(fields), run_dir=tmp_path / "d")


def test_prior_channel_is_the_oi_estimate_under_every_roll_and_survives_load(tmp_path):
    """The partial-conv prior: the cached means of a training field rolled by s under a mask
    rolled by q equal the optimal-interpolation fill of exactly that input."""
    from climgen.tasks.fill.networks import MaskedFields, PriorMeans

    fields = _nonstationary_fields(12, seed=2)
    bank = blob_masks(2, (NY, NX), coverage=0.4, seed=1)
    model = GaussianFieldModel.fit(fields, zonal=True)
    prior = PriorMeans(model, fields, bank, center=0.5, scale=2.0)
    for i, shift, b, q in [(0, 0, 0, 0), (3, 5, 1, 2), (7, 23, 0, 11)]:
        rolled = np.roll(fields[i], shift, axis=-1)
        mask = np.roll(bank[b], q, axis=-1) > 0
        expect = (model.condition(rolled, mask)[0] - 0.5) / 2.0
        np.testing.assert_allclose(prior(i, shift, b, q), expect, atol=1e-5)
    assert len(prior.cache) == 3
    # The training items carry it as the last condition channel, fully "observed".
    from climgen.data.dataset import FieldDataset

    ds = _latlon(fields).to_dataset()
    items = MaskedFields(
        FieldDataset(ds, ["tas"]),
        bank,
        context=0,
        aux=None,
        style="partialconv",
        seed=0,
        roll=True,
        prior=prior,
    )
    item = items[4]
    assert item["cond"].shape == (1, NY, NX) and bool((item["cond_mask"] == 1).all())

    train = _latlon(fields)
    net = Infiller("partialconv", base_channels=4, prior="optimal-interpolation")
    masks = _latlon(bank, name="m")
    net.fit(train, masks=masks, run_dir=tmp_path, max_steps=2, batch_size=4, progress=False)
    obs = train.isel(time=slice(0, 2)).where(_latlon(bank, name="m").values > 0)
    again = Infiller.load(tmp_path)
    assert again.prior == "optimal-interpolation" and again.gaussian is not None
    xr.testing.assert_identical(net.fill(obs).drop_attrs(), again.fill(obs).drop_attrs())
    with pytest.raises(ClimgenInputError, match="prior must be None"):
        Infiller("cvae", prior="optimal-interpolation")
    with pytest.raises(ClimgenInputError, match="prior_options"):
        Infiller("partialconv", prior="optimal-interpolation", prior_options={"nu": 1.5})


def test_auto_nugget_maximises_held_out_likelihood_and_grows_with_rank_deficiency():
    from climgen.tasks.fill.oi import NUGGET_GRID

    fields = _nonstationary_fields(40, seed=3)
    few = GaussianFieldModel.fit(fields[:10])  # rank ≤ 8 of 288 cells
    many = GaussianFieldModel.fit(fields, zonal=True, hemispheric=True)  # full rank
    for model in (few, many):
        assert set(NUGGET_GRID) <= set(model.nugget_scores)
        assert model.nugget == max(model.nugget_scores, key=model.nugget_scores.get)
    assert few.nugget >= 100 * many.nugget
    # the held-out likelihood really is the Gaussian density (scipy's, for one nugget)
    from scipy.stats import multivariate_normal

    cov = many.covariance + many.tau2 * np.eye(NY * NX)
    dens = multivariate_normal(many.mean.reshape(-1), cov).logpdf(fields[:3].reshape(3, -1))
    np.testing.assert_allclose(many.log_likelihood(fields[:3]), dens.mean(), rtol=1e-9)


def test_auto_nugget_widens_its_search_past_the_edge_of_the_grid():
    from climgen.tasks.fill.oi import NUGGET_GRID

    # 5 patterns plus white noise of variance 1e-10 (the 5 patterns' variance ≈ 5): the best
    # nugget is ≈ 1e-11, three decades below the grid's smallest candidate (1e-8).
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((5, 48))
    x = rng.standard_normal((30, 5)) @ patterns + 1e-5 * rng.standard_normal((30, 48))
    model = GaussianFieldModel.fit(x.reshape(30, 6, 8))
    scores = model.nugget_scores
    tried = sorted(scores)
    assert model.nugget < min(NUGGET_GRID) / 100
    assert model.nugget == max(scores, key=scores.get)
    i = tried.index(model.nugget)
    assert 0 < i < len(tried) - 1  # an interior optimum: both neighbours score lower
    assert scores[model.nugget] > scores[min(NUGGET_GRID)] + 10  # nats per held-out field
    # a score that peaks above the grid widens upwards, and stops at the limit
    from climgen.tasks.fill.oi import NUGGET_LIMITS, widened_search

    up = widened_search(lambda n: -((np.log10(n) - 2.0) ** 2))
    assert max(up, key=up.get) == pytest.approx(100.0) and max(up) == pytest.approx(1000.0)
    edge = widened_search(lambda n: np.log10(n))
    assert max(edge) == pytest.approx(NUGGET_LIMITS[1])


def _ar1_fields(n, rho, seed=0):
    """x_t = ρ x_(t−1) + √(1 − ρ²) ε_t with ε_t the fields of :func:`_nonstationary_fields`."""
    eps = _nonstationary_fields(n, seed=seed)
    out = np.empty_like(eps)
    out[0] = eps[0]
    for t in range(1, n):
        out[t] = rho * out[t - 1] + np.sqrt(1 - rho**2) * eps[t]
    return out


@pytest.mark.parametrize("zonal", [True, False])
def test_lagged_covariance_blocks_equal_the_sample_lag_covariance(zonal):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 3, 4))
    model = GaussianFieldModel.fit(x, zonal=zonal, hemispheric=True, context=1, nugget=1e-3)
    series = [x, x[:, ::-1]]
    if zonal:  # every longitude shift of both series, pairs (t, t + lag) within a series
        series = [np.roll(s, r, axis=-1) for s in series for r in range(4)]
    mean = np.concatenate(series).mean(axis=(0, 2) if zonal else 0, keepdims=True)
    cells = np.arange(12)
    for lag in (0, 1, 2):
        pairs = [((s - mean)[: 7 - lag], (s - mean)[lag:]) for s in series]
        a = np.concatenate([p for p, _ in pairs]).reshape(-1, 12)
        b = np.concatenate([q for _, q in pairs]).reshape(-1, 12)
        # one divisor for every lag, the number of (series, time) rows: the biased estimator
        n = len(series) * 7
        np.testing.assert_allclose(model.block(lag, cells, cells), a.T @ b / n, atol=1e-12)
        np.testing.assert_allclose(model.block(-lag, cells, cells), (a.T @ b / n).T)


def test_space_time_oi_uses_the_neighbouring_days(tmp_path):
    fields = _ar1_fields(160, rho=0.95, seed=5)
    train, truth = _latlon(fields[:140]), _latlon(fields[140:])
    masks = _latlon(blob_masks(20, (NY, NX), coverage=0.35, seed=6), name="m")
    scores = {}
    for k in (0, 1):
        oi = Infiller("optimal-interpolation", roll_fields=True, context=k)
        oi.fit(train, run_dir=tmp_path / f"k{k}")
        scores[k] = cross_validate(oi, truth, masks, members=32)
        # under-dispersed, as plug-in covariances of few effective samples are (calibrate!)
        assert 0.5 < scores[k]["spread_skill"] < 1.2, scores[k]
    # ρ = 0.95: the neighbours saw much of what is hidden today (0.68× / 0.61× measured)
    assert scores[1]["rmse"] < 0.8 * scores[0]["rmse"], scores
    assert scores[1]["crps"] < 0.75 * scores[0]["crps"]
    again = Infiller.load(tmp_path / "k1")
    assert again.context == 1 and again.gaussian.context == 1


def test_fill_at_chosen_days_keeps_the_neighbours_as_context_and_records_options(tmp_path):
    fields = _ar1_fields(90, rho=0.9, seed=7)
    oi = Infiller("optimal-interpolation", roll_fields=True, context=1, nugget=1e-2)
    oi.fit(_latlon(fields[:80]), run_dir=tmp_path / "oi")
    truth = _latlon(fields[80:])
    masks = blob_masks(10, (NY, NX), coverage=0.4, seed=8)
    obs = truth.where(masks > 0)
    loaded = Infiller.load(tmp_path / "oi")
    full = loaded.fill(obs, members=2)
    some = loaded.fill(obs, members=2, at=[3, 6])
    assert some.sizes["time"] == 2 and list(some.time.values) == list(obs.time.values[[3, 6]])
    # the conditional mean of a day does not depend on which other days are filled …
    np.testing.assert_allclose(some.tas.values, full.tas.values[[3, 6]], rtol=0, atol=1e-10)
    np.testing.assert_allclose(some.tas_spread.values, full.tas_spread.values[[3, 6]], atol=1e-10)
    # … but on its neighbours: the same day given alone is filled differently
    alone = loaded.fill(obs.isel(time=[3]), members=2)
    assert np.abs(alone.tas.values[0] - some.tas.values[0]).max() > 1e-3
    # labels of the time coordinate work too
    by_label = loaded.fill(obs, members=2, at=[obs.time.values[6]])
    np.testing.assert_array_equal(by_label.tas.values[0], some.tas.values[1])
    with pytest.raises(ClimgenInputError, match="day 10 is out of range"):
        loaded.fill(obs, at=[10])
    # a loaded run records the options that shaped the fill
    options = json.loads(some.attrs["climgen_fill_options"])
    assert options["context"] == 1 and options["roll_fields"] is True
    assert options["nugget"] == 1e-2 and some.attrs["climgen_fill_seed"] == 0
    assert some.attrs["climgen_run_dir"] == str(tmp_path / "oi")


def test_an_ill_posed_fill_of_noisy_observations_is_one_clear_error_naming_the_nugget(tmp_path):
    """Smooth training fields, observations with errors, (almost) no nugget: the conditional
    mean explodes (tens of prior standard deviations; real HadCRUT4 months gave RMSE 1 811 K)
    — refused with the nugget named; a nugget of the observation error's size fills."""
    da = grf_dataarray(44, 24, 48, kind="latlon", slope=-6.0, seed=1, name="tas", units="K")
    train, test = da.isel(time=slice(0, 40)), da.isel(time=slice(40, None))
    noisy = test + float(train.std()) * np.random.default_rng(0).standard_normal(test.shape)
    hide = blob_masks(4, (24, 48), coverage=0.3, seed=5).astype(bool)
    obs = noisy.where(xr.DataArray(hide, dims=noisy.dims, coords=noisy.coords))
    options = {"roll_fields": True, "hemispheric": True}
    bad = Infiller("optimal-interpolation", nugget=1e-14, **options).fit(
        train, run_dir=tmp_path / "a"
    )
    with pytest.raises(ClimgenInputError, match=r"prior standard deviations.*nugget 1e-14"):
        bad.fill(obs, progress=False)
    good = Infiller("optimal-interpolation", nugget=1.0, **options).fit(
        train, run_dir=tmp_path / "b"
    )
    out = good.fill(obs, progress=False)
    sd = np.sqrt(good.gaussian.variance.max())
    assert np.isfinite(out.tas.values).all() and float(np.abs(out.tas).max()) < 20 * sd


def test_oi_members_have_the_truths_structure_in_the_gaps_and_its_mean_does_not(tmp_path):
    """Conditional draws of an exact Gaussian model are members: their spectra and Minkowski
    functionals inside the gaps are within 2× the truth's noise floor; the conditional mean is
    too smooth there (issue 27, item 2)."""
    f = grf_dataarray(116, 18, 36, kind="latlon", slope=-2, seed=0, name="tas", units="K")
    train, truth = f.isel(time=slice(0, 100)), f.isel(time=slice(100, None))
    masks = blob_masks(2, (18, 36), coverage=0.3, seed=3)[np.arange(16) % 2]
    mask = grf_dataarray(16, 18, 36, kind="latlon", name="m").copy(data=masks)
    oi = Infiller("optimal-interpolation", roll_fields=True).fit(train, run_dir=tmp_path)
    gaps = cross_validate(oi, truth, mask, members=4)["gaps"]
    assert max(gaps["members"].values()) <= 2.0, gaps  # the median member
    assert gaps["mean"]["spectrum"] > 2.5 and gaps["mean"]["boundary_length"] > 5, gaps
    few = cross_validate(oi, truth.isel(time=slice(0, 3)), mask.isel(time=slice(0, 3)))
    assert "at least 4 fields" in few["gaps"]["skipped"]
