"""Small helpers every task shares: variables with a grid, templates, run dirs, train configs."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid
from climgen.errors import ClimgenInputError
from climgen.families.base import build_family
from climgen.train import TrainConfig
from climgen.train.rng import seeded

__all__ = [
    "utc_stamp",
    "field_variables",
    "zero_template",
    "train_config",
    "default_run_dir",
    "build_seeded",
]


def utc_stamp() -> str:
    """Now, as an ISO-8601 UTC time for ``history`` attributes."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def field_variables(ds: xr.Dataset) -> list[str]:
    """Data variables with two recognisable spatial dims (bounds variables left out)."""
    names = []
    for v in ds.data_vars:
        try:
            detect_grid(ds[v])
        except ClimgenInputError:
            continue
        names.append(str(v))
    if not names:
        raise ClimgenInputError(
            f"no variable of the data has two spatial dims (variables: {list(ds.data_vars)})"
        )
    return names


def zero_template(ds: xr.Dataset, variables, sample_dim: str) -> xr.Dataset:
    """One all-zero field per variable with the data's coords and attrs (a few kB on disk)."""
    one = ds[variables]
    if sample_dim in one.dims:
        one = one.isel({sample_dim: 0}, drop=True)
    out = xr.zeros_like(one, dtype=np.float32).load()
    out.attrs = dict(ds.attrs)
    for v in variables:
        out[v].attrs = dict(ds[v].attrs)
        out[v].encoding = {}
    return out


def train_config(train, options) -> TrainConfig:
    """A validated :class:`TrainConfig` from a config/dict plus keyword overrides."""
    base = train.to_dict() if isinstance(train, TrainConfig) else dict(train or {})
    base.update(options)
    return TrainConfig.from_dict(base)


def default_run_dir(task: str, name: str) -> Path:
    """``runs/<task>-<name>-<local time>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task}-{name}-{stamp}"


def build_seeded(seed: int, name: str, **options):
    """``build_family(name, **options)`` with the RNGs seeded by ``seed`` (restored after):
    the initial weights are a function of the training seed alone, whatever the caller's
    global RNG state, so two runs of one recipe are identical from step 0."""
    with seeded(seed):
        return build_family(name, **options)
