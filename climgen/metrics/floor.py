"""Noise floor of a distance and the verdict in words that compares a distance with it.

A distance d(generated, reference) means little on its own: two independent samples of the
*same* distribution are at a non-zero distance too. The noise floor is that distance between
two halves of the reference data; a model "matches" the reference where d ≤ 2 × floor
(docs/diagnostics.md §11). Because each half holds only half the samples, the floor is a
slightly generous (larger) estimate of the sampling noise of a full-size comparison — for
√n-convergent distances such as W1 or KS about √2 × that of two full-size samples.

Reference: Efron & Tibshirani (1993) *An Introduction to the Bootstrap*, ch. 6.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = ["noise_floor", "Verdict", "verdict", "NOISE_FLOOR_METHODS"]

NOISE_FLOOR_METHODS = ("halves", "random", "bootstrap")


def _length(reference: Any, axis) -> tuple[int, Any]:
    if isinstance(reference, xr.DataArray):
        dim = axis if isinstance(axis, str) else None
        if dim is None:
            try:
                dim = reference.dims[axis]
            except (IndexError, TypeError) as exc:
                raise ClimgenInputError(
                    f"sample_axis {axis!r} is not a dim of reference {reference.dims}"
                ) from exc
        if dim not in reference.dims:
            raise ClimgenInputError(f"sample dim '{dim}' not in reference dims {reference.dims}")
        return reference.sizes[dim], dim
    if isinstance(axis, str):
        raise ClimgenInputError("sample_axis can be a dim name only for a DataArray reference")
    shape = tuple(reference.shape) if hasattr(reference, "shape") else np.shape(reference)
    if not shape or not -len(shape) <= axis < len(shape):
        raise ClimgenInputError(f"sample_axis {axis} out of range for reference shape {shape}")
    return shape[axis], axis % len(shape)


def _take(reference: Any, axis, index: np.ndarray):
    if isinstance(reference, xr.DataArray):
        return reference.isel({axis: index})
    if isinstance(reference, torch.Tensor):
        return torch.index_select(reference, axis, torch.as_tensor(index, device=reference.device))
    return np.take(np.asarray(reference), index, axis=axis)


def noise_floor(
    distance: Callable[[Any, Any], Any],
    reference: Any,
    *,
    sample_axis: int | str = 0,
    method: str = "halves",
    n_boot: int = 20,
    rng: Any = None,
) -> float:
    """The distance between two halves of the reference: what sampling noise alone gives.

    ``distance(a, b)`` is any metric of this package (e.g. :func:`wasserstein1`, or a lambda
    around :func:`covariance_error`); it receives parts of ``reference`` of the same type
    (DataArrays stay DataArrays, so area weights still apply). Methods:

    - ``"halves"``: d(first half, second half) along ``sample_axis`` — contiguous halves, so
      temporal correlation does not make the floor look smaller than it is.
    - ``"random"``: mean over ``n_boot`` random splits into two disjoint halves.
    - ``"bootstrap"``: mean over ``n_boot`` draws of d(R₁*, R₂*), two independent
      with-replacement resamples of n // 2 samples each (repeated samples make this a little
      lower than ``"random"``).

    ``sample_axis`` is an int, or a dim name for DataArrays; ``rng`` a seed or
    :class:`numpy.random.Generator`. Returns a python float.
    """
    if method not in NOISE_FLOOR_METHODS:
        raise ClimgenInputError(f"method must be one of {NOISE_FLOOR_METHODS}, got {method!r}")
    n, axis = _length(reference, sample_axis)
    if n < 4:
        raise ClimgenInputError(
            f"reference has {n} samples along the sample axis; a noise floor needs at least 4"
        )
    half = n // 2
    if method == "halves":
        a = _take(reference, axis, np.arange(half))
        b = _take(reference, axis, np.arange(half, 2 * half))
        return float(distance(a, b))
    if int(n_boot) < 1:
        raise ClimgenInputError(f"n_boot must be a positive integer, got {n_boot}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    values = []
    for _ in range(int(n_boot)):
        if method == "random":
            perm = gen.permutation(n)
            ia, ib = np.sort(perm[:half]), np.sort(perm[half : 2 * half])
        else:
            ia, ib = gen.integers(0, n, half), gen.integers(0, n, half)
        values.append(float(distance(_take(reference, axis, ia), _take(reference, axis, ib))))
    return float(np.mean(values))


class Verdict(str):
    """A verdict sentence (a ``str``) that also carries its numbers.

    Attributes: ``level`` ("matches", "close" or "differs"), ``ratio`` (d / floor; inf when
    the floor is 0 and d > 0), ``distance`` and ``floor``.
    """

    level: str
    ratio: float
    distance: float
    floor: float

    def __new__(cls, text: str, *, level: str, ratio: float, distance: float, floor: float):
        obj = super().__new__(cls, text)
        obj.level, obj.ratio, obj.distance, obj.floor = level, ratio, distance, floor
        return obj


def _format_ratio(ratio: float) -> str:
    if ratio < 10:
        return f"{ratio:.1f}"
    return f"{ratio:.0f}" if ratio < 1e4 else f"{ratio:.1e}"


def verdict(d: Any, floor: Any, factor: float = 2.0, close_factor: float = 5.0) -> Verdict:
    """Say in words how a distance compares with its noise floor.

    - ratio = d / floor ≤ ``factor``: "matches the reference (within 2× the noise floor)"
    - ≤ ``close_factor``: "close (within 5×)"
    - otherwise: "differs (X× the noise floor)"

    With a zero floor, d = 0 matches and d > 0 differs ("differs (noise floor is 0)").
    Returns a :class:`Verdict`, which is the sentence as a ``str``.
    """
    d, floor = float(d), float(floor)
    if not (math.isfinite(d) and d >= 0):
        raise ClimgenInputError(f"distance d must be finite and >= 0, got {d}")
    if not (math.isfinite(floor) and floor >= 0):
        raise ClimgenInputError(f"noise floor must be finite and >= 0, got {floor}")
    if not 0 < factor <= close_factor:
        raise ClimgenInputError(
            f"need 0 < factor <= close_factor, got factor={factor}, close_factor={close_factor}"
        )
    if floor == 0:
        ratio = 0.0 if d == 0 else math.inf
    else:
        ratio = d / floor
    if ratio <= factor:
        level, text = "matches", f"matches the reference (within {factor:g}× the noise floor)"
    elif ratio <= close_factor:
        level, text = "close", f"close (within {close_factor:g}×)"
    elif math.isinf(ratio):
        level, text = "differs", f"differs (noise floor is 0, distance {d:.3g})"
    else:
        level, text = "differs", f"differs ({_format_ratio(ratio)}× the noise floor)"
    return Verdict(text, level=level, ratio=ratio, distance=d, floor=floor)
