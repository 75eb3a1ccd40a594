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
(:class:`~climgen.nn.partialconv.PartialConvUNet`) has stride-2 levels, equivariant only to
shifts by 2^levels: :func:`tiled_unet_infill` aligns the tiles to that and cuts noise drawn
for the whole field, and is exact too (tested; the one limit is in its docstring).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from climgen.errors import ClimgenInputError
from climgen.tasks.downscale.tiles import tiled_apply

__all__ = ["tiled_fill", "tiled_unet_infill"]


def tiled_fill(
    predict: Callable[..., torch.Tensor],
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    tile: int,
    halo: int,
    overlap: int | None = None,
    periodic: tuple[bool, bool] = (False, True),
    extra: torch.Tensor | None = None,
    align: int = 1,
) -> torch.Tensor:
    """``predict(x_tile, mask_tile[, extra_tile]) → (B, C, h, w)`` over the whole field, tile
    by tile.

    ``x`` (B, C, H, W) with anything (even NaN) at hidden cells (when ``predict`` returns
    K < C channels, the first K are the field and the others inputs only), ``mask``
    (B, 1|C, H, W), 1 = observed; ``tile`` and ``halo`` in grid cells (``overlap`` defaults to
    max(1, tile // 8)); ``extra`` (B, E, H, W): more inputs cut into the same tiles (noise
    drawn for the whole field); ``align``: see :func:`~climgen.tasks.downscale.tiles.
    tiled_apply`. Returns the composite ``M x + (1 − M) x̂`` (B, C, H, W). Memory: one
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
        lambda t, e: predict(t[:, :c], t[:, c:]) if e is None else predict(t[:, :c], t[:, c:], e),
        packed,
        extra,
        1,
        tile=tile,
        halo=halo,
        overlap=overlap,
        periodic=periodic,
        align=align,
    )
    k = out.shape[1]  # the first k channels of x are the field, the others inputs only
    seen = observed if observed.shape[1] == 1 else observed[:, :k]
    return torch.where(seen.expand_as(out) > 0, x[:, :k], out.to(x.dtype))


def tiled_unet_infill(
    family,
    x: torch.Tensor,
    mask: torch.Tensor,
    cond: torch.Tensor | None = None,
    cond_mask: torch.Tensor | None = None,
    *,
    tile: int,
    halo: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:meth:`PartialConvInfiller.infill <climgen.families.infill.PartialConvInfiller.infill>`
    of ``family`` over the whole field, tile by tile (``tile``, ``halo`` in grid cells).

    The tiles are aligned to the U-Net's 2^levels (:attr:`~climgen.nn.partialconv.
    PartialConvUNet.align`), so each tile's strided levels are sub-grids of the whole field's;
    ``halo`` defaults to the net's :attr:`~climgen.nn.partialconv.PartialConvUNet.
    receptive_radius`. A stochastic (CRPS) net's noise is drawn for the whole field, in the
    order and shapes of an untiled call with ``generator``, and cut into the same tiles (one
    channel per level, repeated over each coarse cell's 2^l × 2^l block). Then, when the
    periodic axis is a multiple of ``align`` (or is not cut), the result equals the untiled
    one to rounding, noise included (tested); otherwise tiles across the longitude seam see the
    untiled net's own ⌈n/2⌉ seam differently.
    """
    net = family.net
    halo = net.receptive_radius if halo is None else int(halo)
    channels = x.shape[1]
    masks = [mask.to(x.dtype).expand(-1, channels, -1, -1)]
    inputs = [x]
    if cond is not None:
        inputs.append(cond)
        cm = torch.ones_like(cond) if cond_mask is None else cond_mask.to(x.dtype)
        masks.append(cm.expand_as(cond))
    extra, steps = None, []
    if family.stochastic:
        images = []
        shapes = net.noise_shapes(tuple(x.shape[-2:]))
        for k, (hh, ww) in enumerate(shapes):  # the bottleneck (level L) first, level 0 last
            n = torch.randn(x.shape[0], 1, hh, ww, generator=generator, dtype=torch.float32)
            step = 2 ** (len(shapes) - 1 - k)
            steps.append(step)
            full = n.repeat_interleave(step, -2).repeat_interleave(step, -1)
            images.append(full[..., : x.shape[-2], : x.shape[-1]])
        extra = torch.cat(images, 1).to(x.dtype)

    def predict(values, observed, noise=None):
        kw = {}
        if noise is not None:
            kw["noise"] = [noise[:, k : k + 1, ::s, ::s] for k, s in enumerate(steps)]
        c = [values[:, channels:]] if cond is not None else []
        return family.predict(
            values[:, :channels],
            observed[:, :channels],
            c[0] if c else None,
            observed[:, channels:] if c else None,
            any_shape=True,
            **kw,
        )

    return tiled_fill(
        predict,
        torch.cat(inputs, 1),
        torch.cat(masks, 1),
        tile=tile,
        halo=halo,
        periodic=net.periodic,
        extra=extra,
        align=net.align,
    )
