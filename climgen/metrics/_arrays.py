"""Conversion between numpy, torch and xarray so that each metric is written once.

Metrics compute in torch (so losses can use the same, differentiable definition). numpy
input is computed in float64 (float32 arrays stay float32, to halve memory and time on large
sets) and returned as numpy; torch input keeps its dtype, device and autograd graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError

__all__ = [
    "as_tensor",
    "to_like",
    "check_finite",
    "prepare",
    "prepare_weights",
    "common_kind",
    "scalar_like",
    "check_same_shape",
]


def as_tensor(x: Any, name: str = "field") -> tuple[torch.Tensor, str]:
    """Return ``(tensor, kind)`` with kind in {"torch", "numpy"}; DataArrays give their values."""
    if isinstance(x, torch.Tensor):
        return x, "torch"
    if isinstance(x, xr.DataArray):
        x = x.values
    try:
        arr = np.asarray(x)
        if arr.dtype != np.float32:
            arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise ClimgenInputError(
            f"{name}: expected a numpy array, torch tensor or DataArray, got {type(x).__name__}"
        ) from exc
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        # torch.from_numpy refuses negative strides and warns on read-only memory.
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr), "numpy"


def to_like(t: torch.Tensor, kind: str):
    """Return ``t`` as the kind given by :func:`as_tensor` (numpy input → numpy output)."""
    if kind == "numpy":
        return t.detach().cpu().numpy()
    return t


def check_finite(t: torch.Tensor, name: str = "field") -> None:
    """Raise :class:`ClimgenInputError` if ``t`` holds NaN or inf, saying how many."""
    # A sum is finite iff every term is (barring overflow): one cheap reduction in the
    # common case, the element-wise check only to count the culprits.
    if bool(torch.isfinite(t.detach().sum())):
        return
    bad = ~torch.isfinite(t.detach())
    if bool(bad.any()):
        n = int(bad.sum())
        raise ClimgenInputError(
            f"{name} contains {n} non-finite value(s) (NaN or inf) out of {t.numel()}; "
            "mask or fill them first (climgen.data.masks derives a mask from NaNs)"
        )


def prepare(x: Any, name: str, weights: Any = None, weights_name: str = "weights"):
    """Return ``(tensor, kind, weights tensor or None)`` for a field argument.

    DataArrays are brought to canonical orientation (spatial dims last, latitude ascending)
    and, when ``weights`` is None, get cos-lat area weights. Non-finite values raise
    :class:`ClimgenInputError` naming ``name``.
    """
    derived = None
    if isinstance(x, xr.DataArray):
        if x.ndim >= 2:
            x, _ = grids.to_canonical(x)
            if weights is None:
                derived = grids.area_weights(x).values
        x = x.values
    t, kind = as_tensor(x, name)
    check_finite(t, name)
    w = prepare_weights(weights if weights is not None else derived, t, weights_name, name)
    return t, kind, w


def prepare_weights(weights: Any, t: torch.Tensor, weights_name: str, field_name: str):
    """Weights as a tensor broadcast to ``t`` (same dtype/device), or None."""
    if weights is None:
        return None
    if isinstance(weights, xr.DataArray) and weights.ndim == 2:
        try:
            weights, _ = grids.to_canonical(weights)
        except ClimgenInputError:
            pass  # plain (ny, nx) weights without recognisable dims: take them as given
    if isinstance(weights, xr.DataArray):
        weights = weights.values
    w, _ = as_tensor(weights, weights_name)
    check_finite(w, weights_name)
    w = w.to(dtype=t.dtype, device=t.device)
    if bool((w < 0).any()):
        raise ClimgenInputError(f"{weights_name} has negative values; weights must be >= 0")
    try:
        w = torch.broadcast_to(w, t.shape)
    except RuntimeError as exc:
        raise ClimgenInputError(
            f"{weights_name} of shape {tuple(w.shape)} does not broadcast to {field_name} "
            f"of shape {tuple(t.shape)}; give weights over the trailing (ny, nx) dims"
        ) from exc
    if not bool(w.sum() > 0):
        raise ClimgenInputError(f"{weights_name} is zero everywhere: nothing would be scored")
    return w


def common_kind(a: torch.Tensor, ka: str, b: torch.Tensor, kb: str):
    """Put two tensors on one dtype/device; the output kind is torch if either input is."""
    if ka == "torch":
        b = b.to(dtype=a.dtype, device=a.device)
        return a, b, "torch"
    if kb == "torch":
        a = a.to(dtype=b.dtype, device=b.device)
        return a, b, "torch"
    return a, b, "numpy"


def scalar_like(t: torch.Tensor, kind: str):
    """A 0-d tensor as a python float (numpy kind) or as it is (torch kind)."""
    return float(t.detach()) if kind == "numpy" else t


def check_same_shape(gen: torch.Tensor, ref: torch.Tensor, gen_name: str, ref_name: str) -> None:
    if gen.shape != ref.shape:
        raise ClimgenInputError(
            f"{gen_name} has shape {tuple(gen.shape)} but {ref_name} has shape "
            f"{tuple(ref.shape)}; they must match"
        )


def periodic_pair(field: Any, periodic) -> tuple[bool, bool]:
    """``(periodic_y, periodic_x)`` from a bool, a pair, or (``None``) the grid of a DataArray
    (:func:`climgen.data.grids.detect_grid`); plain arrays default to not periodic."""
    if periodic is None:
        if isinstance(field, xr.DataArray) and field.ndim >= 2:
            g = grids.detect_grid(field)
            return bool(g.periodic_y), bool(g.periodic_x)
        return False, False
    if isinstance(periodic, bool):
        return periodic, periodic
    try:
        py, px = periodic
    except (TypeError, ValueError) as exc:
        raise ClimgenInputError(
            f"periodic must be a bool or a pair (periodic_y, periodic_x), got {periodic!r}"
        ) from exc
    return bool(py), bool(px)
