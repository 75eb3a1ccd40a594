"""Data preparation for gap filling: regrid model fields to an observational grid, anomalies,
coverage masks from mask files or from the NaNs of observation files.

- :func:`regrid_bilinear` — bilinear interpolation (``xarray.DataArray.interp``, i.e.
  scipy's ``interpn``) of a lat/lon field onto another lat/lon grid; longitude is treated as
  periodic (one wrapped column each side), target latitudes beyond the source's outermost
  rows take the outermost row (constant extrapolation towards the pole).
- :func:`anomalies` — ``x − climatology`` with the climatology the time mean of the given
  (training) fields, per cell; units stay (a difference of kelvins is in kelvins).
- :func:`coverage_masks` — stack the coverage of one or more files: a 0/1 mask variable is
  read as is (:func:`~climgen.data.masks.load_mask`), a data variable with NaN gaps gives
  ``isfinite`` (:func:`~climgen.data.masks.mask_from_nans`), e.g. the HadCRUT4 months.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid
from climgen.data.io import open_fields
from climgen.data.masks import MASK_ATTRS, load_mask, mask_from_nans
from climgen.errors import ClimgenInputError

__all__ = ["regrid_bilinear", "anomalies", "coverage_masks"]


def regrid_bilinear(da: xr.DataArray, like: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """``da`` (..., lat, lon) bilinearly interpolated onto the lat/lon grid of ``like``.

    Longitudes wrap (the source is padded with its last column at lon − 360 and its first at
    lon + 360); target latitudes outside the source range are clipped to it (the outermost
    source row is repeated poleward). Returns the field on ``like``'s exact coordinate
    values and dim names, attrs kept, with a ``regrid`` note appended to ``history``.
    """
    src = detect_grid(da)
    dst = detect_grid(like if isinstance(like, xr.DataArray) else like[list(like.data_vars)[0]])
    if src.kind != "latlon" or dst.kind != "latlon":
        raise ClimgenInputError(
            f"regrid_bilinear needs lat/lon grids; '{da.name}' is {src.kind}, the target "
            f"is {dst.kind}"
        )
    ys, xs, yd, xd = src.y_dim, src.x_dim, dst.y_dim, dst.x_dim
    field = da.sortby(ys).sortby(xs)
    lon = np.asarray(field[xs].values, dtype=np.float64) % 360.0
    field = field.assign_coords({xs: lon}).sortby(xs)
    lon = np.asarray(field[xs].values)
    padded = xr.concat(
        [
            field.isel({xs: [-1]}).assign_coords({xs: lon[-1:] - 360.0}),
            field,
            field.isel({xs: [0]}).assign_coords({xs: lon[:1] + 360.0}),
        ],
        dim=xs,
    )
    lat_t = np.asarray(like[yd].values, dtype=np.float64)
    lon_t = np.asarray(like[xd].values, dtype=np.float64)
    lat_src = np.asarray(field[ys].values)
    out = padded.interp(
        {ys: np.clip(lat_t, lat_src.min(), lat_src.max()), xs: lon_t % 360.0}, method="linear"
    )
    out = out.rename({ys: yd, xs: xd}) if (ys, xs) != (yd, xd) else out
    out = out.assign_coords({yd: like[yd], xd: like[xd]})
    out.attrs = dict(da.attrs)
    note = f"bilinear regrid to {like.sizes[yd]}x{like.sizes[xd]} lat/lon (climgen)"
    out.attrs["history"] = f"{note}\n{da.attrs.get('history', '')}".strip()
    out.name = da.name
    return out


def anomalies(
    da: xr.DataArray, climatology: xr.DataArray | None = None, *, time_dim: str = "time"
) -> tuple[xr.DataArray, xr.DataArray]:
    """``(da − climatology, climatology)``; the climatology defaults to ``da``'s time mean.

    Pass the training split's climatology when making anomalies of held-out fields, so
    nothing of the held-out data leaks into the reference.
    """
    if climatology is None:
        if time_dim not in da.dims:
            raise ClimgenInputError(
                f"variable '{da.name}' has no '{time_dim}' dim to average for a climatology"
            )
        climatology = da.mean(time_dim)
    out = da - climatology
    out.attrs = {
        **da.attrs,
        "long_name": f"{da.attrs.get('long_name', da.name)} anomaly",
        "comment": "anomaly relative to the training period's time mean (climgen)",
    }
    out.name = da.name
    climatology.attrs = dict(da.attrs)
    return out, climatology


def coverage_masks(paths, *, variable: str | None = None, time_dim: str = "time") -> xr.DataArray:
    """Masks (time, lat, lon) int8, 1 = observed, from one or more files, stacked in order.

    A variable holding only 0/1 (NaN counts as 0) is a mask; any other numeric variable is
    taken as observations and its finite cells are the observed ones. Each file may hold any
    number of time steps (or none).
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ClimgenInputError("coverage_masks needs at least one file")
    parts = []
    for path in paths:
        ds = open_fields(path, variable)
        names = list(ds.data_vars)
        if len(names) != 1:
            raise ClimgenInputError(
                f"mask file '{path}' holds {names}; say which variable holds the coverage"
            )
        raw = ds[names[0]].load()
        finite = np.asarray(raw.values)[np.isfinite(np.asarray(raw.values, dtype=float))]
        if np.isin(finite, (0, 1)).all():
            mask = load_mask(path, names[0]).load()
        else:
            mask = mask_from_nans(raw)
        if time_dim not in mask.dims:
            mask = mask.expand_dims(time_dim)
        parts.append(mask.drop_vars(time_dim, errors="ignore"))
    out = xr.concat(parts, dim=time_dim, coords="minimal", compat="override")
    out.attrs = dict(MASK_ATTRS)
    out.name = "mask"
    return out.astype(np.int8)
