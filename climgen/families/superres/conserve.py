"""Hard conservation layers: make the area-weighted block means of a fine field equal the coarse.

For a fine field ỹ (..., fy·ny, fx·nx), coarse field c (..., ny, nx) and fine-cell weights w
(∝ cos φ on lat/lon grids, uniform on planar grids), the block mean of coarse cell B is

.. math:: M_B(y) = \\frac{\\sum_{i \\in B} w_i y_i}{\\sum_{i \\in B} w_i}

(the operator of :func:`climgen.data.coarsen.coarsen_tensor`). The layers return y with
M_B(y) = c_B for every block, exactly up to rounding:

- **additive** (signed fields, e.g. temperature anomalies, velocities):
  y_i = ỹ_i + c_B − M_B(ỹ).
- **multiplicative** (non-negative fields, e.g. precipitation): y_i = ỹ⁺_i · c_B / M_B(ỹ⁺)
  with ỹ⁺ = max(ỹ, 0); a block whose ỹ⁺ is all zero is filled with c_B. Output ≥ 0 when c ≥ 0.
- **softmax** (Harder et al. 2023's SmCL, for a network's raw output ỹ):
  y_i = c_B · exp(ỹ_i) / M_B(exp(ỹ)); positive for c > 0 whatever ỹ is.

All three are differentiable (usable as a network's last layer, as in Harder et al.) and
compute in the dtype of their inputs; use float64 for 1e-12 exactness.

Reference: Harder, Hernandez-Garcia, Ramesh, Yang, Sattegeri, Szwarcman, Watson & Rolnick
(2023), *Hard-constrained deep learning for climate downscaling*, JMLR 24(365).
"""

from __future__ import annotations

import torch

from climgen.data.coarsen import coarsen_tensor, factor_pair
from climgen.errors import ClimgenInputError

__all__ = [
    "CONSERVATION_MODES",
    "block_upsample",
    "conserve_additive",
    "conserve_multiplicative",
    "conserve_softmax",
    "conserve",
]

CONSERVATION_MODES = ("additive", "multiplicative", "softmax")


def block_upsample(coarse: torch.Tensor, factor) -> torch.Tensor:
    """Repeat each coarse cell over its fy × fx fine block: (..., ny, nx) → (..., fy·ny, fx·nx)."""
    fy, fx = factor_pair(factor)
    return coarse.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)


def _check_shapes(fine: torch.Tensor, coarse: torch.Tensor, factor) -> tuple[int, int]:
    fy, fx = factor_pair(factor)
    if fine.ndim < 2 or coarse.ndim < 2:
        raise ClimgenInputError(
            f"conservation needs (..., H, W) fields, got fine {tuple(fine.shape)}, "
            f"coarse {tuple(coarse.shape)}"
        )
    want = (coarse.shape[-2] * fy, coarse.shape[-1] * fx)
    if tuple(fine.shape[-2:]) != want:
        raise ClimgenInputError(
            f"conservation: fine grid {tuple(fine.shape[-2:])} is not factor ({fy}, {fx}) × "
            f"the coarse grid {tuple(coarse.shape[-2:])} (expected {want})"
        )
    return fy, fx


def conserve_additive(fine, coarse, factor, weights=None) -> torch.Tensor:
    """y = ỹ + up(c − M(ỹ)): block means equal ``coarse`` exactly (signed fields)."""
    _check_shapes(fine, coarse, factor)
    correction = coarse - coarsen_tensor(fine, factor, weights)
    return fine + block_upsample(correction, factor)


def conserve_multiplicative(fine, coarse, factor, weights=None) -> torch.Tensor:
    """y = ỹ⁺ · up(c / M(ỹ⁺)), ỹ⁺ = max(ỹ, 0): non-negative output with block means ``coarse``.

    A block whose ỹ⁺ is zero everywhere gets the constant c_B. Raises
    :class:`ClimgenInputError` when ``coarse`` has negative values (the field is not
    non-negative: use the additive layer).
    """
    _check_shapes(fine, coarse, factor)
    if bool((coarse < 0).any()):
        raise ClimgenInputError(
            f"multiplicative conservation needs a non-negative coarse field, but its minimum "
            f"is {float(coarse.min()):.4g}; use conserve='additive' for signed fields"
        )
    positive = fine.clamp(min=0)
    mean = coarsen_tensor(positive, factor, weights)
    empty = mean <= 0
    ratio = torch.where(empty, torch.zeros_like(mean), coarse / torch.where(empty, 1, mean))
    fill = torch.where(empty, coarse, torch.zeros_like(coarse))
    return positive * block_upsample(ratio, factor) + block_upsample(fill, factor)


def conserve_softmax(logits, coarse, factor, weights=None) -> torch.Tensor:
    """y = c · exp(ỹ) / M(exp(ỹ)) per block (Harder et al. 2023, SmCL), numerically stable.

    The block maximum is subtracted before the exponential (it cancels in the ratio).
    """
    fy, fx = _check_shapes(logits, coarse, factor)
    lead, (big_h, big_w) = logits.shape[:-2], logits.shape[-2:]
    blocks = logits.reshape(*lead, big_h // fy, fy, big_w // fx, fx)
    peak = blocks.amax(dim=(-3, -1), keepdim=True).detach()
    e = (blocks - peak).exp().reshape(*lead, big_h, big_w)
    return e * block_upsample(coarse / coarsen_tensor(e, factor, weights), factor)


_LAYERS = {
    "additive": conserve_additive,
    "multiplicative": conserve_multiplicative,
    "softmax": conserve_softmax,
}


def conserve(fine, coarse, factor, weights=None, mode: str = "additive") -> torch.Tensor:
    """Apply the conservation layer ``mode`` (one of :data:`CONSERVATION_MODES`).

    ``fine`` (..., fy·ny, fx·nx) and ``coarse`` (..., ny, nx) tensors; ``weights`` broadcast
    against the fine (H, W): (H, W), (H, 1) or per-row (H,), None for uniform.
    """
    if mode not in _LAYERS:
        raise ClimgenInputError(
            f"unknown conservation mode {mode!r}; choose one of {', '.join(CONSERVATION_MODES)}"
        )
    return _LAYERS[mode](fine, coarse, factor, weights)
