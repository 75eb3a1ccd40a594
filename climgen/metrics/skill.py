"""Paired skill scores: area-weighted RMSE, MAE, bias and anomaly correlation.

``pred`` and ``target`` have the same shape ``(..., ny, nx)``. ``weights`` (broadcastable,
usually ``(ny, nx)``) are area weights, cos-lat derived when DataArrays are passed. ``mask``
(broadcastable to the field, 1 = score this point, 0 = ignore) restricts the score, e.g. to
the points that were hidden from a gap-filling model. Every score is a weighted mean over all
points and samples: Σ wᵢ mᵢ eᵢ / Σ wᵢ mᵢ.

References: Wilks (2011) *Statistical Methods in the Atmospheric Sciences*, 3rd ed., §8.6;
Rasp et al. (2020), WeatherBench, JAMES 12 (latitude-weighted RMSE and ACC).
"""

from __future__ import annotations

from typing import Any

import torch

from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import (
    check_same_shape,
    common_kind,
    prepare,
    prepare_weights,
    scalar_like,
)

__all__ = ["rmse", "mae", "bias", "acc"]


def _paired(pred: Any, target: Any, weights: Any, mask: Any):
    tp, kp, wp = prepare(pred, "pred", weights)
    tt, kt, wt = prepare(target, "target", weights)
    tp, tt, kind = common_kind(tp, kp, tt, kt)
    check_same_shape(tp, tt, "pred", "target")
    w = wp if wp is not None else wt
    w = torch.ones_like(tp) if w is None else w.to(dtype=tp.dtype, device=tp.device)
    if mask is not None:
        m = prepare_weights(mask, tp, "mask", "pred")
        w = w * (m != 0).to(tp.dtype)
        if not bool(w.sum() > 0):
            raise ClimgenInputError("mask selects no points with non-zero weight: nothing to score")
    return tp, tt, w, kind


def _wmean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (x * w).sum() / w.sum()


def rmse(pred: Any, target: Any, *, weights: Any = None, mask: Any = None):
    r"""Root-mean-square error :math:`\sqrt{\sum w (p - t)^2 / \sum w}` (field units)."""
    tp, tt, w, kind = _paired(pred, target, weights, mask)
    return scalar_like(_wmean((tp - tt) ** 2, w).sqrt(), kind)


def mae(pred: Any, target: Any, *, weights: Any = None, mask: Any = None):
    r"""Mean absolute error :math:`\sum w |p - t| / \sum w` (field units)."""
    tp, tt, w, kind = _paired(pred, target, weights, mask)
    return scalar_like(_wmean((tp - tt).abs(), w), kind)


def bias(pred: Any, target: Any, *, weights: Any = None, mask: Any = None):
    r"""Mean error :math:`\sum w (p - t) / \sum w` (field units; > 0 means pred too high)."""
    tp, tt, w, kind = _paired(pred, target, weights, mask)
    return scalar_like(_wmean(tp - tt, w), kind)


def acc(pred: Any, target: Any, climatology: Any, *, weights: Any = None, mask: Any = None):
    r"""Anomaly correlation coefficient, area-weighted, averaged over samples.

    With anomalies :math:`a = p - c`, :math:`b = t - c` (c the climatology, broadcastable to
    the field), per sample (leading dims; the last two are space):

    .. math:: \mathrm{ACC} = \frac{\sum w a b}{\sqrt{\sum w a^2 \sum w b^2}}

    — the uncentred form used by WeatherBench (Rasp et al. 2020) — then the plain mean
    over samples. A 2-D input is one sample. Dimensionless in [-1, 1].
    """
    tp, tt, w, kind = _paired(pred, target, weights, mask)
    tc, _, _ = prepare(climatology, "climatology")
    tc = tc.to(dtype=tp.dtype, device=tp.device)
    try:
        tc = torch.broadcast_to(tc, tp.shape)
    except RuntimeError as exc:
        raise ClimgenInputError(
            f"climatology of shape {tuple(tc.shape)} does not broadcast to pred of shape "
            f"{tuple(tp.shape)}"
        ) from exc
    if tp.ndim < 2:
        raise ClimgenInputError(f"acc needs fields shaped (..., ny, nx), got {tuple(tp.shape)}")
    a, b = tp - tc, tt - tc
    dims = (-2, -1)
    num = (w * a * b).sum(dim=dims)
    den = ((w * a * a).sum(dim=dims) * (w * b * b).sum(dim=dims)).sqrt()
    if not bool((den > 0).all()):
        raise ClimgenInputError(
            "acc is undefined for a sample whose pred or target anomaly is zero everywhere "
            "(pred or target equals the climatology)"
        )
    return scalar_like((num / den).mean(), kind)
