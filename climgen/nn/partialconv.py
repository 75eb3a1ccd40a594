"""Partial convolutions (mask-aware, renormalised, with mask update) and a partial-conv U-Net.

A partial convolution (Liu et al. 2018) convolves only the observed inputs of each window and
rescales by the fraction observed:

.. math::
    x' = \\begin{cases}
        W^\\top (X \\odot M)\\, \\dfrac{\\mathrm{sum}(\\mathbf 1)}{\\mathrm{sum}(M)} + b,
            & \\mathrm{sum}(M) > 0 \\\\
        0, & \\text{otherwise}
    \\end{cases}
    \\qquad
    m' = \\mathbb 1[\\mathrm{sum}(M) > 0],

with ``sum(1)`` the number of values in a window (C_in·k_h·k_w) and ``sum(M)`` the number
observed. Hidden inputs are *selected away* (``torch.where``), not multiplied by zero, so a
NaN or inf under the mask cannot leak into the output: the network provably never reads
hidden values. Periodic axes (longitude) are padded circularly; the padding of non-periodic
axes counts as hidden by default (``pad_as_hole=True``, the "partial convolution based
padding" of Liu et al. 2018b), so borders are renormalised rather than diluted by zeros.

:class:`PartialConvUNet` is the inpainting U-Net of Liu et al. (2018) as used for
temperature reconstruction by Kadow, Hall & Ulbrich (2020): a strided partial-conv encoder, a
decoder that up-samples features *and* masks (nearest) and concatenates the skip features with
their own masks, so every layer knows which of its inputs are real.

References
----------
Liu, Reda, Shih, Wang, Tao & Catanzaro (2018), *Image inpainting for irregular holes using
partial convolutions*, ECCV.
Liu, Shih, Wang, Reda, Sapra, Yu, Tao & Catanzaro (2018b), *Partial convolution based padding*,
arXiv:1811.11718.
Kadow, Hall & Ulbrich (2020), *Artificial intelligence reconstructs missing climate
information*, Nature Geoscience 13, 408–413.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError

from .blocks import make_activation, plan_levels, resize

__all__ = ["PartialConv2d", "PartialConvUNet"]


class PartialConv2d(nn.Module):
    """Mask-aware 2-D convolution with renormalisation and mask update (Liu et al. 2018).

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, dilation, bias : as :class:`torch.nn.Conv2d`
        ("same"-style padding is computed; stride 2 gives ``(⌈H/2⌉, ⌈W/2⌉)`` for odd kernels).
    periodic : ``(periodic_y, periodic_x)``; periodic axes are padded circularly (values and
        mask), so the receptive field wraps around in longitude.
    pad_as_hole : treat the zero padding of non-periodic axes as hidden (renormalise at the
        border). With ``False`` the padding counts as observed zeros, and an all-ones mask
        gives exactly an ordinary zero-padded convolution.

    ``forward(x, mask)``: ``x`` (B, C_in, H, W); ``mask`` (B, 1, H, W) shared by all channels or
    (B, C_in, H, W) per channel, 1 = observed. Returns ``(out, new_mask)`` with ``new_mask``
    (B, 1, H', W') in ``x``'s dtype: 1 where the window saw at least one observed input.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        periodic: tuple[bool, bool] = (False, True),
        dilation: int = 1,
        bias: bool = True,
        pad_as_hole: bool = True,
    ):
        super().__init__()
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ClimgenInputError(
                f"PartialConv2d needs kernel_size, stride, dilation ≥ 1, got {kernel_size}, "
                f"{stride}, {dilation}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.dilation = int(kernel_size), int(stride), int(dilation)
        self.periodic = tuple(bool(p) for p in periodic)
        self.pad_as_hole = bool(pad_as_hole)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default initialisation
        total = dilation * (kernel_size - 1)
        self._pad = (total // 2, total - total // 2)
        self.register_buffer("_ones", torch.ones(1, 1, kernel_size, kernel_size), persistent=False)

    def _pad_both(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        py, px = self.periodic
        pad = self._pad
        if any(pad):
            for periodic, spec in ((px, (*pad, 0, 0)), (py, (0, 0, *pad))):
                if periodic:
                    x, m = F.pad(x, spec, mode="circular"), F.pad(m, spec, mode="circular")
                else:
                    x = F.pad(x, spec)
                    m = F.pad(m, spec, value=0.0 if self.pad_as_hole else 1.0)
        return x, m

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ClimgenInputError(
                f"PartialConv2d expects x of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if mask.ndim != 4 or mask.shape[1] not in (1, self.in_channels):
            raise ClimgenInputError(
                f"PartialConv2d mask must be (B, 1, H, W) or (B, {self.in_channels}, H, W), "
                f"got {tuple(mask.shape)}"
            )
        m = (mask > 0).to(x.dtype)
        x = torch.where(m > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
        x, m = self._pad_both(x, m)
        raw = F.conv2d(x, self.weight, None, self.stride, 0, self.dilation)
        with torch.no_grad():
            counts = F.conv2d(
                m.sum(1, keepdim=True), self._ones.to(m.dtype), None, self.stride, 0, self.dilation
            )
            if mask.shape[1] == 1:
                counts = counts * self.in_channels
            window = float(self.in_channels * self.kernel_size**2)
            new_mask = (counts > 0).to(x.dtype)
            ratio = window / counts.clamp_min(1.0) * new_mask
        out = raw * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_mask
        return out, new_mask

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, periodic={self.periodic}, pad_as_hole={self.pad_as_hole}"
        )


class PartialConvUNet(nn.Module):
    """Inpainting U-Net of partial convolutions for any (H, W) (Liu et al. 2018; Kadow 2020).

    Encoder: a stride-1 partial conv (kernel ``first_kernel``) then, per level of
    :func:`~climgen.nn.plan_levels`, a stride-2 partial conv (kernel 5 at the first two
    levels, 3 deeper) halving the grid with ``⌈n/2⌉``. Decoder: nearest up-sampling of features
    and mask to the recorded size of the level above, concatenation with that level's skip
    features and mask, a 3×3 partial conv. A final 1×1 partial conv gives ``out_channels``.
    Activations: ReLU in the encoder, LeakyReLU(0.2) in the decoder, none at the output.

    ``forward(x, mask)``: ``x`` (B, in_channels, H, W), ``mask`` (B, 1|in_channels, H, W),
    1 = observed. Returns ``(out, out_mask)``; ``out_mask`` is 1 wherever the network had any
    observed input in its receptive field (all-ones unless the whole field is hidden).

    ``noise_injection=True`` makes the network stochastic (for ensembles trained with a proper
    score): after the bottleneck and after each decoder layer a fresh standard-normal image
    ``n`` (B, 1, h, w) is added with a learned per-channel scale, ``h ← h + s ⊙ n`` (the noise
    inputs of StyleGAN, Karras et al. 2019), so members differ at every scale. The noise is
    added to features, not fed as an observed input channel, so the masks — and the
    guarantee that hidden inputs are never read — are unchanged. ``forward(..., generator=)``
    draws it from a given generator.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shape: tuple[int, int],
        *,
        base_channels: int = 32,
        max_channels: int | None = None,
        min_bottleneck: int = 4,
        num_levels: int | None = None,
        first_kernel: int = 7,
        periodic: tuple[bool, bool] = (False, True),
        noise_injection: bool = False,
    ):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.sizes = plan_levels(self.shape, min_bottleneck=min_bottleneck, num_levels=num_levels)
        n_down = len(self.sizes) - 1
        cap = max_channels or 8 * base_channels
        chans = [min(base_channels * 2**i, cap) for i in range(n_down + 1)]
        self.periodic = tuple(bool(p) for p in periodic)
        kw = dict(periodic=self.periodic)
        self.stem = PartialConv2d(in_channels, chans[0], first_kernel, **kw)
        self.down = nn.ModuleList(
            PartialConv2d(chans[i], chans[i + 1], 5 if i < 2 else 3, 2, **kw) for i in range(n_down)
        )
        self.up = nn.ModuleList(
            PartialConv2d(chans[i + 1] + chans[i], chans[i], 3, **kw)
            for i in reversed(range(n_down))
        )
        self.head = PartialConv2d(chans[0], out_channels, 1, **kw)
        # small non-zero start: at s = 0 every member is the same and the CRPS spread term
        # has no gradient (|x_i − x_j| is not differentiable at 0)
        self.noise_scales = (
            nn.ParameterList(
                nn.Parameter(torch.full((c,), 0.1))
                for c in [chans[n_down], *(chans[i] for i in reversed(range(n_down)))]
            )
            if noise_injection
            else None
        )
        self.enc_act = make_activation("relu")
        self.dec_act = make_activation("leaky_relu")
        # Receptive radius, in grid cells: a level-l cell j stands at j·2^l. The stem reaches
        # ⌊k/2⌋; the stride-2 conv into level l+1 reaches ⌊k/2⌋·2^l; back up, the nearest
        # up-sampling to level l reaches ≤ 2^l and its 3×3 conv 2^l more.
        kernels = [conv.kernel_size for conv in self.down]
        self.receptive_radius = (
            first_kernel // 2
            + sum((k // 2) * 2**lev for lev, k in enumerate(kernels))
            + sum(2 * 2**lev for lev in range(n_down))
        )
        #: shifts by multiples of ``align`` = 2^levels commute with the net (stride-2 levels)
        self.align = 2**n_down

    def noise_shapes(self, shape: tuple[int, int]) -> list[tuple[int, int]]:
        """Grid sizes of the noise images ``forward`` draws for an input of ``shape``, in the
        order it draws them (the bottleneck, then each decoder level up to full size)."""
        sizes = [tuple(int(s) for s in shape)]
        for _ in self.down:
            sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
        return sizes[::-1]

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        noise: list[torch.Tensor] | None = None,
        any_shape: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``noise`` (stochastic nets): the images to add, shapes :meth:`noise_shapes` with a
        batch and channel dim, instead of drawing them; ``any_shape``: accept a grid other
        than the one built for (a tile: the net is convolutional at every level)."""
        if tuple(x.shape[-2:]) != self.shape and not any_shape:
            raise ClimgenInputError(
                f"PartialConvUNet was built for grids {self.shape}, got {tuple(x.shape[-2:])}"
            )
        h, m = self.stem(x, mask)
        h = self.enc_act(h)
        skips = [(h, m)]
        for conv in self.down:
            h, m = conv(h, m)
            h = self.enc_act(h)
            skips.append((h, m))
        skips.pop()
        h = self._add_noise(h, 0, generator, noise)
        for level, conv in enumerate(self.up, start=1):
            skip_h, skip_m = skips.pop()
            size = tuple(skip_h.shape[-2:])
            h = resize(h, size, mode="nearest", periodic=self.periodic)
            m = resize(m, size, mode="nearest", periodic=self.periodic)
            cat_m = torch.cat(
                [m.expand(-1, h.shape[1], -1, -1), skip_m.expand(-1, skip_h.shape[1], -1, -1)], 1
            )
            h, m = conv(torch.cat([h, skip_h], 1), cat_m)
            h = self._add_noise(self.dec_act(h), level, generator, noise)
        return self.head(h, m)

    def _add_noise(self, h: torch.Tensor, level: int, generator, noise=None) -> torch.Tensor:
        if self.noise_scales is None:
            return h
        if noise is not None:
            return h + self.noise_scales[level].view(1, -1, 1, 1) * noise[level].to(h)
        b, _, hh, ww = h.shape
        device = h.device if generator is None else generator.device
        n = torch.randn(b, 1, hh, ww, generator=generator, device=device, dtype=torch.float32)
        return h + self.noise_scales[level].view(1, -1, 1, 1) * n.to(h.device, h.dtype)
