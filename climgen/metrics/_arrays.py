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

from climgen.errors import ClimgenInputError

__all__ = ["as_tensor", "to_like", "check_finite"]


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
    return torch.from_numpy(np.ascontiguousarray(arr)), "numpy"


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
