"""GAN networks: exact shapes on any grid, periodic padding, demodulation, style mixing."""

from __future__ import annotations

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.families.gan.nets import (
    AutoencoderDiscriminator,
    DCGANDiscriminator,
    DCGANGenerator,
    ModulatedConv2d,
    StyleGenerator,
    plan_pyramid,
    resize_to,
)

SHAPES = [(64, 256), (64, 128), (32, 32), (48, 96), (45, 90), (8, 8)]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("shape", SHAPES)
def test_generators_and_discriminators_give_exact_shapes(shape):
    torch.manual_seed(0)
    z = torch.randn(2, 8)
    for gen in (
        DCGANGenerator(8, 2, shape, base_channels=4),
        StyleGenerator(8, 2, shape, base_channels=4, n_mapping=2),
    ):
        x = gen(z)
        assert x.shape == (2, 2, *shape)
        assert torch.isfinite(x).all()
    d = DCGANDiscriminator(2, shape, base_channels=4, spectral_norm=True)
    assert d(x).shape == (2,)
    ae = AutoencoderDiscriminator(2, shape, base_channels=4, code_dim=8)
    assert ae(x).shape == x.shape


def test_plan_pyramid_base_grid():
    assert plan_pyramid((64, 256)) == (4, (4, 16))
    assert plan_pyramid((32, 32)) == (3, (4, 4))
    assert plan_pyramid((48, 96)) == (3, (6, 12))
    with pytest.raises(ClimgenInputError, match="2×2"):
        plan_pyramid((1, 64))


def test_resize_wraps_periodic_axis():
    # A field constant in y, one bump at x = 0: resizing along periodic x must see the wrap,
    # so the last output column mixes the last and the first input column.
    x = torch.zeros(1, 1, 4, 6)
    x[..., 0] = 1.0
    periodic = resize_to(x, (4, 8), (False, True))
    walled = resize_to(x, (4, 8), (False, False))
    assert float(periodic[..., -1].max()) > 0.0
    assert float(walled[..., -1].max()) == 0.0
    assert resize_to(x, (4, 6), (False, True)) is x


def test_periodic_generator_is_equivariant_to_rolls_of_its_base_grid():
    """Rolling the base grid by one cell rolls the output by 2^n cells on a periodic axis."""
    torch.manual_seed(0)
    gen = DCGANGenerator(4, 1, (16, 32), periodic=(True, True), base_channels=4).eval()
    n, (h0, w0) = plan_pyramid((16, 32))
    base = torch.randn(1, *gen.base)
    out = gen.body(base)
    rolled = gen.body(torch.roll(base, shifts=1, dims=-1))
    torch.testing.assert_close(rolled, torch.roll(out, shifts=2**n, dims=-1))


def test_demodulated_conv_has_unit_output_std_for_unit_input():
    torch.manual_seed(0)
    conv = ModulatedConv2d(32, 16, 3, style_dim=8, periodic=(True, True))
    with torch.no_grad():
        conv.weight.normal_()
        conv.affine.weight.normal_()  # strongly varying styles: demodulation must undo them
    x = torch.randn(8, 32, 32, 32)
    w = 3.0 * torch.randn(8, 8)
    with torch.no_grad():
        out = conv(x, w)
    assert float(out.std()) == pytest.approx(1.0, abs=0.02)
    per_sample_channel = out.flatten(2).std(2)  # each (sample, channel) separately
    assert float((per_sample_channel - 1).abs().max()) < 0.2
    conv.demodulate = False
    with torch.no_grad():
        assert float(conv(x, w).std()) > 1.5  # without demodulation the style scales show


def test_style_mixing_and_truncation():
    torch.manual_seed(0)
    gen = StyleGenerator(8, 1, (16, 16), base_channels=4, n_mapping=2).eval()
    with torch.no_grad():
        for layer in gen.layers:
            layer.noise_strength.fill_(0.5)  # noise is off at initialisation
    z1, z2 = torch.randn(2, 8), torch.randn(2, 8)

    def run(**kw):
        return gen(z1, generator=torch.Generator().manual_seed(3), **kw)

    torch.testing.assert_close(run(), run())  # seeded noise → reproducible
    assert not torch.allclose(run(), gen(z1, generator=torch.Generator().manual_seed(4)))
    mixed = run(mix_z=z2, mix_layer=1)
    assert not torch.allclose(mixed, run())
    # mixing z with itself changes nothing
    torch.testing.assert_close(run(mix_z=z1, mix_layer=2), run())
    # ψ = 0 maps every latent to w̄: samples then differ only through the noise inputs
    trunc = gen(torch.randn(2, 8), truncation=0.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(trunc, run(truncation=0.0))
    with pytest.raises(ClimgenInputError, match="mix_layer"):
        run(mix_z=z2, mix_layer=gen.num_ws)


def test_style_generator_tracks_mean_w_in_training():
    gen = StyleGenerator(8, 1, (8, 8), base_channels=4, n_mapping=1, w_avg_beta=0.5)
    gen(torch.randn(4, 8))
    assert float(gen.w_avg.abs().sum()) > 0
    before = gen.w_avg.clone()
    gen.eval()
    gen(torch.randn(4, 8))
    torch.testing.assert_close(gen.w_avg, before)


def test_bad_sizes_are_rejected():
    with pytest.raises(ClimgenInputError, match="latent_dim"):
        DCGANGenerator(0, 1, (8, 8))
