"""Join independent runs of one data recipe (one file per seed) into an ensemble file.

A single run of a slowly varying flow does not sample its model's climate: Rayleigh–Bénard
rolls lock at one phase and the domain-mean buoyancy wanders over hundreds of free-fall
times, so two runs with different seeds differ by more than the two halves of one run do
(measured on the demo's 32 × 128 runs, seed 11 against seed 12: tail quantiles 4.8×, mean
2.8×, skewness 2.7×, covariance 2.2× the halves' noise floor). An ensemble of runs as the
reference puts that run-to-run variability into its noise floor: the floor compares the
first half of the runs with the second half. Snapshots are numbered along ``dim``; each keeps
its model time (``<dim>_in_run``) and its run's seed (``run_seed``) as coordinates, and the
global ``seed`` attribute lists the seeds (what
:func:`climgen.tasks.emulate.scoring.check_independent` reads).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = ["join_runs"]

# Global attributes that describe one run, not the recipe: kept per run under ``runs``.
_PER_RUN = ("seed", "spinup_time", "spinup_criterion", "n_snapshots", "time_steps", "status")


def join_runs(paths: Sequence[str | os.PathLike], *, dim: str = "time") -> xr.Dataset:
    """The runs in ``paths`` (same recipe, other seeds) as one Dataset along ``dim``.

    Every file must have the same variables and grid and a ``seed`` attribute, all seeds
    different. Global attributes are the first file's, with ``seed`` the list of seeds, the
    per-run statistics dropped (``Nu_*``, ``KE_*``, wall time) and each run's seed, spin-up
    and snapshot count in the ``runs`` attribute. Values are loaded into memory.
    """
    if len(paths) < 2:
        raise ClimgenInputError(f"join needs at least two runs, got {len(paths)}")
    runs = []
    for path in paths:
        with xr.open_dataset(path) as ds:
            if "seed" not in ds.attrs:
                raise ClimgenInputError(f"{path}: no 'seed' attribute (not a data-recipe run)")
            if dim not in ds.dims:
                raise ClimgenInputError(f"{path}: no dim {dim!r} (dims: {dict(ds.sizes)})")
            runs.append((str(path), ds.load()))
    first_path, first = runs[0]
    for path, ds in runs[1:]:
        if set(ds.data_vars) != set(first.data_vars):
            raise ClimgenInputError(
                f"{path}: variables {sorted(ds.data_vars)} differ from {first_path}'s "
                f"{sorted(first.data_vars)}"
            )
        for name in first.dims:
            if name != dim and ds.sizes.get(name) != first.sizes[name]:
                raise ClimgenInputError(
                    f"{path}: dim {name!r} has {ds.sizes.get(name)} points, {first_path} "
                    f"{first.sizes[name]}: the runs must share the grid"
                )
    seeds = [int(ds.attrs["seed"]) for _, ds in runs]
    if len(set(seeds)) != len(seeds):
        raise ClimgenInputError(f"the runs must have different seeds, got {seeds}")
    parts = []
    for _, ds in runs:
        part = ds.rename({dim: f"{dim}_in_run"}).rename_dims({f"{dim}_in_run": dim})
        part = part.assign_coords(run_seed=(dim, np.full(ds.sizes[dim], int(ds.attrs["seed"]))))
        parts.append(part)
    out = xr.concat(parts, dim=dim, combine_attrs="override")  # variables keep their attrs
    out = out.assign_coords({dim: np.arange(out.sizes[dim])})
    out[dim].attrs = {"long_name": "snapshot number in the ensemble"}
    out[f"{dim}_in_run"].attrs = dict(first[dim].attrs)
    out["run_seed"].attrs = {"long_name": "seed of the run the snapshot comes from"}
    attrs = {
        k: v
        for k, v in first.attrs.items()
        if k not in _PER_RUN and not k.startswith(("Nu_", "KE_", "Nusselt", "wall_", "seconds_"))
    }
    attrs["seed"] = np.array(seeds, dtype=np.int64)
    attrs["runs"] = "; ".join(
        f"seed {ds.attrs['seed']}: {ds.sizes[dim]} snapshots"
        + (f" after spin-up to t={ds.attrs['spinup_time']}" if "spinup_time" in ds.attrs else "")
        for _, ds in runs
    )
    attrs["title"] = f"{first.attrs.get('title', 'runs')}, ensemble of {len(runs)} runs"
    out.attrs = attrs
    return out
