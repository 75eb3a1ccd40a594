"""Statistical constraints for the generator loss: covariance matching (Wu et al. 2020), spectra.

**Covariance constraint.** Wu, Kashinath, Mustafa et al. (2020), *Enforcing statistical
constraints in generative adversarial networks for modeling chaotic dynamical systems*,
J. Comput. Phys. 406, add to the generator loss the mismatch between the covariance of
generated and real fields. Here (fields flattened over channels and grid, D = C·H·W):

.. math::
    L_{cov} = \\frac{\\lVert Σ_{fake} - Σ_{real} \\rVert_F^2}{\\lVert Σ_{real} \\rVert_F^2},
    \\qquad Σ = \\tfrac{1}{n-1} X_c^\\top X_c

with X_c the centred (n, D) batch. The D×D matrices are never formed: with
tr(AB) = ‖X_a X_bᵀ‖²_F/((n_a−1)(n_b−1)) every term is a Frobenius norm of an n×n Gram
matrix, so the *full-field* covariance costs O(n²D) time and O(n²) memory even for
64×256 fields. Options:

- ``patch_size=p``: covariance of a random p×p window (same window for both batches): the
  local covariance structure, cheaper and better estimated than the full one for small batches.
- ``unbiased=True``: the plain estimator is biased upward by the sampling noise of the
  batch covariances, E‖Σ̂_f − Σ‖² = ‖Σ_f − Σ‖² + E‖Σ̂_f − Σ_f‖², and that noise term shrinks
  with the generator's variance, pulling G toward under-dispersion. With ``unbiased=True``
  tr(Σ_f²) and tr(Σ_r²) are estimated from two independent half-batches (tr(Σ̂¹Σ̂²) is
  unbiased), so the numerator is an unbiased estimate of ‖Σ_f − Σ_r‖² (it may be < 0).
- :class:`ReferenceCovariance`: match a *fixed* covariance of the training data (stored as
  a factor F with Σ_ref = FᵀF) instead of the real batch's.

**Spectral loss.** :func:`spectral_loss` is the log-spectral distance between batch-mean
power spectra, built from :func:`climgen.metrics.rapsd` and
:func:`climgen.metrics.log_spectral_distance` — the same definitions the evaluation uses.
"""

from __future__ import annotations

import torch
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.metrics.spectra import log_spectral_distance, rapsd

__all__ = ["covariance_loss", "ReferenceCovariance", "spectral_loss"]


