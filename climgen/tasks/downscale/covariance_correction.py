"""Block-mean correction shaped by the field's own covariance (optimal interpolation).

The additive conservation layer corrects a downscaled field ``y`` with block constants, and
the smooth back-projection before it with Lanczos-interpolated residuals. Both corrections
carry power at wavenumbers where a band-limited truth has none (a T42 field beyond degree
42), so a spectrally calibrated output gets interpolation's high-k error back. Here the
correction is shaped by an isotropic prior covariance Σ whose spectrum is
that of ``y`` itself — Gaussian conditioning of ``y`` on the coarse means, i.e. optimal
interpolation of the block-mean residual r = c − A y:

.. math::

    δ = Σ U (A Σ U)^{+} r, \\qquad
    Σ = T^{-1} \\operatorname{diag}\\big(σ^2(k)\\big) T,

with A the (area-weighted) block mean, U block replication, T the spectral transform of the
diagnostics (spherical harmonics on a global lat/lon grid, rfft2 rings on a doubly periodic
plane, rfft along x for a channel with walls) and σ²(k) the mean power per spectral
coefficient of ``y`` at wavenumber k. The correction lives where ``y`` has power, so it does
not change the shape of ``y``'s spectrum. K = A Σ U is built one coarse cell at a time and
solved by truncated-SVD least squares up to :data:`MAX_COARSE_CELLS` coarse cells. Above,
K is never formed: Σ, U and A all commute with a shift by one coarse cell along the
periodic x axis (longitude), so in the Fourier basis of x, K is block diagonal — one h × h
block per zonal wavenumber, got from h probes (:func:`_zonal_block_solve`; memory
O(h·W + (w/2 + 1)·h²), time O(h filters + w·h³), the same pseudo-inverse as the dense solve:
at 180×360 on the sphere, the same residual to 1e-9 and δ to 3e-4 in 0.9 s instead of 33 s).
``solver="cg"`` instead runs conjugate gradients on the normal equations (CGLS,
:func:`_cgls`), applying only K and its transpose (memory O(n·H·W)), right-preconditioned
on the plane and along x by the inverse spectrum on the coarse grid (~30 iterations to
1e-8 at 180×360) and unpreconditioned on the sphere (the block-mean rows are no quadrature
grid; it converges slowly there, stopping at ``max_iter``). Where K is singular
(near the poles a band-limited field cannot vary zonally) a small remainder is left,
which the exact additive layer that follows takes.

References: Gandin (1963), *Objective Analysis of Meteorological Fields* (optimal
interpolation); Irani & Peleg (1991) for the back-projection this replaces; Hestenes &
Stiefel (1952), *Methods of conjugate gradients for solving linear systems*, J. Res. NBS 49;
Björck (1996), *Numerical Methods for Least Squares Problems*, SIAM, §7.4 (CGLS).
"""

from __future__ import annotations

import numpy as np
import torch

from climgen.data.coarsen import coarsen_tensor
from climgen.data.grids import detect_grid
from climgen.errors import ClimgenInputError
from climgen.metrics.spectra import lat_grid_kind
from climgen.metrics.spectral_filter import (
    filter_line,
    filter_planar,
    filter_spherical,
    ring_index,
    spectrum_kind_of,
    spherical_coefficients,
)

__all__ = [
    "CORRECTION_SOLVERS",
    "MAX_COARSE_CELLS",
    "coefficient_variance",
    "covariance_correction",
    "covariance_correction_on",
]

MAX_COARSE_CELLS = 2048  # K is dense (cells²) and factorised by SVD (cells³)
CORRECTION_SOLVERS = ("auto", "dense", "fourier", "cg")
PRECONDITIONER_FLOOR = 1e-8  # smallest relative power the CG preconditioner inverts


def coefficient_variance(x: torch.Tensor, kind: str, *, lat_grid="legendre-gauss", dy=1.0, dx=1.0):
    """Mean power per spectral coefficient σ²(k) of (n, H, W) fields, indexed like the gains
    of :func:`climgen.metrics.spectral_filter.apply_spectral_gain` for ``kind``: per degree ℓ
    (averaged over orders m ≤ ℓ), per ring of |k| or per x-wavenumber (averaged over rows)."""
    if kind == "spherical":
        coeffs = spherical_coefficients(x, lat_grid)
        power = (coeffs.abs() ** 2).mean(0)
        ell = torch.arange(power.shape[0])[:, None]
        order = torch.arange(power.shape[1])[None, :]
        mask = (order <= ell).to(power.dtype)
        return (power * mask).sum(1) / mask.sum(1)
    if kind == "line":
        return (torch.fft.rfft(x, dim=-1).abs() ** 2).mean(dim=(0, 1))
    if kind == "planar":
        index, n_bins = ring_index(x.shape[-2], x.shape[-1], dy, dx)
        power = (torch.fft.rfft2(x).abs() ** 2).mean(0).reshape(-1)
        total = torch.zeros(n_bins, dtype=power.dtype).index_add_(0, index.reshape(-1), power)
        count = torch.bincount(index.reshape(-1), minlength=n_bins).to(power.dtype)
        return total / count.clamp(min=1)
    raise ClimgenInputError(f"covariance correction: unknown spectral kind {kind!r}")


