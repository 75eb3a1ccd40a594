"""Interpolation baselines for downscaling and the fine grid's coordinates from coarse cells.

**Interpolation.** Each axis is interpolated separately, ``fine = A_y · coarse · A_xᵀ``, with
cell-centred positions: fine cell j of an axis refined by f lies at coarse index
s_j = (j + ½)/f − ½, and

.. math:: A_{ji} = K(s_j - i) \\Big/ \\sum_{i'} K(s_j - i')

over the kernel's taps (a periodic axis wraps the tap indices; a bounded axis repeats its
edge cells). Kernels K:

- ``"nearest"``: the coarse cell that contains the fine cell (block copy);
- ``"bilinear"``: the triangle max(0, 1 − |t|), error ≤ h²/8 · max|f''| per axis;
- ``"bicubic"``: Keys (1981) cubic convolution with a = −½, third-order accurate;
- ``"lanczos"``: L(t) = sinc(t) sinc(t/3) for |t| < 3 (Lanczos-3), weights normalised.

References: Keys (1981), *Cubic convolution interpolation for digital image processing*,
IEEE Trans. ASSP 29(6); Duchon (1979), *Lanczos filtering in one and two dimensions*,
J. Appl. Meteor. 18.

**Fine coordinates.** Coarse cell bounds are read from a CF ``bounds`` variable when there is
one, else placed half-way between neighbouring centres (the outer edges half a spacing out;
on latitude an outer edge within half a cell of a pole moves to the pole).
:meth:`climgen.tasks.Downscaler.coarsen` writes CF bounds, so its output refines back to the
original fine grid exactly. Each cell [lo, hi] is split into f equal parts whose centres
lo + (j + ½)(hi − lo)/f are the fine coordinates (equal-angle on lat/lon grids), in the
coarse grid's own order.
"""

from __future__ import annotations

import numpy as np
import torch

from climgen.errors import ClimgenInputError

__all__ = [
    "INTERPOLATION_METHODS",
    "interpolation_matrix",
    "interpolate",
    "cell_bounds",
    "refine_coordinate",
]

INTERPOLATION_METHODS = ("nearest", "bilinear", "bicubic", "lanczos")
_RADIUS = {"bilinear": 1, "bicubic": 2, "lanczos": 3}


def _kernel(method: str, t: torch.Tensor) -> torch.Tensor:
    a = t.abs()
    if method == "bilinear":
        return (1 - a).clamp(min=0)
    if method == "bicubic":
        keys = -0.5
        near = (keys + 2) * a**3 - (keys + 3) * a**2 + 1
        far = keys * a**3 - 5 * keys * a**2 + 8 * keys * a - 4 * keys
        return torch.where(a <= 1, near, torch.where(a < 2, far, torch.zeros_like(a)))
    # Lanczos-3: torch.sinc is the normalised sinc sin(πt)/(πt).
    return torch.where(a < 3, torch.sinc(t) * torch.sinc(t / 3), torch.zeros_like(a))


def interpolation_matrix(
    n_coarse: int, factor: int, method: str, periodic: bool, dtype=torch.float64
) -> torch.Tensor:
    """The (factor·n_coarse, n_coarse) matrix A of one axis (see the module docstring)."""
    if method not in INTERPOLATION_METHODS:
        raise ClimgenInputError(
            f"unknown interpolation {method!r}; choose one of {', '.join(INTERPOLATION_METHODS)}"
        )
    n_fine = n_coarse * factor
    rows = torch.arange(n_fine)
    matrix = torch.zeros(n_fine, n_coarse, dtype=dtype)
    if method == "nearest":
        matrix[rows, rows // factor] = 1.0
        return matrix
    radius = _RADIUS[method]
    src = (rows.to(dtype) + 0.5) / factor - 0.5
    taps = torch.floor(src).long()[:, None] + torch.arange(-radius + 1, radius + 1)[None, :]
    weights = _kernel(method, src[:, None] - taps.to(dtype))
    weights = weights / weights.sum(dim=1, keepdim=True)
    index = taps % n_coarse if periodic else taps.clamp(0, n_coarse - 1)
    matrix.index_put_((rows[:, None].expand_as(index), index), weights, accumulate=True)
    return matrix


def interpolate(
    coarse: torch.Tensor,
    factor: int,
    method: str = "bicubic",
    periodic: tuple[bool, bool] = (False, False),
) -> torch.Tensor:
    """Interpolate (..., h, w) to (..., f·h, f·w) with ``method`` (computed in float64)."""
    if coarse.ndim < 2:
        raise ClimgenInputError(f"interpolate needs (..., h, w), got shape {tuple(coarse.shape)}")
    h, w = coarse.shape[-2:]
    a_y = interpolation_matrix(h, factor, method, periodic[0]).to(coarse.device)
    a_x = interpolation_matrix(w, factor, method, periodic[1]).to(coarse.device)
    out = torch.einsum("Yy,...yx,Xx->...YX", a_y, coarse.to(torch.float64), a_x)
    return out.to(coarse.dtype)


def cell_bounds(
    centres: np.ndarray, *, bounds: np.ndarray | None = None, latitude: bool = False, name="axis"
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) edges of each cell, from CF ``bounds`` (n, 2) or from the centres."""
    centres = np.asarray(centres, dtype=float)
    if bounds is not None:
        b = np.asarray(bounds, dtype=float)
        if b.shape != (centres.size, 2):
            raise ClimgenInputError(
                f"bounds of coordinate '{name}' have shape {b.shape}, expected ({centres.size}, 2)"
            )
        return b[:, 0], b[:, 1]
    if centres.size < 2:
        raise ClimgenInputError(
            f"coordinate '{name}' has {centres.size} cell(s): cell bounds cannot be inferred; "
            f"add a CF bounds variable ({name}_bnds)"
        )
    mid = 0.5 * (centres[1:] + centres[:-1])
    first = centres[0] - 0.5 * (centres[1] - centres[0])
    last = centres[-1] + 0.5 * (centres[-1] - centres[-2])
    edges = np.concatenate([[first], mid, [last]])
    if latitude:
        # A polar cell whose inferred edge lies within half its width of the pole reaches
        # the pole (coarse latitudes that are area-weighted block centres sit equatorward
        # of the geometric centre, which would otherwise leave a gap at the pole).
        for i, j in ((0, 1), (-1, -2)):
            half = 0.5 * abs(edges[j] - edges[i])
            if abs(edges[i]) > 90.0 - half:
                edges[i] = np.sign(edges[i]) * 90.0
        edges = np.clip(edges, -90.0, 90.0)
    return edges[:-1], edges[1:]


def refine_coordinate(
    centres: np.ndarray,
    factor: int,
    *,
    bounds: np.ndarray | None = None,
    latitude: bool = False,
    name: str = "axis",
) -> tuple[np.ndarray, np.ndarray]:
    """Fine cell centres (f·n,) and fine bounds (f·n, 2) inside the coarse cells."""
    lo, hi = cell_bounds(centres, bounds=bounds, latitude=latitude, name=name)
    frac = np.arange(factor + 1) / factor
    edges = lo[:, None] + frac[None, :] * (hi - lo)[:, None]
    fine_bounds = np.stack([edges[:, :-1].ravel(), edges[:, 1:].ravel()], axis=1)
    return fine_bounds.mean(axis=1), fine_bounds
