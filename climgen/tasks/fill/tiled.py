"""Gap filling tile by tile: a mask-aware network run on overlapping tiles with a halo.

Reuses the downscaling tiler (:func:`climgen.tasks.downscale.tiles.tiled_apply`, factor 1):
the field and its coverage mask travel together as channels, each core tile is extended by
``halo`` cells of context (wrapping around periodic axes, clipped at bounded edges), the
network fills the extended tile and only the core is kept; cores are blended over their
overlaps. Observed cells are then put back, ``M x + (1 − M) x̂``, as in an untiled fill.

Exactness: for a translation-equivariant network (stride-1 partial convolutions, as
:class:`~climgen.nn.partialconv.PartialConv2d` stacks) whose receptive radius
R = Σ dilation·⌊k/2⌋ is ≤ ``halo``, every kept cell sees exactly what it sees on the whole
field, so tiled equals untiled to rounding (tested). The partial-conv U-Net
(:class:`~climgen.nn.partialconv.PartialConvUNet`) is built for one grid shape and its
stride-2 levels are equivariant only to shifts by 2^levels, so for it tiling is an
approximation whose seams the blending hides; give it tiles of its own shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from climgen.errors import ClimgenInputError
from climgen.tasks.downscale.tiles import tiled_apply

__all__ = ["tiled_fill"]


def tiled_fill(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    tile: int,
    halo: int,
    overlap: int | None = None,
    periodic: tuple[bool, bool] = (False, True),
) -> torch.Tensor:
    """``predict(x_tile, mask_tile) → (B, C, h, w)`` over the whole field, tile by tile.

    ``x`` (B, C, H, W) with anything (even NaN) at hidden cells, ``mask`` (B, 1|C, H, W),
    1 = observed; ``tile`` and ``halo`` in grid cells (``overlap`` defaults to
    max(1, tile // 8)). Returns the composite ``M x + (1 − M) x̂`` (B, C, H, W). Memory: one
    extended tile's activations plus the output, whatever the grid.
    """
    if x.ndim != 4 or mask.ndim != 4 or mask.shape[-2:] != x.shape[-2:]:
        raise ClimgenInputError(
            f"tiled_fill needs x (B, C, H, W) and mask (B, 1|C, H, W) on the same grid, got "
            f"{tuple(x.shape)} and {tuple(mask.shape)}"
        )
    if mask.shape[1] not in (1, x.shape[1]):
        raise ClimgenInputError(
            f"mask has {mask.shape[1]} channels; it needs 1 or x's {x.shape[1]}"
        )
    c = x.shape[1]
    observed = mask.to(x.dtype)
    # Hidden values never reach the network (a NaN there would survive the blending sums).
    packed = torch.cat([torch.where(observed > 0, x, torch.zeros_like(x)), observed], 1)
    out = tiled_apply(
        lambda t, _: predict(t[:, :c], t[:, c:]),
        packed,
        None,
        1,
        tile=tile,
        halo=halo,
        overlap=overlap,
        periodic=periodic,
    )
    return torch.where(observed.expand_as(out) > 0, x, out.to(x.dtype))
