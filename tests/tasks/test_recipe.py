"""Recipes: strict schema (typos and wrong types named), path resolution, a full tiny run."""

from __future__ import annotations

import textwrap

import pytest

from climgen.errors import ClimgenInputError
from climgen.tasks.recipe import load_recipe

GOOD = """
task: emulate
data:
  paths: data.nc
  variables: [psi]
  train_fraction: 0.75
family:
  name: vae
  options: {latent_dim: 4, base_channels: 4}
train: {max_steps: 3, batch_size: 8}
evaluate: {n_samples: 8}
run_dir: run
"""


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_recipe_resolves_paths_relative_to_the_file(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD))
    assert recipe.data["paths"] == [str((tmp_path / "data.nc").resolve())]
    assert recipe.run_dir == str((tmp_path / "run").resolve())
    assert recipe.model == {"name": "vae", "options": {"latent_dim": 4, "base_channels": 4}}


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("task: emulate", "task: emulat", "unknown task 'emulat'"),
        ("  name: vae", "  name: vea", "unknown family 'vea'.*did you mean 'vae'"),
        ("train: {max_steps: 3", "train: {max_step: 3", "max_step.*max_steps"),
        ("train: {max_steps: 3", "train: {max_steps: three", "max_steps"),
        ("  train_fraction: 0.75", "  train_fractoin: 0.75", "train_fractoin.*train_fraction"),
        ("{latent_dim: 4,", "{latent_dims: 4,", "latent_dims.*valid options"),
        ("evaluate: {n_samples: 8}", "evaluate: {n_samples: true}", "n_samples' must be int"),
        ("  train_fraction: 0.75", "  train_fraction: 1.5", r"train_fraction must be in \(0, 1\]"),
        ("run_dir: run", "rundir: run", "unknown key 'rundir'.*run_dir"),
    ],
)
def test_bad_recipes_name_the_culprit(tmp_path, old, new, match):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ClimgenInputError, match=match) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_missing_recipe_file_and_bad_yaml(tmp_path):
    with pytest.raises(ClimgenInputError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ClimgenInputError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "task: [unclosed"))


def test_shipped_recipes_are_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
    assert len(recipes) >= 5
    for path in recipes:
        load_recipe(path)


def test_emulate_recipe_evaluate_section_types_are_checked(tmp_path):
    text = GOOD.replace(
        "evaluate: {n_samples: 8}", "evaluate: {n_samples: 8, calibrate_spectrum: yes}"
    )
    assert "calibrate_spectrum" in text
    assert load_recipe(_write(tmp_path, text)).evaluate["calibrate_spectrum"] is True
    bad = GOOD.replace(
        "evaluate: {n_samples: 8}", "evaluate: {n_samples: 8, calibrate_spectrum: 3}"
    )
    with pytest.raises(ClimgenInputError, match="calibrate_spectrum"):
        load_recipe(_write(tmp_path, bad))
