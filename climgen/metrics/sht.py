"""Real spherical-harmonic transforms whose memory stays bounded on 0.25° grids.

The same transforms as torch-harmonics' ``RealSHT`` / ``InverseRealSHT`` (``norm="ortho"``,
Condon–Shortley phase, its quadrature nodes and weights, ℓ < ``nlat``, m ≤ ``nlon``/2):

.. math::

    a_{ℓm} = 2π \\sum_k w_k\\, \\bar P_ℓ^m(\\cos θ_k)\\, F_m(θ_k), \\qquad
    f(θ_k, φ) = \\mathrm{irfft}_φ\\Big(\\sum_ℓ \\bar P_ℓ^m(\\cos θ_k)\\, a_{ℓm}\\Big),

with F_m(θ_k) = (1/n_φ) Σ_j f(θ_k, φ_j) e^{−imφ_j} the rfft along longitude and
\\bar P_ℓ^m the orthonormal associated Legendre functions (Schaeffer 2013), computed by the
same three-term recursion in ℓ. What differs is the storage: torch-harmonics holds
\\bar P_ℓ^m(θ_k) for every (m, ℓ, k) — ``nlon``/2 × ``nlat`` × ``nlat`` float64, twice (the
analysis table with the weights folded in and the synthesis table), and builds them in a
square ``max(m, ℓ)``² × ``nlat`` array: 3 GB each at 720 × 1440, 11.8 GB peak RSS for one
filter. Here the table is cut into blocks of orders [m₀, m₁) holding only the degrees
ℓ ≥ m₀ (\\bar P_ℓ^m = 0 for ℓ < m: the triangle is half the square), one table serves both
directions (the weights are applied to the data), and the transform is one batched matrix
product per block. The blocks are kept (cached) while they total at most
:data:`TABLE_CACHE_BYTES` (1.5 GB at 720 × 1440), else rebuilt block by block at every call
(memory: one block, :data:`BLOCK_BYTES`). Results equal torch-harmonics' to rounding
(``tests/metrics/test_sht.py``: 1e-12).

References: Schaeffer (2013), *Efficient spherical harmonic transforms aimed at
pseudospectral numerical simulations*, G3 14, 751–758; Bonev et al. (2023), torch-harmonics.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from climgen.errors import ClimgenInputError, require

__all__ = ["SphericalTransform", "spherical_transform", "TABLE_CACHE_BYTES", "BLOCK_BYTES"]

TABLE_CACHE_BYTES = 2 * 2**30  # Legendre blocks kept between calls up to this size
BLOCK_BYTES = 64 * 2**20  # one block of orders: at most this size (float64)


def _nodes(nlat: int, grid: str) -> tuple[np.ndarray, np.ndarray]:
    """cos θ of the rows (north → south) and the quadrature weights, as torch-harmonics."""
    th = require("torch_harmonics", "sphere", "the spherical-harmonic transform")
    if grid == "legendre-gauss":
        cost, weights = th.quadrature.legendre_gauss_weights(nlat, -1, 1)
    elif grid == "equiangular":
        cost, weights = th.quadrature.clenshaw_curtiss_weights(nlat, -1, 1)
    else:
        raise ClimgenInputError(
            f"spherical transform: grid must be 'legendre-gauss' or 'equiangular', got {grid!r}"
        )
    theta = np.flip(np.arccos(np.asarray(cost, dtype=np.float64)))
    return np.cos(theta), np.flip(np.asarray(weights, dtype=np.float64)).copy()


def _order_blocks(lmax: int, mmax: int, nlat: int, block_bytes: int) -> list[tuple[int, int]]:
    """[m₀, m₁) blocks of orders < min(mmax, lmax) whose tables (m₁ − m₀)·(lmax − m₀)·nlat
    float64 values stay under ``block_bytes``."""
    blocks, m0, top = [], 0, min(mmax, lmax)
    while m0 < top:
        per_order = (lmax - m0) * nlat * 8
        m1 = min(top, m0 + max(1, block_bytes // per_order))
        blocks.append((m0, m1))
        m0 = m1
    return blocks


def legendre_block(m0: int, m1: int, lmax: int, x: np.ndarray) -> torch.Tensor:
    """(m₁ − m₀, lmax − m₀, len(x)) float64: [m − m₀, ℓ − m₀, k] = (−1)^m \\bar P_ℓ^m(x_k),
    orthonormal on the sphere (∫ (\\bar P_ℓ^m)² dΩ = 1 with e^{imφ}), 0 for ℓ < m: the
    recursion of torch-harmonics' ``legpoly`` (diagonal, first off-diagonal, then in ℓ),
    vectorised over the orders of the block."""
    x = torch.as_tensor(x, dtype=torch.float64)
    diag = torch.full_like(x, 1.0 / math.sqrt(4 * math.pi))  # \bar P_0^0
    for m in range(1, m0):
        diag = torch.sqrt((2 * m + 1) * (1 + x) * (1 - x) / 2 / m) * diag
    mc, lc = m1 - m0, lmax - m0
    table = torch.zeros(mc, lc, x.numel(), dtype=torch.float64)
    for m in range(m0, m1):
        if m > 0:
            diag = torch.sqrt((2 * m + 1) * (1 + x) * (1 - x) / 2 / m) * diag
        table[m - m0, m - m0] = diag
        if m + 1 < lmax:
            table[m - m0, m + 1 - m0] = math.sqrt(2 * (m + 1) + 1) * x * diag
    orders = np.arange(m0, m1, dtype=np.float64)
    for ell in range(m0 + 2, lmax):
        n = min(mc, ell - 1 - m0)  # the orders m ≤ ℓ − 2
        if n <= 0:
            continue
        m = orders[:n]
        a = np.sqrt((2 * ell - 1) / (ell - m) * (2 * ell + 1) / (ell + m))
        b = (ell + m - 1) / (ell - m) * (2 * ell + 1) / (2 * ell - 3) * (ell - m - 1) / (ell + m)
        b = np.sqrt(b)
        a, b = torch.as_tensor(a)[:, None], torch.as_tensor(b)[:, None]
        li = ell - m0
        table[:n, li] = x * a * table[:n, li - 1] - b * table[:n, li - 2]
    table[1 - m0 % 2 :: 2] *= -1  # Condon–Shortley phase (−1)^m on the odd orders
    return table


class SphericalTransform:
    """Real SHT pair on a (``nlat``, ``nlon``) grid, rows north → south (see the module
    docstring): :meth:`forward` (…, nlat, nlon) → (…, nlat, nlon/2 + 1) complex coefficients
    a_ℓm (ℓ, m), :meth:`inverse` back. ``block_bytes`` and ``cache_bytes`` bound the memory of
    the Legendre tables."""

    def __init__(
        self,
        nlat: int,
        nlon: int,
        grid: str = "legendre-gauss",
        *,
        block_bytes: int = BLOCK_BYTES,
        cache_bytes: int = TABLE_CACHE_BYTES,
    ):
        self.nlat, self.nlon, self.grid = int(nlat), int(nlon), grid
        self.x, weights = _nodes(self.nlat, grid)
        self.weights = torch.as_tensor(weights)
        self.lmax, self.mmax = self.nlat, self.nlon // 2 + 1
        self.blocks = _order_blocks(self.lmax, self.mmax, self.nlat, block_bytes)
        total = sum((m1 - m0) * (self.lmax - m0) * self.nlat * 8 for m0, m1 in self.blocks)
        self.table_bytes = total
        self._tables = None if total > cache_bytes else [self._block(*b) for b in self.blocks]

    def _block(self, m0: int, m1: int) -> torch.Tensor:
        return legendre_block(m0, m1, self.lmax, self.x)

    def _each_block(self):
        for i, (m0, m1) in enumerate(self.blocks):
            table = self._tables[i] if self._tables is not None else self._block(m0, m1)
            yield m0, m1, table

    def _check(self, shape, what: str, expected: tuple[int, int]) -> None:
        if tuple(shape[-2:]) != expected:
            raise ClimgenInputError(
                f"spherical transform of a {self.nlat}×{self.nlon} grid: {what} must end in "
                f"{expected}, got {tuple(shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """a_ℓm (…, lmax, mmax) of the real fields ``x`` (…, nlat, nlon)."""
        self._check(x.shape, "the fields", (self.nlat, self.nlon))
        lead = x.shape[:-2]
        spec = 2.0 * torch.pi * torch.fft.rfft(x, dim=-1, norm="forward")[..., : self.mmax]
        real = torch.view_as_real(spec).reshape(-1, self.nlat, self.mmax, 2)  # (B, k, m, 2)
        dtype = real.dtype
        weights = self.weights.to(real.device, dtype)[None, :, None, None]
        real = (real * weights).permute(2, 1, 0, 3)
        real = real.reshape(self.mmax, self.nlat, -1)  # (m, k, 2B)
        out = torch.zeros(self.mmax, self.lmax, real.shape[-1], dtype=dtype, device=x.device)
        for m0, m1, table in self._each_block():
            out[m0:m1, m0:] = torch.bmm(table.to(real.device, dtype), real[m0:m1])
        out = out.reshape(self.mmax, self.lmax, -1, 2).permute(2, 1, 0, 3).contiguous()
        return torch.view_as_complex(out).reshape(*lead, self.lmax, self.mmax)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """The real fields (…, nlat, nlon) of the coefficients ``coeffs`` (…, lmax, mmax)."""
        self._check(coeffs.shape, "the coefficients", (self.lmax, self.mmax))
        lead = coeffs.shape[:-2]
        real = torch.view_as_real(coeffs).reshape(-1, self.lmax, self.mmax, 2)
        dtype = real.dtype
        real = real.permute(2, 1, 0, 3).reshape(self.mmax, self.lmax, -1)  # (m, ℓ, 2B)
        out = torch.zeros(self.mmax, self.nlat, real.shape[-1], dtype=dtype, device=real.device)
        for m0, m1, table in self._each_block():
            out[m0:m1] = torch.bmm(table.to(real.device, dtype).transpose(1, 2), real[m0:m1, m0:])
        out = out.reshape(self.mmax, self.nlat, -1, 2).permute(2, 1, 0, 3).contiguous()
        spec = torch.view_as_complex(out)
        spec[..., 0].imag = 0.0  # as torch-harmonics: no imaginary part at m = 0, Nyquist
        if self.nlon % 2 == 0 and self.nlon // 2 < self.mmax:
            spec[..., self.nlon // 2].imag = 0.0
        fields = torch.fft.irfft(spec, n=self.nlon, dim=-1, norm="forward")
        return fields.reshape(*lead, self.nlat, self.nlon)

    __call__ = forward


@lru_cache(maxsize=2)
def spherical_transform(nlat: int, nlon: int, grid: str) -> SphericalTransform:
    """The :class:`SphericalTransform` of a grid, cached (two grids at most: each may hold up
    to :data:`TABLE_CACHE_BYTES` of tables)."""
    return SphericalTransform(nlat, nlon, grid)
