"""Issue 24 item 4: nothing silent — a changed recipe on --resume, inf in observations and
non-consecutive samples under ``context > 0`` stop with one error naming what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _daily(n, ny=6, nx=12, seed=0, kind="latlon", name="tas"):
    da = grf_dataarray(n, ny, nx, kind=kind, seed=seed, name=name)
    return da.assign_coords(time=pd.date_range("2000-01-01", periods=n, freq="D"))


def _recipe(path, batch_size=4, latent_dim=2):
    path.write_text(
        "task: emulate\ndata: {paths: d.nc, variables: [psi]}\n"
        f"family: {{name: vae, options: {{latent_dim: {latent_dim}, base_channels: 2}}}}\n"
        f"train: {{max_steps: 2, batch_size: {batch_size}}}\nrun_dir: run\n"
    )
    return str(path)


def test_resume_with_changed_recipe_keys_stops_listing_them(tmp_path, capsys):
    write_fields(grf_dataarray(10, 8, 8, seed=1, name="psi").to_dataset(), tmp_path / "d.nc")
    recipe = _recipe(tmp_path / "r.yaml")
    assert main(["train", recipe, "-q"]) == 0
    saved = (tmp_path / "run" / "recipe.yaml").read_text()
    _recipe(tmp_path / "r.yaml", batch_size=8, latent_dim=3)
    capsys.readouterr()
    assert main(["train", recipe, "-q", "--resume", "--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: 4 → 8" in err and "family.options.latent_dim: 2 → 3" in err
    assert "--force" in err and "Traceback" not in err
    assert (tmp_path / "run" / "recipe.yaml").read_text() == saved  # not overwritten
    # a longer run of the same recipe is no change; --force takes the new values
    _recipe(tmp_path / "r.yaml", batch_size=8)
    assert main(["train", recipe, "-q", "--resume", "--max-steps", "3", "--force"]) == 0
    assert (
        yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["batch_size"] == 8
    )
    assert main(["train", recipe, "-q", "--resume", "--max-steps", "4"]) == 0


@pytest.mark.parametrize("method", ["nearest", "zonal-mean"])
def test_inf_in_observations_is_an_error_naming_the_count(method):
    from climgen.tasks.fill.infiller import Infiller

    obs = _daily(2, seed=3)
    obs[0, 1, 2], obs[1, 3, 4], obs[1, 0, 0] = np.inf, -np.inf, np.nan
    with pytest.raises(ClimgenInputError, match=r"'tas' hold 2 inf value\(s\)"):
        Infiller(method).fill(obs)


@pytest.fixture(scope="module")
def oi_context():
    from climgen.tasks.fill.infiller import Infiller

    return Infiller("optimal-interpolation", context=1, nugget=1e-2).fit(_daily(20, seed=4))


def _gappy(da, seed=5):
    keep = np.random.default_rng(seed).random(da.shape) > 0.3
    return da.where(keep)


@pytest.mark.parametrize(
    "days, named",
    [
        ([3, 4, 9], ["2000-01-06", "2000-01-09"]),  # a jump: day 4's and day 9's neighbours
        ([3, 10, 17], ["2000-01-05", "2000-01-10"]),  # evenly spaced "test days", a week apart
    ],
)
def test_context_fill_of_non_consecutive_days_names_the_missing_neighbours(oi_context, days, named):
    obs = _gappy(_daily(20, seed=6).isel(time=days))
    with pytest.raises(ClimgenInputError, match="missing neighbours") as err:
        oi_context.fill(obs, members=1)
    for day in named:
        assert day in str(err.value)


def test_context_fill_of_consecutive_days_and_chosen_days_works(oi_context):
    obs = _gappy(_daily(20, seed=6).isel(time=slice(3, 8)))
    assert np.isfinite(oi_context.fill(obs, members=1)["tas"]).all()
    out = oi_context.fill(obs, members=1, at=[2])  # the others serve as context
    assert out.sizes["time"] == 1


def test_context_downscale_of_non_consecutive_samples_names_the_missing_neighbours(tmp_path):
    from climgen.tasks.downscale.downscaler import Downscaler

    fine = _daily(16, ny=8, nx=8, kind="planar", seed=7, name="u")
    down = Downscaler(2, "regression", context=1, base_channels=2, n_blocks=1)
    down.fit(fine, run_dir=tmp_path, max_steps=1, batch_size=4, progress=False)
    coarse = down.coarsen(fine)
    assert down.downscale(coarse.isel(time=slice(2, 6)))["u"].sizes["time"] == 4
    with pytest.raises(ClimgenInputError, match="missing neighbours.*2000-01-04"):
        down.downscale(coarse.isel(time=[2, 6, 7]))
    loaded = Downscaler.load(tmp_path)  # the training step is saved with the run
    with pytest.raises(ClimgenInputError, match="missing neighbours"):
        loaded.downscale(coarse.isel(time=[2, 9, 16 - 1]))


@pytest.mark.parametrize("calendar", ["360_day", "noleap"])
def test_context_fill_checks_neighbours_on_cftime_calendars(calendar):
    """Model calendars (xarray's CFTimeIndex) are understood: a jump is named in its dates."""
    from climgen.tasks.fill.infiller import Infiller

    times = xr.date_range("2000-02-25", periods=12, freq="D", calendar=calendar, use_cftime=True)
    train = _daily(12, seed=4).assign_coords(time=times)
    inf = Infiller("optimal-interpolation", context=1, nugget=1e-2).fit(train)
    obs = _gappy(train)
    assert np.isfinite(inf.fill(obs.isel(time=slice(2, 6)), members=1)["tas"]).all()
    # the neighbours by the calendar's own dates (360_day has 02-29 and 02-30, noleap no 02-29)
    with pytest.raises(ClimgenInputError, match="missing neighbours") as err:
        inf.fill(obs.isel(time=[2, 3, 7]), members=1)
    day = [str(t)[:10] for t in times]
    assert f"{day[4]} (of {day[3]})" in str(err.value)
    assert f"{day[6]} (of {day[7]})" in str(err.value)
    assert day[4] == ("2000-02-29" if calendar == "360_day" else "2000-03-01")
