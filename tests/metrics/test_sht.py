"""The bounded-memory spherical-harmonic transforms equal torch-harmonics' on small grids,
whether the Legendre tables are cached whole or rebuilt block by block."""

from __future__ import annotations

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.metrics.sht import SphericalTransform, legendre_block
from climgen.metrics.spectral_filter import filter_spherical

th = pytest.importorskip("torch_harmonics")

GRIDS = [(32, 64, "legendre-gauss"), (33, 64, "equiangular"), (24, 96, "legendre-gauss")]


@pytest.mark.parametrize("nlat,nlon,grid", GRIDS)
@pytest.mark.parametrize("blocks", ["cached", "rebuilt"])
def test_transform_pair_equals_torch_harmonics(nlat, nlon, grid, blocks):
    kw = {} if blocks == "cached" else {"block_bytes": 20_000, "cache_bytes": 0}
    sht = SphericalTransform(nlat, nlon, grid, **kw)
    assert (len(sht.blocks) > 3) == (blocks == "rebuilt")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, nlat, nlon, dtype=torch.float64, generator=g)
    ref = th.RealSHT(nlat, nlon, grid=grid, norm="ortho")(x)
    a = sht.forward(x)
    assert a.shape == ref.shape == (2, 3, nlat, nlon // 2 + 1)
    torch.testing.assert_close(a, ref, rtol=0, atol=1e-12)
    inverse = th.InverseRealSHT(nlat, nlon, grid=grid, norm="ortho")
    torch.testing.assert_close(sht.inverse(ref), inverse(ref), rtol=0, atol=1e-12)
    # float32 fields are transformed in float32, as torch-harmonics does
    a32 = sht.forward(x.float())
    assert a32.dtype == torch.complex64
    torch.testing.assert_close(a32, ref.to(torch.complex64), rtol=0, atol=1e-5)


def test_legendre_functions_are_orthonormal_under_the_gauss_quadrature():
    sht = SphericalTransform(20, 40, "legendre-gauss")
    p = legendre_block(0, 20, 20, sht.x)  # (m, ℓ, k)
    gram = 2 * torch.pi * torch.einsum("mlk,k,mjk->mlj", p, sht.weights, p)
    ell = torch.arange(20)
    present = (ell[None, :, None] >= ell[:, None, None]) & (
        ell[None, None, :] >= ell[:, None, None]
    )
    expected = torch.eye(20, dtype=torch.float64)[None] * present
    torch.testing.assert_close(gram, expected, rtol=0, atol=1e-12)


def test_filter_spherical_is_the_torch_harmonics_filter():
    nlat, nlon = 32, 64
    x = torch.randn(3, nlat, nlon, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    gain = torch.linspace(1.0, 0.0, nlat, dtype=torch.float64)
    coeffs = th.RealSHT(nlat, nlon, grid="legendre-gauss", norm="ortho")(x.flip(-2))
    ref = th.InverseRealSHT(nlat, nlon, grid="legendre-gauss", norm="ortho")(
        coeffs * gain[:, None]
    ).flip(-2)
    torch.testing.assert_close(filter_spherical(x, gain, "legendre-gauss"), ref, rtol=0, atol=1e-12)


def test_wrong_shapes_and_grids_are_refused():
    sht = SphericalTransform(8, 16, "legendre-gauss")
    with pytest.raises(ClimgenInputError, match="must end in"):
        sht.forward(torch.zeros(8, 15, dtype=torch.float64))
    with pytest.raises(ClimgenInputError, match="legendre-gauss' or 'equiangular"):
        SphericalTransform(8, 16, "cell-centred")
