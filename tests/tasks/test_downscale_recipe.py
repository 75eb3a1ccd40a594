"""``task: downscale`` recipes: validation before any data is read, a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import climgen.tasks.downscale.recipe  # noqa: F401  (registers the task)
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.recipe import load_recipe, run_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write(tmp_path, **changes) -> Path:
    recipe = {
        "task": "downscale",
        "data": {
            "paths": "fields.nc",
            "variables": ["psi"],
            "train_fraction": 0.75,
            "factor": 4,
            "conserve": True,
        },
        "method": {"name": "regression", "options": {"base_channels": 8, "n_blocks": 1}},
        "train": {"max_steps": 2, "batch_size": 4, "seed": 0},
        "evaluate": {"baselines": ["bicubic", "nearest"], "n_fields": 3},
        "run_dir": "run",
    }
    for section, value in changes.items():
        if isinstance(value, dict) and isinstance(recipe.get(section), dict):
            recipe[section] = {**recipe[section], **value}
        else:
            recipe[section] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_shipped_downscale_recipes_are_valid():
    paths = sorted(RECIPES.glob("downscale_*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        recipe = load_recipe(path)
        assert recipe.task == "downscale" and recipe.data["factor"] == 4
        assert recipe.data["paths"][0].endswith(".nc")


def test_recipe_trains_scores_and_writes_the_report(tmp_path):
    write_fields(grf_dataarray(12, 16, 32, seed=0, name="psi").to_dataset(), tmp_path / "fields.nc")
    down, scores = run_recipe(load_recipe(_write(tmp_path)), progress=False)
    run = tmp_path / "run"
    assert (run / "recipe.yaml").exists() and (run / "fine_template.nc").exists()
    assert list(scores) == ["bicubic", "nearest", "regression"]
    assert scores["regression"]["conservation"] < 1e-5  # data.conserve: true
    assert scores["bicubic"]["rmse_ratio"] == 1.0
    saved = json.loads((run / "report" / "scores.json").read_text())
    for method, values in scores.items():
        assert saved[method] == pytest.approx(values)
    assert "regression" in (run / "report" / "index.html").read_text()
    assert yaml.safe_load((run / "recipe.yaml").read_text())["method"]["name"] == "regression"


def test_recipe_calibrates_the_spectrum_and_scores_both(tmp_path):
    write_fields(grf_dataarray(16, 16, 32, seed=1, name="psi").to_dataset(), tmp_path / "fields.nc")
    changes = {
        "method": {"name": "bicubic", "options": {}},
        "evaluate": {"calibrate_spectrum": True, "calibrate_fields": 8, "n_fields": 4},
    }
    down, scores = run_recipe(load_recipe(_write(tmp_path, **changes)), progress=False)
    run = tmp_path / "run"
    assert (run / "spectral_calibration.json").exists() and (run / "baseline.json").exists()
    assert down.calibration is not None and down.calibration.n_fit == 8
    assert set(scores) == {"bicubic", "bicubic (calibrated)", "nearest"}
    # The gain gives bicubic's smoothed small scales their power back (training spectrum).
    cal, raw = scores["bicubic (calibrated)"], scores["bicubic"]
    assert cal["spectral_high_k"] < raw["spectral_high_k"]
    assert cal["conservation"] < 1e-5  # data.conserve: true, applied after the gain


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"evaluate": {"calibrate_spectrum": "yes"}}, "evaluate.calibrate_spectrum"),
        ({"method": {"name": "regresion"}}, "did you mean 'regression'"),
        ({"method": {"name": "regression", "options": {"factor": 2}}}, "data section"),
        ({"method": {"name": "regression", "options": {"nblocks": 2}}}, "nblocks"),
        ({"data": {"factr": 4}}, "did you mean 'factor'"),
        ({"evaluate": {"members": "4"}}, "evaluate.members"),
    ],
)
def test_recipe_errors_name_the_key(tmp_path, changes, message):
    with pytest.raises(ClimgenInputError, match=message):
        load_recipe(_write(tmp_path, **changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data": {"factor": 9}}, "data.factor must be an integer 2–8"),
        ({"data": {"conserve": "exact"}}, "data.conserve"),
        ({"evaluate": {"baselines": ["regression"]}}, "baselines are the interpolation"),
    ],
)
def test_recipe_values_are_checked_before_training(tmp_path, changes, message):
    recipe = load_recipe(_write(tmp_path, **changes))
    with pytest.raises(ClimgenInputError, match=message):
        run_recipe(recipe, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
