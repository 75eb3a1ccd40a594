"""The emulation task end to end on tiny data: xarray in, xarray out, reload, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.emulate.emulator import Emulator
from climgen.tasks.emulate.spectral_calibration import SpectralCalibration


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _latlon_dataset(n=48):
    """Two variables on a lat/lon grid stored north → south with longitudes −180..180."""
    da = grf_dataarray(n, 16, 32, kind="latlon", seed=0, name="tas", units="K") + 280.0
    da = (
        da.assign_coords(lon=(((da.lon + 180) % 360) - 180))
        .sortby("lon")
        .isel(lat=slice(None, None, -1))
    )
    da.attrs = {"units": "K", "standard_name": "air_temperature"}
    ds = xr.Dataset({"tas": da, "pr": np.exp(da / 280.0)})
    ds["pr"].attrs = {"units": "kg m-2 s-1"}
    ds.attrs = {"title": "tiny test climate", "history": "made by a test"}
    return ds


def test_emulator_keeps_grid_coords_and_attrs(tmp_path):
    ds = _latlon_dataset()
    ds.attrs.update(Nu_vol_mean=3.1, packing="zlib", status="converged")  # the solver's own
    em = Emulator("vae", latent_dim=4, base_channels=4).fit(
        ds, run_dir=tmp_path / "run", max_steps=4, batch_size=8, progress=False
    )
    out = em.sample(5, seed=0)
    assert set(out.data_vars) == {"tas", "pr"}
    assert out["tas"].dims == ("sample", "lat", "lon")
    np.testing.assert_array_equal(out["lat"], ds["lat"])  # north → south kept
    np.testing.assert_array_equal(out["lon"], ds["lon"])  # −180..180 kept
    assert out["tas"].attrs["units"] == "K" and out["pr"].attrs["units"] == "kg m-2 s-1"
    assert out.attrs["climgen_model"] == "vae" and "Emulator(vae)" in out.attrs["history"]
    assert "made by a test" in out.attrs["history"]
    # the samples carry their own provenance, not the training file's global attributes
    assert not {"Nu_vol_mean", "packing", "status"} & set(out.attrs)
    assert out.attrs["climgen_checkpoint_step"] == 4 and out.attrs["climgen_seed"] == 0
    assert out.attrs["climgen_calibrated"] == "false"
    assert out.attrs["climgen_run_dir"] == str(tmp_path / "run")
    # De-normalised: values near the data's scale, not unit-normal.
    assert abs(float(out["tas"].mean()) - 280.0) < 5.0

    again = Emulator.load(tmp_path / "run").sample(5, seed=0)
    xr.testing.assert_identical(out.drop_attrs(), again.drop_attrs())


def test_emulator_errors(tmp_path):
    with pytest.raises(ClimgenInputError, match="not trained"):
        Emulator("vae").sample(3)
    with pytest.raises(ClimgenInputError, match="unknown family 'vea'"):
        Emulator("vea").fit(_latlon_dataset(), run_dir=tmp_path, max_steps=1, progress=False)
    with pytest.raises(ClimgenInputError, match="no option"):
        Emulator("vae", latnt_dim=3).fit(
            _latlon_dataset(), run_dir=tmp_path / "b", max_steps=1, progress=False
        )
    with pytest.raises(ClimgenInputError, match="not an emulator run directory"):
        Emulator.load(tmp_path / "nothing")
    bad = _latlon_dataset()
    bad["tas"][3, 2, 2] = np.nan
    with pytest.raises(ClimgenInputError, match="tas"):
        Emulator("vae", latent_dim=4, base_channels=4).fit(
            bad, run_dir=tmp_path / "c", max_steps=8, batch_size=8, progress=False
        )


def test_cli_train_then_sample_then_resume(tmp_path, capsys):
    data = grf_dataarray(40, 16, 32, seed=1, name="psi")
    write_fields(data.to_dataset(), tmp_path / "data.nc")
    (tmp_path / "r.yaml").write_text(
        "task: emulate\n"
        "data: {paths: data.nc, variables: [psi], train_fraction: 0.8}\n"
        "family: {name: gan, options: {loss: hinge, latent_dim: 4, base_channels: 4}}\n"
        "train: {max_steps: 4, batch_size: 8, checkpoint_every: 2}\n"
        "run_dir: run\n"
    )
    assert main(["train", str(tmp_path / "r.yaml"), "-q"]) == 0
    run = tmp_path / "run"
    assert (run / "report" / "index.html").exists() and (run / "samples.nc").exists()
    # the recipe report scores the training data and its IAAFT surrogate beside the model
    rows = json.loads((run / "report" / "metrics.json").read_text())["variables"]["psi"]
    assert set(rows["reference_rows"]) == {"training data", "surrogate (IAAFT)"}
    assert main(["sample", str(run), "-n", "3", "-o", str(tmp_path / "s.nc")]) == 0
    s = xr.open_dataset(tmp_path / "s.nc")
    assert s["psi"].shape == (3, 16, 32)
    assert main(["train", str(tmp_path / "r.yaml"), "-q", "--resume", "--max-steps", "6"]) == 0
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_gan_emulator_learns_a_k3_spectral_slope(tmp_path):
    """A GAN trained briefly on k^-3 GRFs reproduces their spectral slope within 0.5.

    150 steps (about 30 s on one core): with the data and training seeds both 0, 1, 2 the
    slopes differed from the data's by 0.03, 0.13, 0.01 at step 150, and by at most 0.30 at
    steps 150–300 (0.11–0.45 at step 100; base_channels 8 instead of 16 gave up to 0.54).
    """
    from climgen.metrics import rapsd

    data = grf_dataarray(512, 32, 32, slope=-3.0, seed=0, name="psi")
    em = Emulator("gan", loss="hinge", latent_dim=16, base_channels=16).fit(
        data,
        run_dir=tmp_path,
        max_steps=150,
        batch_size=32,
        progress=False,
        checkpoint_every=150,
        ema_decay=0.99,
    )
    out = em.sample(128, seed=0)
    k, p = rapsd(out["psi"].values)
    _, p_ref = rapsd(data.values)
    sel = (k > 0) & (k <= 0.25)  # resolved scales, away from the grid-scale bins

    def slope(power):
        return np.polyfit(np.log(k[sel]), np.log(power.mean(0)[sel]), 1)[0]

    assert abs(slope(p_ref) + 3.0) < 0.3  # few low-k modes on a 32 × 32 grid
    assert abs(slope(p) - slope(p_ref)) < 0.5, (slope(p), slope(p_ref))


@pytest.mark.slow
def test_fit_from_netcdf_with_worker_processes(tmp_path):
    """Workers must not hang on file handles the parent used (Normalizer.fit reads first)."""
    data = grf_dataarray(32, 16, 16, seed=0, name="psi")
    write_fields(data.to_dataset(), tmp_path / "d.nc")
    from climgen.data.io import open_fields

    em = Emulator("vae", latent_dim=4, base_channels=4).fit(
        open_fields(tmp_path / "d.nc"),
        run_dir=tmp_path / "run",
        max_steps=4,
        batch_size=8,
        num_workers=2,
        progress=False,
    )
    assert em.sample(2)["psi"].shape == (2, 16, 16)


def test_spectral_calibration_gives_samples_the_training_spectrum_and_survives_reload(tmp_path):
    from climgen.metrics import field_spectrum

    data = grf_dataarray(96, 16, 32, slope=-3.0, seed=5, name="psi")
    em = Emulator("vae", latent_dim=4, base_channels=4).fit(
        data, run_dir=tmp_path / "run", max_steps=5, batch_size=16, progress=False
    )

    def log_error(ds):
        p = field_spectrum(ds.psi).mean("sample").values[1:]
        q = field_spectrum(data).mean("time").values[1:]
        return float(np.sqrt(np.mean(np.log10(p / q) ** 2)))

    raw = em.sample(128, seed=1)
    em.calibrate_spectrum(data, n_samples=128)
    calibrated = em.sample(128, seed=1)  # fresh draws: the gain was fitted on other seeds
    # A 5-step VAE is decades off at small scales; the calibrated samples are not.
    assert log_error(raw) > 0.5
    assert log_error(calibrated) < 0.1
    assert "climgen_spectral_calibration" in calibrated.attrs
    assert calibrated.psi.dims == raw.psi.dims
    np.testing.assert_array_equal(calibrated.x.values, raw.x.values)
    np.testing.assert_array_equal(em.sample(4, seed=1, calibrated=False).psi, raw.psi[:4])

    again = Emulator.load(tmp_path / "run")
    np.testing.assert_array_equal(again.sample(8, seed=1).psi, calibrated.psi[:8])
    # Compact JSON whose numbers read back bit for bit; an indented file (as written before)
    # loads the same.
    saved = tmp_path / "run" / "spectral_calibration.json"
    text = saved.read_text()
    assert "\n" not in text and ", " not in text
    indented = tmp_path / "indented.json"
    indented.write_text(json.dumps(json.loads(text), indent=1))
    for reread in (again.calibration, SpectralCalibration.load(indented)):
        assert reread.stages.keys() == em.calibration.stages.keys()
        for (kind, gain), (kind0, gain0) in zip(reread.stages["psi"], em.calibration.stages["psi"]):
            assert kind == kind0
            np.testing.assert_array_equal(gain, gain0)
    again.calibration = None
    with pytest.raises(ClimgenInputError, match="calibrate_spectrum"):
        again.sample(2, calibrated=True)


def test_marginal_calibration_stage_maps_the_one_point_pdf_and_is_reloaded(tmp_path):
    from scipy.stats import wasserstein_distance

    g = grf_dataarray(96, 16, 32, slope=-3.0, seed=5, name="psi")
    data = np.exp(g / float(g.std())) - 1.0  # skewed: no linear filter reaches its PDF
    data.name = "psi"
    em = Emulator("vae", latent_dim=4, base_channels=4).fit(
        data, run_dir=tmp_path / "run", max_steps=5, batch_size=16, progress=False
    )
    em.calibrate_spectrum(data, n_samples=96, per_row=True)
    linear = em.sample(96, seed=1)
    em.calibrate_spectrum(data, n_samples=96, per_row=True, marginal=True)
    mapped = em.sample(96, seed=1)

    def w1(ds):
        return wasserstein_distance(ds.psi.values.ravel(), data.values.ravel())

    assert w1(mapped) < 0.5 * w1(linear)
    again = Emulator.load(tmp_path / "run")
    assert [k for k, _ in again.calibration.stages["psi"]] == ["rows", "quantiles-rows", "planar"]
    np.testing.assert_array_equal(again.sample(4, seed=1).psi, mapped.psi[:4])


def test_export_keeps_only_what_sampling_needs_and_samples_the_same(tmp_path):
    """An exported emulator (the demo's bundled one is made this way) samples bit for bit
    like its run, with the EMA weights, and holds no optimiser state or raw weights."""
    data = grf_dataarray(64, 16, 32, slope=-3.0, seed=2, name="psi")
    data.attrs["history"] = f"made by a test in {tmp_path / 'make.py'}"
    train_file = write_fields(data, tmp_path / "train.nc")  # the card records its path
    run = tmp_path / "run"
    Emulator("gan", latent_dim=8, base_channels=4).fit(
        str(train_file), run_dir=run, max_steps=4, batch_size=16, ema_decay=0.9, progress=False
    )
    em = Emulator.load(run)
    em.calibrate_spectrum(data, n_samples=32)
    dest = em.export(tmp_path / "slim", extras={"data_seed": 11, "cpu_seconds": 1.5})
    files = {p.name for p in dest.rglob("*") if p.is_file()}
    assert {"model.safetensors", "card.json", "template.nc", "normalizer.json"} <= files
    assert "spectral_calibration.json" in files
    assert not {"ema.safetensors", "trainer_state.pt"} & files
    slim = Emulator.load(dest)
    assert slim.checkpoint_step == em.checkpoint_step == 4
    card = json.loads(next(dest.rglob("card.json")).read_text())
    assert card["exported"] == {"from_step": 4, "data_seed": 11, "cpu_seconds": 1.5}
    # Shareable: no path of this machine in the card or the template.
    texts = [p.read_text(errors="ignore") for p in dest.rglob("*.json")]
    texts.append(str(slim.template.attrs.get("history", "")))
    assert not any(str(tmp_path) in t for t in texts)
    np.testing.assert_array_equal(slim.sample(6, seed=3).psi, em.sample(6, seed=3).psi)
    # The EMA weights, not the raw ones: the raw generator samples differently.
    raw = Emulator.load(run, ema=False)
    raw_psi = raw.sample(6, seed=3, calibrated=False).psi
    assert not np.array_equal(raw_psi, slim.sample(6, seed=3, calibrated=False).psi)
    with pytest.raises(ClimgenInputError, match="exists"):
        em.export(dest)


def test_an_independent_reference_must_have_another_seed(tmp_path):
    from climgen.tasks.emulate.scoring import check_independent

    a = grf_dataarray(8, 8, 16, seed=0, name="b").to_dataset()
    b = grf_dataarray(8, 8, 16, seed=1, name="b").to_dataset()
    a.attrs["seed"], b.attrs["seed"] = 11, 11
    with pytest.raises(ClimgenInputError, match="same run"):
        check_independent(b, a, where="ref.nc")
    b.attrs["seed"] = 12
    check_independent(b, a)  # another seed: accepted
    b.attrs["seed"] = np.array([12, 11, 14])  # an ensemble reference holding the training run
    with pytest.raises(ClimgenInputError, match="seed \\(11\\)"):
        check_independent(b, a)
    b.attrs["seed"] = np.array([12, 14])
    with pytest.warns(UserWarning, match="fewer"):
        check_independent(b.isel(time=slice(0, 4)), a)
    del b.attrs["seed"]
    with pytest.warns(UserWarning, match="no 'seed'"):
        check_independent(b, a)


def test_samples_go_through_the_training_files_packing(tmp_path):
    from climgen.sim.pack import write_packed
    from climgen.tasks.emulate.scoring import file_packing, packed_like

    da = grf_dataarray(4, 8, 16, seed=0, name="b")
    path = write_packed(da.to_dataset(), tmp_path / "packed.nc")
    packing = file_packing(path, ["b"])
    scale, offset = packing["b"]
    fresh = (0.5 * grf_dataarray(4, 8, 16, seed=5, name="b") / 4).to_dataset()  # in range
    out = packed_like(fresh, packing)
    steps = (out.b.values - offset) / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert np.abs(out.b - fresh.b).max() <= scale / 2 + 1e-9
    assert file_packing(tmp_path / "packed.nc", ["missing"]) == {}


def test_apply_calibration_gives_the_calibrated_draws_without_sampling_again(tmp_path):
    """score_emulator samples once and calibrates those draws: the same fields and
    attributes as sampling again with calibration on and the same seed."""
    data = grf_dataarray(32, 16, 32, slope=-3.0, seed=5, name="psi")
    em = Emulator("vae", latent_dim=4, base_channels=4).fit(
        data, run_dir=tmp_path / "run", max_steps=2, batch_size=16, progress=False
    )
    with pytest.raises(ClimgenInputError, match="calibrate_spectrum"):
        em.apply_calibration(em.sample(2, calibrated=False))
    em.calibrate_spectrum(data, n_samples=16)
    raw = em.sample(6, seed=3, calibrated=False)
    calibrated = em.apply_calibration(raw)
    again = em.sample(6, seed=3)
    np.testing.assert_array_equal(calibrated.psi, again.psi)
    assert not np.array_equal(calibrated.psi, raw.psi)
    drop = {"history"}  # a UTC time stamp
    assert {k: v for k, v in calibrated.attrs.items() if k not in drop} == {
        k: v for k, v in again.attrs.items() if k not in drop
    }
    assert raw.attrs["climgen_calibrated"] == "false"
    with pytest.raises(ClimgenInputError, match="raw samples"):
        em.apply_calibration(calibrated)
