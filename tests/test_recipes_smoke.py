"""Every shipped recipe runs on a fresh clone: its own data commands, then ``climgen train``.

For each recipe in ``recipes/``, in a scratch copy of the clone's layout (``recipes/`` and an
empty ``data/``): run the ``make_data`` commands the recipe names, at a tiny size (8 snapshots
after a 1-unit spin-up instead of hundreds), then ``climgen train RECIPE --max-steps 2`` on
a copy of the recipe whose batch size and evaluation sizes are shrunk to fit those 8 fields.
A recipe whose command needs a solver that is not installed (the ``sim`` extra, Dedalus, for
``climgen data rbc``; the ``gcm`` extra, dinosaur + JAX, for ``climgen data heldsuarez``) is
skipped, naming the extra. The recipe that reads only bundled data always runs.

8 snapshots, not 3: with ``train_fraction: 0.8`` they give 6 training and 2 held-out fields,
the fewest that every recipe's split and validation split accept. Emulation recipes score
samples only with ≥ 4 held-out fields, so here they train and save without a report (the
report path is tested on synthetic data in ``tests/tasks/test_emulate.py``; sampling a
PixelCNN even at this size takes minutes). Each distinct data command runs once per session.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

# climgen data KIND → (extra, modules it needs, options that make a tiny run)
SOLVERS = {
    "rbc": ("sim", ("dedalus",), ["--snapshots", "8", "--spinup", "1"]),
    "heldsuarez": ("gcm", ("dinosaur", "jax"), ["--days", "8", "--spinup-days", "1"]),
}
# options of the full-size commands that the tiny ones replace (flag → takes a value)
_SIZE_OPTIONS = {"--snapshots", "--spinup", "--days", "--spinup-days"}
# evaluation sizes that must fit 2 held-out fields and run in seconds
_SMALL_EVALUATE = {"n_samples": 2, "members": 2, "max_fields": 2, "kriging_points": 0}


def tiny_command(cmd: str) -> tuple[str, list[str]]:
    """(solver kind, argv) of a ``make_data`` command at tiny size, run with this Python."""
    words = shlex.split(cmd)
    assert words[:2] == ["climgen", "data"] and words[2] in SOLVERS, cmd
    kind, rest, kept = words[2], words[3:], []
    i = 0
    while i < len(rest):
        if rest[i] in _SIZE_OPTIONS:
            i += 2
            continue
        kept.append(rest[i])
        i += 1
    argv = [sys.executable, "-m", "climgen", "data", kind, *kept, *SOLVERS[kind][2], "-q"]
    return kind, argv


def test_tiny_command_replaces_the_size_options():
    kind, argv = tiny_command("climgen data heldsuarez --seed 1 --days 200 -o data/hs.nc")
    assert kind == "heldsuarez"
    assert argv[1:] == [
        "-m",
        "climgen",
        "data",
        "heldsuarez",
        "--seed",
        "1",
        "-o",
        "data/hs.nc",
    ] + [
        "--days",
        "8",
        "--spinup-days",
        "1",
        "-q",
    ]


def _missing_extra(recipe: dict) -> str | None:
    for cmd in recipe.get("make_data") or []:
        kind = shlex.split(cmd)[2]
        extra, modules, _ = SOLVERS[kind]
        if any(importlib.util.find_spec(m) is None for m in modules):
            return f"'climgen data {kind}' needs the '{extra}' extra ({', '.join(modules)})"
    return None


def _small_copy(recipe: dict) -> dict:
    out = dict(recipe)
    train = dict(out.get("train") or {})
    train["batch_size"] = min(int(train.get("batch_size", 2)), 2)
    out["train"] = train
    evaluate = dict(out.get("evaluate") or {})
    for key, value in _SMALL_EVALUATE.items():
        if key in evaluate and (evaluate[key] > value or key == "kriging_points"):
            evaluate[key] = value
    out["evaluate"] = evaluate
    return out


@pytest.fixture(scope="module")
def made_data(tmp_path_factory):
    """command → the clone folder where it ran (each distinct command runs once)."""
    return {}, tmp_path_factory.mktemp("made_data")


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_from_its_own_data_commands(path, tmp_path, made_data):
    recipe = yaml.safe_load(path.read_text())
    missing = _missing_extra(recipe)
    if missing:
        pytest.skip(f"{path.name}: {missing}")
    clone = tmp_path / "clone"
    (clone / "recipes").mkdir(parents=True)
    (clone / "data").mkdir()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    made, store = made_data
    for cmd in recipe.get("make_data") or []:
        _, argv = tiny_command(cmd)
        out = Path(argv[argv.index("-o") + 1])
        if cmd not in made:  # run in its own folder; the output path is relative to it
            folder = store / f"cmd{len(made)}"
            (folder / out.parent).mkdir(parents=True, exist_ok=True)
            done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{cmd}\n{done.stderr[-2000:]}"
            made[cmd] = folder
        (clone / out.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made[cmd] / out, clone / out)
    copy = clone / "recipes" / path.name
    copy.write_text(yaml.safe_dump(_small_copy(recipe), sort_keys=False))
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "climgen", "train", str(copy), "--max-steps", "2", "-q"]
    done = subprocess.run(
        [*argv, "--run-dir", str(run_dir)], cwd=clone, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{path.name}\n{done.stderr[-2000:]}"
    assert (run_dir / "recipe.yaml").is_file()
    # a trained network leaves a checkpoint; optimal interpolation its fitted covariance
    assert (run_dir / "checkpoints").is_dir() or (run_dir / "fill.json").is_file()
