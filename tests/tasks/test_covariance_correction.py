"""The optimal-interpolation block-mean correction: exact conservation with the layer after
it, and no power where the corrected field has none (band limits on the sphere, along x and
on the plane), where the plain layer's block steps put plenty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from climgen.data.coarsen import coarsen_tensor
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.downscale.covariance_correction import (
    MAX_COARSE_CELLS,
    coefficient_variance,
    covariance_correction,
)
from climgen.tasks.downscale.downscaler import Downscaler

F = 4


def _exact_layer(y, c, weights=None):
    rest = c - coarsen_tensor(y, F, weights)
    return y + rest.repeat_interleave(F, -2).repeat_interleave(F, -1)


def _fraction_beyond(power: torch.Tensor, cutoff: int) -> float:
    return float(power[cutoff + 1 :].sum() / power.sum())


def _check(truth, y, weights, variance, cutoff, **kind):
    """Corrected and plain-layer outputs of ``y`` towards the block means of ``truth``."""
    c = coarsen_tensor(truth, F, weights)
    assert float((coarsen_tensor(y, F, weights) - c).abs().max()) > 0.1  # a real residual
    covariance = _exact_layer(covariance_correction(y, c, F, weights, **kind), c, weights)
    plain = _exact_layer(y, c, weights)
    for out in (covariance, plain):
        np.testing.assert_allclose(coarsen_tensor(out, F, weights), c, atol=1e-10, rtol=0)
    beyond_cov = _fraction_beyond(variance(covariance), cutoff)
    beyond_plain = _fraction_beyond(variance(plain), cutoff)
    assert beyond_plain > 1e-3
    assert beyond_cov < 1e-3 * beyond_plain
    return covariance, plain


def test_spherical_band_limit_is_kept():
    th = pytest.importorskip("torch_harmonics")
    nlat, nlon, lmax = 32, 64, 8
    gen = torch.Generator().manual_seed(0)
    coeffs = torch.zeros(3, nlat, nlon // 2 + 1, dtype=torch.complex128)
    for ell in range(1, lmax + 1):
        coeffs[:, ell, : ell + 1] = torch.randn(3, ell + 1, dtype=torch.complex128, generator=gen)
    coeffs[:, :, 0] = coeffs[:, :, 0].real.to(coeffs.dtype)  # real m = 0 coefficients
    synth = th.InverseRealSHT(nlat, nlon, grid="legendre-gauss", norm="ortho").double()
    truth = synth(coeffs).flip(-2)  # south → north, the canonical order
    shrink = torch.ones(nlat, 1, dtype=torch.float64)
    shrink[3:] = 0.4  # a smoothed output: same band limit, wrong block means
    y = synth(coeffs * shrink).flip(-2)
    lat = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(nlat)[0]))
    weights = torch.as_tensor(np.cos(np.deg2rad(lat)))

    def variance(x):
        return coefficient_variance(x, "spherical") * (2 * torch.arange(nlat) + 1)

    corrected, plain = _check(truth, y, weights, variance, lmax, kind="spherical")
    # It is a better estimate of the truth than block steps are.
    assert float((corrected - truth).pow(2).mean()) < float((plain - truth).pow(2).mean())


@pytest.mark.parametrize("kind", ["line", "planar"])
def test_band_limit_along_x_and_on_the_plane_is_kept(kind):
    ny, nx, kmax = 32, 64, 5
    gen = torch.Generator().manual_seed(1)
    yy = torch.arange(ny, dtype=torch.float64)[:, None] / ny  # periodic (walls: cos πky·y)
    xx = torch.arange(nx, dtype=torch.float64)[None, :] / nx
    truth = torch.zeros(3, ny, nx, dtype=torch.float64)
    y = torch.zeros_like(truth)
    for k in range(1, kmax + 1):
        for ky in range(0, kmax + 1 - k) if kind == "planar" else range(3):
            a, phase = torch.randn(2, 3, 1, 1, dtype=torch.float64, generator=gen)
            wave = a * torch.cos(2 * np.pi * (k * xx + ky * yy) + phase)
            if kind == "line":
                wave = a * torch.cos(2 * np.pi * k * xx + phase) * torch.cos(np.pi * ky * yy)
            truth += wave
            y += (1.0 if k < 3 else 0.3) * wave

    def variance(x):
        if kind == "line":
            return coefficient_variance(x, "line")
        return (torch.fft.rfft2(x).abs() ** 2).mean(0)[:, : nx // 2 + 1].sum(0)

    _check(truth, y, None, variance, kmax, kind=kind)


def test_downscaler_option_conserves_and_errors():
    pytest.importorskip("torch_harmonics")
    from climgen.data.samples import grf_dataarray

    fine = grf_dataarray(6, 32, 32, seed=3, name="psi").to_dataset()
    down = Downscaler(F, "bicubic", conserve=True, back_projection="covariance")
    down.calibrate_spectrum(fine, n_fields=6)
    coarse = down.coarsen(fine)
    out = down.downscale(coarse)["psi"]
    np.testing.assert_allclose(
        Downscaler(F, "bicubic").coarsen(out.to_dataset())["psi"].values,
        coarse["psi"].values,
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ClimgenInputError, match="covariance"):
        Downscaler(F, "bicubic", back_projection="lanczos")
    big = int(np.sqrt(MAX_COARSE_CELLS)) + 1
    with pytest.raises(ClimgenInputError, match="coarse cell"):
        covariance_correction(
            torch.zeros(1, big * F, big * F),
            torch.zeros(1, big, big),
            F,
            kind="planar",
            solver="dense",
        )
    with pytest.raises(ClimgenInputError, match="solver"):
        covariance_correction(
            torch.zeros(1, 8, 8), torch.zeros(1, 2, 2), F, kind="planar", solver="lu"
        )


def _pair(ny, nx, n=2):
    truth = torch.as_tensor(grf_dataarray(n, ny, nx, seed=1).values, dtype=torch.float64)
    return truth, truth + 0.3 * torch.as_tensor(grf_dataarray(n, ny, nx, seed=2, slope=-2).values)


@pytest.mark.parametrize("kind", ["line", "planar", "spherical"])
def test_zonal_blocks_and_conjugate_gradients_equal_the_dense_solve(kind):
    if kind == "spherical":
        pytest.importorskip("torch_harmonics")
    truth, y = _pair(32, 64)
    weights = None
    if kind == "spherical":
        lat = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(32)[0]))
        weights = torch.as_tensor(np.cos(np.deg2rad(lat)))
    c = coarsen_tensor(truth, F, weights)
    dense = covariance_correction(y, c, F, weights, kind=kind, solver="dense")
    size = float((dense - y).abs().max())
    assert size > 0.1  # a real correction
    fourier = covariance_correction(y, c, F, weights, kind=kind, solver="fourier")
    assert float((fourier - dense).abs().max()) < 1e-9 * size
    if kind != "spherical":  # unpreconditioned on the sphere: slow, not tested to 1e-9
        cg = covariance_correction(y, c, F, kind=kind, solver="cg", tol=1e-13, max_iter=2000)
        assert float((cg - dense).abs().max()) < 1e-9 * size


@pytest.mark.parametrize("solver", ["auto", "cg"])
def test_solvers_run_past_the_dense_limit_and_conserve(solver):
    """180×360 with 4×4 blocks: 4,050 coarse cells, beyond MAX_COARSE_CELLS (K alone would be
    131 MB and its SVD half a minute); "auto" takes the zonal blocks, nothing cells² is
    formed."""
    truth, y = _pair(180, 360, n=1)
    c = coarsen_tensor(truth, F)
    assert c.numel() > MAX_COARSE_CELLS
    out = covariance_correction(y, c, F, kind="planar", tol=1e-8, solver=solver)
    before = float((coarsen_tensor(y, F) - c).abs().max())
    assert float((coarsen_tensor(out, F) - c).abs().max()) < 1e-6 * before
