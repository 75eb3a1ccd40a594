"""Gap filling: data preparation (regrid, anomalies, coverage masks), spread calibration, the
cross-validation report, `task: fill` recipes and `climgen fill RUN_DIR ... --report`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.cross_validation import (
    calibrate_spread,
    cross_validate,
    cross_validation_report,
)
from climgen.tasks.fill.infiller import Infiller
from climgen.tasks.fill.masks import blob_masks
from climgen.tasks.fill.prepare import anomalies, coverage_masks, regrid_bilinear


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grid_da(values, lat, lon, name="tas", units="K"):
    dims = ("time", "lat", "lon") if np.ndim(values) == 3 else ("lat", "lon")
    coords = {"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon)}
    if len(dims) == 3:
        coords["time"] = np.arange(np.shape(values)[0])
    return xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"units": units})


def _mask_da(like, coverage=0.4, seed=1, n=1):
    values = blob_masks(n, like.shape[-2:], coverage=coverage, seed=seed)
    return xr.DataArray(
        values if n > 1 else values[0],
        dims=(("time",) if n > 1 else ()) + ("lat", "lon"),
        coords={"lat": like.lat, "lon": like.lon},
        name="mask",
    )


# -- data preparation ------------------------------------------------------------------------


def test_regrid_bilinear_is_exact_for_linear_fields_and_wraps_longitude():
    lat_s = np.linspace(-80, 80, 17)
    lon_s = np.arange(0, 360, 10.0)
    # cos(lon) is smooth and periodic; bilinear error ≤ h²/8 · max|f''| = (10°)²/8 in radians².
    src = _grid_da(
        np.cos(np.deg2rad(lon_s))[None, :] + 0.01 * lat_s[:, None], lat_s, lon_s
    ).expand_dims(time=2)
    lat_t = np.array([-88.0, -45.0, 0.0, 33.0, 88.0])
    lon_t = np.array([2.5, 177.5, 355.0, 359.0])
    like = _grid_da(np.zeros((5, 4)), lat_t, lon_t)
    out = regrid_bilinear(src, like)
    assert out.dims == ("time", "lat", "lon") and out.attrs["units"] == "K"
    expected = np.cos(np.deg2rad(lon_t))[None, :] + 0.01 * np.clip(lat_t, -80, 80)[:, None]
    np.testing.assert_allclose(out.values[0], expected, atol=np.deg2rad(10) ** 2 / 8 + 1e-12)
    # 359° lies between the source's 350° and 0° (= 360°): the wrap-around is interpolated.
    w = (359 - 350) / 10
    wrapped = (1 - w) * np.cos(np.deg2rad(350)) + w * 1.0
    np.testing.assert_allclose(out.values[0, 2, 3], wrapped + 0.0, atol=1e-12)


def test_anomalies_use_the_given_climatology():
    da = _grid_da(np.arange(24.0).reshape(2, 3, 4), np.array([-30.0, 0, 30]), np.arange(4) * 90.0)
    anom, clim = anomalies(da)
    np.testing.assert_allclose(anom.mean("time").values, 0)
    later, _ = anomalies(da + 5, clim)
    np.testing.assert_allclose(later.values, anom.values + 5)
    assert later.attrs["units"] == "K" and "anomaly" in later.attrs["long_name"]


def test_coverage_masks_from_mask_and_nan_files(tmp_path):
    lat, lon = np.array([-45.0, 45.0]), np.array([90.0, 270.0])
    _grid_da(np.array([[1, 0], [0, 1]], dtype=np.int8), lat, lon, "m", "1").to_netcdf(
        tmp_path / "mask.nc"
    )
    obs = np.array([[[1.5, np.nan], [np.nan, np.nan]], [[0.2, -0.3], [np.nan, 4.0]]])
    _grid_da(obs, lat, lon).to_netcdf(tmp_path / "obs.nc")
    masks = coverage_masks([tmp_path / "mask.nc", tmp_path / "obs.nc"])
    assert masks.dtype == np.int8 and masks.sizes["time"] == 3
    assert masks.values.tolist() == [[[1, 0], [0, 1]], [[1, 0], [0, 0]], [[1, 1], [0, 1]]]


# -- spread calibration and the report --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cvae(tmp_path_factory):
    series = grf_dataarray(40, 8, 16, kind="latlon", slope=-4.0, seed=3, name="tas", units="K")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        infiller = Infiller("cvae", base_channels=4, latent_dim=4).fit(
            series.isel(time=slice(0, 32)),
            run_dir=tmp_path_factory.mktemp("cvae"),
            max_steps=4,
            batch_size=8,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return infiller, series.isel(time=slice(32, 40))


def test_spread_inflation_scales_spread_keeps_mean_and_observations(tiny_cvae):
    infiller, test = tiny_cvae
    mask = _mask_da(test)
    gappy = test.where(mask == 1)
    infiller.spread_inflation = 1.0
    raw = infiller.fill(gappy, members=5, seed=7)
    infiller.spread_inflation = 2.5
    wide = infiller.fill(gappy, members=5, seed=7)
    infiller.spread_inflation = 1.0
    np.testing.assert_allclose(wide.tas.values, raw.tas.values, atol=1e-10)
    np.testing.assert_allclose(wide.tas_spread.values, 2.5 * raw.tas_spread.values, rtol=1e-9)
    keep = np.broadcast_to(mask.values == 1, test.shape)
    for k in range(5):
        assert np.array_equal(wide.tas_members.values[k][keep], test.values[keep])
    assert wide.attrs["climgen_fill_spread_inflation"] == 2.5
    with pytest.raises(ClimgenInputError, match="spread_inflation"):
        Infiller("cvae", spread_inflation=0)


def test_calibrate_spread_makes_spread_skill_one_and_is_saved(tiny_cvae):
    infiller, test = tiny_cvae
    mask = _mask_da(test, seed=4)
    alpha = calibrate_spread(infiller, test, mask, members=6, seed=3)
    try:
        assert alpha > 0 and infiller.spread_inflation == alpha
        # Same fields, same seed: the calibrated spread/skill is 1 by construction.
        s = cross_validate(infiller, test, mask, members=6, seed=3)
        assert s["spread_skill"] == pytest.approx(1.0, rel=1e-6)
        assert Infiller.load(infiller.run_dir).spread_inflation == pytest.approx(alpha)
    finally:
        infiller.spread_inflation = 1.0
    with pytest.raises(ClimgenInputError, match="ensemble"):
        calibrate_spread(Infiller("kriging"), test, mask)


def test_cross_validation_report_scores_and_page(tmp_path):
    series = grf_dataarray(3, 12, 24, kind="latlon", slope=-4.0, seed=0, name="tas", units="K")
    mask = _mask_da(series, coverage=0.5)
    scores = cross_validation_report(
        ["nearest", "zonal-mean"], series, mask, tmp_path / "rep", title="t & <u>"
    )
    assert set(scores) == {"nearest", "zonal-mean"}
    for method in scores:
        assert scores[method] == cross_validate(method, series, mask)
    assert json.loads((tmp_path / "rep" / "scores.json").read_text()) == scores
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "t &amp; &lt;u&gt;" in html and "zonal-mean" in html
    assert (tmp_path / "rep" / "fill_error_by_latitude.png").exists()


# -- recipes and the command line ---------------------------------------------------------------


def _write_recipe(tmp_path, method="partialconv", options="{base_channels: 4}", extra=""):
    series = grf_dataarray(20, 8, 16, kind="latlon", slope=-4.0, seed=1, name="tas", units="K")
    series.to_dataset().to_netcdf(tmp_path / "sims.nc")
    masks = xr.DataArray(
        blob_masks(2, (8, 16), coverage=0.4, seed=2),
        dims=("time", "lat", "lon"),
        coords={"lat": series.lat, "lon": series.lon},
        name="cover",
    )
    masks.to_dataset().to_netcdf(tmp_path / "masks.nc")
    recipe = tmp_path / "fill.yaml"
    recipe.write_text(
        textwrap.dedent(
            f"""\
            task: fill
            data:
              paths: sims.nc
              variables: [tas]
              train_fraction: 0.8
              masks: masks.nc
              anomalies: true
            {extra}
            method:
              name: {method}
              options: {options}
            train: {{max_steps: 3, batch_size: 4, log_every: 1}}
            evaluate: {{members: 3, kriging_points: 0}}
            run_dir: run
            """
        )
    )
    return recipe, series


def test_fill_recipe_trains_reports_and_the_run_dir_fills(tmp_path, capsys):
    import climgen.tasks.fill.recipe  # noqa: F401 - registers task: fill
    from climgen.cli import main
    from climgen.tasks.recipe import load_recipe, run_recipe

    recipe_path, series = _write_recipe(tmp_path)
    recipe = load_recipe(recipe_path)
    assert recipe.task == "fill" and recipe.data["masks"] == [str(tmp_path / "masks.nc")]
    infiller, scores = run_recipe(recipe, progress=False)
    run = tmp_path / "run"
    assert set(scores) == {"partialconv", "nearest", "zonal-mean"}
    assert scores["partialconv"]["n_hidden"] > 0
    assert (run / "report" / "index.html").exists() and (run / "climatology.nc").exists()
    assert (run / "recipe.yaml").exists()
    # `climgen fill RUN_DIR obs.nc -o filled.nc --report DIR` loads that run directory.
    obs = series.isel(time=slice(16, 18))
    obs = (obs - obs.mean("time")).where(np.arange(16) % 3 > 0)
    obs.to_dataset().to_netcdf(tmp_path / "obs.nc")
    argv = ["fill", str(run), str(tmp_path / "obs.nc"), "-o", str(tmp_path / "filled.nc")]
    assert main([*argv, "--report", str(tmp_path / "page")]) == 0
    filled = xr.load_dataset(tmp_path / "filled.nc")
    assert np.isfinite(filled.tas.values).all()
    assert filled.attrs["climgen_fill_method"] == "partialconv"
    # anomalies in (recognised as such), absolute values out too: anomaly + climatology
    clim = xr.load_dataset(run / "climatology.nc")["tas_climatology"]
    assert filled.attrs["climgen_fill_values"].startswith("anomalies")
    np.testing.assert_allclose(
        filled.tas_absolute.values, filled.tas.values + clim.values[None], atol=1e-5
    )
    assert (tmp_path / "page" / "index.html").exists()
    assert "index.html" in capsys.readouterr().out


def test_fill_recipe_errors_name_the_key(tmp_path):
    import climgen.tasks.fill.recipe  # noqa: F401
    from climgen.tasks.recipe import load_recipe, run_recipe

    recipe, _ = _write_recipe(tmp_path, method="krigging", options="{}")
    with pytest.raises(ClimgenInputError, match="did you mean 'kriging'"):
        load_recipe(recipe)
    recipe, _ = _write_recipe(tmp_path, options="{base_chanels: 4}")
    with pytest.raises(ClimgenInputError, match="base_chanels"):
        load_recipe(recipe)
    recipe, _ = _write_recipe(tmp_path, method="kriging", options="{nu: 2.5}")
    assert load_recipe(recipe).model["options"] == {"nu": 2.5}
    recipe, _ = _write_recipe(tmp_path, extra="  mask_pairing: zip")
    with pytest.raises(ClimgenInputError, match="mask_pairing"):
        run_recipe(load_recipe(recipe), progress=False)


def test_cli_report_with_a_mask_scores_hidden_cells(tmp_path, capsys):
    from climgen.cli import main

    series = grf_dataarray(2, 12, 24, kind="latlon", slope=-4.0, seed=0, name="tas", units="K")
    series.to_dataset().to_netcdf(tmp_path / "obs.nc")
    _mask_da(series, coverage=0.5).to_dataset().to_netcdf(tmp_path / "mask.nc")
    argv = ["fill", "nearest", str(tmp_path / "obs.nc"), "-o", str(tmp_path / "f.nc")]
    argv += ["--mask", str(tmp_path / "mask.nc"), "--report", str(tmp_path / "r")]
    assert main(argv) == 0
    scores = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert scores["nearest"]["n_hidden"] > 0
    assert "hidden cells" in capsys.readouterr().out


def test_cli_fills_absolute_observations_on_another_grid_with_the_runs_climatology(
    tmp_path, capsys
):
    """`climgen fill RUN obs.nc` as a user runs it: absolute values on a finer grid in, the
    run's preprocessing (regrid, minus climatology.nc) applied, anomalies and absolute values
    out; --days, --mask-variable and -q."""
    from climgen.cli import main
    from climgen.tasks.recipe import load_recipe, run_recipe

    recipe_path, series = _write_recipe(tmp_path, method="optimal-interpolation", options="{}")
    absolute = series + 280.0  # the recipe trains on (series + 280) − its time mean
    absolute.attrs = dict(series.attrs)
    absolute.to_dataset().to_netcdf(tmp_path / "sims.nc")
    run_recipe(load_recipe(recipe_path), progress=False)
    run = tmp_path / "run"
    clim = xr.load_dataset(run / "climatology.nc")["tas_climatology"]
    assert float(clim.mean()) == pytest.approx(280.0, abs=1.0)
    # observations: absolute values on a 2× finer lat/lon grid, with gaps
    fine_lat = -90 + 180 / 16 * (np.arange(16) + 0.5)
    fine_lon = 360 / 32 * (np.arange(32) + 0.5)
    obs = regrid_bilinear(
        absolute.isel(time=slice(16, 19)), _grid_da(np.zeros((16, 32)), fine_lat, fine_lon)
    )
    obs = obs.where(np.arange(32) % 4 > 0)
    obs.to_dataset().to_netcdf(tmp_path / "obs.nc")
    two = xr.Dataset(
        {
            "coverage": _mask_da(obs.isel(time=0), coverage=0.7),
            "other": _mask_da(obs.isel(time=0), coverage=0.2, seed=5),
        }
    )
    two.to_netcdf(tmp_path / "masks2.nc")
    argv = ["fill", str(run), str(tmp_path / "obs.nc"), "-o", str(tmp_path / "f.nc"), "-q"]
    argv += ["--days", "1", "--mask", str(tmp_path / "masks2.nc")]
    assert main(argv) == 2
    assert "--mask-variable" in capsys.readouterr().err
    assert main([*argv, "--mask-variable", "coverage"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "f.nc")  # -q: only the path
    out = xr.load_dataset(tmp_path / "f.nc")
    assert out.tas.shape == (1, 8, 16) and int(out.time.values[0]) == int(obs.time.values[1])
    assert out.attrs["climgen_fill_values"].startswith("absolute")
    assert "16x32" in out.attrs["climgen_fill_regrid"]
    assert np.isfinite(out.tas.values).all() and np.isfinite(out.tas_anomaly.values).all()
    c = clim.transpose("lat", "lon").values
    np.testing.assert_allclose(out.tas.values[0] - c, out.tas_anomaly.values[0], atol=1e-4)
    # the same as regridding and subtracting the climatology by hand
    loaded = Infiller.load(run)
    masked = obs.where(_mask_da(obs.isel(time=0), coverage=0.7) > 0)
    by_hand = regrid_bilinear(masked, clim) - clim
    by_hand.attrs, by_hand.name = dict(series.attrs), "tas"
    expected = loaded.fill(by_hand, members=16, values="anomalies", at=[1])
    np.testing.assert_allclose(out.tas_anomaly.values, expected.tas.values, atol=1e-4)


def test_fill_recipe_trains_on_all_days_cross_validates_on_another_file_and_fills_obs(
    tmp_path, capsys
):
    """data.held_out: scored on another file's fields. data.observations: filled after
    training (observations_filled.nc); with data.observations_mask, the cells observed there
    but not in that earlier coverage are hidden and scored beside the baselines
    (report_observations) — the real-data path, here with the nugget estimated from the
    observations (nugget: ml)."""
    from climgen.tasks.recipe import load_recipe, run_recipe

    recipe_path, series = _write_recipe(
        tmp_path, method="optimal-interpolation", options="{nugget: ml, roll_fields: true}"
    )
    other = grf_dataarray(6, 8, 16, kind="latlon", slope=-4.0, seed=9, name="tas", units="K")
    other.to_dataset().to_netcdf(tmp_path / "other_run.nc")
    obs = grf_dataarray(2, 8, 16, kind="latlon", slope=-4.0, seed=7, name="tas", units="K")
    now = blob_masks(2, (8, 16), coverage=0.6, seed=3).astype(bool)
    obs.where(xr.DataArray(now, dims=obs.dims, coords=obs.coords)).to_dataset().to_netcdf(
        tmp_path / "obs.nc"
    )
    earlier = _mask_da(obs, coverage=0.3, seed=4)
    earlier.to_dataset().to_netcdf(tmp_path / "earlier.nc")
    text = recipe_path.read_text().replace(
        "  train_fraction: 0.8\n",
        "  held_out: other_run.nc\n  observations: obs.nc\n  observations_mask: earlier.nc\n",
    )
    recipe_path.write_text(text)
    infiller, scores = run_recipe(load_recipe(recipe_path), progress=True)
    assert infiller.gaussian is not None
    # every one of the 20 days trained; the 6 fields of the other file were scored
    run = tmp_path / "run"
    clim = xr.load_dataset(run / "climatology.nc")["tas_climatology"]
    np.testing.assert_allclose(clim.values, series.mean("time").values, atol=1e-5)
    assert scores["optimal-interpolation"]["n_hidden"] > 0
    assert "6 held-out fields of other_run.nc" in (run / "report" / "index.html").read_text()
    # the observations: filled (observed cells bit for bit), then cross-validated
    filled = xr.load_dataset(run / "observations_filled.nc")
    assert np.isfinite(filled.tas.values).all()
    np.testing.assert_array_equal(filled.tas.values[now], obs.values[now])
    assert filled.attrs["climgen_oi_nugget_method"].startswith("ml")
    real = json.loads((run / "report_observations" / "scores.json").read_text())
    assert set(real) == {"optimal-interpolation", "nearest", "zonal-mean"}
    hidden = int((now & (earlier.values[None] == 0)).sum())
    assert hidden > 0 and all(s["n_hidden"] == hidden for s in real.values())
    assert "(obs.nc, hidden by earlier.nc)" in capsys.readouterr().out
    recipe_path.write_text(text.replace("  held_out:", "  train_fraction: 0.8\n  held_out:"))
    with pytest.raises(ClimgenInputError, match="held_out"):
        run_recipe(load_recipe(recipe_path), progress=False)


def test_fill_recipe_residual_infiller_is_compared_with_oi_alone(tmp_path):
    from climgen.tasks.recipe import load_recipe, run_recipe

    options = (
        "{base_channels: 4, prior: optimal-interpolation, residual: true, reconstruction: crps,"
        " roll_fields: true, context: 1}"
    )
    recipe_path, _ = _write_recipe(tmp_path, options=options, extra="  validation_fraction: 0.2")
    text = recipe_path.read_text().replace(
        "kriging_points: 0}", "kriging_points: 0, compare_oi: true}"
    )
    recipe_path.write_text(text)
    infiller, scores = run_recipe(load_recipe(recipe_path), progress=False)
    assert infiller.residual and infiller.family.residual_channel == 2
    assert set(scores) == {"partialconv", "optimal-interpolation", "nearest", "zonal-mean"}
    # the OI beside it has the covariance options of the prior, and its own spread inflation
    oi = json.loads((tmp_path / "run" / "compare-oi" / "fill.json").read_text())
    assert oi["roll_fields"] and oi["spread_inflation"] != 1.0
    # ... and the run's climatology, so that it fills absolute observations as the run does
    clim = [xr.open_dataset(tmp_path / "run" / d / "climatology.nc") for d in ("", "compare-oi")]
    xr.testing.assert_identical(clim[0], clim[1])
    assert np.isfinite(scores["partialconv"]["crps"]) and np.isfinite(
        scores["optimal-interpolation"]["crps"]
    )
    # compare_oi without a prior stops before training
    (tmp_path / "b").mkdir()
    recipe_path, _ = _write_recipe(tmp_path / "b")
    recipe_path.write_text(
        recipe_path.read_text().replace(
            "kriging_points: 0}", "kriging_points: 0, compare_oi: true}"
        )
    )
    with pytest.raises(ClimgenInputError, match="compare_oi"):
        run_recipe(load_recipe(recipe_path), progress=False)
    assert not (tmp_path / "b" / "run" / "checkpoints").exists()
