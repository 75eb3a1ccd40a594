"""tiled_fill: a fully convolutional partial-conv net filled tile by tile with a halo ≥ its
receptive radius equals the untiled fill; a smaller halo does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn.partialconv import PartialConv2d
from climgen.tasks.fill.tiled import tiled_fill

KERNELS = (5, 3, 3)
RADIUS = sum(k // 2 for k in KERNELS)  # receptive radius of the stride-1 stack: 4 cells


class _PartialConvStack(nn.Module):
    """Stride-1 partial convolutions: translation equivariant, receptive radius RADIUS."""

    def __init__(self, channels: int, periodic: tuple[bool, bool]):
        super().__init__()
        widths = (channels, 6, 6, channels)
        self.convs = nn.ModuleList(
            PartialConv2d(a, b, k, periodic=periodic)
            for a, b, k in zip(widths[:-1], widths[1:], KERNELS)
        )

    def forward(self, x, mask):
        h, m = x, mask
        for i, conv in enumerate(self.convs):
            h, m = conv(h, m)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h


def _case(periodic, seed=0):
    torch.manual_seed(seed)
    net = _PartialConvStack(2, periodic).double().eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 24, 40, generator=g, dtype=torch.float64)
    mask = (torch.rand(3, 1, 24, 40, generator=g) > 0.6).double()
    x = torch.where(mask > 0, x, torch.full_like(x, float("nan")))  # hidden: never read
    with torch.no_grad():
        whole = torch.where(mask.expand_as(x) > 0, x, net(x, mask))
    return net, x, mask, whole


@pytest.mark.parametrize("periodic", [(False, True), (False, False)])
def test_tiled_fill_with_halo_at_least_the_receptive_radius_equals_the_untiled_fill(periodic):
    net, x, mask, whole = _case(periodic)
    with torch.no_grad():
        tiled = tiled_fill(net, x, mask, tile=8, halo=RADIUS, periodic=periodic)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    torch.testing.assert_close(tiled, whole, rtol=1e-12, atol=1e-12)
    assert torch.equal(tiled[mask.expand_as(x) > 0], x[mask.expand_as(x) > 0])


def test_a_halo_below_the_receptive_radius_shows_seams():
    net, x, mask, whole = _case((False, True), seed=1)
    with torch.no_grad():
        tiled = tiled_fill(net, x, mask, tile=8, halo=1, overlap=1)
    assert (tiled - whole).abs().max() > 1e-3


def test_mismatched_mask_is_refused():
    net, x, mask, _ = _case((False, True))
    with pytest.raises(ClimgenInputError, match="same grid"):
        tiled_fill(net, x, mask[..., :-1], tile=8, halo=RADIUS)
