"""``task: translate`` recipes: validation, domain loading (coarsen_b, b_coords_from_a), a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import climgen.tasks.translate.recipe  # noqa: F401  (registers task: translate)
from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.tasks.recipe import load_recipe, run_recipe
from climgen.tasks.translate.recipe import load_translate_domains
from climgen.tasks.translate.translator import Translator

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planar(values, name, dx):
    n, ny, nx = values.shape
    return xr.DataArray(
        values,
        dims=("time", "z", "x"),
        coords={
            "time": np.arange(n, dtype=float),
            "z": ("z", (np.arange(ny) + 0.5) / ny, {"axis": "Y"}),
            "x": ("x", np.arange(nx) * dx, {"axis": "X", "periodic": "true"}),
        },
        name=name,
        attrs={"units": "1"},
    ).to_dataset()


@pytest.fixture()
def files(tmp_path):
    """A: 8 × 16 fields named 'b'; B: 16 × 32 fields named 'temp' (finer, other name)."""
    a = _planar(make_grf(40, 8, 16, slope=-3, seed=1), "b", 1 / 16)
    b = _planar(make_grf(40, 16, 32, slope=-2, seed=2) * 0.5 + 1.0, "temp", 1 / 32)
    a.to_netcdf(tmp_path / "a.nc")
    b.to_netcdf(tmp_path / "b.nc")
    return tmp_path


def _write(path, recipe):
    path.write_text(yaml.safe_dump(recipe))
    return path


def _recipe(**changes):
    recipe = {
        "task": "translate",
        "data": {
            "paths": "a.nc",
            "paths_b": "b.nc",
            "variables": ["b"],
            "variables_b": ["temp"],
            "coarsen_b": 2,
            "b_coords_from_a": True,
            "train_fraction": 0.75,
        },
        "method": {"name": "quantile-mapping", "options": {"n_quantiles": 20}},
        "run_dir": "run",
    }
    for key, value in changes.items():
        recipe[key] = value
    return recipe


def test_loads_domains_renamed_coarsened_on_a_coords(files):
    recipe = load_recipe(_write(files / "r.yaml", _recipe()))
    assert recipe.data["paths_b"] == [str(files / "b.nc")]  # resolved like paths
    a, b = load_translate_domains(recipe)
    assert b["b"].shape == (40, 8, 16)
    np.testing.assert_array_equal(b["x"].values, a["x"].values)
    raw = xr.load_dataset(files / "b.nc")["temp"].values
    # Conservative 2 × 2 block means (uniform weights on this planar grid).
    block = raw.reshape(40, 8, 2, 16, 2).mean((2, 4))
    np.testing.assert_allclose(b["b"].values, block, rtol=1e-6)


def test_quantile_mapping_recipe_writes_report(files):
    recipe = load_recipe(_write(files / "r.yaml", _recipe()))
    translator, scores = run_recipe(recipe, progress=False)
    run = files / "run"
    assert (run / "recipe.yaml").exists() and (run / "quantiles.npz").exists()
    assert (run / "report" / "index.html").exists()
    assert json.loads((run / "report" / "scores.json").read_text()) == scores
    # The method is quantile mapping itself: no separate baseline row.
    assert set(scores["scores"]) == {"A untranslated (identity)", "translated A (quantile-mapping)"}
    ours = scores["scores"]["translated A (quantile-mapping)"]["b"]["wasserstein1"]["value"]
    ident = scores["scores"]["A untranslated (identity)"]["b"]["wasserstein1"]["value"]
    assert ours < 0.5 * ident  # B is offset by +1: quantile mapping removes it
    again = Translator.load(run).translate(xr.load_dataset(files / "a.nc"))
    assert again["b"].shape == (40, 8, 16)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": {"name": "cyclegann"}}, "did you mean 'cyclegan'"),
        ({"method": {"name": "cyclegan", "options": {"shape": [8, 8]}}}, "set from the data"),
        ({"method": {"name": "cyclegan", "options": {"base_chanels": 8}}}, "base_chanels"),
        ({"data": {"paths": "a.nc", "path_b": "b.nc"}}, "did you mean 'paths_b'"),
    ],
)
def test_recipe_errors_name_the_key(files, changes, message):
    with pytest.raises(ClimgenInputError, match=message):
        load_recipe(_write(files / "r.yaml", _recipe(**changes)))


def test_run_errors_missing_b_members_and_shape(files):
    recipe = load_recipe(_write(files / "r.yaml", _recipe(data={"paths": "a.nc"})))
    with pytest.raises(ClimgenInputError, match="paths_b"):
        run_recipe(recipe, progress=False)
    recipe = load_recipe(
        _write(files / "r.yaml", _recipe(method={"name": "cyclegan"}, evaluate={"members": 3}))
    )
    with pytest.raises(ClimgenInputError, match="augmented-cyclegan"):
        run_recipe(recipe, progress=False)
    data = dict(_recipe()["data"])
    del data["coarsen_b"]
    recipe = load_recipe(_write(files / "r.yaml", _recipe(data=data)))
    with pytest.raises(ClimgenInputError, match="one grid shape"):
        run_recipe(recipe, progress=False)


def test_shipped_rbc_recipe_validates():
    recipe = load_recipe(RECIPES / "translate_rbc_ra1e6_to_ra2e6_cyclegan.yaml")
    assert recipe.task == "translate" and recipe.model["name"] == "cyclegan"
    assert recipe.data["paths"][0].endswith("rbc_small.nc")
    assert recipe.data["paths_b"][0].endswith("rbc_ra2e6_seed11.nc")
    assert recipe.data["coarsen_b"] == 2
