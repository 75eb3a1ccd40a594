"""Observation masks: 1 = observed, 0 = missing, stored as int8.

Observational products (HadCRUT4 and the like) mark missing cells with NaN (decoded from a
fill value); :func:`mask_from_nans` turns that into a mask, :func:`apply_mask` hides cells
of a complete field, :func:`load_mask` reads a mask file and :func:`check_mask` verifies a
mask lies on a field's grid. All functions stay lazy on dask-backed input.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid
from climgen.data.io import open_fields
from climgen.errors import ClimgenInputError

__all__ = ["mask_from_nans", "apply_mask", "load_mask", "check_mask", "MASK_ATTRS"]

MASK_ATTRS = {
    "long_name": "observation mask",
    "flag_values": [0, 1],
    "flag_meanings": "missing observed",
}


def mask_from_nans(da: xr.DataArray) -> xr.DataArray:
    """int8 mask of ``da``: 1 where the value is finite (observed), 0 where NaN/inf."""
    mask = np.isfinite(da).astype(np.int8)
    mask.attrs = dict(MASK_ATTRS)
    mask.name = f"{da.name}_mask" if da.name is not None else "mask"
    return mask


def check_mask(mask: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Check that ``mask`` lies on ``like``'s grid and return it ready to broadcast.

    The spatial dims of ``like`` must be dims of ``mask`` with the same sizes and coordinate
    values. Other dims of ``mask`` must either match ``like``'s size or be of size 1 (then
    dropped, e.g. the single time step of a static mask file). Raises
    :class:`ClimgenInputError` naming the dims and sizes that differ.
    """
    grid = detect_grid(like)
    for d in grid.spatial_dims:
        if d not in mask.dims:
            raise ClimgenInputError(
                f"mask '{mask.name}' has dims {tuple(mask.dims)} but the field's spatial dim "
                f"'{d}' (size {like.sizes[d]}) is not among them"
            )
        if mask.sizes[d] != like.sizes[d]:
            raise ClimgenInputError(
                f"mask '{mask.name}' has {d} size {mask.sizes[d]} but the field "
                f"'{like.name}' has {d} size {like.sizes[d]}: the grids differ"
            )
        if d in mask.coords and d in like.coords:
            if not np.allclose(mask[d].values, like[d].values, rtol=0, atol=1e-6):
                raise ClimgenInputError(
                    f"mask '{mask.name}' and field '{like.name}' have the same {d} size "
                    f"({like.sizes[d]}) but different {d} coordinate values "
                    f"(e.g. {mask[d].values[:3].tolist()} vs {like[d].values[:3].tolist()})"
                )
    for d in mask.dims:
        if d in grid.spatial_dims:
            continue
        if d in like.dims and mask.sizes[d] == like.sizes[d]:
            continue
        if mask.sizes[d] == 1:
            mask = mask.isel({d: 0}, drop=True)
            continue
        raise ClimgenInputError(
            f"mask '{mask.name}' has dim '{d}' of size {mask.sizes[d]}, which the field "
            f"'{like.name}' (dims {dict(like.sizes)}) cannot broadcast against"
        )
    # Take the field's coordinate values so float32/float64 noise cannot break alignment.
    coords = {d: like[d] for d in mask.dims if d in like.coords and d in like.dims}
    return mask.assign_coords(coords)


def apply_mask(da: xr.DataArray, mask: xr.DataArray) -> xr.DataArray:
    """``da`` with NaN where ``mask`` is 0 (missing); attrs kept."""
    mask = check_mask(mask, da)
    with xr.set_options(keep_attrs=True):
        return da.where(mask == 1)


def load_mask(path: str | os.PathLike, variable: str | None = None) -> xr.DataArray:
    """Read a mask from netCDF/zarr as int8 (1 = observed, 0 = missing).

    Accepts bool or numeric 0/1 values; NaN (a fill value) counts as missing. Any other
    value raises :class:`ClimgenInputError` naming the file, variable and offending values.
    ``variable`` is needed when the file holds more than one data variable.
    """
    ds = open_fields(path, variable)
    names = list(ds.data_vars)
    if variable is None:
        if len(names) != 1:
            raise ClimgenInputError(
                f"mask file '{path}' holds {len(names)} variables {names}; "
                "say which one with variable=... (on the command line: --mask-variable)"
            )
        variable = names[0]
    raw = ds[variable]
    if raw.dtype == bool:
        values = raw
    else:
        values = raw.fillna(0) if raw.dtype.kind == "f" else raw
        bad = ~((values == 0) | (values == 1))
        n_bad = int(bad.sum().compute() if hasattr(bad.data, "compute") else bad.sum())
        if n_bad:
            example = np.unique(np.asarray(values.where(bad, drop=False).values))
            example = example[np.isfinite(example)][:5]
            raise ClimgenInputError(
                f"mask '{variable}' in '{path}' has {n_bad} value(s) that are not 0/1 "
                f"(e.g. {example.tolist()}); a mask must be 1 = observed, 0 = missing"
            )
    mask = values.astype(np.int8)
    mask.attrs = {**raw.attrs, **MASK_ATTRS}
    mask.encoding = {}
    return mask
