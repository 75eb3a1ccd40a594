"""Grid detection, canonical orientation and area weights for gridded fields.

climgen works internally on a *canonical* layout: spatial dims last as ``(..., y, x)``;
on lat/lon grids latitude ascends (south → north) and longitude lies in ``[0, 360)``
ascending. :func:`to_canonical` returns the field in that layout with a
:class:`CanonicalState` that :func:`restore` uses to put the user's order and longitude
convention back on output.

Grid kinds
----------
``"latlon"``
    dims recognised from CF attributes (``standard_name`` latitude/longitude, ``units``
    degrees_north/degrees_east, ``axis`` Y/X) or common names (lat, latitude, lon, …).
    Longitude is periodic when the points cover the full circle. Area weights ∝ cos φ.
``"planar"``
    dims ``x``/``y``/``z`` (or ``axis`` X/Y/Z). An axis is periodic when its coordinate says
    so (attribute ``periodic = "true"`` or "periodic" in its ``long_name``), as in the
    Rayleigh–Bénard files (periodic x, walls in z). Weights are uniform cell widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "GridInfo",
    "CanonicalState",
    "detect_grid",
    "to_canonical",
    "restore",
    "area_weights",
    "spatial_weights",
    "grid_spacing",
]

_LAT_NAMES = {"lat", "latitude", "nav_lat", "rlat", "lats", "xlat"}
_LON_NAMES = {"lon", "longitude", "nav_lon", "rlon", "lons", "xlong"}
_PLANAR_Y_NAMES = ("y", "z")
_PLANAR_X_NAMES = ("x",)


@dataclass(frozen=True)
class GridInfo:
    """What climgen knows about the two spatial dims of a field.

    Attributes
    ----------
    kind : ``"latlon"`` or ``"planar"``.
    y_dim, x_dim : names of the row (lat / y / z) and column (lon / x) dims.
    dy, dx : grid spacing along each dim in coordinate units (degrees on lat/lon grids;
        ``dy`` is the mean spacing on Gaussian grids).
    periodic_y, periodic_x : whether each axis wraps around.
    sample_dims : the remaining (non-spatial) dims, e.g. ``("time",)``.
    """

    kind: str
    y_dim: str
    x_dim: str
    dy: float
    dx: float
    periodic_y: bool
    periodic_x: bool
    sample_dims: tuple[str, ...]

    @property
    def spatial_dims(self) -> tuple[str, str]:
        return (self.y_dim, self.x_dim)

    @property
    def shape_name(self) -> str:
        return f"{self.kind} ({self.y_dim}, {self.x_dim})"


@dataclass(frozen=True)
class CanonicalState:
    """How to undo :func:`to_canonical`: the original dim order and coordinate values."""

    dims: tuple[str, ...]
    y_dim: str
    x_dim: str
    y_values: np.ndarray
    x_values: np.ndarray


def _attr(da: xr.DataArray, dim: str, key: str) -> str:
    if dim in da.coords:
        return str(da[dim].attrs.get(key, "")).lower()
    return ""


def _is_lat(da: xr.DataArray, dim: str) -> bool:
    return (
        dim.lower() in _LAT_NAMES
        or _attr(da, dim, "standard_name") in ("latitude", "grid_latitude")
        or _attr(da, dim, "units") in ("degrees_north", "degree_north", "degrees_n", "degree_n")
    )


def _is_lon(da: xr.DataArray, dim: str) -> bool:
    return (
        dim.lower() in _LON_NAMES
        or _attr(da, dim, "standard_name") in ("longitude", "grid_longitude")
        or _attr(da, dim, "units") in ("degrees_east", "degree_east", "degrees_e", "degree_e")
    )


def _axis(da: xr.DataArray, dim: str) -> str:
    return _attr(da, dim, "axis").upper()


def _coord_values(da: xr.DataArray, dim: str) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da[dim].values, dtype=float)
    return np.arange(da.sizes[dim], dtype=float)


def _original_values(da: xr.DataArray, dim: str) -> np.ndarray:
    """Coordinate values with their own dtype (float32 stays float32 on restore)."""
    if dim in da.coords:
        return np.asarray(da[dim].values)
    return np.arange(da.sizes[dim], dtype=float)


def _declared_periodic(da: xr.DataArray, dim: str) -> bool:
    if dim not in da.coords:
        return False
    attrs = da[dim].attrs
    flag = str(attrs.get("periodic", "")).lower()
    if flag in ("true", "1", "yes"):
        return True
    if flag in ("false", "0", "no"):
        return False
    return "periodic" in str(attrs.get("long_name", "")).lower()


def _mean_spacing(values: np.ndarray, dim: str) -> float:
    if values.size < 2:
        return 1.0
    diffs = np.diff(values)
    return float(np.abs(diffs).mean())


def _check_monotonic(da: xr.DataArray, dim: str, name: str | None) -> None:
    values = _coord_values(da, dim)
    if values.size < 2:
        return
    diffs = np.diff(values)
    if not (np.all(diffs > 0) or np.all(diffs < 0)):
        where = f"variable '{name}'" if name else "the field"
        raise ClimgenInputError(
            f"coordinate '{dim}' of {where} is not monotonic "
            f"(values go up and down, e.g. {values[:4].round(3).tolist()}...); "
            f"sort it first: da.sortby('{dim}')"
        )


def detect_grid(da: xr.DataArray, *, periodic_x: bool | None = None) -> GridInfo:
    """Find the spatial dims of ``da`` and describe its grid.

    Parameters
    ----------
    da : DataArray with at least two dims, two of which are spatial.
    periodic_x : force periodicity of the x axis (default: detect).

    Raises
    ------
    ClimgenInputError
        when no pair of spatial dims can be recognised (the message lists the dims seen and
        the names/attributes that are recognised), or a spatial coordinate is not monotonic.
    """
    if not isinstance(da, xr.DataArray):
        raise ClimgenInputError(f"expected an xarray.DataArray, got {type(da).__name__}")
    dims = list(da.dims)
    lat = [d for d in dims if _is_lat(da, d)]
    lon = [d for d in dims if _is_lon(da, d)]
    if lat and lon:
        y_dim, x_dim, kind = lat[0], lon[0], "latlon"
    else:
        ys = [d for d in dims if d.lower() in _PLANAR_Y_NAMES or _axis(da, d) in ("Y", "Z")]
        xs = [d for d in dims if d.lower() in _PLANAR_X_NAMES or _axis(da, d) == "X"]
        ys = [d for d in ys if d not in xs]
        if not (ys and xs):
            raise ClimgenInputError(
                f"cannot find two spatial dims in variable '{da.name}' with dims {tuple(dims)}: "
                "expected lat/lon (names lat, latitude, lon, longitude or CF standard_name / "
                "units degrees_north, degrees_east) or planar x with y or z (or axis attributes "
                "X and Y/Z). Rename the dims, e.g. da.rename({'rows': 'y', 'cols': 'x'})"
            )
        # Prefer y over z when a 3-D field has both: the horizontal plane.
        y_dim = next((d for d in ys if d.lower() == "y"), ys[0])
        x_dim, kind = xs[0], "planar"
    for d in (y_dim, x_dim):
        _check_monotonic(da, d, da.name)
    yv, xv = _coord_values(da, y_dim), _coord_values(da, x_dim)
    dy, dx = _mean_spacing(yv, y_dim), _mean_spacing(xv, x_dim)
    if kind == "latlon":
        if np.any(np.abs(yv) > 90 + 1e-6):
            raise ClimgenInputError(
                f"latitude '{y_dim}' of variable '{da.name}' has values outside [-90, 90] "
                f"(min {yv.min():.3g}, max {yv.max():.3g}): is it in radians or mislabelled?"
            )
        full_circle = abs(xv.size * dx - 360.0) < 0.5 * dx
        px = full_circle if periodic_x is None else periodic_x
        py = False
    else:
        px = _declared_periodic(da, x_dim) if periodic_x is None else periodic_x
        py = _declared_periodic(da, y_dim)
    sample_dims = tuple(d for d in dims if d not in (y_dim, x_dim))
    return GridInfo(kind, y_dim, x_dim, dy, dx, py, px, sample_dims)


def to_canonical(
    da: xr.DataArray, grid: GridInfo | None = None
) -> tuple[xr.DataArray, CanonicalState]:
    """Return ``da`` with spatial dims last, latitude ascending and longitude in [0, 360).

    The returned state restores the original layout with :func:`restore`.
    """
    grid = grid or detect_grid(da)
    y, x = grid.y_dim, grid.x_dim
    state = CanonicalState(
        dims=tuple(da.dims),
        y_dim=y,
        x_dim=x,
        y_values=_original_values(da, y),
        x_values=_original_values(da, x),
    )
    out = da.transpose(*grid.sample_dims, y, x)
    if grid.kind == "latlon":
        if y in out.coords and out[y].size > 1 and out[y].values[0] > out[y].values[-1]:
            out = out.isel({y: slice(None, None, -1)})
        if x in out.coords:
            lon = out[x].values
            wrapped = np.mod(lon, 360.0)
            if not np.array_equal(wrapped, lon) or np.any(np.diff(lon) < 0):
                out = out.assign_coords({x: (x, wrapped, out[x].attrs)}).sortby(x)
    return out, state


def restore(da: xr.DataArray, state: CanonicalState) -> xr.DataArray:
    """Undo :func:`to_canonical`: original dim order, latitude order and longitude values.

    Dims that ``da`` does not have (e.g. a new ``member`` dim) are kept in front.
    """
    y, x = state.y_dim, state.x_dim
    if y in da.coords and da[y].size == state.y_values.size:
        da = da.sel({y: state.y_values}, method="nearest")
        da = da.assign_coords({y: (y, state.y_values, da[y].attrs)})
    if x in da.coords and da[x].size == state.x_values.size:
        target = state.x_values
        # Only longitudes were wrapped by to_canonical; planar x (even negative) is unchanged.
        wrapped = not np.isin(target, da[x].values).all() and _looks_like_lon(target)
        da = da.sel({x: np.mod(target, 360.0) if wrapped else target}, method="nearest")
        da = da.assign_coords({x: (x, target, da[x].attrs)})
    extra = [d for d in da.dims if d not in state.dims]
    order = extra + [d for d in state.dims if d in da.dims]
    return da.transpose(*order)


def _looks_like_lon(values: np.ndarray) -> bool:
    return values.size > 0 and values.min() >= -360.0 and values.max() <= 720.0


def grid_spacing(grid: GridInfo) -> tuple[float, float]:
    """(dy, dx) in coordinate units, as used for physical wavenumbers."""
    return grid.dy, grid.dx


def area_weights(da: xr.DataArray, grid: GridInfo | None = None) -> xr.DataArray:
    """Weights over the two spatial dims, normalised to mean 1.

    Lat/lon: w(φ) = cos φ (the area of a cell of fixed Δλ, Δφ is ∝ cos φ; exact for
    equal-angle grids, a close approximation on Gaussian grids). Planar: uniform.
    """
    grid = grid or detect_grid(da)
    y, x = grid.y_dim, grid.x_dim
    ny, nx = da.sizes[y], da.sizes[x]
    if grid.kind == "latlon":
        lat = _coord_values(da, y)
        wy = np.clip(np.cos(np.deg2rad(lat)), 0.0, None)
    else:
        wy = np.ones(ny)
    w2 = np.broadcast_to(wy[:, None], (ny, nx)).astype(float)
    w2 = w2 / w2.mean()
    coords = {d: da[d] for d in (y, x) if d in da.coords}
    return xr.DataArray(w2, dims=(y, x), coords=coords, name="area_weight")


def spatial_weights(da: xr.DataArray) -> np.ndarray:
    """Area weights of ``da`` as a plain (ny, nx) numpy array in canonical orientation."""
    canon, _ = to_canonical(da)
    return area_weights(canon).values
