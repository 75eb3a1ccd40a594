"""Downscaling scores, Downscaler.report, the CLI's --report and patch training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.cli import main as climgen_main
from climgen.data.coarsen import coarsen, coarsen_tensor
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.downscale.downscaler import Downscaler
from climgen.tasks.downscale.pairs import PairDataset
from climgen.tasks.downscale.scoring import compare_methods

SMALL_NET = dict(base_channels=8, n_blocks=1, lr=2e-3)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_scores_of_perfect_blocky_and_conserving_outputs():
    truth = grf_dataarray(4, 32, 32, seed=0, name="psi")
    down = Downscaler(4, "bicubic")
    coarse = down.coarsen(truth)
    bicubic = down.downscale(coarse)["psi"]
    layered = Downscaler(4, "bicubic", conserve=True).downscale(coarse)["psi"]
    nearest = Downscaler(4, "nearest").downscale(coarse)["psi"]
    noisy = xr.concat(
        [truth + 0.05 * np.random.default_rng(i).standard_normal(truth.shape) for i in range(3)],
        dim="member",
    )
    outputs = {"bicubic": bicubic, "bicubic +layer": layered, "nearest": nearest}
    outputs.update({"perfect": truth, "noisy ensemble": noisy})
    s = compare_methods(truth, outputs, coarse["psi"], 4)
    perfect = s["perfect"]
    for key in ("rmse", "spectral_high_k", "w1", "q999_error", "conservation"):
        assert perfect[key] == pytest.approx(0.0, abs=1e-12)
    assert s["bicubic"]["rmse_ratio"] == 1.0 and s["bicubic"]["spectral_ratio"] == 1.0
    # Block means: kept exactly by nearest and by the layer, not by plain bicubic.
    assert s["nearest"]["conservation"] < 1e-12
    assert s["bicubic +layer"]["conservation"] < 1e-10
    assert s["bicubic"]["conservation"] > 1e-3
    # Interpolation loses small-scale power: a large high-k spectral error.
    assert s["bicubic"]["spectral_high_k"] > 0.5
    ens = s["noisy ensemble"]
    assert 0 < ens["crps"] < 0.05 and ens["rmse_ensemble_mean"] < ens["rmse"]
    assert "crps" not in s["bicubic"]


def test_latlon_scores_use_truth_positions_and_weights():
    truth = grf_dataarray(3, 16, 32, kind="latlon", seed=1, name="tas")
    down = Downscaler(4, "lanczos", conserve=True)
    coarse = down.coarsen(truth)
    out = down.downscale(coarse)["tas"]
    s = compare_methods(truth, {"lanczos": out}, coarse["tas"], 4, baseline=None)["lanczos"]
    # cos-lat weighted block means are conserved on the truth grid
    assert s["conservation"] < 1e-10
    assert "rmse_ratio" not in s
    with pytest.raises(ClimgenInputError, match="dims"):
        compare_methods(truth, {"x": out.isel(time=0)}, coarse["tas"], 4)


def test_downscaler_report_writes_page_and_scores(tmp_path):
    truth = grf_dataarray(3, 16, 32, seed=2, name="u", units="m s-1")
    scores, page = Downscaler(4, "lanczos").report(truth, tmp_path / "rep")
    assert page == tmp_path / "rep" / "index.html" and page.exists()
    assert set(scores) == {"bicubic", "lanczos"}
    assert json.loads((page.parent / "scores.json").read_text())["lanczos"]["rmse"] > 0
    assert "lanczos" in page.read_text()


def test_cli_report_needs_truth_and_writes_page(tmp_path, capsys):
    truth = grf_dataarray(2, 16, 16, seed=3, name="u").to_dataset()
    coarse = Downscaler(4, "bicubic").coarsen(truth)
    c_path = write_fields(coarse, tmp_path / "coarse.nc")
    t_path = write_fields(truth, tmp_path / "truth.nc")
    args = ["downscale", "lanczos", str(c_path), "-o", str(tmp_path / "fine.nc"), "--factor", "4"]
    assert climgen_main(args + ["--report", str(tmp_path / "rep")]) == 2
    assert "--truth" in capsys.readouterr().err
    assert climgen_main(args + ["--truth", str(t_path), "--report", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "bicubic" in html and "lanczos" in html


def test_patch_pairs_are_block_aligned_crops():
    from climgen.data.dataset import FieldDataset

    da = grf_dataarray(2, 16, 24, seed=4, name="psi")
    fine = FieldDataset(da.to_dataset(), ["psi"], sample_dim="time")
    pairs = PairDataset(fine, 4, None, patch=(2, 3), periodic=(False, True))
    torch.manual_seed(0)
    for i in range(6):
        item = pairs[i % 2]
        assert item["x"].shape == (1, 8, 12) and item["cond"].shape == (1, 2, 3)
        again = coarsen_tensor(item["x"].double(), 4).float()
        torch.testing.assert_close(again, item["cond"], atol=1e-5, rtol=0)


def test_patch_training_runs_on_whole_fields_after(tmp_path):
    da = grf_dataarray(12, 16, 32, seed=5, name="psi")
    down = Downscaler(4, "regression", patch_size=2, conserve=True, **SMALL_NET)
    down.fit(da, run_dir=tmp_path, max_steps=2, batch_size=4, progress=False)
    assert tuple(down.family.shape) == (8, 8)  # the net trained on 8 × 8 fine crops
    coarse = down.coarsen(da.isel(time=slice(0, 2)))
    out = down.downscale(coarse)["psi"]
    assert out.shape == (2, 16, 32) and np.isfinite(out.values).all()
    np.testing.assert_allclose(coarsen(out, 4).values, coarse["psi"].values, atol=1e-5)
    again = Downscaler.load(tmp_path).downscale(coarse)["psi"]
    np.testing.assert_allclose(again.values, out.values, atol=1e-5)


def test_patch_size_errors_are_named(tmp_path):
    with pytest.raises(ClimgenInputError, match="patch_size applies"):
        Downscaler(4, "bicubic", patch_size=4)
    da = grf_dataarray(4, 16, 16, kind="latlon", seed=6, name="tas")
    with pytest.raises(ClimgenInputError, match="rows must be 1..4"):
        Downscaler(4, "regression", patch_size=(5, 2), **SMALL_NET).fit(
            da, run_dir=tmp_path / "a", max_steps=1
        )
    with pytest.raises(ClimgenInputError, match="constraint='additive'"):
        Downscaler(4, "regression", patch_size=2, constraint="additive", **SMALL_NET).fit(
            da, run_dir=tmp_path / "b", max_steps=1
        )
