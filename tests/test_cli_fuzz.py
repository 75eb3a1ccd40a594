"""Issue 24 item 10: the command line fuzzed with hypothesis.

Random malformed netCDF inputs (zero bytes, random bytes, truncated files, no grid, NaN/inf,
text instead of numbers) through every subcommand that reads a file, and random recipe
mutations (wrong types, negative numbers, unknown keys) through ``climgen train``: each ends
with exit status 2 and one ``error:`` line naming the culprit, never a traceback, and no input
file changes. The CLI runs in-process (``climgen.cli.main``); examples are few and small, so
the module takes well under a minute.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _field(n=8, name="v", seed=0):
    return grf_dataarray(n, 8, 16, kind="latlon", seed=seed, name=name, units="K")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Valid inputs and runs the malformed files stand in for."""
    from climgen.tasks.emulate import Emulator
    from climgen.tasks.translate import Translator

    d = tmp_path_factory.mktemp("fuzz")
    write_fields(_field(seed=1).to_dataset(), d / "ref.nc")
    write_fields(_field(seed=2).to_dataset(), d / "gen.nc")
    a = _field(16, seed=3)
    Translator(method="quantile-mapping").fit(
        a.to_dataset(), (2 * a).to_dataset(), run_dir=d / "qm"
    )
    Emulator("vae", latent_dim=2, base_channels=2).fit(
        _field(8, seed=4), run_dir=d / "em", max_steps=1, batch_size=4, progress=False
    )
    write_fields(_field(12, seed=5).to_dataset(), d / "train.nc")
    return d


def _netcdf_bytes(ds: xr.Dataset, where: Path) -> bytes:
    write_fields(ds, where)
    data = where.read_bytes()
    where.unlink()
    return data


@hs.composite
def malformed(draw):
    """(kind, writer): writer(path) puts a malformed file at path."""
    kind = draw(
        hs.sampled_from(
            ["empty", "garbage", "truncated", "no-grid", "one-dim", "nan", "inf", "text"]
        )
    )
    seed = draw(hs.integers(0, 2**16))
    garbage = draw(hs.binary(min_size=1, max_size=400))
    cut = draw(hs.floats(0.02, 0.9))
    da = _field(seed=seed)

    def write(path: Path) -> None:
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(garbage)
        elif kind == "truncated":
            data = _netcdf_bytes(da.to_dataset(), path)
            path.write_bytes(data[: max(1, int(len(data) * cut))])
        elif kind == "no-grid":
            flat = xr.DataArray(da.values.reshape(len(da), -1), dims=("time", "points"), name="v")
            write_fields(flat.to_dataset(), path)
        elif kind == "one-dim":
            write_fields(da.mean(("lat", "lon")).to_dataset(), path)
        elif kind in ("nan", "inf"):
            bad = da.copy()
            rng = np.random.default_rng(seed)
            values = bad.values
            values[tuple(rng.integers(0, s, 3) for s in values.shape)] = (
                np.nan if kind == "nan" else np.inf
            )
            write_fields(bad.to_dataset(), path)
        else:  # text where numbers belong
            text = xr.DataArray(np.full(da.shape, "abc"), dims=da.dims, coords=da.coords)
            xr.Dataset({"v": text}).to_netcdf(path)

    return kind, write


def _digests(paths) -> dict[Path, str]:
    out = {}
    for p in paths:
        files = sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [p]
        for f in files:
            out[Path(f)] = hashlib.sha256(Path(f).read_bytes()).hexdigest()
    return out


