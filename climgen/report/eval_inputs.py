"""Input checks of :func:`climgen.report.evaluate.evaluate`: open, select, compare, reshape.

Each check raises one :class:`~climgen.errors.ClimgenInputError` naming the file, variable or
dim at fault. :func:`as_samples` brings a variable to the canonical ``(sample, y, x)`` form
both the in-memory and the streamed evaluation measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.data.units import to_units
from climgen.errors import ClimgenInputError

__all__ = [
    "MIN_REFERENCE_SAMPLES",
    "SAMPLE_DIM",
    "as_samples",
    "check_finite",
    "check_same_grid",
    "describe_source",
    "open_dataset",
    "reconcile_units",
    "select_variables",
    "subsample",
]

MIN_REFERENCE_SAMPLES = 4
SAMPLE_DIM = "sample"


def describe_source(obj: Any, role: str) -> str:
    if isinstance(obj, (str, Path)):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return ", ".join(str(p) for p in obj)
    src = getattr(obj, "encoding", {}).get("source")
    return str(src) if src else f"<in-memory {type(obj).__name__} ({role})>"


def open_dataset(obj: Any, role: str) -> xr.Dataset:
    if isinstance(obj, xr.Dataset):
        return obj
    if isinstance(obj, xr.DataArray):
        return obj.to_dataset(name=obj.name if obj.name is not None else "field")
    if isinstance(obj, (str, Path)) or (
        isinstance(obj, (list, tuple)) and all(isinstance(p, (str, Path)) for p in obj)
    ):
        from climgen.data.io import open_fields

        return open_fields(obj)
    raise ClimgenInputError(
        f"{role}: expected an xarray Dataset/DataArray or a path to a netCDF/zarr file, "
        f"got {type(obj).__name__}"
    )


def _spatial_variables(ds: xr.Dataset) -> list[str]:
    out = []
    for name, da in ds.data_vars.items():
        if da.ndim < 2:
            continue
        try:
            grids.detect_grid(da)
        except ClimgenInputError:
            continue
        out.append(str(name))
    return out


def select_variables(
    gen: xr.Dataset, ref: xr.Dataset, variables: Sequence[str] | None, gen_src: str, ref_src: str
) -> list[str]:
    if variables is None:
        variables = _spatial_variables(gen)
        if not variables:
            raise ClimgenInputError(
                f"generated data ({gen_src}) hold no gridded variable (one with lat/lon or "
                f"y/x dims); data variables: {list(map(str, gen.data_vars))}"
            )
    else:
        variables = [variables] if isinstance(variables, str) else list(variables)
        if not variables:
            raise ClimgenInputError("variables is empty: name at least one variable")
    for name in variables:
        for ds, role, src in ((gen, "generated", gen_src), (ref, "reference", ref_src)):
            if name not in ds.data_vars:
                raise ClimgenInputError(
                    f"variable '{name}' is missing from the {role} data ({src}); "
                    f"it has: {list(map(str, ds.data_vars))}"
                )
    return list(variables)


def reconcile_units(
    name: str, gen: xr.DataArray, ref: xr.DataArray, gen_src: str, ref_src: str
) -> tuple[xr.DataArray, str | None]:
    """``gen`` in the reference's units, and a note when it had to be converted.

    Units are compared by meaning with UDUNITS-2 (:func:`climgen.data.units.to_units`):
    'K' and 'kelvin', 'm s-1' and 'm/s' are the same unit and pass unchanged; convertible
    units (degC → K: x + 273.15, hPa → Pa: 100 x) convert the generated data to the
    reference's units, and the returned note says so; incompatible units (K vs m s-1)
    raise. A set without a ``units`` attribute is not checked (nothing to compare).
    """
    return to_units(name, gen, ref.attrs.get("units"), src=gen_src, target_src=ref_src)


def check_same_grid(name: str, gen: xr.DataArray, ref: xr.DataArray) -> None:
    """Raise when the canonical spatial grids of gen and ref differ, naming the dim."""
    g_gen, g_ref = grids.detect_grid(gen), grids.detect_grid(ref)
    if g_gen.kind != g_ref.kind:
        raise ClimgenInputError(
            f"variable '{name}': generated data are on a {g_gen.kind} grid but the reference on "
            f"a {g_ref.kind} grid"
        )
    for axis, dg, dr in (("y", g_gen.y_dim, g_ref.y_dim), ("x", g_gen.x_dim, g_ref.x_dim)):
        if dg != dr:
            raise ClimgenInputError(
                f"variable '{name}': the {axis} dim is called '{dg}' in the generated data but "
                f"'{dr}' in the reference; rename one, e.g. ds.rename({{'{dg}': '{dr}'}})"
            )
        if gen.sizes[dg] != ref.sizes[dr]:
            raise ClimgenInputError(
                f"variable '{name}': dim '{dg}' has size {gen.sizes[dg]} in the generated data "
                f"but {ref.sizes[dr]} in the reference; regrid one onto the other's grid"
            )
    cg, _ = grids.to_canonical(gen, g_gen)
    cr, _ = grids.to_canonical(ref, g_ref)
    for d in (g_gen.y_dim, g_gen.x_dim):
        if d in cg.coords and d in cr.coords:
            a, b = np.asarray(cg[d].values, float), np.asarray(cr[d].values, float)
            scale = max(float(np.abs(b).max()), 1.0)
            if not np.allclose(a, b, rtol=1e-5, atol=1e-6 * scale):
                worst = int(np.argmax(np.abs(a - b)))
                raise ClimgenInputError(
                    f"variable '{name}': coordinate '{d}' differs between the generated data "
                    f"and the reference (e.g. {a[worst]:.6g} vs {b[worst]:.6g} at index "
                    f"{worst}); both must be on the same grid"
                )


def as_samples(
    da: xr.DataArray, sample_dim: str | None, role: str, name: str
) -> tuple[xr.DataArray, grids.GridInfo]:
    """Canonical (sample, y, x) DataArray: all non-spatial dims stacked into "sample"."""
    grid = grids.detect_grid(da)
    if sample_dim is not None and sample_dim not in da.dims:
        raise ClimgenInputError(
            f"variable '{name}' of the {role} data has no dim '{sample_dim}' (sample_dim); "
            f"its dims are {tuple(map(str, da.dims))}"
        )
    canon, _ = grids.to_canonical(da, grid)
    extra = list(grid.sample_dims)
    if sample_dim is not None:
        extra.remove(sample_dim)
        extra.insert(0, sample_dim)
    if not extra:
        canon = canon.expand_dims(SAMPLE_DIM)
    elif len(extra) == 1:
        canon = canon.rename({extra[0]: SAMPLE_DIM}) if extra[0] != SAMPLE_DIM else canon
        canon = canon.drop_vars(SAMPLE_DIM, errors="ignore")
    else:
        canon = canon.stack({"__stacked__": extra}).drop_vars(
            ["__stacked__", *extra], errors="ignore"
        )
        canon = canon.rename({"__stacked__": SAMPLE_DIM})
    canon = canon.transpose(SAMPLE_DIM, grid.y_dim, grid.x_dim)
    return canon, grids.detect_grid(canon)


def subsample(da: xr.DataArray, max_samples: int | None) -> xr.DataArray:
    n = da.sizes[SAMPLE_DIM]
    if max_samples is None or n <= max_samples:
        return da
    # Evenly spaced rather than the first N: time series are autocorrelated.
    index = np.unique(np.linspace(0, n - 1, int(max_samples)).round().astype(int))
    return da.isel({SAMPLE_DIM: index})


def check_finite(da: xr.DataArray, role: str, name: str, src: str) -> None:
    bad = int((~np.isfinite(da.values)).sum())
    if bad:
        raise ClimgenInputError(
            f"variable '{name}' of the {role} data ({src}) holds {bad} NaN/inf value(s) out of "
            f"{da.size}; evaluation needs complete fields: fill or crop the missing points first"
        )
