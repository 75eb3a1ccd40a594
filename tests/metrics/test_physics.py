"""Divergence and block-mean conservation on analytic fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics import block_mean_error, divergence


def _grid(nx, nz, length=4.0, height=1.0):
    x = np.arange(nx) * length / nx  # periodic
    z = np.linspace(0.0, height, nz)  # walls included
    zz, xx = np.meshgrid(z, x, indexing="ij")
    return xx, zz, length / nx, z[1] - z[0]


def _streamfunction_flow(nx, nz, length=4.0, height=1.0):
    """u = ∂ψ/∂z, w = −∂ψ/∂x for ψ = sin(2πx/L) sin(πz/H): divergence-free exactly."""
    xx, zz, dx, dz = _grid(nx, nz, length, height)
    kx, kz = 2 * np.pi / length, np.pi / height
    u = kz * np.sin(kx * xx) * np.cos(kz * zz)
    w = -kx * np.cos(kx * xx) * np.sin(kz * zz)
    return u, w, dx, dz


def test_divergence_free_flow_converges_to_zero():
    errors = []
    for n in (32, 64, 128):
        u, w, dx, dz = _streamfunction_flow(n, n // 2 + 1)
        div = divergence(u, w, dx=dx, dz=dz)
        assert div.shape == u.shape
        errors.append(np.abs(div).max())
    scale = (np.pi / 1.0) * (2 * np.pi / 4.0)  # size of ∂u/∂x
    assert errors[-1] < 1e-2 * scale
    # second order: halving the spacing divides the error by ~4
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.2)
    assert errors[1] / errors[2] == pytest.approx(4.0, rel=0.2)


def test_divergence_of_known_field():
    xx, zz, dx, dz = _grid(128, 33)
    k = 2 * np.pi / 4.0
    u = np.sin(k * xx)
    w = zz**2 + zz  # one-sided second-order walls are exact for quadratics
    div = divergence(u[None], w[None], dx=dx, dz=dz)[0]
    expected = k * np.cos(k * xx) + 2 * zz + 1
    np.testing.assert_allclose(div, expected, atol=k**3 * dx**2)


def test_non_periodic_x_and_non_uniform_z_exact_for_quadratics():
    x = np.linspace(0, 2, 11)
    z = np.linspace(0, 1, 9) ** 1.7  # stretched towards the bottom wall
    zz, xx = np.meshgrid(z, x, indexing="ij")
    div = divergence(xx**2, zz**2, dx=x[1] - x[0], dz=z, periodic_x=False)
    np.testing.assert_allclose(div, 2 * xx + 2 * zz, atol=1e-12)


def test_divergence_torch_dataarray_and_errors():
    u, w, dx, dz = _streamfunction_flow(16, 9)
    tu = torch.tensor(u, requires_grad=True)
    div = divergence(tu, torch.tensor(w), dx=dx, dz=dz)
    (div**2).sum().backward()
    assert isinstance(div, torch.Tensor) and tu.grad is not None
    da = xr.DataArray(u, dims=("z", "x"))
    np.testing.assert_allclose(divergence(da, w, dx=dx, dz=dz), divergence(u, w, dx=dx, dz=dz))
    with pytest.raises(ClimgenInputError, match=r"\(9, 16\).*\(9, 15\)"):
        divergence(u, w[:, :15], dx=dx, dz=dz)
    with pytest.raises(ClimgenInputError, match="dz"):
        divergence(u, w, dx=dx, dz=-1.0)


def test_block_mean_error_zero_for_repeated_coarse_values():
    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(3, 4, 5))
    fine = np.repeat(np.repeat(coarse, 3, axis=-2), 3, axis=-1)
    assert block_mean_error(fine, coarse, 3) == pytest.approx(0.0, abs=1e-14)
    fine2 = np.repeat(np.repeat(coarse, 2, axis=-2), 4, axis=-1)
    assert block_mean_error(fine2, coarse, (2, 4)) == pytest.approx(0.0, abs=1e-14)
    bumped = fine.copy()
    bumped[1, 4, 7] += 0.9  # one fine cell of nine in a block
    assert block_mean_error(bumped, coarse, 3) == pytest.approx(0.1)


def test_block_mean_error_is_area_weighted():
    lat_f = np.linspace(-67.5, 67.5, 4)  # two fine rows per coarse row
    lon_f = np.arange(4) * 90.0
    coarse = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.cos(np.deg2rad(lat_f))
    # per block: rows with weights w0, w1 hold a, b with (w0 a + w1 b)/(w0 + w1) = c
    fine = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    fine[0] += 1.0 / w[0]
    fine[1] -= 1.0 / w[1]
    da = xr.DataArray(fine, dims=("lat", "lon"), coords={"lat": lat_f, "lon": lon_f})
    assert block_mean_error(da, coarse, 2) == pytest.approx(0.0, abs=1e-12)
    assert block_mean_error(fine, coarse, 2) > 0.1  # unweighted mean does not conserve
    with pytest.raises(ClimgenInputError, match=r"\(4, 4\).*\(2, 3\)"):
        block_mean_error(fine, np.zeros((2, 3)), 2)