def covariance_correction(
    fine: torch.Tensor,
    coarse: torch.Tensor,
    factor: int,
    weights=None,
    *,
    kind: str,
    lat_grid: str = "legendre-gauss",
    dy: float = 1.0,
    dx: float = 1.0,
    rcond: float = 1e-12,
    solver: str = "auto",
    tol: float = 1e-8,
    max_iter: int = 500,
) -> torch.Tensor:
    """``fine`` (n, H, W) plus the optimal-interpolation correction δ of its block means
    towards ``coarse`` (n, H/f, W/f), float64 (see the module docstring). ``weights``: row
    area weights as for :func:`climgen.data.coarsen.coarsen_tensor` (None: uniform). The
    block means are then close to ``coarse`` but not exact: follow it with the additive layer.

    ``solver``: ``"dense"`` builds K and solves it by truncated SVD (≤
    :data:`MAX_COARSE_CELLS` coarse cells); ``"fourier"`` solves the same system one zonal
    wavenumber at a time (:func:`_zonal_block_solve`, any size); ``"cg"`` runs conjugate
    gradients on the normal equations (:func:`_cgls`: only K and Kᵀ applied, memory
    O(n·H·W), stopping at the relative residual ``tol`` or after ``max_iter`` steps);
    ``"auto"``: dense up to :data:`MAX_COARSE_CELLS` coarse cells, fourier above.
    """
    if solver not in CORRECTION_SOLVERS:
        raise ClimgenInputError(
            f"covariance correction: solver must be one of {CORRECTION_SOLVERS}, got {solver!r}"
        )
    n_cells = coarse.shape[-2] * coarse.shape[-1]
    if solver == "auto":
        solver = "dense" if n_cells <= MAX_COARSE_CELLS else "fourier"
    if solver == "dense" and n_cells > MAX_COARSE_CELLS:
        raise ClimgenInputError(
            f"back_projection='covariance' with the dense solver solves a system of one row per "
            f"coarse cell: {coarse.shape[-2]}×{coarse.shape[-1]} = {n_cells} cells is more "
            f"than {MAX_COARSE_CELLS}; use solver='fourier' (or 'cg')"
        )
    fine, coarse = fine.double(), coarse.double()
    variance = coefficient_variance(fine, kind, lat_grid=lat_grid, dy=dy, dx=dx)
    if not float(variance.max()) > 0.0:
        return fine  # a constant field: nothing to shape the correction with
    gain = variance / variance.max()

    def sigma(x):
        if kind == "spherical":
            return filter_spherical(x, gain, lat_grid)
        if kind == "line":
            return filter_line(x, gain)
        return filter_planar(x, gain, dy, dx)

    def sigma_up(z):
        return sigma(z.repeat_interleave(factor, -2).repeat_interleave(factor, -1))

    shape = coarse.shape[-2:]
    residual = coarse - coarsen_tensor(fine, factor, weights)
    if solver == "fourier":
        z = _zonal_block_solve(
            lambda z: coarsen_tensor(sigma_up(z), factor, weights), residual, rcond
        )
        return fine + sigma_up(z)
    if solver == "cg":
        inverse = 1.0 / gain.clamp(min=PRECONDITIONER_FLOOR)

        def precondition(y):  # ≈ K⁻¹: the inverse spectrum on the coarse grid
            if kind == "spherical":  # the coarse rows are no quadrature grid: none
                return y
            if kind == "line":
                return filter_line(y, inverse[: y.shape[-1] // 2 + 1])
            _, n_bins = ring_index(*y.shape[-2:], dy * factor, dx * factor)
            return filter_planar(y, inverse[:n_bins], dy * factor, dx * factor)

        def operator(y):
            return coarsen_tensor(sigma_up(precondition(y)), factor, weights)

        z = precondition(_cgls(operator, residual, tol, max_iter))
        return fine + sigma_up(z)
    unit = torch.eye(n_cells, dtype=torch.float64).reshape(n_cells, *shape)
    columns = torch.cat(
        [coarsen_tensor(sigma_up(unit[i : i + 64]), factor, weights) for i in range(0, n_cells, 64)]
    )
    k_matrix = columns.reshape(n_cells, n_cells).T  # column j: A Σ U e_j
    residual = residual.reshape(-1, n_cells)
    z = torch.linalg.lstsq(k_matrix, residual.T, rcond=rcond, driver="gelsd").solution
    return fine + sigma_up(z.T.reshape(-1, *shape))


def _zonal_block_solve(operator, rhs: torch.Tensor, rcond: float) -> torch.Tensor:
    """Pseudo-inverse solution of ``operator(z) = rhs`` (n, h, w) for an operator that
    commutes with shifts by one coarse cell along the periodic x axis (the spectral filters
    and the block means all do): in the Fourier basis of x it is block diagonal, one h × h
    block K_m per zonal wavenumber m, so its h probes (a unit at x = 0 in each row) give
    every block, K_m[j, i] = rfft_x(K e_(i, 0))[j, m], and the solve is h × h per m
    (truncated SVD with singular values below ``rcond`` × the largest of all blocks dropped,
    as the dense solve: the blocks' singular values are K's). Memory O(h·W + (w/2+1)·h²)."""
    n_rows, width = rhs.shape[-2:]
    responses = []
    for start in range(0, n_rows, 16):
        rows = torch.arange(start, min(start + 16, n_rows))
        probe = torch.zeros(len(rows), n_rows, width, dtype=rhs.dtype)
        probe[torch.arange(len(rows)), rows, 0] = 1.0
        responses.append(torch.fft.rfft(operator(probe), dim=-1))  # (i, j, m)
    blocks = torch.cat(responses).permute(2, 1, 0)  # (m, j, i): K_m
    u, sv, vh = torch.linalg.svd(blocks)
    keep = sv > rcond * sv.max()
    inv_s = torch.where(keep, 1.0 / torch.where(keep, sv, 1.0), 0.0).to(blocks.dtype)
    r_hat = torch.fft.rfft(rhs, dim=-1).permute(2, 1, 0)  # (m, j, n)
    z_hat = vh.mH @ (inv_s[..., None] * (u.mH @ r_hat))  # (m, i, n)
    return torch.fft.irfft(z_hat.permute(2, 1, 0), n=width, dim=-1)


def _cgls(operator, rhs: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """Minimum-norm least-squares solution of ``operator(z) = rhs`` for each of the n
    right-hand sides (n, h, w) by conjugate gradients on the normal equations KᵀK z = Kᵀ b
    (CGLS; Hestenes & Stiefel 1952, Björck 1996 §7.4), started at z = 0 so that it converges
    to the pseudo-inverse solution the dense solve gives. Kᵀ is applied exactly, as the
    vector–Jacobian product of the linear ``operator`` (reverse-mode autodiff through the
    FFT/SHT filter and the block means). Stops when every field's ``‖b − Kz‖ ≤ tol ‖b‖`` or
    its normal-equation residual ``‖Kᵀ(b − Kz)‖`` has fallen by ``tol`` (an inconsistent
    system), or after ``max_iter`` steps; what is left goes to the exact additive layer.
    """

    def transpose(v):
        z = torch.zeros_like(v, requires_grad=True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(operator(z), z, grad_outputs=v)
        return grad

    def norm2(v):
        return (v * v).sum(dim=(-2, -1), keepdim=True)

    z = torch.zeros_like(rhs)
    r = rhs.clone()
    s = transpose(r)
    p = s.clone()
    gamma = norm2(s)
    b_norm, s0_norm = norm2(rhs).sqrt(), gamma.sqrt()
    for _ in range(max_iter):
        active = (norm2(r).sqrt() > tol * b_norm) & (gamma.sqrt() > tol * s0_norm)
        if not bool(active.any()):
            break
        q = operator(p)
        qq = norm2(q)
        alpha = torch.where(active & (qq > 0), gamma / torch.where(qq > 0, qq, 1.0), 0.0)
        z = z + alpha * p
        r = r - alpha * q
        s = transpose(r)
        gamma_new = norm2(s)
        beta = torch.where(gamma > 0, gamma_new / torch.where(gamma > 0, gamma, 1.0), 0.0)
        p = s + beta * p
        gamma = gamma_new
    return z


def covariance_correction_on(template, fine, coarse, factor: int, weights=None) -> torch.Tensor:
    """:func:`covariance_correction` of (..., H, W) ``fine`` on the grid of the DataArray
    ``template`` (its spectral basis, latitudes and spacing). The isotropic filters are
    symmetric under a flip of either axis, so the orientation of the fields does not matter.
    """
    try:
        kind = spectrum_kind_of(template)
    except ClimgenInputError as exc:
        raise ClimgenInputError(
            f"back_projection='covariance' shapes the correction with a spectrum: {exc}. "
            "Use back_projection=<iterations> on this grid"
        ) from None
    grid = detect_grid(template)
    lat_grid = "legendre-gauss"
    if kind == "spherical":
        lat_grid = lat_grid_kind(np.asarray(template[grid.y_dim].values, dtype=float))
    flat_coarse = coarse.expand(*fine.shape[:-2], *coarse.shape[-2:])
    out = covariance_correction(
        fine.reshape(-1, *fine.shape[-2:]),
        flat_coarse.reshape(-1, *coarse.shape[-2:]),
        factor,
        weights,
        kind=kind,
        lat_grid=lat_grid,
        dy=float(grid.dy or 1.0),
        dx=float(grid.dx or 1.0),
    )
    return out.reshape(fine.shape)
