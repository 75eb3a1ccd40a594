"""Tiled inference for super-resolution nets: overlapping tiles with a halo, smoothly blended.

The coarse input is cut into *core* tiles of ``tile`` × ``tile`` coarse cells that overlap by
``overlap`` cells. Each core is extended by a ``halo`` of context on every side (wrapping
around periodic axes, clipped at the edges of bounded ones), the network runs on the
extended tile, and only the core of its output is kept. With ``halo`` ≥ the network's
receptive radius (:attr:`climgen.families.superres.SRResNet.receptive_radius`) every kept cell
saw exactly what it sees on the whole field, so tiled and untiled outputs agree to rounding.
Cores are blended with weights that ramp smoothly (raised cosine, floor 10⁻³) over the
overlaps, Σ w·y / Σ w, which hides seams when a smaller halo is chosen to save time.

:func:`auto_tile` picks the tile and batch size from the memory psutil reports as available.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from climgen.errors import ClimgenInputError

__all__ = ["tile_starts", "blend_window", "tiled_apply", "auto_tile"]


def tile_starts(n: int, tile: int, overlap: int, periodic: bool) -> list[int]:
    """Start indices of cores of length ``tile`` overlapping by ``overlap`` over an axis of n.

    Bounded axes: starts in [0, n − tile] with the last core flush with the edge. Periodic
    axes: starts i·(tile − overlap) until the cores cover the circle (the last may wrap).
    """
    if tile >= n:
        return [0]
    step = tile - overlap
    if step < 1:
        raise ClimgenInputError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    if periodic:
        return [i * step for i in range(math.ceil(n / step))]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def blend_window(length: int, ramp: int, lo_edge: bool, hi_edge: bool, dtype) -> torch.Tensor:
    """Weights over a core: 1 inside, raised-cosine ramps of ``ramp`` cells at interior sides."""
    w = torch.ones(length, dtype=dtype)
    if ramp <= 0:
        return w
    r = min(ramp, length)
    rise = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(r, dtype=dtype) + 0.5) / r)
    if not lo_edge:
        w[:r] = torch.minimum(w[:r], rise)
    if not hi_edge:
        w[length - r :] = torch.minimum(w[length - r :], rise.flip(0))
    return w.clamp(min=1e-3)


def _axis_tiles(n: int, tile: int, overlap: int, halo: int, periodic: bool, align: int = 1):
    """Per tile along one axis: (extended coarse indices, core offset in them, core indices).

    ``align`` > 1: every extended tile starts at a multiple of ``align`` (tile, overlap and
    halo are multiples of it; on a bounded axis the last core starts at a multiple and runs
    to the edge)."""
    if tile >= n or (periodic and tile + 2 * halo >= n):
        full = torch.arange(n)
        return [(full, 0, full, True, True)]
    out = []
    starts = tile_starts(n, tile, overlap, periodic)
    if align > 1 and not periodic:
        starts = sorted({s // align * align for s in starts})
    for i, start in enumerate(starts):
        last = align > 1 and not periodic and i == len(starts) - 1
        core = torch.arange(start, n if last else start + tile)
        if periodic:
            ext = torch.arange(start - halo, start + tile + halo) % n
            offset, core = halo, core % n
            lo_edge = hi_edge = False
        else:
            a, b = max(0, start - halo), min(n, start + core.numel() + halo)
            ext, offset = torch.arange(a, b), start - a
            lo_edge, hi_edge = start == 0, start + core.numel() == n
        out.append((ext, offset, core, lo_edge, hi_edge))
    return out


def _fine_index(coarse_index: torch.Tensor, factor: int) -> torch.Tensor:
    return (coarse_index[:, None] * factor + torch.arange(factor)).reshape(-1)


def tiled_apply(
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    coarse: torch.Tensor,
    fine_extra: torch.Tensor | None,
    factor: int,
    *,
    tile: int,
    halo: int,
    overlap: int | None = None,
    periodic: tuple[bool, bool] = (False, False),
    out_channels: int | None = None,
    align: int = 1,
) -> torch.Tensor:
    """``fn(coarse_tile, fine_extra_tile) → fine_tile`` over the whole field, tile by tile.

    ``coarse`` (B, Cc, h, w), ``fine_extra`` (B, Cf, f·h, f·w) or None (static fields and
    noise drawn for the *whole* field, so tiling does not change them). ``tile`` and
    ``halo`` are in coarse cells; ``overlap`` defaults to max(1, tile // 8). ``align``: tile,
    overlap and halo rounded up to multiples of it and every extended tile starting at a
    multiple of it (for nets equivariant only to such shifts, e.g. strided U-Nets).
    Returns (B, out_channels, f·h, f·w).
    """
    if tile < 1 or halo < 0 or align < 1:
        raise ClimgenInputError(
            f"tile and align must be ≥ 1 and halo ≥ 0, got tile={tile}, halo={halo}, align={align}"
        )
    b, _, h, w = coarse.shape
    overlap = max(1, tile // 8) if overlap is None else int(overlap)
    overlap = min(overlap, tile - 1)
    if align > 1:
        tile, halo = -(-tile // align) * align, -(-halo // align) * align
        overlap = -(-overlap // align) * align if overlap else 0
        tile = max(tile, overlap + align)
    rows = _axis_tiles(h, tile, overlap, halo, periodic[0], align)
    cols = _axis_tiles(w, tile, overlap, halo, periodic[1], align)
    out = acc = None
    for ext_y, off_y, core_y, lo_y, hi_y in rows:
        for ext_x, off_x, core_x, lo_x, hi_x in cols:
            c_tile = coarse.index_select(2, ext_y).index_select(3, ext_x)
            f_tile = None
            if fine_extra is not None:
                f_tile = fine_extra.index_select(2, _fine_index(ext_y, factor))
                f_tile = f_tile.index_select(3, _fine_index(ext_x, factor))
            y = fn(c_tile, f_tile)
            if out is None:
                channels = out_channels or y.shape[1]
                out = torch.zeros(b, channels, h * factor, w * factor, dtype=y.dtype)
                acc = torch.zeros(h * factor, w * factor, dtype=y.dtype)
            ty, tx = core_y.numel() * factor, core_x.numel() * factor
            core = y[
                ..., off_y * factor : off_y * factor + ty, off_x * factor : off_x * factor + tx
            ]
            ramp = overlap * factor
            wy = blend_window(ty, ramp, lo_y, hi_y, y.dtype)
            wx = blend_window(tx, ramp, lo_x, hi_x, y.dtype)
            weight = wy[:, None] * wx[None, :]
            iy, ix = _fine_index(core_y, factor), _fine_index(core_x, factor)
            grid = (iy[:, None], ix[None, :])
            out[:, :, grid[0], grid[1]] += (core * weight).to(out.device)
            acc[grid[0], grid[1]] += weight
    return out / acc


def auto_tile(
    coarse_shape: tuple[int, int],
    factor: int,
    width: int,
    halo: int,
    *,
    n_fields: int = 1,
    bytes_per_value: int = 4,
    memory_fraction: float = 0.25,
    available: int | None = None,
    maps: float = 6,
) -> tuple[int | None, int]:
    """(tile, batch): the largest tiling and batch that fit in ``memory_fraction`` of RAM.

    The forward pass holds about ``maps`` = 6 feature maps of ``width`` channels on the fine
    grid per field (pixel shuffle input and output, fused features, residual branches), so one
    field of fine size H×W costs ≈ maps·width·H·W·bytes. Returns ``tile=None`` when whole fields fit
    (with the batch of fields that fits, ≥ 1), else a square core tile in coarse cells
    (≥ 2·halo, ≥ 8) with batch 1. ``available`` defaults to psutil's available memory.
    """
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    budget = memory_fraction * available
    per_cell = maps * width * bytes_per_value * factor * factor  # bytes per coarse cell
    h, w = coarse_shape
    whole = per_cell * h * w
    if whole <= budget:
        return None, int(max(1, min(n_fields, budget // whole)))
    side = int(math.sqrt(budget / per_cell)) - 2 * halo
    return max(side, 2 * halo, 8), 1
