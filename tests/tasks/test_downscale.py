"""Downscaling: baselines, conservation, fine coordinates, regression SR, SRGAN, tiling, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.cli import main as climgen_main
from climgen.data.coarsen import coarsen
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.families.superres import (
    SRResNet,
    conserve,
    conserve_additive,
    conserve_multiplicative,
    conserve_softmax,
)
from climgen.metrics import block_mean_error
from climgen.tasks.downscale.downscaler import Downscaler, available_downscale_methods
from climgen.tasks.downscale.interpolation import interpolation_matrix, refine_coordinate
from climgen.tasks.downscale.tiles import auto_tile, tiled_apply

SMALL_NET = dict(base_channels=8, n_blocks=1, lr=2e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _planar(values, y, x, name="u"):
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={
            "y": ("y", y, {"axis": "Y", "periodic": "true"}),
            "x": ("x", x, {"axis": "X", "periodic": "true"}),
        },
        name=name,
        attrs={"units": "m s-1", "long_name": "test field"},
    )


def _latlon_grid(ny, nx):
    lat = -90 + 180.0 / ny * (np.arange(ny) + 0.5)
    lon = 360.0 / nx * (np.arange(nx) + 0.5)
    return lat, lon


def _latlon(values, lat, lon, name="tas"):
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name=name,
        attrs={"units": "K"},
    )


# -- registry and baselines ---------------------------------------------------------------


def test_registry_lists_the_methods():
    names = available_downscale_methods()
    for m in ("nearest", "bilinear", "bicubic", "lanczos", "regression", "srgan", "diffusion"):
        assert m in names


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_interpolation_rows_are_partitions_of_unity(method):
    for periodic in (False, True):
        a = interpolation_matrix(7, 3, method, periodic)
        assert a.shape == (21, 7)
        np.testing.assert_allclose(a.sum(1).numpy(), 1.0, atol=1e-12)


def _smooth_case(n, factor=4):
    """f = sin(x) cos(2y) on a periodic 2π × 2π square sampled at coarse cell centres."""
    h = 2 * np.pi / n
    xc = h * (np.arange(n) + 0.5)
    coarse = _planar((np.cos(2 * xc)[:, None] * np.sin(xc)[None, :])[None], xc, xc)
    return coarse, h


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_baselines_reproduce_a_smooth_field(method):
    coarse, h = _smooth_case(32)
    fine = Downscaler(4, method).downscale(coarse)["u"]
    truth = np.cos(2 * fine.y.values)[:, None] * np.sin(fine.x.values)[None, :]
    err = np.abs(fine.values[0] - truth).max()
    # Analytic bounds: nearest ≤ h/2·Σ|f'|, linear ≤ h²/8·Σ|f''| (|f_x| ≤ 1, |f_y| ≤ 2,
    # |f_xx| ≤ 1, |f_yy| ≤ 4), Keys cubic is O(h³); Lanczos-3 is only O(h²) (it does not
    # reproduce quadratics), within the linear bound here.
    bound = {
        "nearest": h / 2 * 3,
        "bilinear": h**2 / 8 * 5,
        "bicubic": h**3 * 2,
        "lanczos": h**2 / 8 * 5,
    }[method]
    assert err <= bound


def test_bicubic_converges_at_third_order():
    errors = []
    for n in (32, 64):
        coarse, _ = _smooth_case(n)
        fine = Downscaler(4, "bicubic").downscale(coarse)["u"]
        truth = np.cos(2 * fine.y.values)[:, None] * np.sin(fine.x.values)[None, :]
        errors.append(np.abs(fine.values[0] - truth).max())
    assert 6.5 < errors[0] / errors[1] < 9.5  # 2³ = 8


def test_baseline_keeps_attrs_and_adds_provenance():
    coarse, _ = _smooth_case(8)
    ds = coarse.to_dataset().assign_attrs(title="tiny", history="made by a test")
    out = Downscaler(2, "bilinear").downscale(ds)
    assert out["u"].attrs["units"] == "m s-1"
    assert out.attrs["title"] == "tiny"
    assert out.attrs["history"].endswith("made by a test")
    assert "Downscaler(factor=2, method='bilinear'" in out.attrs["history"]
    assert out.attrs["climgen_method"] == "bilinear"
    assert out.sizes == {"time": 1, "y": 16, "x": 16}


# -- fine coordinates -----------------------------------------------------------------------


def test_fine_latlon_coords_are_cell_centres_from_bounds():
    lat_f, lon_f = _latlon_grid(24, 48)
    lat_c, lon_c = _latlon_grid(6, 12)
    rng = np.random.default_rng(0)
    coarse = _latlon(rng.standard_normal((2, 6, 12)), lat_c, lon_c)
    out = Downscaler(4, "bicubic").downscale(coarse)
    np.testing.assert_allclose(out.lat.values, lat_f, atol=1e-12)
    np.testing.assert_allclose(out.lon.values, lon_f, atol=1e-12)
    # North→south latitude and longitudes in [-180, 180) keep their order and convention.
    flipped = coarse.isel(lat=slice(None, None, -1))
    flipped = flipped.assign_coords(lon=((flipped.lon + 180) % 360) - 180).sortby("lon")
    out2 = Downscaler(4, "bicubic").downscale(flipped)
    np.testing.assert_allclose(out2.lat.values, lat_f[::-1], atol=1e-12)
    np.testing.assert_allclose(out2.lon.values, np.sort(((lon_f + 180) % 360) - 180), atol=1e-12)


def test_fine_coords_follow_explicit_cf_bounds():
    # A regional grid with uneven cells: bounds decide, not the centres.
    edges = np.array([10.0, 14.0, 20.0, 30.0])
    lat_c = np.array([11.0, 17.5, 24.0])
    lon_c = np.arange(4) * 10.0 + 5.0
    coarse = _latlon(np.ones((1, 3, 4)), lat_c, lon_c).to_dataset()
    coarse = coarse.assign_coords(lat_bnds=(("lat", "nv"), np.stack([edges[:-1], edges[1:]], 1)))
    coarse.lat.attrs["bounds"] = "lat_bnds"
    out = Downscaler(2, "nearest").downscale(coarse)
    np.testing.assert_allclose(out.lat.values, [11, 13, 15.5, 18.5, 22.5, 27.5])
    np.testing.assert_allclose(out.lat_bnds.values[:, 0], [10, 12, 14, 17, 20, 25])
    np.testing.assert_allclose(out.lon.values, np.arange(8) * 5.0 + 2.5)


def test_planar_fine_coords_and_coarsen_round_trip():
    y = np.arange(12) * 0.5 + 0.25
    x = np.arange(20) * 0.1
    fine = _planar(np.random.default_rng(1).standard_normal((2, 12, 20)), y, x)
    down = Downscaler(4, "bilinear")
    coarse = down.coarsen(fine)
    assert "y_bnds" in coarse.coords
    out = down.downscale(coarse)
    np.testing.assert_allclose(out.y.values, y, atol=1e-12)
    np.testing.assert_allclose(out.x.values, x, atol=1e-12)
    # Without bounds, cells are placed half-way between the coarse centres: same result here.
    bare = coarse.drop_vars(["y_bnds", "x_bnds"])
    out2 = down.downscale(bare)
    np.testing.assert_allclose(out2.x.values, x, atol=1e-12)


def test_refine_coordinate_subdivides_cells():
    centres, bounds = refine_coordinate(np.array([1.0, 3.0, 5.0]), 2)
    np.testing.assert_allclose(centres, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    np.testing.assert_allclose(bounds[:, 1] - bounds[:, 0], 1.0)


# -- conservation -----------------------------------------------------------------------------


@pytest.mark.parametrize("factor", range(2, 9))
def test_conservation_layers_are_exact_with_coslat_weights(factor):
    g = torch.Generator().manual_seed(factor)
    ny, nx = 3, 5  # non-square
    lat = torch.linspace(-80, 80, ny * factor, dtype=torch.float64)
    w = torch.cos(torch.deg2rad(lat))
    coarse = torch.randn(2, 1, ny, nx, generator=g, dtype=torch.float64)
    fine = torch.randn(2, 1, ny * factor, nx * factor, generator=g, dtype=torch.float64)
    out = conserve_additive(fine, coarse, factor, w)
    err = block_mean_error(out.numpy(), coarse.numpy(), factor, weights=w[:, None].numpy())
    assert err < 1e-6
    positive = coarse.abs()
    for layer in (conserve_multiplicative, conserve_softmax):
        y = layer(fine, positive, factor, w)
        assert bool((y >= 0).all())
        err = block_mean_error(y.numpy(), positive.numpy(), factor, weights=w[:, None].numpy())
        assert err < 1e-6


def test_multiplicative_fills_empty_blocks_and_rejects_negative_means():
    coarse = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    fine = -torch.ones(2, 4, dtype=torch.float64)  # clipped to zero everywhere
    out = conserve_multiplicative(fine, coarse, 2)
    np.testing.assert_allclose(out.numpy(), [[2, 2, 0, 0], [2, 2, 0, 0]])
    with pytest.raises(ClimgenInputError, match="non-negative"):
        conserve(fine, -coarse - 1, 2, mode="multiplicative")
    with pytest.raises(ClimgenInputError, match="unknown conservation mode"):
        conserve(fine, coarse, 2, mode="magic")


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_every_baseline_conserves_on_latlon(method):
    lat_f, lon_f = _latlon_grid(36, 48)
    rng = np.random.default_rng(3)
    fine = _latlon(np.exp(rng.standard_normal((2, 36, 48))), lat_f, lon_f, name="pr")
    down = Downscaler(6, method, conserve="multiplicative")
    coarse = down.coarsen(fine)
    out = down.downscale(coarse)["pr"]
    np.testing.assert_allclose(coarsen(out, 6).values, coarse["pr"].values, atol=1e-6, rtol=0)
    assert float(out.min()) >= 0
    signed = Downscaler(6, method, conserve=True).downscale(coarse - 1.5)["pr"]
    err = np.abs(coarsen(signed, 6).values - (coarse["pr"].values - 1.5)).max()
    assert err < 1e-6


# -- networks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grf_split():
    da = grf_dataarray(80, 32, 32, seed=0, name="psi")
    return da.isel(time=slice(0, 64)), da.isel(time=slice(64, None))


@pytest.fixture(scope="module")
def trained_regression(tmp_path_factory):
    """A tiny regression SR on a lat/lon GRF (periodic lon, bounded lat), ×4."""
    torch.set_num_threads(1)
    da = grf_dataarray(24, 16, 32, kind="latlon", seed=2, name="tas", units="K") + 280.0
    da = da.isel(lat=slice(None, None, -1))  # stored north → south
    run = tmp_path_factory.mktemp("reg")
    down = Downscaler(4, "regression", **SMALL_NET).fit(
        da, run_dir=run, max_steps=15, batch_size=8, progress=False
    )
    return down, da


@pytest.mark.slow
def test_regression_sr_beats_bicubic_on_grf(tmp_path, grf_split):
    train, test = grf_split
    down = Downscaler(4, "regression", base_channels=16, n_blocks=2, lr=2e-3)
    # 50 steps: RMSE 0.94 of bicubic's at seeds 0, 1, 2 (0.95 after 100 steps)
    down.fit(train, run_dir=tmp_path, max_steps=50, batch_size=16, progress=False)
    coarse = down.coarsen(test)
    net = down.downscale(coarse)["psi"]
    bicubic = Downscaler(4, "bicubic").downscale(coarse)["psi"]
    assert _rmse(net, test) < _rmse(bicubic, test)


def test_regression_output_grid_and_reload(trained_regression, tmp_path):
    down, da = trained_regression
    coarse = down.coarsen(da.isel(time=slice(0, 3)))
    out = down.downscale(coarse)
    assert out["tas"].dims == da.dims
    np.testing.assert_array_equal(out.lat.values, da.lat.values)  # north → south kept
    np.testing.assert_array_equal(out.lon.values, da.lon.values)
    np.testing.assert_array_equal(out.time.values, coarse.time.values)
    assert out["tas"].attrs["units"] == "K"
    assert out.attrs["climgen_method"] == "regression"
    assert np.isfinite(out["tas"].values).all()
    again = Downscaler.load(down.run_dir).downscale(coarse)
    np.testing.assert_allclose(again["tas"].values, out["tas"].values, rtol=1e-5, atol=1e-4)
    single = down.downscale(coarse.isel(time=0))  # one field without the sample dim
    assert single["tas"].dims == ("lat", "lon")


def _to_180(da):
    """``da`` with longitudes in [−180, 180), ascending (the same fields, rolled)."""
    return da.assign_coords(lon=(da.lon + 180.0) % 360.0 - 180.0).sortby("lon")


def test_output_keeps_the_input_longitude_convention_and_own_provenance(trained_regression):
    down, da = trained_regression
    coarse = down.coarsen(da.isel(time=slice(0, 2)))
    coarse.attrs.update(Nu_vol_mean=3.1, packing="zlib", status="ok", title="tas")
    ref = down.downscale(coarse)  # 0…360 in, 0…360 out
    out = down.downscale(_to_180(coarse), seed=3)
    lon = out.lon.values
    assert lon.min() >= -180 and lon.max() < 180 and np.all(np.diff(lon) > 0)
    xr.testing.assert_allclose(out["tas"], _to_180(ref["tas"]), atol=1e-4, rtol=0)
    assert not {"Nu_vol_mean", "packing", "status"} & set(out.attrs)
    assert out.attrs["title"] == "tas" and out.attrs["climgen_run_dir"] == str(down.run_dir)
    assert out.attrs["climgen_checkpoint_step"] == 15 and out.attrs["climgen_seed"] == 3
    assert out.attrs["climgen_calibrated"] == "false"
    # an interpolation baseline on a grid whose first longitude is −180 (cell centre)
    edge = xr.DataArray(
        np.random.default_rng(0).standard_normal((1, 8, 16)),
        dims=("time", "lat", "lon"),
        coords={"lat": -90 + 22.5 * (np.arange(8) + 0.5), "lon": -180.0 + 22.5 * np.arange(16)},
        name="tas",
    )
    fine = Downscaler(4, "bicubic").downscale(edge)
    lon = fine.lon.values
    assert lon.min() >= -180 and lon.max() < 180 and np.all(np.diff(lon) > 0)
    shifted = Downscaler(4, "bicubic").downscale(
        edge.assign_coords(lon=edge.lon % 360).sortby("lon")
    )
    xr.testing.assert_allclose(fine["tas"], _to_180(shifted["tas"]), atol=1e-10)


def test_tiled_inference_equals_untiled(trained_regression):
    down, da = trained_regression
    coarse = down.coarsen(da.isel(time=slice(0, 2)))
    down.tile_size = 0
    whole = down.downscale(coarse, members=1)["tas"].values
    down.tile_size = 3  # 4 × 8 coarse grid → overlapping tiles, wrapped in longitude
    tiled = down.downscale(coarse, members=1)["tas"].values
    down.tile_size = None
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


def test_tiled_apply_wraps_periodic_axes_exactly():
    torch.manual_seed(0)
    for periodic in ((False, True), (True, True), (False, False)):
        net = SRResNet(1, 3, periodic, base_channels=4, n_blocks=1, fine_extra=1).double()
        coarse = torch.randn(2, 1, 10, 13, dtype=torch.float64)
        extra = torch.randn(2, 1, 30, 39, dtype=torch.float64)
        with torch.no_grad():
            whole = net(coarse, extra)
            tiled = tiled_apply(
                net, coarse, extra, 3, tile=4, halo=net.receptive_radius, periodic=periodic
            )
        torch.testing.assert_close(tiled, whole, atol=1e-10, rtol=0)


def test_auto_tile_uses_memory_budget():
    tile, batch = auto_tile((64, 256), 4, 32, 5, n_fields=10, available=10**12)
    assert tile is None and batch == 10
    tile, batch = auto_tile((64, 256), 4, 32, 5, available=10**8)
    assert tile is not None and 8 <= tile < 64 and batch == 1


def test_srgan_members_differ_and_conserve(tmp_path, grf_split):
    train, test = grf_split
    down = Downscaler(4, "srgan", conserve=True, spectral_weight=0.1, **SMALL_NET)
    down.fit(train, run_dir=tmp_path, max_steps=4, batch_size=8, progress=False, log_every=1)
    coarse = down.coarsen(test.isel(time=slice(0, 2)))
    out = down.downscale(coarse, members=3, seed=1)["psi"]
    assert out.dims == ("member", "time", "y", "x")
    assert np.isfinite(out.values).all()
    assert float(out.std("member").mean()) > 0
    for m in range(3):
        np.testing.assert_allclose(
            coarsen(out.isel(member=m), 4).values, coarse["psi"].values, atol=1e-5
        )
    same = down.downscale(coarse, members=3, seed=1)["psi"]
    np.testing.assert_array_equal(same.values, out.values)
    logs = __import__("pandas").read_csv(tmp_path / "metrics.csv")
    assert {"d_loss", "g_loss", "content", "spectral"} <= set(logs.columns)


def test_static_inputs_paired_fit_and_inner_constraint(tmp_path, grf_split):
    train, test = grf_split
    topo = grf_dataarray(1, 32, 32, seed=9, name="orog").isel(time=0, drop=True)
    down = Downscaler(4, "regression", static=topo, constraint="additive", **SMALL_NET)
    coarse_train = down.coarsen(train)
    down.fit(coarse_train, train, run_dir=tmp_path, max_steps=3, batch_size=8, progress=False)
    coarse = down.coarsen(test.isel(time=slice(0, 2)))
    out = down.downscale(coarse)["psi"]  # conserve=False: the in-model layer conserves
    np.testing.assert_allclose(coarsen(out, 4).values, coarse["psi"].values, atol=1e-4)
    again = Downscaler.load(tmp_path).downscale(coarse)["psi"]
    np.testing.assert_allclose(again.values, out.values, atol=1e-4)


def test_cli_downscales_with_run_dir_and_baseline(trained_regression, tmp_path, capsys):
    down, da = trained_regression
    coarse_path = write_fields(down.coarsen(da.isel(time=slice(0, 2))), tmp_path / "coarse.nc")
    out_path = tmp_path / "fine.nc"
    assert (
        climgen_main(["downscale", str(down.run_dir), str(coarse_path), "-o", str(out_path)]) == 0
    )
    fine = xr.open_dataset(out_path, engine="netcdf4")
    assert fine["tas"].shape == (2, 16, 32)
    fine.close()
    args = ["bicubic", str(coarse_path), "-o", str(out_path), "--factor", "4", "--overwrite"]
    assert climgen_main(["downscale", *args, "--conserve", "additive", "--members", "2"]) == 0
    other = str(tmp_path / "other.nc")
    assert climgen_main(["downscale", "bicubic", str(coarse_path), "-o", other]) == 2
    assert "--factor" in capsys.readouterr().err


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 9, 2.5, True])
def test_bad_factor_is_named(factor):
    with pytest.raises(ClimgenInputError, match="factor"):
        Downscaler(factor, "bicubic")


def test_bad_options_are_named():
    with pytest.raises(ClimgenInputError, match="unknown downscaling method 'cubic'"):
        Downscaler(4, "cubic")
    with pytest.raises(ClimgenInputError, match="n_blocks"):
        Downscaler(4, "bicubic", n_blocks=3)
    with pytest.raises(ClimgenInputError, match="nblocks"):
        Downscaler(4, "regression", nblocks=3)
    with pytest.raises(ClimgenInputError, match="conserve"):
        Downscaler(4, "bicubic", conserve="exact")


def test_fit_rejects_non_divisible_grid(tmp_path):
    da = grf_dataarray(8, 16, 30, seed=0)
    with pytest.raises(ClimgenInputError, match="dim 'x'.*30.*factor 4"):
        Downscaler(4, "regression", **SMALL_NET).fit(da, run_dir=tmp_path, max_steps=1)


def test_fit_rejects_mismatched_pairs(tmp_path, grf_split):
    train, _ = grf_split
    wrong = Downscaler(2, "bilinear").coarsen(train)  # ×2, not ×4
    with pytest.raises(ClimgenInputError, match="paired data do not match"):
        Downscaler(4, "regression", **SMALL_NET).fit(wrong, train, run_dir=tmp_path)


def test_downscale_rejects_wrong_grid_missing_variable_and_nans(trained_regression):
    down, da = trained_regression
    coarse = down.coarsen(da.isel(time=slice(0, 2)))
    with pytest.raises(ClimgenInputError, match="dim 'lat' has 8 cells, expected 4"):
        down.downscale(Downscaler(2, "bilinear").coarsen(da.isel(time=slice(0, 2))))
    with pytest.raises(ClimgenInputError, match="'tas'"):
        down.downscale(coarse.rename(tas="t2m"))
    bad = coarse.copy(deep=True)
    bad["tas"][0, 1, 1] = np.nan
    with pytest.raises(ClimgenInputError, match="variable 'tas'.*NaN"):
        down.downscale(bad)
    with pytest.raises(ClimgenInputError, match="variable 'tas'.*NaN"):
        Downscaler(4, "bicubic").downscale(bad)
    with pytest.raises(ClimgenInputError, match="must be trained"):
        Downscaler(4, "srgan").downscale(coarse)


def test_corrdiff_diffusion_members_conserve_and_reload(tmp_path, grf_split):
    train, test = grf_split
    down = Downscaler(
        4,
        "diffusion",
        conserve=True,
        regression_options=SMALL_NET,
        diffusion_options=dict(base_channels=8, channel_mults=(1, 2), sample_steps=2),
    )
    down.fit(train, run_dir=tmp_path, max_steps=3, batch_size=8, progress=False)
    assert (tmp_path / "regression").is_dir() and (tmp_path / "diffusion").is_dir()
    coarse = down.coarsen(test.isel(time=slice(0, 2)))
    out = down.downscale(coarse, members=2, seed=3)["psi"]
    assert out.dims == ("member", "time", "y", "x") and np.isfinite(out.values).all()
    assert float(out.std("member").mean()) > 0
    np.testing.assert_allclose(
        coarsen(out.isel(member=1), 4).values, coarse["psi"].values, atol=1e-5
    )
    again = Downscaler.load(tmp_path).downscale(coarse, members=2, seed=3)["psi"]
    np.testing.assert_allclose(again.values, out.values, atol=1e-4)
    with pytest.raises(ClimgenInputError, match="regression_options"):
        Downscaler(4, "diffusion", n_blocks=2)


# -- symmetry augmentation ----------------------------------------------------------------------


def test_augmented_pairs_are_consistent_and_cover_the_symmetries():
    """Every augmented item is a fine field shifted by 0…f−1 cells along the periodic axis
    (never along the bounded one) and mirrored in y or not, with the coarse input its exact
    block means; over many draws every shift and both mirrors occur."""
    from climgen.data.coarsen import coarsen_tensor
    from climgen.tasks.downscale.pairs import PairDataset

    torch.manual_seed(0)
    field = torch.randn(1, 1, 8, 16)
    weights = torch.linspace(0.5, 1.0, 8, dtype=torch.float64)
    weights = (weights + weights.flip(0)) / 2  # symmetric, like cos-latitude

    class Fields:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return field[i]

    pairs = PairDataset(Fields(), 4, weights, periodic=(False, True), augment=("shift", "mirror-y"))
    seen = set()
    for _ in range(200):
        item = pairs[0]
        expected = coarsen_tensor(item["x"].double(), 4, weights).float()
        torch.testing.assert_close(item["cond"], expected)
        matches = [
            (shift, mirrored)
            for shift in range(16)
            for mirrored in (False, True)
            if torch.equal(
                item["x"],
                torch.roll(field[0].flip(-2) if mirrored else field[0], shift, dims=-1),
            )
        ]
        assert len(matches) == 1 and matches[0][0] < 4
        seen.add(matches[0])
    assert seen == {(s, m) for s in range(4) for m in (False, True)}


def test_augment_is_recorded_and_bad_uses_are_named(tmp_path, grf_split):
    train, _ = grf_split
    down = Downscaler(4, "regression", augment=["shift", "mirror-y"], **SMALL_NET)
    down.fit(train, run_dir=tmp_path, max_steps=2, batch_size=8, progress=False)
    card = json.loads(next(tmp_path.rglob("card.json")).read_text())
    assert card["augment"] == ["shift", "mirror-y"]
    with pytest.raises(ClimgenInputError, match="unknown augment.*'rotate'"):
        Downscaler(4, "regression", augment="rotate")
    with pytest.raises(ClimgenInputError, match="augment applies to trained methods"):
        Downscaler(4, "bicubic", augment="shift")
    paired = Downscaler(4, "regression", augment="mirror-y", **SMALL_NET)
    with pytest.raises(ClimgenInputError, match="paired data.*drop augment"):
        paired.fit(paired.coarsen(train), train, run_dir=tmp_path / "p", max_steps=1)
    walls = grf_dataarray(4, 16, 16, seed=0).assign_coords(
        y=lambda d: d.y.assign_attrs(periodic="false"),
        x=lambda d: d.x.assign_attrs(periodic="false"),
    )
    with pytest.raises(ClimgenInputError, match="augment='shift'.*has none"):
        Downscaler(4, "regression", augment="shift", **SMALL_NET).fit(
            walls, run_dir=tmp_path / "w", max_steps=1
        )


# -- temporal context -----------------------------------------------------------------------------


def test_context_indices_clamp_at_the_series_ends():
    from climgen.tasks.downscale.pairs import context_indices

    assert context_indices(5, 10, 2) == [5, 3, 4, 6, 7]
    assert context_indices(0, 10, 2) == [0, 0, 0, 1, 2]
    assert context_indices(9, 10, 1) == [9, 8, 9]
    assert context_indices(3, 10, 0) == [3]


def test_context_inputs_are_the_neighbours_coarse_fields(tmp_path):
    """Training items carry the block means of fields i−k … i+k after field i's (with the same
    augmentation transform), and at downscale time a net that can only see the neighbours
    uses them: a field's fine answer changes when only its neighbour changes."""
    from climgen.data.coarsen import coarsen_tensor
    from climgen.tasks.downscale.pairs import PairDataset

    torch.manual_seed(0)
    fields = torch.randn(6, 1, 8, 16)

    class Fields:
        def __len__(self):
            return len(fields)

        def __getitem__(self, i):
            return fields[i]

    pairs = PairDataset(Fields(), 4, None, periodic=(False, True), augment=("shift",), context=1)
    for i in (0, 3, 5):
        item = pairs[i]
        assert item["cond"].shape == (3, 2, 4)
        shift = next(s for s in range(4) if torch.equal(item["x"], fields[i].roll(s, -1)))
        for c, j in enumerate((i, max(i - 1, 0), min(i + 1, 5))):
            expected = coarsen_tensor(fields[j].roll(shift, -1).double(), 4).float()
            torch.testing.assert_close(item["cond"][c : c + 1], expected)

    da = grf_dataarray(12, 16, 16, seed=3, name="psi")
    down = Downscaler(4, "regression", context=1, **SMALL_NET)
    down.fit(da, run_dir=tmp_path, max_steps=3, batch_size=4, progress=False)
    assert down.family.context_channels == 2
    coarse = down.coarsen(da.isel(time=slice(0, 3)))
    out = down.downscale(coarse)["psi"]
    changed = coarse.copy(deep=True)
    changed["psi"][2] = changed["psi"][2] + 1.0  # only the neighbour of field 1
    again = down.downscale(changed)["psi"]
    assert not np.allclose(out[1].values, again[1].values)
    np.testing.assert_array_equal(out[0].values, again[0].values)  # field 0 does not see 2
    reloaded = Downscaler.load(tmp_path)
    assert reloaded.context == 1
    np.testing.assert_allclose(reloaded.downscale(coarse)["psi"].values, out.values, atol=1e-5)
    with pytest.raises(ClimgenInputError, match="context must be an integer"):
        Downscaler(4, "regression", context=-1)
    with pytest.raises(ClimgenInputError, match="context applies to trained methods"):
        Downscaler(4, "bicubic", context=1)
