"""climgen data join: independent runs as one ensemble file."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.cli import main
from climgen.errors import ClimgenInputError
from climgen.sim.ensemble import join_runs
from climgen.sim.pack import write_packed


def _run(path, seed, n=5, nx=8, t0=40.0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {"b": (("time", "z", "x"), rng.random((n, 4, nx)), {"units": "1"})},
        coords={"time": t0 + np.arange(n), "z": np.arange(4.0), "x": np.arange(float(nx))},
        attrs={"seed": seed, "spinup_time": t0, "Nu_vol_mean": 8.0 + seed, "Rayleigh": 1e6},
    )
    return write_packed(ds, path)


def test_join_numbers_snapshots_and_keeps_each_runs_seed_and_time(tmp_path):
    paths = [_run(tmp_path / f"r{s}.nc", s, t0=40.0 + s) for s in (12, 14, 15)]
    ens = join_runs(paths)
    assert ens.sizes["time"] == 15
    np.testing.assert_array_equal(ens.time, np.arange(15))
    np.testing.assert_array_equal(ens.run_seed, np.repeat([12, 14, 15], 5))
    np.testing.assert_array_equal(ens.time_in_run[5:10], 54.0 + np.arange(5))
    assert list(ens.attrs["seed"]) == [12, 14, 15] and ens.attrs["Rayleigh"] == 1e6
    assert "Nu_vol_mean" not in ens.attrs and "seed 14: 5 snapshots" in ens.attrs["runs"]
    with xr.open_dataset(paths[1]) as one:
        np.testing.assert_array_equal(ens.b[5:10].values, one.b.values)  # values unchanged
    assert ens.b.attrs["units"] == "1"


def test_join_refuses_a_repeated_seed_another_grid_and_an_output_among_the_inputs(tmp_path):
    a, b = _run(tmp_path / "a.nc", 12), _run(tmp_path / "b.nc", 12)
    with pytest.raises(ClimgenInputError, match="different seeds"):
        join_runs([a, b])
    c = _run(tmp_path / "c.nc", 13, nx=6)
    with pytest.raises(ClimgenInputError, match="dim 'x' has 6 points"):
        join_runs([a, c])
    with pytest.raises(ClimgenInputError, match="at least two"):
        join_runs([a])
    d = _run(tmp_path / "d.nc", 14)
    assert main(["data", "join", "-o", str(a), str(a), str(d), "-q"]) == 2
    out = tmp_path / "ens.nc"
    assert main(["data", "join", "-o", str(out), str(a), str(d), "-q"]) == 0
    with xr.open_dataset(out) as ens:
        assert list(ens.attrs["seed"]) == [12, 14] and ens.sizes["time"] == 10
