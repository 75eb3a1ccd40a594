"""Spectral calibration of a downscaler's output: fitting it on training fields, applying it.

:func:`calibrate_spectrum` fits a
:class:`~climgen.tasks.emulate.spectral_calibration.SpectralCalibration` (gain
g(k) = sqrt(P̄_fine(k) / P̄_method(k)) per wavenumber of the diagnostics' basis) on the
method's raw outputs for training fields; :func:`calibrate_field` and
:func:`calibrate_tensor` apply it, before the conservation layer. The gains are fitted on
the training fine grid and applied by position (:func:`on_template_grid`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from climgen.data.grids import detect_grid, restore, to_canonical
from climgen.data.io import as_dataset, write_fields
from climgen.errors import ClimgenInputError
from climgen.metrics.spectral_filter import apply_spectral_gain
from climgen.tasks._common import field_variables, zero_template
from climgen.tasks.downscale.methods import BASELINE, CALIBRATION, FINE_TEMPLATE
from climgen.tasks.emulate.spectral_calibration import SpectralCalibration

__all__ = ["calibrate_spectrum", "on_template_grid", "calibrate_field", "calibrate_tensor"]


def calibrate_spectrum(
    down,
    data,
    fine=None,
    *,
    n_fields: int = 64,
    members: int | None = None,
    seed: int = 2**20,
    max_gain: float = 1e3,
    per_row: bool = False,
    run_dir: str | os.PathLike | None = None,
):
    """:meth:`Downscaler.calibrate_spectrum <climgen.tasks.downscale.downscaler.Downscaler.
    calibrate_spectrum>` of ``down`` (see there); returns ``down``."""
    if isinstance(n_fields, bool) or not isinstance(n_fields, (int, np.integer)) or (n_fields < 1):
        raise ClimgenInputError(f"n_fields must be a positive integer, got {n_fields!r}")
    if down.kind.trained:
        down._check_fitted()
    if fine is None:
        ds_fine, ds_coarse = as_dataset(data, down.variables), None
    else:
        ds_coarse, ds_fine = as_dataset(data, down.variables), as_dataset(fine, down.variables)
    names = list(down.variables or field_variables(ds_fine))
    down._check_has(ds_fine, names, "the fine calibration data")
    if ds_coarse is not None:
        down._check_has(ds_coarse, names, "the coarse calibration data")
    if down.sample_dim not in ds_fine[names[0]].dims:
        raise ClimgenInputError(
            f"calibrate_spectrum needs several training fields along '{down.sample_dim}'; "
            f"the fine data have dims {ds_fine[names[0]].dims}"
        )
    n = ds_fine.sizes[down.sample_dim]
    pick = np.unique(np.linspace(0, n - 1, min(int(n_fields), n)).round().astype(int))
    if down.context:  # the net needs each field's neighbours: consecutive fields
        pick = np.arange(min(int(n_fields), n))
    ds_fine = ds_fine[names].isel({down.sample_dim: pick})
    coarse = (
        down.coarsen(ds_fine)
        if ds_coarse is None
        else ds_coarse[names].isel({down.sample_dim: pick})
    )
    if not down.kind.trained:
        down.fine_template = zero_template(ds_fine, names, down.sample_dim)
    layer, down.conserve = down.conserve, None
    try:
        raw = down.downscale(coarse, members=members, seed=seed, calibrated=False)
    finally:
        down.conserve = layer
    raw = xr.Dataset({v: on_template_grid(down, raw[v], v) for v in names})
    data_fine = xr.Dataset({v: to_canonical(ds_fine[v])[0] for v in names})
    down.calibration = SpectralCalibration.fit(
        raw,
        data_fine,
        names,
        sample_dim=down.sample_dim,
        data_sample_dim=down.sample_dim,
        max_gain=max_gain,
        per_row=per_row,
    )
    if run_dir is not None:
        down.run_dir = Path(run_dir)
    if down.run_dir is not None:
        down.run_dir.mkdir(parents=True, exist_ok=True)
        if not down.kind.trained:
            write_fields(down.fine_template, down.run_dir / FINE_TEMPLATE)
            card = {
                "task": "downscale",
                "method": down.method,
                "factor": down.factor,
                "conserve": down.conserve,
                "variables": names,
                "sample_dim": down.sample_dim,
            }
            (down.run_dir / BASELINE).write_text(json.dumps(card, indent=1))
        down.calibration.save(down.run_dir / CALIBRATION)
    return down


def on_template_grid(down, da: xr.DataArray, name: str) -> xr.DataArray:
    """``da`` in canonical orientation with the training fine grid's coordinates
    (values matched by position): the basis the calibration's gains are fitted in."""
    canon, _ = to_canonical(da)
    grid = detect_grid(canon)
    want, _ = to_canonical(down.fine_template[name])
    tgrid = detect_grid(want)
    shape = (canon.sizes[grid.y_dim], canon.sizes[grid.x_dim])
    tshape = (want.sizes[tgrid.y_dim], want.sizes[tgrid.x_dim])
    if shape != tshape:
        raise ClimgenInputError(
            f"variable '{name}': the spectral calibration was fitted on the fine grid "
            f"{tshape}, but this output is {shape}; pass calibrated=False or refit it "
            "with calibrate_spectrum on fields of this grid"
        )
    lead = [d for d in canon.dims if d not in (grid.y_dim, grid.x_dim)]
    dims = (*lead, tgrid.y_dim, tgrid.x_dim)
    coords = {d: canon[d] for d in lead if d in canon.coords}
    coords.update({d: want[d] for d in (tgrid.y_dim, tgrid.x_dim) if d in want.coords})
    return xr.DataArray(
        canon.transpose(*lead, grid.y_dim, grid.x_dim).values,
        dims=dims,
        coords=coords,
        name=name,
    )


def calibrate_field(down, da: xr.DataArray, name: str) -> xr.DataArray:
    """Apply the fitted gain chain of variable ``name`` to ``da`` (any orientation)."""
    chain = down.calibration.stages.get(name)
    if chain is None:
        raise ClimgenInputError(
            f"the spectral calibration has no gain for variable '{name}' (fitted for "
            f"{sorted(down.calibration.stages)}); pass calibrated=False"
        )
    canon, state = to_canonical(da)
    grid = detect_grid(canon)
    canon = canon.transpose(
        *[d for d in canon.dims if d not in grid.spatial_dims], *grid.spatial_dims
    )
    filtered = on_template_grid(down, canon, name)
    for kind, gain in chain:
        filtered = apply_spectral_gain(filtered, gain, kind)
    return restore(canon.copy(data=filtered.values.astype(canon.dtype, copy=False)), state)


def calibrate_tensor(down, fine: torch.Tensor) -> torch.Tensor:
    """Calibrate (n, C, H, W) physical fine fields in the canonical training layout."""
    channels = []
    for c, v in enumerate(down.variables):
        canon, _ = to_canonical(down.fine_template[v])
        grid = detect_grid(canon)
        da = xr.DataArray(
            fine[:, c].numpy(),
            dims=(down.sample_dim, grid.y_dim, grid.x_dim),
            coords={d: canon[d] for d in grid.spatial_dims if d in canon.coords},
            name=v,
        )
        channels.append(torch.from_numpy(np.asarray(calibrate_field(down, da, v).values)))
    return torch.stack(channels, dim=1).to(fine.dtype)
