"""Cut patches out of ``(..., H, W)`` tensors, wrapping around periodic axes.

A patch of size ``(h, w)`` at offset ``(i, j)`` holds rows ``(i + a) mod H`` and columns
``(j + b) mod W`` for ``a < h, b < w``. On a periodic axis (longitude, the RBC x axis) every
offset ``0 … H - 1`` is allowed and the patch wraps; on a bounded axis (latitude, walls)
offsets stop at ``H - h`` and a patch larger than the axis is an error. Indexing is one
gather (no Python loop over patches), so it is differentiable and works on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from climgen.errors import ClimgenInputError

__all__ = ["random_patch", "extract_patches", "patch_offsets", "patch_size_pair"]


def patch_size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as ``(h, w)``; an int means a square patch."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError) as exc:
            raise ClimgenInputError(
                f"patch size must be an int or a pair (h, w), got {size!r}"
            ) from exc
    if h < 1 or w < 1:
        raise ClimgenInputError(f"patch size must be positive, got ({h}, {w})")
    return h, w


def _check_fits(n: int, p: int, periodic: bool, axis: str) -> None:
    if p > n and not periodic:
        raise ClimgenInputError(
            f"patch {axis} {p} is larger than the non-periodic {axis} axis of size {n}"
        )


def _max_offset(n: int, p: int, periodic: bool) -> int:
    """Number of distinct offsets along one axis."""
    return n if periodic else n - p + 1


def _gather(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``x[..., rows[:, None], cols[None, :]]`` for index vectors rows (h,), cols (w,)."""
    return x.index_select(-2, rows).index_select(-1, cols)


def random_patch(
    x: torch.Tensor,
    size: int | tuple[int, int],
    rng: np.random.Generator | torch.Generator | int | None = None,
    periodic_x: bool = False,
    periodic_y: bool = False,
    *,
    return_offset: bool = False,
):
    """One patch of ``x`` (shape ``(..., H, W)``) at a uniformly random offset.

    ``rng`` is a numpy Generator, a torch Generator, a seed or ``None`` (fresh entropy).
    Returns the ``(..., h, w)`` patch, and the offset ``(i, j)`` when ``return_offset``.
    """
    h, w = patch_size_pair(size)
    big_h, big_w = x.shape[-2], x.shape[-1]
    _check_fits(big_h, h, periodic_y, "height")
    _check_fits(big_w, w, periodic_x, "width")
    n_i, n_j = _max_offset(big_h, h, periodic_y), _max_offset(big_w, w, periodic_x)
    if isinstance(rng, torch.Generator):
        i = int(torch.randint(n_i, (1,), generator=rng))
        j = int(torch.randint(n_j, (1,), generator=rng))
    else:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        i, j = (int(v) for v in gen.integers(0, (n_i, n_j)))
    rows = (torch.arange(h, device=x.device) + i) % big_h
    cols = (torch.arange(w, device=x.device) + j) % big_w
    patch = _gather(x, rows, cols)
    return (patch, (i, j)) if return_offset else patch


def patch_offsets(
    shape: tuple[int, int],
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    periodic_x: bool = False,
    periodic_y: bool = False,
) -> tuple[list[int], list[int]]:
    """Row and column offsets of the patches that tile a ``shape`` field.

    Offsets step by ``stride`` (default: the patch size, i.e. non-overlapping). On a bounded
    axis a last patch flush with the far edge is added so every point is covered; on a
    periodic axis offsets run up to ``n - 1`` and the last patch wraps.
    """
    h, w = patch_size_pair(size)
    sh, sw = patch_size_pair(stride if stride is not None else (h, w))
    out = []
    for n, p, s, periodic, axis in (
        (shape[0], h, sh, periodic_y, "height"),
        (shape[1], w, sw, periodic_x, "width"),
    ):
        _check_fits(n, p, periodic, axis)
        if periodic:
            offsets = list(range(0, n, s))
        else:
            offsets = list(range(0, n - p + 1, s))
            if offsets[-1] != n - p:
                offsets.append(n - p)
        out.append(offsets)
    return out[0], out[1]


def extract_patches(
    x: torch.Tensor,
    size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    periodic_x: bool = False,
    periodic_y: bool = False,
    *,
    return_offsets: bool = False,
):
    """All patches tiling ``x`` (shape ``(..., H, W)``), stacked as ``(P, ..., h, w)``.

    Patch order is row-major over the offsets of :func:`patch_offsets`. With
    ``return_offsets`` also returns the list of ``(i, j)`` offsets.
    """
    h, w = patch_size_pair(size)
    big_h, big_w = x.shape[-2], x.shape[-1]
    rows0, cols0 = patch_offsets((big_h, big_w), (h, w), stride, periodic_x, periodic_y)
    rows = (
        torch.tensor(rows0, device=x.device)[:, None] + torch.arange(h, device=x.device)
    ) % big_h
    cols = (
        torch.tensor(cols0, device=x.device)[:, None] + torch.arange(w, device=x.device)
    ) % big_w
    # (..., Py, h, W) then (..., Py, h, Px, w)
    picked = x.index_select(-2, rows.reshape(-1)).unflatten(-2, rows.shape)
    picked = picked.index_select(-1, cols.reshape(-1)).unflatten(-1, cols.shape)
    lead = x.ndim - 2
    # (..., Py, h, Px, w) -> (Py, Px, ..., h, w) -> (P, ..., h, w)
    order = [lead, lead + 2, *range(lead), lead + 1, lead + 3]
    patches = picked.permute(*order).reshape(-1, *x.shape[:-2], h, w)
    if return_offsets:
        return patches, [(i, j) for i in rows0 for j in cols0]
    return patches
