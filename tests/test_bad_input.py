"""Bad input, systematically: every input class against every public entry point.

Each case asserts ONE :class:`ClimgenInputError` (API) or exit status 2 with
``climgen: error:`` / argparse's ``climgen SUBCOMMAND: error:`` (CLI) whose message names the
culprit (file, variable, dim, option or value). Conventions that are not errors — descending
latitude, longitudes in −180..180 instead of 0..360, dims in another order — must be accepted
and restored. docs/reliability.md summarises the table.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from climgen.cli import main
from climgen.data.dataset import FieldDataset
from climgen.data.io import open_fields
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError
from climgen.metrics import rapsd
from climgen.report.evaluate import evaluate
from climgen.tasks.emulate.emulator import Emulator
from climgen.tasks.recipe import load_recipe
from climgen.train import TrainConfig

NY, NX, N = 8, 16, 8
TINY_VAE = {"latent_dim": 2, "base_channels": 4}


def latlon(
    n: int = N,
    *,
    name: str = "tas",
    units: str = "K",
    seed: int = 0,
    lon_start: float = 0.0,
    lat_descending: bool = False,
) -> xr.DataArray:
    """A (time, lat, lon) field on a global 8 x 16 grid with CF attributes."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-78.75, 78.75, NY)
    if lat_descending:
        lat = lat[::-1]
    lon = lon_start + np.arange(NX) * 360.0 / NX
    da = xr.DataArray(
        rng.standard_normal((n, NY, NX)).astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={
            "time": np.arange(n),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name=name,
        attrs={"units": units},
    )
    return da


def with_value(da: xr.DataArray, value: float) -> xr.DataArray:
    out = da.copy(deep=True)
    out[1, 2, 3] = value
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    good = latlon()
    paths = {
        "good": d / "good.nc",
        "good2": d / "good2.nc",
        "nan": d / "nan.nc",
        "windspeed": d / "windspeed.nc",
        "coarse": d / "coarse.nc",
        "empty": d / "empty.nc",
        "text": d / "notes.nc",
        "truncated": d / "truncated.nc",
        "recipe": d / "recipe.yaml",
    }
    good.to_dataset().to_netcdf(paths["good"])
    latlon(seed=1).to_dataset().to_netcdf(paths["good2"])
    with_value(good, np.nan).to_dataset().to_netcdf(paths["nan"])
    latlon(seed=1, units="m s-1").to_dataset().to_netcdf(paths["windspeed"])
    good.isel(lon=slice(0, None, 2)).to_dataset().to_netcdf(paths["coarse"])
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("time,lat,lon,tas\n0,0,0,273.15\n")
    paths["truncated"].write_bytes(paths["good"].read_bytes()[:700])
    paths["recipe"].write_text(
        textwrap.dedent(
            f"""
            task: emulate
            data: {{paths: {paths["good"]}, variables: [tas]}}
            family: {{name: vae, options: {{latent_dim: 2, base_channels: 4}}}}
            train: {{max_steps: 1, batch_size: 4}}
            run_dir: {d / "run"}
            """
        )
    )
    return paths


def recipe_with(files, tmp_path, old: str, new: str) -> Path:
    text = files["recipe"].read_text()
    assert old in text, old
    path = tmp_path / "typo.yaml"
    path.write_text(text.replace(old, new))
    return path


def fit_emulator(data, tmp_path, family="vae", **train):
    options = {"max_steps": 1, "batch_size": 4, "progress": False, **train}
    return Emulator(family, **(TINY_VAE if family == "vae" else {})).fit(
        data, run_dir=tmp_path / "em", **options
    )


# -- API: each case → one ClimgenInputError naming the culprit ---------------------------------

# (input class, entry point, call(files, tmp_path), regex the message must match)
API_CASES = [
    # non-finite values
    ("nan", "evaluate", lambda f, t: evaluate(f["nan"], f["good"], progress=False), r"'tas'.*NaN"),
    (
        "inf",
        "evaluate",
        lambda f, t: evaluate(latlon(), with_value(latlon(seed=1), np.inf), progress=False),
        r"'tas'.*reference.*inf",
    ),
    ("nan", "Emulator.fit", lambda f, t: fit_emulator(f["nan"], t), r"tas.*(NaN|non-finite)"),
    (
        "inf",
        "Normalizer.fit",
        lambda f, t: Normalizer.fit(with_value(latlon(), np.inf)),
        r"tas.*(inf|non-finite)",
    ),
    (
        "all NaN",
        "Normalizer.fit",
        lambda f, t: Normalizer.fit(latlon() * np.nan),
        r"tas",
    ),
    ("constant", "Normalizer.fit", lambda f, t: Normalizer.fit(latlon() * 0), r"tas.*std"),
    ("nan", "rapsd", lambda f, t: rapsd(np.full((4, 8, 8), np.nan)), r"(NaN|non-finite)"),
    # wrong dims / order
    ("1-D field", "rapsd", lambda f, t: rapsd(np.zeros(16)), r"(2|two).*dim|ny, nx|shape"),
    (
        "no spatial dims",
        "evaluate",
        lambda f, t: evaluate(
            xr.DataArray(np.zeros((8, 4, 4)), dims=("a", "b", "c"), name="v"),
            xr.DataArray(np.zeros((8, 4, 4)), dims=("a", "b", "c"), name="v"),
            progress=False,
        ),
        r"gridded|spatial|dims",
    ),
    (
        "extra dim",
        "FieldDataset",
        lambda f, t: FieldDataset(latlon().expand_dims(level=2).to_dataset(), "tas"),
        r"'tas'.*level",
    ),
    (
        "wrong sample dim",
        "FieldDataset",
        lambda f, t: FieldDataset(latlon().to_dataset(), "tas", sample_dim="member"),
        r"'member'",
    ),
    (
        "wrong sample dim",
        "evaluate",
        lambda f, t: evaluate(latlon(), latlon(seed=1), sample_dim="member", progress=False),
        r"'member'",
    ),
    (
        "wrong sample dim",
        "Emulator.fit",
        lambda f, t: Emulator("vae", sample_dim="member", **TINY_VAE).fit(
            latlon(), run_dir=t / "em", max_steps=1, batch_size=4, progress=False
        ),
        r"'member'",
    ),
    # units
    (
        "incompatible units",
        "evaluate",
        lambda f, t: evaluate(f["windspeed"], f["good"], progress=False),
        r"'tas'.*units.*'m s-1'.*'K'.*cannot be converted",
    ),
    # files
    ("empty file", "open_fields", lambda f, t: open_fields(f["empty"]), r"empty\.nc.*empty"),
    ("not netCDF", "open_fields", lambda f, t: open_fields(f["text"]), r"notes\.nc"),
    ("truncated", "open_fields", lambda f, t: open_fields(f["truncated"]), r"truncated\.nc"),
    ("missing file", "open_fields", lambda f, t: open_fields(t / "nope.nc"), r"nope\.nc"),
    ("empty file", "evaluate", lambda f, t: evaluate(f["empty"], f["good"]), r"empty\.nc"),
    ("not netCDF", "Emulator.fit", lambda f, t: fit_emulator(f["text"], t), r"notes\.nc"),
    # grids
    (
        "mismatched grids",
        "evaluate",
        lambda f, t: evaluate(f["coarse"], f["good"], progress=False),
        r"'tas'.*'lon'.*8.*16",
    ),
    (
        "shifted grid",
        "evaluate",
        lambda f, t: evaluate(latlon(lon_start=5.0), latlon(seed=1), progress=False),
        r"'tas'.*coordinate 'lon'",
    ),
    (
        "mismatched grids",
        "FieldDataset",
        lambda f, t: FieldDataset(
            xr.merge([latlon(), latlon(name="pr").isel(lon=slice(0, 8)).rename(lon="lon2")]),
            ["tas", "pr"],
        ),
        r"'pr'|'tas'",
    ),
    # sizes
    ("zero steps", "TrainConfig", lambda f, t: TrainConfig(max_steps=0), r"max_steps"),
    (
        "negative batch",
        "Emulator.fit",
        lambda f, t: fit_emulator(latlon(), t, batch_size=-4),
        r"batch_size",
    ),
    (
        "batch > data",
        "Emulator.fit",
        lambda f, t: fit_emulator(latlon(), t, batch_size=64),
        r"batch_size=64",
    ),
    (
        "zero samples",
        "evaluate",
        lambda f, t: evaluate(latlon(), latlon(seed=1), max_samples=0, progress=False),
        r"max_samples",
    ),
    (
        "too few samples",
        "evaluate",
        lambda f, t: evaluate(latlon(), latlon(n=2, seed=1), progress=False),
        r"'tas'.*reference.*2 sample",
    ),
    ("zero spacing", "rapsd", lambda f, t: rapsd(np.zeros((2, 8, 8)), dx=0.0), r"dx"),
    # names
    ("unknown variable", "open_fields", lambda f, t: open_fields(f["good"], "pr"), r"'pr'"),
    (
        "unknown variable",
        "evaluate",
        lambda f, t: evaluate(f["good"], f["good2"], variables=["pr"], progress=False),
        r"'pr'",
    ),
    (
        "unknown variable",
        "Normalizer.fit",
        lambda f, t: Normalizer.fit(latlon().to_dataset(), ["pr"]),
        r"'pr'",
    ),
    (
        "unknown method",
        "Normalizer.fit",
        lambda f, t: Normalizer.fit(latlon(), method="minmax"),
        r"minmax",
    ),
    (
        "unknown family",
        "Emulator.fit",
        lambda f, t: fit_emulator(latlon(), t, family="vea"),
        r"vea",
    ),
    (
        "unknown option",
        "Emulator.fit",
        lambda f, t: Emulator("vae", latent_dims=4).fit(
            latlon(), run_dir=t / "em", max_steps=1, batch_size=4, progress=False
        ),
        r"latent_dims",
    ),
    (
        "unknown window",
        "rapsd",
        lambda f, t: rapsd(np.zeros((2, 8, 8)), window="hamming"),
        r"hamming",
    ),
    # recipes
    (
        "recipe typo",
        "load_recipe",
        lambda f, t: load_recipe(recipe_with(f, t, "max_steps", "max_step")),
        r"max_step.*did you mean 'max_steps'",
    ),
    (
        "recipe typo",
        "load_recipe",
        lambda f, t: load_recipe(recipe_with(f, t, "variables:", "variabels:")),
        r"variabels.*did you mean 'variables'",
    ),
    (
        "recipe wrong type",
        "load_recipe",
        lambda f, t: load_recipe(recipe_with(f, t, "batch_size: 4", "batch_size: four")),
        r"batch_size",
    ),
    (
        "unknown family",
        "load_recipe",
        lambda f, t: load_recipe(recipe_with(f, t, "name: vae", "name: vea")),
        r"'vea'.*did you mean 'vae'",
    ),
    (
        "recipe not YAML",
        "load_recipe",
        lambda f, t: load_recipe(recipe_with(f, t, "task: emulate", "task: [emulate")),
        r"typo\.yaml.*YAML",
    ),
    ("missing recipe", "load_recipe", lambda f, t: load_recipe(t / "nope.yaml"), r"nope\.yaml"),
]


@pytest.mark.parametrize(
    "input_class, entry, call, match",
    API_CASES,
    ids=[f"{entry}:{cls}" for cls, entry, _, _ in API_CASES],
)
def test_api_rejects_bad_input_naming_the_culprit(files, tmp_path, input_class, entry, call, match):
    with pytest.raises(ClimgenInputError) as err:
        call(files, tmp_path)
    assert re.search(match, str(err.value), re.S), f"{entry} / {input_class}: {err.value}"


# -- CLI: exit status 2 and one error line naming the culprit -------------------------------------

CLI_CASES = [
    (
        "not netCDF",
        lambda f, t: ["evaluate", str(f["text"]), str(f["good"]), "-o", str(t)],
        r"notes\.nc",
    ),
    (
        "empty file",
        lambda f, t: ["evaluate", str(f["good"]), str(f["empty"]), "-o", str(t)],
        r"empty\.nc",
    ),
    ("nan", lambda f, t: ["evaluate", str(f["nan"]), str(f["good"]), "-o", str(t)], r"'tas'.*NaN"),
    (
        "incompatible units",
        lambda f, t: ["evaluate", str(f["windspeed"]), str(f["good"]), "-o", str(t)],
        r"units",
    ),
    (
        "mismatched grids",
        lambda f, t: ["evaluate", str(f["coarse"]), str(f["good"]), "-o", str(t)],
        r"'lon'",
    ),
    (
        "unknown variable",
        lambda f, t: [
            "evaluate",
            str(f["good"]),
            str(f["good2"]),
            "-o",
            str(t),
            "--variables",
            "pr",
        ],
        r"'pr'",
    ),
    (
        "zero samples",
        lambda f, t: [
            "evaluate",
            str(f["good"]),
            str(f["good2"]),
            "-o",
            str(t),
            "--max-samples",
            "0",
        ],
        r"--max-samples.*0",
    ),
    ("missing recipe", lambda f, t: ["train", str(t / "nope.yaml")], r"nope\.yaml"),
    (
        "recipe typo",
        lambda f, t: ["train", str(recipe_with(f, t, "max_steps", "max_step"))],
        r"max_step",
    ),
    ("zero steps", lambda f, t: ["train", str(f["recipe"]), "--max-steps", "0"], r"--max-steps"),
    (
        "negative steps",
        lambda f, t: ["train", str(f["recipe"]), "--max-steps", "-5"],
        r"--max-steps",
    ),
    (
        "not a run dir",
        lambda f, t: ["sample", str(t), "-n", "4", "-o", str(t / "s.nc")],
        r"not an emulator run directory",
    ),
    ("zero samples", lambda f, t: ["sample", str(t), "-n", "0", "-o", str(t / "s.nc")], r"-n"),
    ("negative samples", lambda f, t: ["sample", str(t), "-n", "-3", "-o", str(t / "s.nc")], r"-n"),
]


@pytest.mark.parametrize(
    "input_class, argv, match",
    CLI_CASES,
    ids=[c for c, _, _ in CLI_CASES],
)
def test_cli_exits_2_naming_the_culprit(files, tmp_path, capsys, input_class, argv, match):
    args = argv(files, tmp_path)
    try:
        status = main([*args, "--quiet"] if args[0] != "sample" else args)
    except SystemExit as exc:  # argparse rejects bad numbers before climgen runs
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, f"{input_class}: exit {status}, stderr {err!r}"
    lines = [line for line in err.splitlines() if re.match(r"climgen( \w+)?: error:", line)]
    assert len(lines) == 1, err
    assert re.search(match, lines[0]), lines[0]
    assert "Traceback" not in err


def test_train_refuses_a_nan_in_the_held_out_part_before_training(tmp_path, capsys):
    """A NaN in the in-run held-out quarter (never seen by fit) is refused before training,
    naming the recipe and the held-out data; found by the fuzz test of test_cli_fuzz.py."""
    da = latlon(N)
    da[-1, 0, 0] = np.nan  # the last snapshot: in the held-out quarter
    da.to_dataset().to_netcdf(tmp_path / "d.nc")
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent(
            """\
            task: emulate
            data: {paths: d.nc, variables: [tas], train_fraction: 0.75}
            family: {name: vae, options: {latent_dim: 2, base_channels: 2}}
            train: {max_steps: 1, batch_size: 4}
            run_dir: run
            """
        )
    )
    status = main(["train", str(tmp_path / "r.yaml"), "-q"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert re.search(r"r\.yaml: the held-out data: variable 'tas' holds 1 NaN", err), err
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- property-based: random garbage and random bad numbers ---------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=hs.binary(min_size=0, max_size=2048))
def test_random_bytes_are_never_opened_as_data(tmp_path, garbage):
    path = tmp_path / "garbage.nc"
    path.write_bytes(garbage)
    with pytest.raises(ClimgenInputError, match="garbage.nc"):
        open_fields(path)


@settings(max_examples=25, deadline=None)
@given(
    field=hs.sampled_from(["max_steps", "batch_size", "log_every", "keep_last"]),
    value=hs.one_of(
        hs.integers(max_value=0),
        hs.floats(allow_nan=True, allow_infinity=True),
        hs.text(max_size=3),
        hs.booleans(),
    ),
)
def test_random_bad_sizes_name_the_option(field, value):
    with pytest.raises(ClimgenInputError, match=field):
        TrainConfig(**{field: value})


@settings(max_examples=20, deadline=None)
@given(
    which=hs.sampled_from(["n", "batch_size"]),
    value=hs.one_of(hs.integers(max_value=0), hs.floats(), hs.text(max_size=3), hs.booleans()),
)
def test_random_bad_sample_counts_name_the_argument(which, value):
    em = Emulator("vae")
    em.family = object()  # fitted enough for the size checks, which come first
    kwargs = {"n": 4, "batch_size": 4, which: value}
    with pytest.raises(ClimgenInputError, match=f"{which} must be a positive integer"):
        em.sample(kwargs.pop("n"), **kwargs)


@settings(max_examples=20, deadline=None)
@given(spacing=hs.one_of(hs.floats(max_value=0.0), hs.just(float("nan")), hs.just(float("inf"))))
def test_random_bad_spacings_name_the_spacing(spacing):
    with pytest.raises(ClimgenInputError, match="dy"):
        rapsd(np.zeros((2, 8, 8)), dy=spacing)


# -- conventions that must be accepted and restored ----------------------------------------------


def test_lon_conventions_and_descending_lat_compare_as_the_same_grid():
    ref = latlon(n=16)
    shifted = ref.roll(lon=NX // 2, roll_coords=True)
    shifted = shifted.assign_coords(lon=((shifted.lon + 180) % 360) - 180)  # −180..180
    flipped = shifted.isel(lat=slice(None, None, -1))  # descending latitude
    assert float(flipped.lon[0]) < 0 and float(flipped.lat[0]) > 0
    report = evaluate(flipped, ref, progress=False)
    # The same fields in another convention: every distance is zero.
    for distance in report.variables["tas"].distances.values():
        assert distance.value == pytest.approx(0.0, abs=1e-9), distance.name


def test_other_dim_order_is_accepted():
    ref = latlon(n=16)
    report = evaluate(ref.transpose("lon", "time", "lat"), ref, progress=False)
    for distance in report.variables["tas"].distances.values():
        assert distance.value == pytest.approx(0.0, abs=1e-9), distance.name


@pytest.mark.slow
def test_emulator_restores_lon_convention_and_lat_order(tmp_path):
    torch.manual_seed(0)
    data = latlon(n=8, lon_start=-180.0, lat_descending=True)
    em = fit_emulator(data, tmp_path)
    out = em.sample(2, seed=0)
    np.testing.assert_array_equal(out.lat.values, data.lat.values)
    np.testing.assert_array_equal(out.lon.values, data.lon.values)
    assert out.tas.attrs["units"] == "K"
