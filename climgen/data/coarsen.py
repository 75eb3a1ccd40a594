"""Area-weighted block averaging of gridded fields (the downscaling "coarse" operator).

For blocks ``B`` of ``fy × fx`` fine cells with weights ``w`` (∝ cos φ on lat/lon grids,
uniform on planar grids; :func:`climgen.data.grids.area_weights`)

.. math:: X_B = \\frac{\\sum_{i \\in B} w_i x_i}{\\sum_{i \\in B} w_i}.

Weighting each coarse cell by its summed fine weight :math:`W_B = \\sum_{i\\in B} w_i`
conserves the area-weighted mean exactly: :math:`\\sum_B W_B X_B / \\sum_B W_B =
\\sum_i w_i x_i / \\sum_i w_i`. (cos of the coarse latitude equals :math:`W_B / (f_y f_x)` only
to :math:`O(\\Delta\\varphi^2)`.) NaN cells are left out of their block; a block with no
finite cell is NaN. Coarse latitude is the weighted block centre
:math:`\\sum w_i \\varphi_i / \\sum w_i`; other coordinates are plain block means.
:func:`coarsen_tensor` is the same operator on ``(..., H, W)`` tensors (differentiable), used
as the consistency loss of downscaling models.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from climgen.data.grids import area_weights, detect_grid
from climgen.errors import ClimgenInputError

__all__ = ["coarsen", "coarsen_tensor", "factor_pair"]


def factor_pair(factor: int | tuple[int, int]) -> tuple[int, int]:
    """``factor`` as ``(fy, fx)``; an int applies to both axes."""
    if isinstance(factor, (int, np.integer)):
        fy = fx = int(factor)
    else:
        try:
            fy, fx = (int(f) for f in factor)
        except (TypeError, ValueError) as exc:
            raise ClimgenInputError(
                f"coarsening factor must be an int or a pair (fy, fx), got {factor!r}"
            ) from exc
    if fy < 1 or fx < 1:
        raise ClimgenInputError(f"coarsening factor must be >= 1, got ({fy}, {fx})")
    return fy, fx


def _check_divisible(sizes: dict[str, int], factors: dict[str, int]) -> None:
    for dim, f in factors.items():
        if sizes[dim] % f:
            raise ClimgenInputError(
                f"cannot coarsen dim '{dim}' of size {sizes[dim]} by factor {f}: "
                f"{sizes[dim]} is not divisible by {f} (crop or pad it first)"
            )


def coarsen(
    da: xr.DataArray,
    factor: int | tuple[int, int],
    *,
    weights: xr.DataArray | np.ndarray | None = None,
) -> xr.DataArray:
    """Area-weighted block means of ``da`` over its two spatial dims (lazy on dask).

    Parameters
    ----------
    da : field with two spatial dims (see :func:`climgen.data.grids.detect_grid`).
    factor : block size, int or ``(fy, fx)`` along (y, x).
    weights : cell weights over the spatial dims (DataArray or ``(ny, nx)`` array in ``da``'s
        y, x order); default :func:`~climgen.data.grids.area_weights`.
    """
    grid = detect_grid(da)
    y, x = grid.spatial_dims
    fy, fx = factor_pair(factor)
    _check_divisible(dict(da.sizes), {y: fy, x: fx})
    if weights is None:
        w = area_weights(da, grid)
    elif isinstance(weights, xr.DataArray):
        w = weights
    else:
        w_np = np.asarray(weights, dtype=float)
        if w_np.shape != (da.sizes[y], da.sizes[x]):
            raise ClimgenInputError(
                f"weights of shape {w_np.shape} do not match the grid ({y}: {da.sizes[y]}, "
                f"{x}: {da.sizes[x]})"
            )
        w = xr.DataArray(w_np, dims=(y, x))
    w = w.drop_vars([c for c in w.coords], errors="ignore")
    plain = da.drop_vars([c for c in da.coords if set(da[c].dims) & {y, x}])
    finite = np.isfinite(plain)
    w_obs = w.where(finite, 0.0)
    blocks = {y: fy, x: fx}
    num = (plain.fillna(0.0) * w_obs).coarsen(blocks).sum()
    den = w_obs.coarsen(blocks).sum()
    out = (num / den.where(den > 0)).transpose(*da.dims)
    out.attrs = dict(da.attrs)
    out.name = da.name
    coords = {}
    if y in da.coords:
        wy = w.mean(x).values if w.ndim == 2 else np.ones(da.sizes[y])
        lat = da[y].values.astype(float)
        wsum = (wy.reshape(-1, fy)).sum(1)
        centre = (wy * lat).reshape(-1, fy).sum(1) / np.where(wsum > 0, wsum, 1.0)
        plain_mean = lat.reshape(-1, fy).mean(1)
        centre = np.where(wsum > 0, centre, plain_mean)
        coords[y] = (y, centre.astype(da[y].dtype), da[y].attrs)
    if x in da.coords:
        lon = da[x].values.astype(float).reshape(-1, fx).mean(1)
        coords[x] = (x, lon.astype(da[x].dtype), da[x].attrs)
    return out.assign_coords(coords)


def coarsen_tensor(
    x: torch.Tensor,
    factor: int | tuple[int, int],
    weights: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Weighted block means of a ``(..., H, W)`` tensor (differentiable).

    ``weights`` broadcasts against ``(H, W)``: shape ``(H, W)``, ``(H, 1)`` or a 1-D ``(H,)``
    vector of latitude weights; ``None`` means uniform. Same definition as :func:`coarsen`
    (without NaN handling: a training loss sees complete fields).
    """
    fy, fx = factor_pair(factor)
    big_h, big_w = x.shape[-2], x.shape[-1]
    _check_divisible({"H": big_h, "W": big_w}, {"H": fy, "W": fx})
    blocks = (*x.shape[:-2], big_h // fy, fy, big_w // fx, fx)
    if weights is None:
        return x.reshape(blocks).mean(dim=(-3, -1))
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    if w.ndim == 1:
        w = w[:, None]
    w = torch.broadcast_to(w, (big_h, big_w)).reshape(big_h // fy, fy, big_w // fx, fx)
    return (x.reshape(blocks) * w).sum(dim=(-3, -1)) / w.sum(dim=(-3, -1))
