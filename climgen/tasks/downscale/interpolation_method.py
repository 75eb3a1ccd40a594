"""Interpolation methods of the Downscaler ("nearest", "bilinear", "bicubic", "lanczos"): no
training; fine coordinates from the coarse cell bounds
(:func:`~climgen.tasks.downscale.interpolation.refine_coordinate`), then the optional
spectral calibration and conservation layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.grids import detect_grid, to_canonical
from climgen.data.io import load_run_file
from climgen.errors import ClimgenInputError
from climgen.families.superres import conserve as conserve_layer
from climgen.tasks._common import field_variables
from climgen.tasks.downscale.calibration import calibrate_field
from climgen.tasks.downscale.conservation import smooth_correction
from climgen.tasks.downscale.interpolation import interpolate, refine_coordinate
from climgen.tasks.downscale.methods import BASELINE, FINE_TEMPLATE, check_finite

__all__ = ["InterpolationMethod"]


class InterpolationMethod:
    """The kind "interpolation": options refused, ``fit`` a no-op, each variable interpolated
    on its own (:func:`~climgen.tasks.downscale.interpolation.interpolate`)."""

    trained = False  # no fit, no run directory of its own
    patches = False

    def configure(self, down, method: str, method_options: dict, static) -> None:
        if method_options or static is not None:
            extra = sorted(method_options) + (["static"] if static is not None else [])
            raise ClimgenInputError(
                f"method {method!r} is an interpolation and takes no option(s) {extra}"
            )
        down.method_options = {}

    @staticmethod
    def load_run(down_cls, run_dir: Path):
        """A calibrated interpolation baseline saved by ``calibrate_spectrum(run_dir=...)``."""
        try:
            card = json.loads((run_dir / BASELINE).read_text())
            down = down_cls(
                card["factor"],
                card["method"],
                conserve=card.get("conserve") or False,
                variables=card["variables"],
                sample_dim=card["sample_dim"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClimgenInputError(f"{run_dir / BASELINE}: not a baseline card ({exc})") from exc
        down.fine_template = load_run_file(run_dir / FINE_TEMPLATE)
        down.run_dir = run_dir
        down._load_calibration()
        return down

    def fit(self, down, *args, **kwargs):
        return down

    def downscale(self, down, ds, members, seed, batch_size, calibrated, progress=False):
        names = down.variables or field_variables(ds)
        down._check_has(ds, names, "the coarse input")
        out, bounds = xr.Dataset(), {}
        for v in names:
            out[v], b = self.interpolate_variable(down, ds, v, calibrated)
            bounds.update(b)
        return out.assign_coords(bounds)

    def interpolate_variable(self, down, ds: xr.Dataset, name: str, calibrated: bool = False):
        """(fine DataArray, {bounds name: fine bounds}) for variable ``name``."""
        da = ds[name]
        check_finite(da, "the coarse input")
        grid = detect_grid(da)
        y, x = grid.spatial_dims
        f = down.factor
        moved = da.transpose(..., y, x)
        t = torch.from_numpy(np.asarray(moved.values, dtype=np.float64))
        fine = interpolate(t, f, down.method, (grid.periodic_y, grid.periodic_x))
        coords, bounds = {}, {}
        for dim in (y, x):
            values = moved[dim].values if dim in moved.coords else np.arange(moved.sizes[dim])
            bname = moved[dim].attrs.get("bounds") if dim in moved.coords else None
            b = ds[bname].values if bname in ds.variables else None
            centres, fine_b = refine_coordinate(
                values, f, bounds=b, latitude=grid.kind == "latlon" and dim == y, name=dim
            )
            attrs = dict(moved[dim].attrs) if dim in moved.coords else {}
            coords[dim] = (dim, centres, attrs)
            if b is not None:
                bdim = ds[bname].dims[-1]
                bounds[bname] = xr.DataArray(fine_b, dims=(dim, bdim))
        if calibrated:  # before the layer: the gain changes block means, the layer restores them
            raw = xr.DataArray(
                fine.numpy(), dims=moved.dims, coords={y: coords[y], x: coords[x]}, name=name
            )
            fine = torch.from_numpy(
                np.asarray(
                    calibrate_field(down, raw, name).transpose(*moved.dims).values, np.float64
                )
            )
        if down.conserve:
            lat = coords[y][1]
            weights = np.cos(np.deg2rad(lat)).clip(min=0) if grid.kind == "latlon" else None
            w_t = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
            template = None
            if down.back_projection == "covariance":  # the grid its spectral basis needs
                template = xr.DataArray(
                    np.zeros((len(coords[y][1]), len(coords[x][1]))),
                    dims=(y, x),
                    coords={y: coords[y], x: coords[x]},
                    name=name,
                )
                known = getattr(down, "fine_template", None)
                if known is not None and name in known and known[name].size == template.size:
                    # The training fine grid (e.g. Gaussian latitudes), which the cell-bound
                    # latitudes of interpolated output only approximate.
                    template = to_canonical(known[name])[0]
            fine = smooth_correction(
                fine,
                t,
                f,
                w_t,
                (grid.periodic_y, grid.periodic_x),
                conserve=down.conserve,
                back_projection=down.back_projection,
                calibrated=calibrated,
                template=template,
            )
            fine = conserve_layer(fine, t, f, weights, down.conserve)
        keep = {
            c: moved.coords[c]
            for c in moved.coords
            if c not in (y, x) and not set(moved[c].dims) & {y, x}
        }
        out = xr.DataArray(
            fine.numpy().astype(da.dtype if da.dtype.kind == "f" else np.float64),
            dims=moved.dims,
            coords={**keep, **coords},
            name=name,
            attrs=dict(da.attrs),
        ).transpose(*da.dims)
        return out, bounds
