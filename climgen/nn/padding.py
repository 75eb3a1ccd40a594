"""Convolutions that pad each axis by its physics: circular where periodic, else reflect/zero.

Zero padding across a periodic boundary (longitude, the RBC x axis) invents a wall and leaves
a seam in generated fields; ``PeriodicConv2d`` pads periodic axes circularly and the others
with ``nonperiodic_mode`` ("zeros" or "reflect"), then convolves without padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["pad_periodic", "PeriodicConv2d"]


def pad_periodic(
    x: torch.Tensor,
    pad_y: tuple[int, int],
    pad_x: tuple[int, int],
    periodic: tuple[bool, bool],
    nonperiodic_mode: str = "zeros",
) -> torch.Tensor:
    """Pad (..., H, W) by ``pad_y`` rows and ``pad_x`` columns, circularly on periodic axes."""
    mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}[nonperiodic_mode]
    py, px = periodic
    if any(pad_x):
        x = F.pad(x, (*pad_x, 0, 0), mode="circular" if px else mode)
    if any(pad_y):
        x = F.pad(x, (0, 0, *pad_y), mode="circular" if py else mode)
    return x


class PeriodicConv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same"-style padding that wraps periodic axes.

    Parameters are those of :class:`torch.nn.Conv2d` (``padding`` is computed: (k−1)/2 each
    side for odd kernels) plus ``periodic=(periodic_y, periodic_x)`` and
    ``nonperiodic_mode`` ("zeros", "reflect" or "replicate").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        periodic: tuple[bool, bool] = (False, False),
        nonperiodic_mode: str = "zeros",
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.periodic = tuple(bool(p) for p in periodic)
        self.nonperiodic_mode = nonperiodic_mode
        kh, kw = self.kernel_size
        th, tw = dilation * (kh - 1), dilation * (kw - 1)
        self._pad_y = (th // 2, th - th // 2)
        self._pad_x = (tw // 2, tw - tw // 2)
        # Fast path: symmetric zero padding of the non-periodic axes is left to the
        # convolution itself, so at most one explicit (circular) pad copies the input.
        symmetric = th % 2 == 0 and tw % 2 == 0
        self._native = symmetric and nonperiodic_mode == "zeros"
        if self._native:
            py, px = self.periodic
            self._native_padding = (0 if py else th // 2, 0 if px else tw // 2)
            self._circular = ((0, 0) if not px else self._pad_x) + (
                (0, 0) if not py else self._pad_y
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._native:
            if any(self._circular):
                x = F.pad(x, self._circular, mode="circular")
            return F.conv2d(
                x,
                self.weight,
                self.bias,
                self.stride,
                self._native_padding,
                self.dilation,
                self.groups,
            )
        x = pad_periodic(x, self._pad_y, self._pad_x, self.periodic, self.nonperiodic_mode)
        return super().forward(x)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", periodic={self.periodic}, nonperiodic={self.nonperiodic_mode}"
        )
