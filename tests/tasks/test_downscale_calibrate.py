"""Spectral calibration of downscalers: training spectrum, conservation after the gain,
persistence, the baselines' own fine grids, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.cli import main as climgen_main
from climgen.data.coarsen import coarsen
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.metrics import high_k_error, mean_spectrum
from climgen.metrics.spectral_filter import row_spectrum
from climgen.tasks.downscale.downscaler import Downscaler

SMALL_NET = dict(base_channels=8, n_blocks=1, lr=2e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spec_err(out: xr.DataArray, truth: xr.DataArray, fraction: float = 0.5) -> float:
    """Log-spectral error [decades] of the sample-mean spectra over the upper ``fraction``."""
    k, p_truth = mean_spectrum(truth)
    _, p_out = mean_spectrum(out)
    return high_k_error(k, p_out, p_truth, fraction)


@pytest.fixture(scope="module")
def grf():
    da = grf_dataarray(40, 32, 32, seed=5, name="psi")
    return da.isel(time=slice(0, 32)), da.isel(time=slice(32, None))


@pytest.fixture(scope="module")
def calibrated_regression(tmp_path_factory, grf):
    """A briefly trained regression SR (×4, doubly periodic GRF) with its calibration."""
    torch.set_num_threads(1)
    train, _ = grf
    run = tmp_path_factory.mktemp("reg_cal")
    down = Downscaler(4, "regression", **SMALL_NET).fit(
        train, run_dir=run, max_steps=6, batch_size=8, progress=False
    )
    raw_on_train = down.downscale(down.coarsen(train))["psi"]
    down.calibrate_spectrum(train, n_fields=len(train.time))
    return down, raw_on_train


def test_calibrated_network_has_the_training_spectrum(calibrated_regression, grf):
    down, raw = calibrated_regression
    train, held = grf
    assert [k for k, _ in down.calibration.stages["psi"]] == ["planar"]
    cal = down.downscale(down.coarsen(train))["psi"]
    # On the fields it was fitted on, the gain carries the mean spectrum onto the truth's.
    assert _spec_err(cal, train, fraction=1.0) < 1e-3
    assert _spec_err(raw, train, fraction=1.0) > 0.1
    # On held-out fields of the same process: much closer to the truth's high-k spectrum.
    coarse = down.coarsen(held)
    raw_held = down.downscale(coarse, calibrated=False)["psi"]
    cal_held = down.downscale(coarse)["psi"]
    assert _spec_err(cal_held, held) < 0.3 * _spec_err(raw_held, held)
    assert "climgen_spectral_calibration" in down.downscale(coarse).attrs
    assert "climgen_spectral_calibration" not in down.downscale(coarse, calibrated=False).attrs


def test_conservation_stays_exact_after_the_gain(calibrated_regression, grf):
    down, _ = calibrated_regression
    _, held = grf
    coarse = down.coarsen(held)
    down.conserve = "additive"
    try:
        smooth = down.downscale(coarse)["psi"]  # default: back-projection, then the layer
        down.back_projection = 0
        stepped = down.downscale(coarse)["psi"]  # the plain layer right after the gain
        down.back_projection = "covariance"
        shaped = down.downscale(coarse)["psi"]  # optimal interpolation, then the layer
    finally:
        down.conserve, down.back_projection = None, None
    plain = down.downscale(coarse)["psi"]

    def block_error(field):
        return np.abs(coarsen(field, 4).values - coarse["psi"].values).max()

    assert block_error(plain) > 1e-3  # the gain (and the net) move block means ...
    assert block_error(smooth) < 1e-6  # ... the layer after it restores them
    assert block_error(stepped) < 1e-6
    assert block_error(shaped) < 1e-6
    # The plain layer only adds block constants: sub-block anomalies are the calibrated ones.
    anomaly = stepped - plain
    blocks = anomaly.values.reshape(anomaly.shape[0], 8, 4, 8, 4)
    assert np.ptp(blocks, axis=(2, 4)).max() < 1e-5
    # Its block-edge steps add grid-scale power; the smooth back-projection does not.
    assert _spec_err(smooth, plain) < 0.1 * _spec_err(stepped, plain)
    assert _spec_err(shaped, plain) < 0.1 * _spec_err(stepped, plain)


def test_calibration_round_trips_through_the_run_dir(calibrated_regression, grf, tmp_path):
    down, _ = calibrated_regression
    _, held = grf
    assert (down.run_dir / "spectral_calibration.json").exists()
    again = Downscaler.load(down.run_dir)
    assert again.calibration is not None
    for (k1, g1), (k2, g2) in zip(down.calibration.stages["psi"], again.calibration.stages["psi"]):
        assert k1 == k2
        np.testing.assert_allclose(g1, g2)
    coarse = down.coarsen(held.isel(time=slice(0, 3)))
    np.testing.assert_allclose(
        again.downscale(coarse)["psi"].values,
        down.downscale(coarse)["psi"].values,
        rtol=1e-5,
        atol=1e-5,
    )
    # The CLI uses it too (and --conserve keeps the coarse means exact after the gain).
    src = write_fields(coarse, tmp_path / "coarse.nc")
    out = tmp_path / "fine.nc"
    assert (
        climgen_main(
            ["downscale", str(down.run_dir), str(src), "-o", str(out), "--conserve", "additive"]
        )
        == 0
    )
    fine = xr.open_dataset(out)["psi"].load()
    assert "climgen_spectral_calibration" in xr.open_dataset(out).attrs
    np.testing.assert_allclose(coarsen(fine, 4).values, coarse["psi"].values, atol=1e-6, rtol=0)
    raw = tmp_path / "raw.nc"
    assert (
        climgen_main(["downscale", str(down.run_dir), str(src), "-o", str(raw), "--no-calibration"])
        == 0
    )
    np.testing.assert_allclose(
        xr.open_dataset(raw)["psi"].values,
        down.downscale(coarse, calibrated=False)["psi"].values,
        rtol=1e-5,
        atol=1e-5,
    )


def test_calibrated_true_without_a_calibration_is_a_clear_error(grf):
    train, _ = grf
    down = Downscaler(4, "bicubic")
    coarse = down.coarsen(train.isel(time=slice(0, 2)))
    with pytest.raises(ClimgenInputError, match="calibrate_spectrum"):
        down.downscale(coarse, calibrated=True)
    with pytest.raises(ClimgenInputError, match="must be trained first"):
        Downscaler(4, "regression").calibrate_spectrum(train)
    with pytest.raises(ClimgenInputError, match="n_fields"):
        down.calibrate_spectrum(train, n_fields=0)
    with pytest.raises(ClimgenInputError, match="back_projection"):
        Downscaler(4, "bicubic", back_projection=-1)


def test_calibrated_bicubic_on_a_gaussian_grid_with_layer_and_reload(tmp_path):
    """Bicubic's own fine latitudes (from the coarse bounds) are not Gaussian: the gain is
    applied by position in the training grid's spherical basis."""
    nlat, nlon = 32, 64
    x, _ = np.polynomial.legendre.leggauss(nlat)
    lat = np.rad2deg(np.arcsin(x))
    grf = grf_dataarray(24, nlat, nlon, seed=9, name="w").values
    da = xr.DataArray(
        grf,
        dims=("time", "lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", np.arange(nlon) * 360.0 / nlon, {"units": "degrees_east"}),
        },
        name="w",
    )
    train, held = da.isel(time=slice(0, 20)), da.isel(time=slice(20, None))
    down = Downscaler(4, "bicubic", conserve=True)
    down.calibrate_spectrum(train, run_dir=tmp_path / "bicubic_cal")
    assert [k for k, _ in down.calibration.stages["w"]] == ["spherical"]
    coarse = down.coarsen(held)
    out = down.downscale(coarse)["w"]
    raw = down.downscale(coarse, calibrated=False)["w"]
    assert not np.allclose(out.values, raw.values)
    # Conservation with the layer (cos-lat block means on the output's own grid).
    np.testing.assert_allclose(coarsen(out, 4).values, coarse["w"].values, atol=1e-6, rtol=0)
    # Reloaded from its run dir (a baseline card, the template and the gains).
    again = Downscaler.load(tmp_path / "bicubic_cal")
    assert again.method == "bicubic" and again.conserve == "additive"
    np.testing.assert_allclose(again.downscale(coarse)["w"].values, out.values, atol=1e-6)
    # A grid other than the one it was fitted on is refused with a way out.
    small = down.coarsen(train.isel(lon=slice(0, 32)))
    with pytest.raises(ClimgenInputError, match="calibrated=False"):
        Downscaler.load(tmp_path / "bicubic_cal").downscale(small)


def test_per_row_stage_matches_the_row_spectra(grf):
    train, _ = grf
    down = Downscaler(4, "bicubic")
    coarse = down.coarsen(train)
    raw = down.downscale(coarse)["psi"]
    down.calibrate_spectrum(train, n_fields=len(train.time), per_row=True)
    assert sorted(k for k, _ in down.calibration.stages["psi"]) == ["planar", "rows"]
    cal = down.downscale(coarse)["psi"]
    target, before = row_spectrum(train), row_spectrum(raw)
    # Bicubic has exact zeros at multiples of the coarse Nyquist: no gain can lift them.
    valid = (target > 1e-12 * target.max()) & (before > 1e-10 * before.max())

    def err(field):
        return np.abs(np.log10(row_spectrum(field)[valid] / target[valid])).mean()

    assert err(cal) < 0.2 * err(raw)
