"""int16 CF packing (``scale_factor``/``add_offset``) for simulation output written to netCDF.

Each floating-point data variable ``x`` is stored as the 16-bit integer

.. math::  q = \\mathrm{round}((x - o) / s), \\qquad s = (\\max x - \\min x) / 65000,
           \\qquad o = (\\max x + \\min x) / 2,

so ``q`` lies in [-32500, 32500] and ``-32768`` stays free for ``_FillValue`` (NaN). Readers
that follow the CF conventions (xarray, netCDF4, ncview, CDO…) decode ``x̂ = o + s q``, and
``|x̂ - x| ≤ s/2``: the *quantisation step* ``s`` is stated in each variable's attributes
(``quantisation_step``) and the rule in the global ``packing`` attribute.

The rounding error is close to white noise of variance ``s²/12`` per grid point, which puts a
flat floor under every power spectrum of packed data: the last decades of a steep spectrum
are quantisation, not physics. Reference: CF Conventions 1.8, §8.1 "Packed Data"
(https://cfconventions.org/).
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "pack_int16",
    "write_packed",
    "quantise",
    "packing_of",
    "PACKING_NOTE",
    "INT16_LEVELS",
    "INT16_FILL",
]

INT16_LEVELS = 65000
INT16_FILL = np.int16(-32768)
PACKING_NOTE = "int16 CF packing (scale_factor/add_offset) + zlib; quantisation step = range/65000"


def _scale_and_offset(values: np.ndarray, name: str) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ClimgenInputError(f"cannot pack variable {name!r}: it has no finite values")
    lo, hi = float(finite.min()), float(finite.max())
    # A constant field is exactly representable as its offset; any positive scale works.
    scale = (hi - lo) / INT16_LEVELS if hi > lo else 1.0
    return scale, 0.5 * (hi + lo)


def _chunks(da: xr.DataArray, time_dim: str | None) -> tuple[int, ...]:
    """One chunk per time slice (fast random access for training loaders)."""
    return tuple(1 if dim == time_dim else size for dim, size in zip(da.dims, da.shape))


def pack_int16(
    ds: xr.Dataset,
    *,
    variables: Iterable[str] | None = None,
    complevel: int = 9,
    time_dim: str | None = "time",
) -> xr.Dataset:
    """Return a copy of ``ds`` whose float variables will be written as CF-packed int16.

    The data stay floating point in memory; each packed variable gets an ``encoding`` (dtype
    int16, ``scale_factor`` ``s``, ``add_offset`` ``o``, ``_FillValue`` −32768, zlib level
    ``complevel`` with shuffle, one chunk per ``time_dim`` slice) that ``Dataset.to_netcdf``
    applies, and the attribute ``quantisation_step = s`` (same units as the variable). The
    global attribute ``packing`` states the rule. See the module docstring for the formula.

    Parameters
    ----------
    ds:
        Dataset to pack. Coordinates are never packed.
    variables:
        Names of data variables to pack (default: every floating-point data variable).
    complevel:
        zlib compression level, 0–9.
    time_dim:
        Dim chunked one slice per chunk (ignored where a variable lacks it).

    Raises
    ------
    ClimgenInputError
        A named variable is missing, not floating point, or has no finite value.
    """
    if not isinstance(ds, xr.Dataset):
        raise ClimgenInputError(f"pack_int16 needs an xarray.Dataset, got {type(ds).__name__}")
    if not 0 <= int(complevel) <= 9:
        raise ClimgenInputError(f"complevel must be in 0..9, got {complevel!r}")
    if variables is None:
        names = [n for n, v in ds.data_vars.items() if np.issubdtype(v.dtype, np.floating)]
    else:
        names = list(variables)
        for name in names:
            if name not in ds.data_vars:
                raise ClimgenInputError(
                    f"pack_int16: no data variable {name!r}; the dataset has "
                    f"{sorted(map(str, ds.data_vars))}"
                )
            if not np.issubdtype(ds[name].dtype, np.floating):
                raise ClimgenInputError(
                    f"pack_int16: variable {name!r} is {ds[name].dtype}, not floating point"
                )
    out = ds.copy()
    for name in names:
        da = out[name]
        scale, offset = _scale_and_offset(np.asarray(da.values, dtype=np.float64), name)
        da.attrs = {**da.attrs, "quantisation_step": scale}
        da.encoding = {
            "dtype": "int16",
            "scale_factor": np.float64(scale),
            "add_offset": np.float64(offset),
            "_FillValue": INT16_FILL,
            "zlib": complevel > 0,
            "complevel": int(complevel),
            "shuffle": True,
            "chunksizes": _chunks(da, time_dim),
        }
    if names:
        out.attrs["packing"] = PACKING_NOTE
    return out


def write_packed(ds: xr.Dataset, path: str | PathLike, **pack_options) -> Path:
    """Pack ``ds`` with :func:`pack_int16` and write it to netCDF-4 at ``path``; return the path.

    Coordinates are written as float64 without a ``_FillValue``.
    """
    path = Path(path)
    packed = pack_int16(ds, **pack_options)
    encoding = {name: {"_FillValue": None} for name in packed.coords}
    path.parent.mkdir(parents=True, exist_ok=True)
    packed.to_netcdf(path, encoding=encoding, format="NETCDF4", engine="netcdf4")
    return path


def packing_of(da: xr.DataArray) -> tuple[float, float] | None:
    """``(scale_factor, add_offset)`` of a variable read from a packed file, else None.

    Reads the variable's ``encoding`` as xarray's decoder leaves it (open the file with
    :func:`xarray.open_dataset`; :func:`climgen.data.io.open_fields` drops it).
    """
    scale = da.encoding.get("scale_factor")
    if scale is None:
        return None
    return float(scale), float(da.encoding.get("add_offset", 0.0))


def quantise(values, scale: float, offset: float = 0.0):
    """Put values through the same int16 packing as data packed with ``(scale, offset)``.

    x̂ = o + s·clip(round((x − o)/s), −32767, 32767): what writing ``values`` with that
    ``scale_factor``/``add_offset`` and reading them back gives. Use it on generated fields
    before comparing their spectra with packed data: beyond a model's truncation the data's
    spectrum is the white quantisation floor (variance s²/12), which unpacked model output
    lacks. Works on numpy arrays and DataArrays (coords and attrs kept).
    """
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset)):
        raise ClimgenInputError(f"scale must be positive and finite, got {scale}, offset {offset}")
    if isinstance(values, xr.DataArray):
        return values.copy(data=quantise(values.values, scale, offset))
    q = np.clip(np.round((np.asarray(values, dtype=np.float64) - offset) / scale), -32767, 32767)
    return (offset + scale * q).astype(np.asarray(values).dtype, copy=False)