def _assert_one_clean_error(status: int, err: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("climgen"), err


def _commands(base: Path, bad: Path, out: Path) -> dict[str, list[str]]:
    return {
        "evaluate-generated": ["evaluate", str(bad), str(base / "ref.nc"), "-o", str(out), "-q"],
        "evaluate-reference": ["evaluate", str(base / "gen.nc"), str(bad), "-o", str(out), "-q"],
        "fill": ["fill", "nearest", str(bad), "-o", str(out)],
        "downscale": ["downscale", "bicubic", str(bad), "--factor", "2", "-o", str(out)],
        "translate": ["translate", str(base / "qm"), str(bad), "-o", str(out)],
        "train": ["train", str(bad.with_name("r.yaml")), "-q"],
    }


# NaN marks a gap in observations: `fill` fills it (not an error); inf is an error there.
# A run's template.nc gives coordinates and attributes; its values are never read (`sample`).
# (An extra non-spatial dim such as `level` is no error anywhere: every command treats the
# fields of each level as more fields.)
_NOT_MALFORMED = {("fill", "nan"), ("sample", "nan"), ("sample", "inf"), ("sample", "text")}


@FUZZ
@given(
    bad=malformed(),
    command=hs.sampled_from(
        [
            "evaluate-generated",
            "evaluate-reference",
            "fill",
            "downscale",
            "translate",
            "sample",
            "train",
        ]
    ),
)
def test_malformed_input_file_gives_one_error_and_changes_no_input(
    base, tmp_path_factory, capsys, bad, command
):
    kind, write = bad
    if (command, kind) in _NOT_MALFORMED:
        return
    d = tmp_path_factory.mktemp("case")
    if command == "sample":  # a run directory whose template (read on load) is malformed
        run = d / "em"
        shutil.copytree(base / "em", run)
        write(run / "template.nc")
        argv, inputs = ["sample", str(run), "-n", "2", "-o", str(d / "out.nc")], [run]
    else:
        write(d / "bad.nc")
        recipe = {**_RECIPE, "data": {**_RECIPE["data"], "paths": "bad.nc"}}
        (d / "r.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        argv = _commands(base, d / "bad.nc", d / "out")[command]
        inputs = [d / "bad.nc", d / "r.yaml", base / "ref.nc", base / "gen.nc", base / "qm"]
    before = _digests(inputs)
    capsys.readouterr()
    status = main(argv)
    _assert_one_clean_error(status, capsys.readouterr().err)
    assert _digests(inputs) == before
    assert not (d / "out").exists() and not (d / "out.nc").exists()
    assert not (d / "run" / "checkpoints").exists()


_RECIPE = {
    "task": "emulate",
    "data": {"paths": "train.nc", "variables": ["v"], "train_fraction": 0.75},
    "family": {"name": "vae", "options": {"latent_dim": 2, "base_channels": 2}},
    "train": {"max_steps": 1, "batch_size": 4, "log_every": 1, "checkpoint_every": 1},
    "evaluate": {"n_samples": 4},
    "run_dir": "run",
}
_NUMERIC = [
    ("data", "train_fraction"),
    ("family", "options", "latent_dim"),
    ("family", "options", "base_channels"),
    ("family", "options", "lr"),
    ("train", "max_steps"),
    ("train", "batch_size"),
    ("train", "log_every"),
    ("train", "checkpoint_every"),
    ("train", "seed"),
    ("evaluate", "n_samples"),
]
_SECTIONS = [(), ("data",), ("family",), ("family", "options"), ("train",), ("evaluate",)]


@hs.composite
def recipe_mutation(draw):
    """(description, recipe dict) with one wrong type, negative number or unknown key."""
    recipe = copy.deepcopy(_RECIPE)
    how = draw(hs.sampled_from(["wrong type", "negative", "unknown key"]))
    if how == "unknown key":
        where = draw(hs.sampled_from(_SECTIONS))
        key = draw(hs.from_regex(r"\A[a-z][a-z_]{2,10}\Z"))
        section = recipe
        for k in where:
            section = section[k]
        if key in section:
            key = key + "_x"
        section[key] = draw(hs.integers(0, 9))
        return f"unknown key {'.'.join((*where, key))}", recipe
    path = draw(hs.sampled_from(_NUMERIC))
    if how == "negative":
        value = draw(hs.one_of(hs.integers(-(10**6), -1), hs.floats(-1e6, -1e-6)))
    else:
        value = draw(
            hs.one_of(
                hs.text(alphabet="xyz", min_size=1, max_size=5),
                hs.lists(hs.integers(1, 3), min_size=1, max_size=2),
                hs.just({"a": 1}),
            )
        )
    section = recipe
    for k in path[:-1]:
        section = section[k]
    section[path[-1]] = value
    return f"{how} {'.'.join(path)}={value!r}", recipe


@FUZZ
@given(mutation=recipe_mutation())
def test_mutated_recipe_gives_one_error_and_changes_no_input(
    base, tmp_path_factory, capsys, mutation
):
    what, recipe = mutation
    d = tmp_path_factory.mktemp("recipe")
    shutil.copy(base / "train.nc", d / "train.nc")
    path = d / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    before = _digests([d / "train.nc", path])
    capsys.readouterr()
    status = main(["train", str(path), "-q"])
    err = capsys.readouterr().err
    _assert_one_clean_error(status, err)
    assert _digests([d / "train.nc", path]) == before, what
    assert not (d / "run" / "checkpoints").exists(), what
