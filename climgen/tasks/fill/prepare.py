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

Observations as a user has them, for ``Infiller.fill`` of a trained run:

- :func:`to_run_grid` — gappy observations on another lat/lon grid, regridded to the run's
  (gaps stay gaps: a target cell is observed only when its interpolation stencil is).
- :func:`read_observations` — the observations in memory, read once; inf refused.
- :func:`observation_kind` — absolute values or anomalies from the run's climatology.
- :func:`day_positions` — the fields ``fill(..., at=...)`` / ``--days`` asks for.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import open_fields
from climgen.data.masks import MASK_ATTRS, load_mask, mask_from_nans
from climgen.errors import ClimgenInputError

__all__ = [
    "check_observations",
    "regrid_bilinear",
    "anomalies",
    "coverage_masks",
    "to_run_grid",
    "observation_kind",
    "anomaly_base",
    "read_observations",
    "day_positions",
    "OBSERVATION_KINDS",
]

OBSERVATION_KINDS = ("auto", "absolute", "anomalies")


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


def _same_grid(da: xr.DataArray, template: xr.DataArray) -> bool:
    from climgen.data.grids import to_canonical

    canon, _ = to_canonical(da)
    if tuple(canon.shape[-2:]) != tuple(template.shape[-2:]):
        return False
    return all(
        np.allclose(canon[d].values, template[d].values, atol=1e-6)
        for d in template.dims
        if d in canon.coords and d in template.coords
    )


def to_run_grid(
    da: xr.DataArray, observed: xr.DataArray, template: xr.DataArray | None
) -> tuple[xr.DataArray, xr.DataArray, str | None]:
    """``(da, observed, note)`` on the grid of ``template`` (a run's training grid).

    Unchanged (note None) when ``da`` is already on it or there is no template. Otherwise,
    both lat/lon: the cells not ``observed`` become NaN, the field is regridded bilinearly
    (:func:`regrid_bilinear`) and a cell counts as observed when its four source cells are —
    gaps are never filled by interpolation. Other grids raise, naming both.
    """
    if template is None or _same_grid(da, template):
        return da, observed, None
    src, dst = detect_grid(da), detect_grid(template)
    if src.kind != "latlon" or dst.kind != "latlon":
        sizes = {d: da.sizes[d] for d in src.spatial_dims}
        raise ClimgenInputError(
            f"observations '{da.name}' are on a {src.kind} grid {sizes} but the run was "
            f"trained on {dst.kind} {dict(template.sizes)}: only lat/lon grids are regridded; "
            "regrid the observations to the training grid"
        )
    gappy = da.where(observed)
    out = regrid_bilinear(gappy, template)
    note = (
        f"observations regridded bilinearly from {da.sizes[src.y_dim]}x{da.sizes[src.x_dim]} "
        f"to the run's {template.sizes[dst.y_dim]}x{template.sizes[dst.x_dim]} lat/lon grid"
    )
    return out, np.isfinite(out), note


def observation_kind(
    kind: str, values: np.ndarray, keep: np.ndarray, climatology: np.ndarray | None, name: str
) -> str | None:
    """``"absolute"`` or ``"anomalies"`` for observations ``values`` (T, H, W) observed where
    ``keep``, given the run's ``climatology`` (H, W); None when the run has none.

    ``kind="auto"`` decides by the observed cells: absolute values when their mean squared
    distance to the climatology is less than half that to zero, anomalies otherwise. (For
    absolute values x = a + c the first is ⟨a²⟩, the second ⟨a²⟩ + ⟨c²⟩ + 2⟨ac⟩: clear
    whenever the climatology is larger than the anomalies, as for temperatures in K; where
    it is not, subtracting it or not changes little, and anomalies — what the run was
    trained on — are assumed.)
    """
    if kind not in OBSERVATION_KINDS:
        raise ClimgenInputError(
            f"values must be one of {', '.join(OBSERVATION_KINDS)}, got {kind!r}"
        )
    if climatology is None:
        if kind == "absolute":
            raise ClimgenInputError(
                f"values='absolute' but the run has no climatology (climatology.nc) to subtract: "
                f"it was trained on '{name}' as given; pass the observations as in training"
            )
        return None
    if kind != "auto":
        return kind
    obs = np.where(keep, values, 0.0)
    clim = np.broadcast_to(climatology, values.shape)
    n = max(int(keep.sum()), 1)
    to_clim = float(np.sum(np.where(keep, (obs - clim) ** 2, 0.0))) / n
    to_zero = float(np.sum(np.where(keep, obs**2, 0.0))) / n
    return "absolute" if to_clim < 0.5 * to_zero else "anomalies"


