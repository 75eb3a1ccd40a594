"""Conservation: the block means of a downscaled field equal the coarse input.

The exact layers are :func:`climgen.families.superres.conserve` (additive or multiplicative
per block); before the additive one, :func:`smooth_correction` may move the output towards
the coarse means with a smooth correction — Lanczos back-projection (:func:`back_project`)
or the optimal-interpolation correction of
:mod:`climgen.tasks.downscale.covariance_correction` — so that the layer's block-edge steps
stay small (a calibrated spectrum survives).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data.coarsen import coarsen_tensor
from climgen.data.grids import area_weights, detect_grid
from climgen.errors import ClimgenInputError
from climgen.tasks.downscale.covariance_correction import covariance_correction_on
from climgen.tasks.downscale.interpolation import interpolate

__all__ = [
    "CONSERVE_MODES",
    "check_conserve",
    "check_back_projection",
    "row_weights",
    "back_project",
    "smooth_correction",
]

CONSERVE_MODES = ("additive", "multiplicative")


def check_conserve(conserve) -> str | None:
    if conserve in (False, None, "none"):
        return None
    if conserve is True:
        return "additive"
    if conserve not in CONSERVE_MODES:
        raise ClimgenInputError(
            f"conserve={conserve!r} is not valid; use True/'additive' (signed fields), "
            "'multiplicative' (non-negative fields) or False"
        )
    return conserve


def row_weights(da: xr.DataArray) -> np.ndarray | None:
    """Per-row area weights of ``da``'s grid in its own orientation (None on planar grids)."""
    grid = detect_grid(da)
    if grid.kind != "latlon":
        return None
    return area_weights(da, grid).values[:, 0]


def check_back_projection(back_projection):
    """None, an integer ≥ 0 (Lanczos iterations) or "covariance"; anything else raises."""
    if (
        back_projection is not None
        and back_projection != "covariance"
        and (
            isinstance(back_projection, bool)
            or not isinstance(back_projection, (int, np.integer))
            or back_projection < 0
        )
    ):
        raise ClimgenInputError(
            f"back_projection must be None, an integer ≥ 0 or 'covariance', got {back_projection!r}"
        )
    return back_projection


def back_project(fine, coarse, factor: int, weights, periodic, iterations: int):
    """Iterative back-projection (Irani & Peleg 1991) of the block-mean residual:

    .. math:: y \\leftarrow y + P\\,(c - M(y))

    with M the (area-weighted) block mean and P Lanczos-3 interpolation, ``iterations``
    times (stopping early when the residual stops shrinking). The correction is smooth, so
    the exact additive layer that follows only has a tiny residual to put into block-edge
    steps — which keeps a calibrated spectrum intact. ``fine`` (..., H, W), ``coarse``
    (..., H/f, W/f), float64; ``weights`` as for :func:`coarsen_tensor`; ``periodic`` =
    (y, x) flags of the interpolation. Reference: Irani & Peleg (1991), *Improving
    resolution by image registration*, CVGIP: Graphical Models and Image Processing 53.
    """
    best = float("inf")
    for _ in range(int(iterations)):
        residual = coarse - coarsen_tensor(fine, factor, weights)
        size = float(residual.abs().max())
        if size >= best or size == 0.0:
            break
        best = size
        fine = fine + interpolate(residual, factor, "lanczos", periodic)
    return fine


def smooth_correction(
    fine,
    coarse,
    factor: int,
    weights,
    periodic,
    *,
    conserve: str | None,
    back_projection,
    calibrated: bool,
    template,
):
    """The correction before the additive layer: ``back_projection`` iterations of
    :func:`back_project` (None: 20 for calibrated output, else 0), or with "covariance" the
    optimal-interpolation correction on ``template``'s grid (a canonical DataArray of the
    fine grid). Nothing for the multiplicative layer. ``fine``: (..., H, W)."""
    n = back_projection
    if n is None:
        n = 20 if calibrated else 0
    if not n or conserve != "additive":
        return fine
    if n == "covariance":
        out = covariance_correction_on(template, fine.double(), coarse.double(), factor, weights)
        return out.to(fine.dtype)
    return back_project(fine.double(), coarse.double(), factor, weights, periodic, n).to(fine.dtype)
