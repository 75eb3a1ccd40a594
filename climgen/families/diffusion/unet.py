"""The denoising U-Net: periodic convolutions, noise-level FiLM, self-attention at low resolution.

``UNet(x, noise_level, cond=None)`` maps a noisy field (B, C, H, W) and a per-sample noise
level (B,) (the DDPM step t, or the EDM c_noise = ¼ ln σ) to a field of the same shape.

- **Noise-level embedding**: sinusoidal features ``[cos(ω_k s), sin(ω_k s)]`` with
  ω_k = 10000^{−k/K} (Vaswani et al. 2017; Ho et al. 2020), then a 2-layer SiLU MLP.
- **Residual blocks** (:class:`EmbeddedResidualBlock`): GroupNorm → SiLU → conv, then the
  embedding modulates the second normalisation by scale and shift (FiLM, Perez et al. 2018;
  the "adaptive GroupNorm" of Dhariwal & Nichol 2021): ``h ← GN(h)(1 + γ(e)) + β(e)``.
- **Self-attention** (:class:`SelfAttention2d`) over all grid cells at the chosen levels and
  in the middle. It has no positional embedding, so it commutes with any permutation of the
  cells — in particular with rolls — and the U-Net stays shift-equivariant along periodic axes.
- **Any (H, W)**: every convolution is a :class:`~climgen.nn.PeriodicConv2d`; down-sampling
  gives ⌈H/2⌉ × ⌈W/2⌉ and the decoder up-samples to the *recorded* size of each skip, so odd
  sizes need no cropping. With circular padding on a periodic axis of length divisible by
  2^(levels−1), rolling the input by a multiple of 2^(levels−1) rolls the output the same way.
- **Conditioning** (``cond_channels > 0``): the condition (B, Cc, H, W) and a "condition
  present" indicator channel are concatenated to the input. The null condition (classifier-free
  guidance, Ho & Salimans 2022) is a zero map with indicator 0, so it is distinct from a
  condition that happens to be zero.

The output convolution is zero-initialised, so an untrained network outputs 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import Downsample, PeriodicConv2d, Upsample, make_norm

__all__ = ["sinusoidal_embedding", "EmbeddedResidualBlock", "SelfAttention2d", "UNet"]


def sinusoidal_embedding(
    level: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """(B,) noise levels → (B, dim) features ``[cos(ω_k s), sin(ω_k s)]``, ω_k = P^{−k/(dim/2)}."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=level.device, dtype=torch.float32) / half
    )
    args = level.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class EmbeddedResidualBlock(nn.Module):
    """Residual block with FiLM conditioning on an embedding e (B, E).

    ``out = skip(x) + conv2(dropout(SiLU(GN(h)(1 + γ) + β)))``, ``h = conv1(SiLU(GN(x)))``,
    ``(γ, β) = Linear(SiLU(e))``; conv2 is zero-initialised (the block starts as identity).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        *,
        periodic: tuple[bool, bool],
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = make_norm("group", in_channels)
        self.conv1 = PeriodicConv2d(in_channels, out_channels, 3, periodic=periodic)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = make_norm("group", out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _zero(PeriodicConv2d(out_channels, out_channels, 3, periodic=periodic))
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H·W cells, residual: ``x + proj(attn(GN(x)))``.

    No positional embedding (the convolutions supply position), so the layer is equivariant
    to any permutation of the cells. ``heads`` = max(1, channels // 32). The output projection
    is zero-initialised. On large grids the queries are processed in blocks of
    :attr:`query_block` cells (same result; memory O(block · H·W) instead of O((H·W)²)), so a
    tiled 256 × 1024 downscaling pass does not need tens of GB for the attention matrix.
    """

    query_block = 2048

    def __init__(self, channels: int):
        super().__init__()
        self.heads = max(1, channels // 32)
        if channels % self.heads:
            self.heads = 1
        self.norm = make_norm("group", channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k, v = q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        n = h * w
        if n <= self.query_block:
            out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, hw, c/heads)
        else:
            out = torch.cat(
                [
                    F.scaled_dot_product_attention(q[..., i : i + self.query_block, :], k, v)
                    for i in range(0, n, self.query_block)
                ],
                dim=-2,
            )
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Denoising U-Net for fields of any grid size.

    Parameters
    ----------
    in_channels, out_channels : field channels in and out.
    base_channels : channels at full resolution; level i has ``base_channels · channel_mults[i]``.
    channel_mults : one entry per resolution level (each level after the first halves the grid).
    num_res_blocks : residual blocks per level on the way down (one more on the way up).
    attention_levels : level indices (negative counts from the lowest) with self-attention
        after each block; the middle always has one. ``None`` = the lowest level only.
    periodic : (periodic_y, periodic_x) — circular padding on these axes.
    cond_channels : channels of an optional condition map (B, Cc, H, W) concatenated to x.
    dropout : dropout in the residual blocks.

    Example
    -------
    >>> net = UNet(1, 1, base_channels=8, channel_mults=(1, 2))
    >>> net(torch.randn(2, 1, 13, 27), torch.rand(2)).shape
    torch.Size([2, 1, 13, 27])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] | None = None,
        periodic: tuple[bool, bool] = (False, True),
        cond_channels: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        mults = [int(m) for m in channel_mults]
        if not mults or min(mults) < 1 or base_channels < 1 or num_res_blocks < 1:
            raise ClimgenInputError(
                "options 'channel_mults' (non-empty, ≥ 1), 'base_channels' and "
                f"'num_res_blocks' (≥ 1) are invalid: {channel_mults!r}, {base_channels!r}, "
                f"{num_res_blocks!r}"
            )
        n_levels = len(mults)
        attention_levels = (n_levels - 1,) if attention_levels is None else attention_levels
        attn = set()
        for level in attention_levels:
            if not -n_levels <= int(level) < n_levels:
                raise ClimgenInputError(
                    f"option 'attention_levels' has level {level}, but there are only "
                    f"{n_levels} levels (channel_mults={tuple(mults)})"
                )
            attn.add(int(level) % n_levels)
        self.cond_channels = int(cond_channels)
        self.periodic = tuple(bool(p) for p in periodic)
        chans = [base_channels * m for m in mults]
        self.emb_features = max(32, base_channels)
        emb_dim = 4 * base_channels
        self.embed = nn.Sequential(
            nn.Linear(self.emb_features, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        extra = self.cond_channels + 1 if self.cond_channels else 0
        self.stem = PeriodicConv2d(in_channels + extra, chans[0], 3, periodic=self.periodic)

        def block(cin, cout):
            return EmbeddedResidualBlock(
                cin, cout, emb_dim, periodic=self.periodic, dropout=dropout
            )

        def maybe_attn(level, c):
            return SelfAttention2d(c) if level in attn else nn.Identity()

        self.down_blocks, self.down_attn, self.downsample = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        ch = chans[0]
        for i, c in enumerate(chans):
            self.down_blocks.append(
                nn.ModuleList(block(ch if j == 0 else c, c) for j in range(num_res_blocks))
            )
            self.down_attn.append(nn.ModuleList(maybe_attn(i, c) for _ in range(num_res_blocks)))
            ch = c
            if i < n_levels - 1:
                self.downsample.append(Downsample(c, periodic=self.periodic))
        self.mid1, self.mid_attn, self.mid2 = block(ch, ch), SelfAttention2d(ch), block(ch, ch)
        self.up_blocks, self.up_attn, self.upsample = (
            nn.ModuleList(),
            nn.ModuleList(),
            nn.ModuleList(),
        )
        for i in reversed(range(n_levels)):
            c = chans[i]
            self.up_blocks.append(
                nn.ModuleList(block(2 * c if j == 0 else c, c) for j in range(num_res_blocks + 1))
            )
            self.up_attn.append(nn.ModuleList(maybe_attn(i, c) for _ in range(num_res_blocks + 1)))
            if i > 0:
                self.upsample.append(Upsample(c, chans[i - 1], periodic=self.periodic))
        self.out_norm = make_norm("group", chans[0])
        self.out_conv = _zero(PeriodicConv2d(chans[0], out_channels, 3, periodic=self.periodic))

    def _input(
        self, x: torch.Tensor, cond: torch.Tensor | None, cond_keep: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.cond_channels:
            if cond is not None:
                raise ClimgenInputError("this UNet has cond_channels=0 but got a condition")
            return x
        b, _, h, w = x.shape
        if cond is None:
            cond = x.new_zeros(b, self.cond_channels, h, w)
            keep = x.new_zeros(b)
        else:
            if cond.ndim != 4 or cond.shape[1] != self.cond_channels or cond.shape[-2:] != (h, w):
                raise ClimgenInputError(
                    f"condition must have shape (B, {self.cond_channels}, {h}, {w}), "
                    f"got {tuple(cond.shape)}"
                )
            cond = cond.to(x.dtype).expand(b, -1, -1, -1)
            keep = x.new_ones(b) if cond_keep is None else cond_keep.to(x.dtype).view(b)
        keep = keep.view(b, 1, 1, 1)
        return torch.cat([x, cond * keep, keep.expand(b, 1, h, w)], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        noise_level: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C, H, W), noise_level (B,) → (B, out_channels, H, W).

        ``cond`` (B or 1, Cc, H, W) or None (null condition); ``cond_keep`` (B,) in {0, 1}
        replaces the condition of the samples with 0 by the null condition (training-time
        condition dropout).
        """
        noise_level = torch.as_tensor(noise_level, device=x.device).expand(x.shape[0])
        emb = self.embed(sinusoidal_embedding(noise_level, self.emb_features).to(x.dtype))
        h = self.stem(self._input(x, cond, cond_keep))
        skips = []
        for i, (blocks, attns) in enumerate(zip(self.down_blocks, self.down_attn)):
            for blk, att in zip(blocks, attns):
                h = att(blk(h, emb))
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for k, (blocks, attns) in enumerate(zip(self.up_blocks, self.up_attn)):
            h = torch.cat([h, skips.pop()], dim=1)
            for blk, att in zip(blocks, attns):
                h = att(blk(h, emb))
            if k < len(self.upsample):
                h = self.upsample[k](h, size=skips[-1].shape[-2:])
        return self.out_conv(F.silu(self.out_norm(h)))
