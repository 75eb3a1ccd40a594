"""PeriodicConv2d: circular padding makes convolution commute with shifts along periodic axes."""

import pytest
import torch
from torch import nn

from climgen.nn import PeriodicConv2d, pad_periodic


def _conv(periodic, kernel_size=3, stride=1):
    torch.manual_seed(0)
    return PeriodicConv2d(2, 3, kernel_size, stride, periodic=periodic).double()


@pytest.mark.parametrize("shift", [1, 5, -3])
def test_equivariant_under_roll_along_periodic_x(shift):
    conv = _conv((False, True))
    x = torch.randn(2, 2, 9, 14, dtype=torch.float64)
    rolled_first = conv(torch.roll(x, shift, dims=-1))
    rolled_after = torch.roll(conv(x), shift, dims=-1)
    torch.testing.assert_close(rolled_first, rolled_after)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_equivariant_under_roll_along_both_axes_when_doubly_periodic(kernel_size):
    conv = _conv((True, True), kernel_size)
    x = torch.randn(1, 2, 11, 8, dtype=torch.float64)
    shifts, dims = (4, -2), (-2, -1)
    torch.testing.assert_close(conv(torch.roll(x, shifts, dims)), torch.roll(conv(x), shifts, dims))


def test_not_equivariant_along_the_non_periodic_axis():
    conv = _conv((False, True))
    x = torch.randn(1, 2, 9, 14, dtype=torch.float64)
    diff = conv(torch.roll(x, 2, dims=-2)) - torch.roll(conv(x), 2, dims=-2)
    assert diff.abs().max() > 1e-3  # the walls (zero padding) break the symmetry


def test_zero_padded_conv_is_not_equivariant_along_x():
    # Control: the property above is not automatic for an ordinary convolution.
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(1, 2, 9, 14, dtype=torch.float64)
    diff = conv(torch.roll(x, 3, dims=-1)) - torch.roll(conv(x), 3, dims=-1)
    assert diff.abs().max() > 1e-3


def test_stride_two_output_is_ceil_half_and_equivariant_to_even_shifts():
    conv = _conv((False, True), stride=2)
    x = torch.randn(1, 2, 9, 14, dtype=torch.float64)
    y = conv(x)
    assert y.shape[-2:] == (5, 7)
    torch.testing.assert_close(conv(torch.roll(x, 4, dims=-1)), torch.roll(y, 2, dims=-1))


def test_pad_periodic_wraps_periodic_axis_and_zero_pads_the_other():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_periodic(x, (1, 1), (2, 1), (False, True))
    assert padded.shape[-2:] == (5, 7)
    torch.testing.assert_close(padded[..., 1:-1, :2], x[..., -2:])
    torch.testing.assert_close(padded[..., 1:-1, -1], x[..., 0])
    assert padded[..., 0, :].abs().sum() == 0 and padded[..., -1, :].abs().sum() == 0
