"""Small helpers every task shares: variables with a grid, templates, run dirs, train configs."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.data.dataset import to_xarray
from climgen.data.grids import detect_grid
from climgen.errors import ClimgenInputError
from climgen.families.base import build_family
from climgen.train import TrainConfig, Trainer, load_family
from climgen.train.rng import seeded

__all__ = [
    "utc_stamp",
    "field_variables",
    "zero_template",
    "train_config",
    "default_run_dir",
    "build_seeded",
    "provenance_attrs",
    "keep_input_layout",
    "sample_step",
    "check_neighbours",
    "fields_dataset",
    "train_family",
]

# Global attributes a generated file keeps from its input: the CF descriptive ones. Everything
# else (``source``, a simulation's diagnostics such as Nu_vol_mean, packing, status, …)
# describes how the input was made, not the generated fields.
_KEPT_GLOBAL_ATTRS = ("Conventions", "title", "institution", "references")


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


def fields_dataset(
    arrays, template: xr.Dataset, ds, variables, sample_dim: str, *, stacked: bool, has_sample: bool
) -> xr.Dataset:
    """Canonical float32 arrays (N, C, H, W), one per member, → a Dataset on ``template``'s grid.

    The sample coordinate is taken from ``ds`` when it has one; ``stacked`` concatenates the
    arrays along a new ``member`` dim (else the one array is the result); without
    ``has_sample`` the sample dim (of length 1) is dropped.
    """
    pieces = []
    for values in arrays:
        piece = to_xarray(values, template, variables=variables, sample_dim=sample_dim)
        if sample_dim in ds.coords:
            piece = piece.assign_coords({sample_dim: ds[sample_dim].values})
        pieces.append(piece)
    result = xr.concat(pieces, dim="member") if stacked else pieces[0]
    if not has_sample:
        result = result.isel({sample_dim: 0}, drop=True)
    return result


def train_config(train, options) -> TrainConfig:
    """A validated :class:`TrainConfig` from a config/dict plus keyword overrides."""
    base = train.to_dict() if isinstance(train, TrainConfig) else dict(train or {})
    base.update(options)
    return TrainConfig.from_dict(base)


def train_family(family, config: TrainConfig, run_dir, dataset, *, resume, callbacks, card):
    """Fit ``family`` on ``dataset`` with a :class:`~climgen.train.Trainer` writing ``run_dir``.

    Returns ``(family, result)``: the family to sample with, in eval mode (the averaged
    weights, reloaded from ``run_dir``, when the run keeps an EMA), and the trainer's result.
    """
    trainer = Trainer(family, config, run_dir, callbacks=callbacks, card=card)
    result = trainer.fit(dataset, resume=resume)
    family.eval()
    if trainer.ema is not None:
        family, _ = load_family(run_dir, ema=True)
    return family, result


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


def provenance_attrs(input_attrs: dict, history: str, **fields) -> dict:
    """Global attributes of a file climgen generated (samples, fills, downscaled fields).

    Only the CF descriptive attributes (``Conventions``, ``title``, ``institution``,
    ``references``) are kept from ``input_attrs``: the others describe how those data were
    made (``source``, a solver's diagnostics), not the generated ones; ``history`` gets the
    line ``history`` (prefixed with the UTC time and climgen's version) on top of the
    input's; ``fields`` become ``climgen_<name>`` attributes (None values are left out,
    booleans written as "true"/"false" — netCDF has no boolean attributes).
    """
    from climgen.data.io import climgen_version

    attrs = {k: input_attrs[k] for k in _KEPT_GLOBAL_ATTRS if k in input_attrs}
    line = f"{utc_stamp()} climgen {climgen_version()}: {history}"
    old = str(input_attrs.get("history", ""))
    attrs["history"] = f"{line}\n{old}".strip()
    attrs["climgen_version"] = climgen_version()
    for name, value in fields.items():
        if value is None:
            continue
        attrs[f"climgen_{name}"] = (
            ("true" if value else "false") if isinstance(value, bool) else value
        )
    return attrs


def keep_input_layout(out: xr.Dataset, like: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """``out`` (a field on another lat/lon grid than ``like``) in ``like``'s layout: the
    longitude convention ([−180, 180) when ``like``'s longitudes go negative, else
    [0, 360)) and the direction of both axes. Bounds variables along longitude move with
    their cells. Other grids are returned unchanged."""
    ref = like if isinstance(like, xr.DataArray) else like[field_variables(like)[0]]
    grid = detect_grid(ref)
    y, x = grid.spatial_dims
    if grid.kind != "latlon" or x not in ref.coords or x not in out.coords:
        return out
    lon_in = np.asarray(ref[x].values, dtype=np.float64)
    lon = np.asarray(out[x].values, dtype=np.float64)
    wrapped = (lon + 180.0) % 360.0 - 180.0 if lon_in.min() < 0 else lon % 360.0
    if not np.array_equal(wrapped, lon):
        shift = xr.DataArray(wrapped - lon, dims=(x,))
        for name in list(out.coords):
            if name != x and x in out[name].dims:  # e.g. lon_bnds (lon, nv)
                out = out.assign_coords({name: out[name] + shift})
        out = out.assign_coords({x: (x, wrapped, out[x].attrs)})
    if lon_in.size > 1:
        out = out.sortby(x, ascending=bool(lon_in[-1] >= lon_in[0]))
    if y in ref.coords and y in out.coords and ref.sizes[y] > 1:
        lat_in = np.asarray(ref[y].values)
        out = out.sortby(y, ascending=bool(lat_in[-1] >= lat_in[0]))
    return out


_EPOCH = "seconds since 1970-01-01"


def _sample_numbers(coord) -> tuple[np.ndarray | None, str | None]:
    """A sample coordinate as float numbers, and its calendar: seconds since 1970 for
    numpy datetimes (``"datetime64"``) and cftime dates (their calendar, e.g. ``"360_day"``,
    ``"noleap"``: xarray's CFTimeIndex), the numbers themselves (None) otherwise."""
    if coord is None:
        return None, None
    v = np.asarray(coord)
    if np.issubdtype(v.dtype, np.datetime64):
        return v.astype("datetime64[s]").astype(np.float64), "datetime64"
    if np.issubdtype(v.dtype, np.number) and v.ndim == 1:
        return v.astype(np.float64), None
    if v.dtype == object and v.ndim == 1 and v.size:
        import cftime

        if all(isinstance(t, cftime.datetime) for t in v):
            calendar = v[0].calendar
            return np.asarray(cftime.date2num(v, _EPOCH, calendar), dtype=np.float64), calendar
    return None, None  # labels: cannot tell


def _label(t: float, calendar: str | None) -> str:
    """A sample coordinate value back as text (a date for times)."""
    if calendar is None:
        return f"{t:g}"
    if calendar == "datetime64":
        return str(np.datetime64(int(round(t)), "s")).removesuffix("T00:00:00")
    import cftime

    return cftime.num2date(round(t), _EPOCH, calendar).isoformat().removesuffix("T00:00:00")


def sample_step(coord) -> float | None:
    """The training series' step: the median positive difference of its sample coordinate
    (seconds for datetimes); None without a usable coordinate."""
    x, _ = _sample_numbers(coord)
    if x is None or x.size < 2:
        return None
    d = np.diff(x)
    d = d[d > 0]
    return float(np.median(d)) if d.size else None


def check_neighbours(coord, context: int, *, step=None, targets=None, what: str, hint: str):
    """With ``context`` > 0 a field is given its neighbours by position (i ± 1 … i ± k):
    refuse input whose samples are not consecutive, naming the missing neighbours.

    Neighbour j of sample i is present when the sample at position i + j lies j·step from
    sample i (± step/2, which also lets calendar months vary): numbers, numpy datetimes or
    cftime dates of any calendar (360_day, noleap, …); ``step`` is the training
    series' (:func:`sample_step`), else the input's smallest spacing. Beyond either end of
    the input a neighbour counts as unobserved, as before. ``targets``: the positions
    filled (default: all).
    """
    x, calendar = _sample_numbers(coord)
    if not context or x is None or x.size < 2:
        return
    if not step:
        d = np.diff(x)
        d = d[d > 0]
        if not d.size:
            return
        step = float(d.min())
    n = x.size
    missing = []
    for i in range(n) if targets is None else targets:
        for j in [*range(-context, 0), *range(1, context + 1)]:
            if 0 <= i + j < n and abs(x[i + j] - x[i] - j * step) > 0.5 * step:
                missing.append((x[i] + j * step, x[i]))

    if missing:
        shown = ", ".join(
            f"{_label(t, calendar)} (of {_label(s, calendar)})" for t, s in missing[:6]
        )
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise ClimgenInputError(
            f"context={context} gives each field its {context} neighbouring {what} on each "
            f"side by position, but the input skips some: missing neighbours {shown}{more} "
            f"(step {_label(step, None) if calendar is None else f'{step / 86400:g} days'}); "
            f"{hint}"
        )