def day_positions(da: xr.DataArray, at, time_dim: str) -> np.ndarray:
    """Positions along ``time_dim`` of the fields ``at`` names (sorted, unique).

    Python ints are 0-based positions; anything else (dates as strings, datetimes, numbers of
    a numeric time coordinate given as float) is looked up in the time coordinate (a partial
    date such as ``"1893-08"`` selects every field it covers).
    """
    if time_dim not in da.dims:
        raise ClimgenInputError(
            f"at= / --days picks fields along '{time_dim}', which '{da.name}' does not have "
            f"(dims {tuple(map(str, da.dims))})"
        )
    items = [at] if isinstance(at, (str, int, np.integer)) or not np.iterable(at) else list(at)
    if not items:
        raise ClimgenInputError("at= / --days is empty: name at least one field")
    n = da.sizes[time_dim]
    index = da.indexes[time_dim] if time_dim in da.indexes else None
    out: list[int] = []
    for item in items:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -n <= int(item) < n:
                raise ClimgenInputError(
                    f"day {int(item)} is out of range: '{da.name}' has {n} fields along "
                    f"'{time_dim}' (positions 0…{n - 1})"
                )
            out.append(int(item) % n)
            continue
        try:
            loc = index.get_loc(item) if index is not None else None
        except (KeyError, TypeError, ValueError):
            loc = None
        if loc is None:
            first, last = (index[0], index[-1]) if index is not None and n else ("-", "-")
            raise ClimgenInputError(
                f"day {item!r} is not in the '{time_dim}' coordinate of '{da.name}' "
                f"({first} … {last}); give dates in that range or 0-based positions"
            )
        out.extend(np.arange(n)[loc].reshape(-1).tolist())
    return np.unique(np.asarray(out, dtype=int))


def read_observations(da: xr.DataArray) -> xr.DataArray:
    """The observations ``da`` read into memory, once (a lazy file-backed array would be read
    again by every check and step of the fill); inf values are refused: gaps are NaN."""
    da = da.compute()
    n_inf = int(np.isinf(da.values).sum())
    if n_inf:
        raise ClimgenInputError(
            f"observations '{da.name}' hold {n_inf} inf value(s); gaps are NaN, and inf is no "
            f"measurement: set them to NaN (obs.where(np.isfinite(obs))) to fill them"
        )
    return da


def check_observations(infiller, canon: xr.DataArray, var: str) -> None:
    """Refuse observations that cannot be what ``infiller`` was fitted on: a mean more than 10
    training standard deviations off (absolute vs anomalies). Units were brought to the run's
    before (:func:`climgen.data.units.to_units`), the grid by :func:`to_run_grid` (which
    regrids lat/lon observations and refuses other grids)."""
    units = canon.attrs.get("units")  # already the run's (climgen.data.units.to_units)
    stats = None
    if infiller.normalizer is not None:
        normalizer, v = infiller.normalizer, infiller.variable
        stats = (normalizer.center[v], normalizer.scale[v])
    elif infiller.gaussian is not None:
        g = infiller.gaussian
        stats = (float(g.mean.mean()), float(np.sqrt(np.mean(g.variance))))
    if stats is not None:
        values = np.asarray(canon.values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        center, scale = stats
        z = (finite.mean() - center) / scale
        if abs(z) > 10:
            raise ClimgenInputError(
                f"observations '{var}' average {finite.mean():.4g} {units or ''}, "
                f"{abs(z):.0f} training standard deviations from the training mean "
                f"{center:.4g}: absolute values vs anomalies? Use the "
                "same kind of data (and units) as in training"
            )


def anomaly_base(climatology: xr.DataArray | None, canon: xr.DataArray) -> np.ndarray | None:
    """A run's ``climatology`` (H, W) on the canonical grid of ``canon`` (None without one)."""
    if climatology is None:
        return None
    clim, _ = to_canonical(climatology)
    values = np.asarray(clim.values, dtype=np.float64)
    if values.shape != tuple(canon.shape[-2:]):
        raise ClimgenInputError(
            f"the run's climatology is {values.shape}, the observations "
            f"{tuple(canon.shape[-2:])} after regridding: the run directory is inconsistent"
        )
    return values
