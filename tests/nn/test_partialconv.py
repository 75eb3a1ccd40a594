"""PartialConv2d: ordinary conv under an all-ones mask, zeros in hidden windows, mask update."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from climgen.errors import ClimgenInputError
from climgen.nn.padding import PeriodicConv2d
from climgen.nn.partialconv import PartialConv2d, PartialConvUNet


def _pair(cin=3, cout=4, k=3, stride=1, periodic=(False, True), pad_as_hole=True, bias=True):
    torch.manual_seed(0)
    pconv = PartialConv2d(
        cin, cout, k, stride, periodic=periodic, pad_as_hole=pad_as_hole, bias=bias
    )
    conv = PeriodicConv2d(cin, cout, k, stride, periodic=periodic, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(pconv.weight)
        if bias:
            conv.bias.copy_(pconv.bias.uniform_(-1, 1))
    return pconv.double(), conv.double()


@pytest.mark.parametrize("stride", [1, 2])
def test_all_ones_mask_is_an_ordinary_convolution(stride):
    x = torch.randn(2, 3, 9, 14, dtype=torch.float64)
    ones = torch.ones(2, 1, 9, 14, dtype=torch.float64)
    # Padding counted as observed zeros: identical to a zero-padded / circular convolution.
    pconv, conv = _pair(stride=stride, pad_as_hole=False)
    out, new_mask = pconv(x, ones)
    torch.testing.assert_close(out, conv(x), rtol=1e-12, atol=1e-12)
    assert torch.all(new_mask == 1)
    # Both axes periodic: no padding can be a hole, so also exact with pad_as_hole.
    pconv, conv = _pair(stride=stride, periodic=(True, True))
    torch.testing.assert_close(pconv(x, ones)[0], conv(x), rtol=1e-12, atol=1e-12)


def test_border_rows_are_renormalised_when_padding_is_a_hole():
    pconv, conv = _pair(bias=False)
    x = torch.randn(1, 3, 8, 12, dtype=torch.float64)
    ones = torch.ones(1, 1, 8, 12, dtype=torch.float64)
    out = pconv(x, ones)[0]
    ref = conv(x)
    torch.testing.assert_close(out[..., 1:-1, :], ref[..., 1:-1, :])
    # A 3x3 window at the first row sees 6 of its 9 cells: scale sum(1)/sum(M) = 9/6.
    torch.testing.assert_close(out[..., 0, :], ref[..., 0, :] * 9 / 6)


def test_fully_hidden_window_gives_zero_and_mask_stays_zero():
    pconv, _ = _pair(k=3)
    x = torch.randn(1, 3, 10, 16, dtype=torch.float64)
    mask = torch.ones(1, 1, 10, 16, dtype=torch.float64)
    mask[..., 2:8, 4:10] = 0  # a 6x6 hole: its inner 4x4 cells see only hidden inputs
    out, new_mask = pconv(x, mask)
    inner = (slice(None), slice(None), slice(3, 7), slice(5, 9))
    assert torch.all(out[inner] == 0)
    assert torch.all(new_mask[inner] == 0)
    # Mask update rule: 1 exactly where the 3x3 window holds an observed cell.
    expected = F.max_pool2d(F.pad(mask, (1, 1, 0, 0), mode="circular"), 3, 1, (1, 0)) > 0
    assert torch.equal(new_mask.bool(), expected)


def test_per_channel_renormalisation_matches_explicit_formula():
    pconv, conv = _pair(cin=2, cout=1, k=3, bias=False, periodic=(True, True))
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    mask = (torch.rand(1, 2, 6, 6) > 0.5).double()
    out, new_mask = pconv(x, mask)
    counts = F.conv2d(F.pad(mask, (1, 1, 1, 1), mode="circular"), torch.ones(1, 2, 3, 3).double())
    ref = conv(x * mask) * 18 / counts.clamp_min(1) * (counts > 0)
    torch.testing.assert_close(out, ref)
    assert torch.equal(new_mask, (counts > 0).double())


def test_longitude_is_periodic():
    pconv, _ = _pair(cin=1, cout=1, k=3, periodic=(False, True))
    x = torch.zeros(1, 1, 5, 8, dtype=torch.float64)
    mask = torch.zeros_like(x)
    x[..., 2, 0], mask[..., 2, 0] = 1.0, 1.0  # one observed cell in the first column
    _, new_mask = pconv(x, mask)
    assert new_mask[0, 0, 2, -1] == 1  # the last column is its neighbour across the seam
    assert new_mask[0, 0, 2, 2] == 0


def test_hidden_values_are_never_read_even_nan():
    torch.manual_seed(0)
    net = PartialConvUNet(2, 1, (18, 36), base_channels=4).double()
    x = torch.randn(2, 2, 18, 36, dtype=torch.float64)
    mask = (torch.rand(2, 1, 18, 36) > 0.6).double()
    out1, _ = net(x, mask)
    junk = torch.where(torch.rand_like(x) > 0.5, float("nan"), torch.inf) * torch.randn_like(x)
    x2 = torch.where(mask > 0, x, junk)
    out2, _ = net(x2, mask)
    assert torch.equal(out1, out2)


@pytest.mark.parametrize("shape", [(16, 32), (72, 72), (37, 50)])
def test_unet_any_grid(shape):
    net = PartialConvUNet(3, 2, shape, base_channels=4)
    x = torch.randn(1, 3, *shape)
    out, m = net(x, torch.ones(1, 1, *shape))
    assert out.shape == (1, 2, *shape) and m.shape == (1, 1, *shape)
    empty_out, empty_m = net(x, torch.zeros(1, 1, *shape))
    assert torch.all(empty_out == 0) and torch.all(empty_m == 0)


def test_bad_shapes_raise():
    pconv = PartialConv2d(3, 2)
    with pytest.raises(ClimgenInputError, match="mask"):
        pconv(torch.zeros(1, 3, 4, 4), torch.ones(1, 2, 4, 4))
    with pytest.raises(ClimgenInputError, match="expects x"):
        pconv(torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4))
    assert np.isfinite(pconv.weight.detach().numpy()).all()