def _centred(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim < 2 or x.shape[0] < 2:
        raise ClimgenInputError(
            f"covariance: {name} needs a batch of at least 2 samples, got shape {tuple(x.shape)}"
        )
    flat = x.flatten(1)
    return flat - flat.mean(0, keepdim=True)


def _cross_trace(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """tr(Σ_a Σ_b) for centred (n_a, D), (n_b, D) batches."""
    return (xa @ xb.T).square().sum() / ((xa.shape[0] - 1) * (xb.shape[0] - 1))


def _halves(x: torch.Tensor):
    if x.shape[0] < 4:
        raise ClimgenInputError(f"unbiased covariance needs ≥ 4 samples, got {x.shape[0]}")
    h = x.shape[0] // 2
    return _centred(x[:h], "half-batch"), _centred(x[h : 2 * h], "half-batch")


def _random_window(fake, real, patch_size, generator):
    H, W = fake.shape[-2:]
    if real.shape[-2:] != (H, W):
        raise ClimgenInputError(
            f"covariance: fake grid {(H, W)} ≠ real grid {tuple(real.shape[-2:])}"
        )
    p = int(patch_size)
    if not 1 <= p <= min(H, W):
        raise ClimgenInputError(
            f"covariance patch_size must lie in [1, {min(H, W)}], got {patch_size}"
        )
    y0, x0 = (int(torch.randint(0, n - p + 1, (1,), generator=generator)) for n in (H, W))
    return fake[..., y0 : y0 + p, x0 : x0 + p], real[..., y0 : y0 + p, x0 : x0 + p]


def covariance_loss(
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    patch_size: int | None = None,
    unbiased: bool = False,
    generator: torch.Generator | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Normalised covariance mismatch ‖Σ_fake − Σ_real‖²_F / ‖Σ_real‖²_F of two batches.

    ``fake`` and ``real`` are (n, ...) batches (n ≥ 2; ≥ 4 with ``unbiased``), flattened over
    all non-batch dims. 0 for identical batches; invariant to adding a constant to either
    batch. Differentiable w.r.t. ``fake`` (``real`` is treated as data). See the module
    docstring for ``patch_size`` and ``unbiased``; ``generator`` draws the patch position.
    """
    real = real.detach()
    if fake.shape[1:] != real.shape[1:]:
        raise ClimgenInputError(
            f"covariance: fake samples {tuple(fake.shape[1:])} and real "
            f"{tuple(real.shape[1:])} differ"
        )
    if patch_size is not None:
        fake, real = _random_window(fake, real, patch_size, generator)
    xf, xr = _centred(fake, "fake"), _centred(real, "real")
    norm = _cross_trace(xr, xr)
    if unbiased:
        (f1, f2), (r1, r2) = _halves(fake), _halves(real)
        mismatch = _cross_trace(f1, f2) - 2 * _cross_trace(xf, xr) + _cross_trace(r1, r2)
    else:
        mismatch = (_cross_trace(xf, xf) - 2 * _cross_trace(xf, xr) + norm).clamp(min=0.0)
    return mismatch / (norm + eps)


class ReferenceCovariance(nn.Module):
    """A fixed covariance Σ_ref of training fields, to match instead of the real batch's.

    Stored as the centred data F = X_c/√(N−1) (N × D, so Σ_ref = FᵀF exactly, rank ≤ N−1;
    memory N·D), with ‖Σ_ref‖²_F = ‖F Fᵀ‖²_F precomputed. :meth:`forward` returns
    ‖Σ_fake − Σ_ref‖²_F / ‖Σ_ref‖²_F for a generated batch. Pass a subset of the training
    set (a few hundred fields) for large grids.
    """

    def __init__(self, data: torch.Tensor):
        super().__init__()
        data = torch.as_tensor(data)
        xc = _centred(data.detach(), "reference data")
        factor = xc / (xc.shape[0] - 1) ** 0.5
        self.register_buffer("factor", factor)
        self.register_buffer("norm", (factor @ factor.T).square().sum())
        self.sample_shape = tuple(data.shape[1:])

    def forward(self, fake: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
        if tuple(fake.shape[1:]) != self.sample_shape:
            raise ClimgenInputError(
                f"ReferenceCovariance built for samples {self.sample_shape}, "
                f"got {tuple(fake.shape[1:])}"
            )
        xf = _centred(fake, "fake")
        n = xf.shape[0] - 1
        factor = self.factor.to(xf.dtype)
        cross = (xf @ factor.T).square().sum() / n
        mismatch = (xf @ xf.T).square().sum() / n**2 - 2 * cross + self.norm.to(xf.dtype)
        return mismatch.clamp(min=0.0) / (self.norm.to(xf.dtype) + eps)


def spectral_loss(
    fake: torch.Tensor,
    real: torch.Tensor,
    dy: float = 1.0,
    dx: float = 1.0,
    *,
    window: str | None = None,
) -> torch.Tensor:
    """Log-spectral distance between the batch-mean power spectra of ``fake`` and ``real``.

    .. math::
        L_{spec} = \\sqrt{\\operatorname{mean}_{c,k}\\big(\\log_{10} \\bar P_{fake}(c, k)
                   - \\log_{10} \\bar P_{real}(c, k)\\big)^2}

    with P̄ the sample mean of :func:`climgen.metrics.rapsd` (``reduce="mean"``, physical
    wavenumbers from grid spacings ``dy``, ``dx``; ``window`` as there) per channel c and
    ring k, and the distance :func:`climgen.metrics.log_spectral_distance` (decades) — the
    same definitions as the evaluation. Inputs (B, C, H, W) or (B, H, W); differentiable
    w.r.t. ``fake``. Its gradient is undefined only where the two spectra coincide exactly.
    """
    if fake.shape[1:] != real.shape[1:]:
        raise ClimgenInputError(
            f"spectral_loss: fake samples {tuple(fake.shape[1:])} and real "
            f"{tuple(real.shape[1:])} differ"
        )
    _, p_fake = rapsd(fake, dy, dx, window=window)
    _, p_real = rapsd(real.detach(), dy, dx, window=window)
    return log_spectral_distance(p_fake.mean(0), p_real.mean(0))
