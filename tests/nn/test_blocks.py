"""Blocks: shift equivariance on periodic axes, shapes on any grid, resampling, spectral norm."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.nn import (
    ConvBlock,
    Decoder,
    Downsample,
    Encoder,
    PeriodicConv2d,
    ResidualBlock,
    Upsample,
    plan_levels,
    resize,
    spectral_norm,
)

ODD_SHAPES = [(64, 256), (48, 96), (64, 128), (72, 72), (30, 40)]


def _roll(x, shifts):
    return torch.roll(x, shifts, dims=(-2, -1))


@pytest.mark.parametrize("block_cls", [ConvBlock, ResidualBlock])
@pytest.mark.parametrize("norm", ["group", "none"])
def test_blocks_commute_with_shifts_on_a_doubly_periodic_grid(block_cls, norm):
    torch.manual_seed(0)
    block = block_cls(3, 4, periodic=(True, True), norm=norm).double()
    x = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    torch.testing.assert_close(block(_roll(x, (3, -5))), _roll(block(x), (3, -5)))


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_plan_levels_halves_with_ceil_and_stops_at_min_bottleneck(shape):
    sizes = plan_levels(shape, min_bottleneck=4)
    assert sizes[0] == shape
    for (h, w), (nh, nw) in zip(sizes, sizes[1:]):
        assert (nh, nw) == (-(-h // 2), -(-w // 2))
    hb, wb = sizes[-1]
    assert min(hb, wb) >= 4 and min(-(-hb // 2), -(-wb // 2)) < 4


def test_plan_levels_with_fixed_depth():
    assert plan_levels((30, 40), num_levels=2) == [(30, 40), (15, 20), (8, 10)]
    with pytest.raises(ClimgenInputError, match="shape"):
        plan_levels((0, 5))


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_encoder_decoder_round_trip_shapes(shape):
    torch.manual_seed(0)
    enc = Encoder(2, shape, 6, base_channels=4)
    dec = Decoder(2, shape, 6, base_channels=4, upsample="bilinear")
    z = enc(torch.randn(3, 2, *shape))
    assert z.shape == (3, 6)
    out = dec(z)
    assert out.shape == (3, 2, *shape)
    assert torch.isfinite(out).all()


def test_encoder_rejects_a_grid_it_was_not_built_for():
    enc = Encoder(1, (30, 40), 4, base_channels=4)
    with pytest.raises(ClimgenInputError, match=r"\(30, 40\)"):
        enc(torch.randn(1, 1, 32, 40))


def test_decoder_condition_changes_output_and_is_checked():
    torch.manual_seed(0)
    dec = Decoder(1, (30, 40), 4, base_channels=4, cond_channels=2)
    z = torch.randn(2, 4)
    a = dec(z, torch.randn(2, 2, 30, 40))
    b = dec(z, torch.randn(2, 2, 30, 40))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ClimgenInputError, match="condition"):
        dec(z)


@pytest.mark.parametrize("mode", ["conv", "avgpool"])
@pytest.mark.parametrize("shape", [(8, 12), (9, 13)])
def test_downsample_gives_ceil_half(mode, shape):
    down = Downsample(3, mode=mode)
    assert down(torch.randn(1, 3, *shape)).shape[-2:] == (-(-shape[0] // 2), -(-shape[1] // 2))


def test_avgpool_downsample_is_the_2x2_mean_and_wraps_odd_periodic_axis():
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64)
    out = Downsample(1, mode="avgpool", periodic=(False, True))(x)
    torch.testing.assert_close(out[..., :2], F.avg_pool2d(x[..., :4], 2))
    # last column pairs the last cell with the first (periodic neighbour)
    expected = 0.5 * (x[..., 0] + x[..., 4]).reshape(1, 1, 2, 2).mean(-1)
    torch.testing.assert_close(out[..., 2], expected)


@pytest.mark.parametrize("size", [(10, 26), (7, 5), (16, 16)])
def test_nonperiodic_bilinear_resize_matches_torch_interpolate(size):
    x = torch.randn(2, 3, 8, 13, dtype=torch.float64)
    ours = resize(x, size, mode="bilinear", periodic=(False, False))
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours, ref)


def test_periodic_bilinear_resize_commutes_with_shifts_and_keeps_constants():
    x = torch.randn(1, 1, 6, 10, dtype=torch.float64)
    up = resize(x, (12, 20), mode="bilinear", periodic=(True, True))
    torch.testing.assert_close(
        resize(_roll(x, (1, 3)), (12, 20), mode="bilinear", periodic=(True, True)),
        _roll(up, (2, 6)),
    )
    const = torch.full((1, 1, 5, 7), 2.5, dtype=torch.float64)
    torch.testing.assert_close(
        resize(const, (13, 9), mode="bilinear"),
        torch.full_like(torch.empty(1, 1, 13, 9, dtype=torch.float64), 2.5),
    )


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_to_exact_size_and_default_doubles(mode):
    up = Upsample(3, 5, mode=mode)
    x = torch.randn(1, 3, 5, 7)
    assert up(x).shape == (1, 5, 10, 14)
    assert up(x, (9, 13)).shape == (1, 5, 9, 13)


def test_spectral_norm_makes_each_layer_unit_spectral_norm():
    torch.manual_seed(0)
    net = nn.Sequential(
        PeriodicConv2d(3, 6, 3, periodic=(False, True)),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )
    spectral_norm(net, n_power_iterations=5)
    spectral_norm(net)  # idempotent: no double wrapping
    x = torch.randn(2, 3, 5, 5)
    for _ in range(30):  # power iterations run in training-mode forwards
        net(x)
    net.eval()
    for layer in (net[0], net[3]):
        weight = layer.weight.reshape(layer.weight.shape[0], -1)
        sigma = torch.linalg.matrix_norm(weight.detach(), ord=2)
        assert sigma == pytest.approx(1.0, abs=1e-3)
        assert len(layer.parametrizations.weight) == 1


@pytest.mark.parametrize(
    ("factory", "bad"),
    [
        (lambda: ConvBlock(2, 2, norm="layer"), "norm"),
        (lambda: ConvBlock(2, 2, activation="swish"), "activation"),
        (lambda: Downsample(2, mode="max"), "downsample"),
        (lambda: Upsample(2, mode="transposed"), "upsample"),
    ],
)
def test_bad_option_names_raise_with_the_choices(factory, bad):
    with pytest.raises(ClimgenInputError, match=bad):
        factory()
