"""Physical consistency: divergence of 2-D velocity fields and conservation of block means.

Fields are shaped ``(..., nz, nx)`` (or ``(..., ny, nx)``): the last axis is x, the one before
it z (or y). DataArrays are brought to canonical orientation first.

References: LeVeque (2007) *Finite Difference Methods for ODEs and PDEs*, §1.1–1.5 (central
and one-sided second-order differences); Harder et al. (2023), "Hard-constrained deep
learning for climate downscaling", JMLR 24 (coarse-mean conservation of downscaled fields).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import (
    as_tensor,
    check_finite,
    common_kind,
    prepare,
    scalar_like,
    to_like,
)

__all__ = ["divergence", "block_mean_error"]


def _spacing(value: Any, n: int, name: str, t: torch.Tensor):
    """A positive scalar spacing, or a 1-D increasing coordinate of length n, for torch.gradient."""
    if np.ndim(value) == 0 and not isinstance(value, torch.Tensor):
        h = float(value)
        if not (np.isfinite(h) and h > 0):
            raise ClimgenInputError(f"{name} must be a positive finite spacing, got {value}")
        return h
    c, _ = as_tensor(value, name)
    check_finite(c, name)
    c = c.to(dtype=t.dtype, device=t.device)
    if c.ndim == 0:
        return _spacing(float(c), n, name, t)
    if c.ndim != 1 or c.numel() != n or not bool((torch.diff(c) > 0).all()):
        raise ClimgenInputError(
            f"{name} must be a scalar spacing or an increasing 1-D coordinate of length {n}, "
            f"got shape {tuple(c.shape)}"
        )
    return c


def _derivative(t: torch.Tensor, spacing, dim: int, periodic: bool) -> torch.Tensor:
    if periodic:
        if not isinstance(spacing, float):
            raise ClimgenInputError("a periodic axis needs a scalar (uniform) spacing")
        return (torch.roll(t, -1, dims=dim) - torch.roll(t, 1, dims=dim)) / (2.0 * spacing)
    if t.shape[dim] < 3:
        raise ClimgenInputError(
            f"a non-periodic derivative needs at least 3 points along the axis, got {t.shape[dim]}"
        )
    return torch.gradient(t, spacing=(spacing,), dim=dim, edge_order=2)[0]


def divergence(u: Any, w: Any, *, dx: Any, dz: Any, periodic_x: bool = True):
    r"""Divergence :math:`\nabla\cdot\mathbf{u} = \partial u/\partial x + \partial w/\partial z`.

    Second-order finite differences: central in the interior; along x periodic (wrap-around)
    when ``periodic_x``, else second-order one-sided at the ends; along z second-order
    one-sided at the walls, :math:`(-3f_0 + 4f_1 - f_2)/(2\Delta z)` (LeVeque 2007, §1.5).
    ``dx`` is the uniform x spacing; ``dz`` a uniform spacing or the 1-D z coordinate
    (non-uniform grids allowed). Units: velocity units / length units (1/time).
    Returns the divergence field, shaped like ``u``; differentiable for torch input.
    """
    tu, ku, _ = prepare(u, "u")
    tw, kw, _ = prepare(w, "w")
    tu, tw, kind = common_kind(tu, ku, tw, kw)
    if tu.shape != tw.shape or tu.ndim < 2:
        raise ClimgenInputError(
            f"u has shape {tuple(tu.shape)} but w has shape {tuple(tw.shape)}: they must match "
            "and be at least (nz, nx)"
        )
    sx = _spacing(dx, tu.shape[-1], "dx", tu)
    sz = _spacing(dz, tu.shape[-2], "dz", tu)
    if periodic_x and not isinstance(sx, float):
        raise ClimgenInputError("dx must be a scalar spacing when periodic_x is True")
    div = _derivative(tu, sx, -1, periodic_x) + _derivative(tw, sz, -2, False)
    return to_like(div, kind)


def _factors(factor: Any) -> tuple[int, int]:
    fy, fx = (factor, factor) if np.ndim(factor) == 0 else tuple(factor)
    if int(fy) != fy or int(fx) != fx or fy < 1 or fx < 1:
        raise ClimgenInputError(f"factor must be a positive integer or (fy, fx), got {factor}")
    return int(fy), int(fx)


def block_mean_error(fine: Any, coarse: Any, factor: Any, *, weights: Any = None):
    r"""Largest violation of coarse-mean conservation by a downscaled field.

    .. math:: \max_{b} \Big| \frac{\sum_{i\in b} w_i f_i}{\sum_{i\in b} w_i} - c_b \Big|

    over all coarse cells b (and samples), where each coarse cell holds the ``factor`` ×
    ``factor`` (or fy × fx) fine cells below it and :math:`w` are the fine-grid area weights
    (cos-lat derived for DataArrays; uniform when None). ``fine`` is ``(..., fy·ny, fx·nx)``,
    ``coarse`` ``(..., ny, nx)``. Units: those of the field; 0 when conserved exactly.
    """
    fy, fx = _factors(factor)
    tf, kf, wf = prepare(fine, "fine", weights)
    tc, kc, _ = prepare(coarse, "coarse")
    tf, tc, kind = common_kind(tf, kf, tc, kc)
    ok = (
        tf.ndim >= 2
        and tf.shape[:-2] == tc.shape[:-2]
        and tf.shape[-2:] == (tc.shape[-2] * fy, tc.shape[-1] * fx)
    )
    if not ok:
        raise ClimgenInputError(
            f"fine has shape {tuple(tf.shape)} and coarse has shape {tuple(tc.shape)}: with "
            f"factor ({fy}, {fx}) fine must be (..., {fy}·ny, {fx}·nx) for coarse (..., ny, nx)"
        )
    ny, nx = tc.shape[-2], tc.shape[-1]
    block = tf.shape[:-2] + (ny, fy, nx, fx)
    w = torch.ones_like(tf) if wf is None else wf.to(tf.dtype)
    num = (w * tf).reshape(block).sum(dim=(-3, -1))
    den = w.reshape(block).sum(dim=(-3, -1))
    if not bool((den > 0).all()):
        raise ClimgenInputError("weights are zero over a whole coarse cell: its mean is undefined")
    return scalar_like((num / den - tc).abs().max(), kind)
