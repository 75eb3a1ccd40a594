"""Recipes: strict schema (typos and wrong types named), path resolution, a full tiny run."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]


def test_missing_data_file_names_the_recipe_and_the_command_that_makes_it(tmp_path):
    from climgen.tasks.recipe import run_recipe

    clone = tmp_path / "clone"
    (clone / "recipes").mkdir(parents=True)
    cmd = "climgen data heldsuarez --seed 1 --days 200 -o data/hs_seed1.nc"
    text = GOOD.replace("paths: data.nc", "paths: ../data/hs_seed1.nc")
    path = clone / "recipes" / "r.yaml"
    path.write_text(f"make_data:\n  - {cmd}\n" + textwrap.dedent(text))
    recipe = load_recipe(path)  # reading a recipe does not need its data
    assert recipe.make_data == [cmd]
    with pytest.raises(ClimgenInputError) as err:
        run_recipe(recipe, progress=False)
    msg = str(err.value)
    assert str(path) in msg and "hs_seed1.nc does not exist" in msg and cmd in msg
    assert f"run it in {clone.resolve()}" in msg
    assert not (clone / "recipes" / "run").exists()  # stopped before the run folder


def test_missing_data_file_without_a_command_says_so(tmp_path):
    from climgen.tasks.recipe import check_data_files

    recipe = load_recipe(_write(tmp_path, GOOD))
    with pytest.raises(ClimgenInputError, match="names no command that makes it"):
        check_data_files(recipe)


def test_data_is_checked_where_it_is_opened_for_every_path_key(tmp_path):
    from climgen.tasks.recipe import data_paths, open_data

    cmd = "climgen data rbc -o masks.nc"
    recipe = load_recipe(_write(tmp_path, f"make_data: ['{cmd}']\n" + GOOD))
    with pytest.raises(ClimgenInputError, match="data.paths file .*data.nc does not exist"):
        open_data(recipe)
    recipe.data["masks"] = [str(tmp_path / "masks.nc")]
    with pytest.raises(ClimgenInputError, match=f"data.masks file .*; make it with:\n  {cmd}"):
        data_paths(recipe, "masks")
    (tmp_path / "masks.nc").write_bytes(b"")
    assert data_paths(recipe, "masks") == [str(tmp_path / "masks.nc")]


def test_make_data_must_be_a_list_of_commands(tmp_path):
    with pytest.raises(ClimgenInputError, match="'make_data' must be str"):
        load_recipe(_write(tmp_path, "make_data: [3]\n" + GOOD))


def test_shipped_recipes_read_data_from_the_clone_and_name_the_commands_that_make_it():
    from climgen.tasks.recipe import _command_output

    bundled = ROOT / "climgen" / "data" / "bundled"
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    for path in recipes:
        recipe = load_recipe(path)
        outputs = {(ROOT / _command_output(c)).resolve() for c in recipe.make_data}
        assert all(c.startswith("climgen data ") for c in recipe.make_data), path.name
        for key in ("paths", "paths_b", "masks", "regrid", "static"):
            for p in map(Path, recipe.data.get(key) or []):
                if p.parent == bundled.resolve():
                    assert p.is_file(), (path.name, p)  # shipped with the package
                else:  # made by one of the recipe's own commands, into data/ of the clone
                    assert p.parent == (ROOT / "data").resolve(), (path.name, p)
                    assert p in outputs, (path.name, p, recipe.make_data)
        assert "shared" not in path.read_text(), path.name
