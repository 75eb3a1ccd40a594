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
solved by truncated-SVD least squares: where K is singular (near the poles a band-limited
field cannot vary zonally) a small remainder is left, which the exact additive layer that
follows takes.

References: Gandin (1963), *Objective Analysis of Meteorological Fields* (optimal
interpolation); Irani & Peleg (1991) for the back-projection this replaces.
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
    "MAX_COARSE_CELLS",
    "coefficient_variance",
    "covariance_correction",
    "covariance_correction_on",
]

MAX_COARSE_CELLS = 2048  # K is dense (cells²) and factorised by SVD (cells³)


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
) -> torch.Tensor:
    """``fine`` (n, H, W) plus the optimal-interpolation correction δ of its block means
    towards ``coarse`` (n, H/f, W/f), float64 (see the module docstring). ``weights``: row
    area weights as for :func:`climgen.data.coarsen.coarsen_tensor` (None: uniform). The
    block means are then close to ``coarse`` but not exact: follow it with the additive layer.
    """
    n_cells = coarse.shape[-2] * coarse.shape[-1]
    if n_cells > MAX_COARSE_CELLS:
        raise ClimgenInputError(
            f"back_projection='covariance' solves a dense system of one row per coarse cell: "
            f"{coarse.shape[-2]}×{coarse.shape[-1]} = {n_cells} cells is more than "
            f"{MAX_COARSE_CELLS}; use back_projection=<iterations> (Lanczos) for this grid"
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
    unit = torch.eye(n_cells, dtype=torch.float64).reshape(n_cells, *shape)
    columns = torch.cat(
        [coarsen_tensor(sigma_up(unit[i : i + 64]), factor, weights) for i in range(0, n_cells, 64)]
    )
    k_matrix = columns.reshape(n_cells, n_cells).T  # column j: A Σ U e_j
    residual = (coarse - coarsen_tensor(fine, factor, weights)).reshape(-1, n_cells)
    z = torch.linalg.lstsq(k_matrix, residual.T, rcond=rcond, driver="gelsd").solution
    return fine + sigma_up(z.T.reshape(-1, *shape))


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
