"""Reduced-space optimal interpolation: OI at any grid size (Kaplan et al. 1997).

The dense model of :mod:`climgen.tasks.fill.oi` keeps the full N × N covariance and factorises
the observed block for every mask: O(N²) memory, O(N³) time, useless past ~20,000 cells. Here
the covariance is the leading r EOFs of the training fields plus a diagonal,

.. math::

    C + τ^2 I \\;\\approx\\; B B^T + D, \\qquad B = E Λ^{1/2}\\ (N × r), \\qquad
    D = \\operatorname{diag}\\big(\\operatorname{diag} C − \\operatorname{diag} B B^T\\big)
        + τ^2 I,

i.e. ``x = μ + B α + ε``, ``α ~ N(0, I_r)``, ``ε ~ N(0, D)`` with the variance the truncated
EOFs miss put back cell by cell (Kaplan et al. 1997, §2; the "truncation error" of
Kaplan et al. 1998) and the nugget τ² = nugget · mean(diag C) as in the dense model. Given
the observed cells ``o``, with ``G = B_o^T D_o^{-1} B_o`` and ``P = (I + G)^{-1}`` (r × r),
the Woodbury identity gives the Gaussian conditional of the hidden cells ``h`` without any
N × N matrix:

.. math::

    \\hat α = P B_o^T D_o^{-1} (y_o − μ_o), \\qquad \\hat x_h = μ_h + B_h \\hat α, \\qquad
    \\operatorname{diag} P_h = \\operatorname{rowsum}\\big((B_h P) ∘ B_h\\big) + d_h,

equal to the dense formulas of :mod:`~climgen.tasks.fill.oi` for the covariance B Bᵀ + D.
Members are exact conditional draws: ``α* ~ N(\\hat α, P)`` (r × r Cholesky), ``ε_h ~ N(0,
D_h)``, ``x_h = μ_h + B_h α* + ε_h``. Cost O(n_o r² + N r) per field, memory O(N r); the
held-out log-likelihood that picks ``nugget="auto"`` uses the determinant lemma,
``log det(BBᵀ + D) = Σ log d + log det(I + BᵀD⁻¹B)``.

EOFs: from the n × n Gram matrix of the anomalies (n training fields, O(n² N)); with
``zonal=True`` (a zonally homogeneous, block-circulant covariance, ``c_ij(b − a)``) from the
H × H cross-spectral matrices ``S_k`` of every zonal wavenumber k, whose eigenvectors ``u``
give the EOFs ``u_i e^{−2πika/W}/√W`` (a cos/sin pair for 0 < k < W/2, kept or dropped
together so the truncated covariance stays exactly zonally homogeneous), O(K H³). With r at
least the rank of C (e.g. r ≥ n training fields) the model is the dense one exactly.

``context > 0`` (space–time OI) needs the lagged covariances and stays with the dense model.

References
----------
Kaplan, Kushnir, Cane & Blumenthal (1997), *Reduced space optimal analysis for historical
data sets: 136 years of Atlantic sea surface temperatures*, JGR 102(C13), 27835–27860.
Kaplan, Cane, Kushnir et al. (1998), JGR 103, 18567–18589.
Golub & Van Loan (2013), *Matrix Computations*, 4th ed., §2.1.4 (Sherman–Morrison–Woodbury).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from climgen.errors import ClimgenInputError
from climgen.tasks.fill.oi import (
    MAX_CELLS,
    GaussianFieldModel,
    _shaped,
    _start_condition,
    _training_fields,
    held_out_nugget,
)

__all__ = [
    "DEFAULT_RANK",
    "ReducedGaussianFieldModel",
    "SOLVERS",
    "fit_field_model",
    "load_field_model",
]

DEFAULT_RANK = 200  # leading EOFs kept (Kaplan et al. 1998 kept 80 for global SST)
SOLVERS = ("auto", "dense", "reduced")


class ReducedGaussianFieldModel:
    """Mean, EOF loadings ``B`` (N, r) and diagonal ``residual`` (N,) of fields on an (H, W)
    grid; the same conditioning API as :class:`~climgen.tasks.fill.oi.GaussianFieldModel`."""

    context = 0
    series_length = None

    def __init__(self, mean, loadings, residual, *, nugget=1e-5, nugget_scores=None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.loadings = np.asarray(loadings, dtype=np.float64)  # (N, r)
        self.residual = np.clip(np.asarray(residual, dtype=np.float64).reshape(-1), 0.0, None)
        if self.loadings.shape[0] != self.mean.size or self.residual.size != self.mean.size:
            raise ValueError("loadings (N, r) and residual (N,) must match the mean (H, W)")
        self.nugget = float(nugget)
        self.nugget_scores = dict(nugget_scores or {})

    # -- estimation ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        fields: np.ndarray,
        *,
        zonal: bool = False,
        hemispheric: bool = False,
        nugget: float | str = "auto",
        rank: int | float = DEFAULT_RANK,
    ) -> ReducedGaussianFieldModel:
        """Mean, leading ``rank`` EOFs (a float in (0, 1): as many as explain that fraction of
        the variance) and residual variance of complete fields (T, H, W)."""
        x = _training_fields(fields)
        valid_int = isinstance(rank, (int, np.integer)) and rank >= 1
        valid_fraction = isinstance(rank, float) and 0.0 < rank < 1.0
        if isinstance(rank, bool) or not (valid_int or valid_fraction):
            raise ClimgenInputError(
                f"rank must be an int ≥ 1 (EOFs kept) or a float in (0, 1) (fraction of the "
                f"variance kept), got {rank!r}"
            )
        if nugget == "auto":
            best, scores = held_out_nugget(
                x,
                lambda part: cls.fit(
                    part, zonal=zonal, hemispheric=hemispheric, nugget=1.0, rank=rank
                ),
            )
            model = cls.fit(x, zonal=zonal, hemispheric=hemispheric, nugget=best, rank=rank)
            model.nugget_scores = scores
            return model
        if isinstance(nugget, (bool, str)) or not (np.isfinite(nugget) and nugget > 0):
            raise ClimgenInputError(f"nugget must be a number > 0 or 'auto', got {nugget!r}")
        series = [x, x[:, ::-1, :]] if hemispheric else [x]
        stacked = np.concatenate(series)
        h, w = x.shape[1:]
        mean = stacked.mean(axis=(0, 2), keepdims=True)[0] if zonal else stacked.mean(axis=0)
        mean = np.broadcast_to(mean, (h, w)).copy()
        anomalies = (stacked - mean).reshape(len(stacked), -1)
        variance = np.einsum("tn,tn->n", anomalies, anomalies) / len(anomalies)
        if zonal:
            loadings = _zonal_loadings(stacked - mean, rank)
            variance = np.broadcast_to(variance.reshape(h, w).mean(1, keepdims=True), (h, w))
        else:
            loadings = _gram_loadings(anomalies, rank)
        residual = variance.reshape(-1) - np.einsum("nr,nr->n", loadings, loadings)
        return cls(mean, loadings, residual, nugget=nugget)

    # -- the covariance, never dense -------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean.shape)

    @property
    def rank(self) -> int:
        return int(self.loadings.shape[1])

    @cached_property
    def variance(self) -> np.ndarray:
        """diag C (N,): loadings plus residual, without the nugget (computed once: the
        loadings and residual do not change after construction)."""
        return np.einsum("nr,nr->n", self.loadings, self.loadings) + self.residual

    @property
    def tau2(self) -> float:
        """The nugget τ² in the field's units squared."""
        return self.nugget * float(np.mean(self.variance))

    def with_noise(self, nugget: float, scale: float = 1.0) -> ReducedGaussianFieldModel:
        """This model with the covariance times ``scale`` and ``nugget`` (relative to the
        scaled mean variance), as :meth:`GaussianFieldModel.with_noise
        <climgen.tasks.fill.oi.GaussianFieldModel.with_noise>`."""
        s = float(scale)
        return ReducedGaussianFieldModel(
            self.mean,
            self.loadings * np.sqrt(s),
            self.residual * s,
            nugget=nugget,
            nugget_scores=self.nugget_scores,
        )

    def _diagonal(self, tau2: float | None = None) -> np.ndarray:
        return self.residual + (self.tau2 if tau2 is None else tau2)

    def log_likelihood(self, fields: np.ndarray, *, nugget: float | None = None) -> float:
        """Mean Gaussian log-likelihood per field of complete ``fields`` (T, H, W) under
        N(μ, BBᵀ + D) (Woodbury and the determinant lemma; module docstring)."""
        nugget = self.nugget if nugget is None else float(nugget)
        d = self._diagonal(nugget * float(np.mean(self.variance)))
        b = self.loadings
        x = (np.asarray(fields, dtype=np.float64) - self.mean).reshape(len(fields), -1)
        try:
            chol = np.linalg.cholesky(np.eye(self.rank) + (b / d[:, None]).T @ b)
        except np.linalg.LinAlgError:
            return -np.inf
        proj = np.linalg.solve(chol, ((x / d) @ b).T)  # (r, T)
        quad = np.sum(x * x / d) - np.sum(proj * proj)
        logdet = np.log(d).sum() + 2 * np.log(np.diag(chol)).sum()
        return float(-0.5 * (quad / len(x) + logdet + x.shape[1] * np.log(2 * np.pi)))

    # -- conditioning ----------------------------------------------------------------------
    def _posterior(self, observed_flat: np.ndarray):
        """Observed/hidden indices, D_o⁻¹ B_o and the Cholesky factor of P⁻¹ = I + G."""
        o = np.flatnonzero(observed_flat)
        hid = np.flatnonzero(~observed_flat)
        d = self._diagonal()
        weighted = self.loadings[o] / d[o, None]  # D_o⁻¹ B_o
        precision = np.eye(self.rank) + weighted.T @ self.loadings[o]
        return o, hid, weighted, np.linalg.cholesky(precision)

    def condition(self, values: np.ndarray, observed: np.ndarray, *, members: int = 0, rng=None):
        """Conditional mean, std and (optionally) members of one field, as
        :meth:`GaussianFieldModel.condition <climgen.tasks.fill.oi.GaussianFieldModel.condition>`.
        """
        import scipy.linalg

        flat_obs, y, mu, mean, std, done = _start_condition(
            self.shape, self.mean, values, observed, members
        )
        if done is not None:
            return done
        o, hid, weighted, chol = self._posterior(flat_obs)
        alpha = scipy.linalg.cho_solve((chol, True), weighted.T @ (y[o] - mu[o]))
        b_h = self.loadings[hid]
        mean[hid] = mu[hid] + b_h @ alpha
        v = scipy.linalg.solve_triangular(chol, b_h.T, lower=True)  # L⁻¹ B_hᵀ: P = L⁻ᵀL⁻¹
        std[hid] = np.sqrt(np.einsum("rh,rh->h", v, v) + self._diagonal()[hid])
        draws = None
        if members:
            rng = np.random.default_rng(rng)
            # α* = α̂ + L⁻ᵀ g has covariance L⁻ᵀ L⁻¹ = P
            g = rng.standard_normal((self.rank, members))
            coeffs = alpha[:, None] + scipy.linalg.solve_triangular(chol, g, lower=True, trans="T")
            noise = rng.standard_normal((members, hid.size)) * np.sqrt(self._diagonal()[hid])
            draws = np.broadcast_to(mean, (members, mu.size)).copy()
            draws[:, hid] = mu[hid] + (b_h @ coeffs).T + noise
        return mean.reshape(self.shape), std.reshape(self.shape), _shaped(draws, self.shape)

    def condition_window(self, values, observed, *, members: int = 0, rng=None):
        raise ClimgenInputError(
            "space–time optimal interpolation (context > 0) needs the dense covariance: use "
            f"solver='dense' on a grid of ≤ {MAX_CELLS} cells, or context=0"
        )

    def conditional_means(self, fields: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Conditional means of many fields ``(T, H, W)`` under one mask ``(H, W)``."""
        import scipy.linalg

        flat = np.asarray(fields, dtype=np.float64).reshape(len(fields), -1)
        flat_obs = np.asarray(observed, dtype=bool).reshape(-1)
        mu = self.mean.reshape(-1)
        out = np.where(flat_obs, flat, mu)
        if not flat_obs.all():
            o, hid, weighted, chol = self._posterior(flat_obs)
            alpha = scipy.linalg.cho_solve((chol, True), weighted.T @ (flat[:, o] - mu[o]).T)
            out[:, hid] = mu[hid] + (self.loadings[hid] @ alpha).T
        return out.reshape(len(fields), *self.shape)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` of plain arrays (no pickles)."""
        arrays = {
            "mean": self.mean,
            "loadings": self.loadings,
            "residual": self.residual,
            "nugget": np.float64(self.nugget),
        }
        if self.nugget_scores:
            arrays["nugget_grid"] = np.array(list(self.nugget_scores), dtype=np.float64)
            arrays["nugget_log_likelihood"] = np.array(list(self.nugget_scores.values()))
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ReducedGaussianFieldModel:
        with np.load(path, allow_pickle=False) as f:
            scores = None
            if "nugget_grid" in f:
                scores = dict(zip(f["nugget_grid"].tolist(), f["nugget_log_likelihood"].tolist()))
            return cls(
                f["mean"],
                f["loadings"],
                f["residual"],
                nugget=float(f["nugget"]),
                nugget_scores=scores,
            )


def _gram_loadings(anomalies: np.ndarray, rank: int) -> np.ndarray:
    """``B = E Λ^{1/2}`` of C = AᵀA/n from the n × n Gram matrix: with A Aᵀ/n = V Λ Vᵀ,
    E Λ^{1/2} = Aᵀ V / √n."""
    n = len(anomalies)
    lam, vecs = np.linalg.eigh(anomalies @ anomalies.T / n)
    lam = np.clip(lam, 0.0, None)
    keep = np.argsort(lam)[::-1]
    keep = keep[: _n_kept(lam[keep], np.ones(len(keep)), rank)]
    keep = keep[lam[keep] > 1e-12 * max(float(lam.max()), 1e-300)]
    return anomalies.T @ vecs[:, keep] / np.sqrt(n)


def _n_kept(lam: np.ndarray, mult: np.ndarray, rank) -> int:
    """How many of the eigenvalues ``lam`` (descending, each standing for ``mult`` EOFs)
    to keep: enough for ``rank`` EOFs (an int; a cos/sin pair is kept whole) or for the
    fraction ``rank`` of the variance (a float in (0, 1))."""
    if isinstance(rank, float):
        explained = np.cumsum(lam * mult) / max(float(np.sum(lam * mult)), 1e-300)
        return int(np.searchsorted(explained, rank)) + 1
    return int(np.searchsorted(np.cumsum(mult), rank)) + 1


def _zonal_loadings(anomalies: np.ndarray, rank: int) -> np.ndarray:
    """Loadings of the leading EOFs of the zonally homogeneous covariance of ``anomalies``
    (n, H, W) (module docstring): eigenvectors of the cross-spectral matrix of each zonal
    wavenumber, as cos/sin pairs on the grid."""
    n, h, w = anomalies.shape
    spec = np.fft.rfft(anomalies, axis=-1)  # (n, H, K)
    cross = np.einsum("tik,tjk->kij", spec.conj(), spec) / (n * w)  # S_k, Hermitian (K, H, H)
    lam, vecs = np.linalg.eigh(cross)  # (K, H), (K, H, H)
    k_all = np.arange(cross.shape[0])
    real = (k_all == 0) | (2 * k_all == w)  # S_k real symmetric: real eigenvectors
    for k in k_all[real]:
        lam[k], vecs[k] = np.linalg.eigh(cross[k].real)
    lam = np.clip(lam, 0.0, None)
    mult = np.where(real, 1, 2)[:, None] * np.ones(lam.shape, dtype=int)
    order = np.argsort(lam, axis=None)[::-1]
    order = order[: _n_kept(lam.reshape(-1)[order], mult.reshape(-1)[order], rank)]
    order = order[lam.reshape(-1)[order] > 1e-12 * max(float(lam.max()), 1e-300)]
    phase = np.exp(-2j * np.pi * np.arange(w) / w)
    columns = []
    for k, m in zip(*np.unravel_index(order, lam.shape)):
        psi = (vecs[k, :, m][:, None] * phase[None, :] ** k).reshape(-1) / np.sqrt(w)
        if real[k]:  # a unit vector already
            columns.append(np.sqrt(lam[k, m]) * psi.real)
        else:  # λ(ψψᴴ + ψ̄ψ̄ᵀ) = 2λ(Re ψ Re ψᵀ + Im ψ Im ψᵀ)
            columns += [np.sqrt(2 * lam[k, m]) * psi.real, np.sqrt(2 * lam[k, m]) * psi.imag]
    return np.stack(columns, axis=1) if columns else np.zeros((h * w, 0))


def fit_field_model(
    fields: np.ndarray,
    *,
    solver: str = "auto",
    rank: int = DEFAULT_RANK,
    zonal: bool = False,
    hemispheric: bool = False,
    nugget: float | str = "auto",
    context: int = 0,
):
    """The OI model of ``fields`` (T, H, W): dense (:class:`GaussianFieldModel`) for
    ``solver="dense"``, reduced-space (:class:`ReducedGaussianFieldModel`) for
    ``"reduced"``; ``"auto"`` is dense up to :data:`~climgen.tasks.fill.oi.MAX_CELLS` cells
    and reduced above."""
    if solver not in SOLVERS:
        raise ClimgenInputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    x = np.asarray(fields)
    cells = int(np.prod(x.shape[1:])) if x.ndim == 3 else 0
    if solver == "auto":
        solver = "dense" if cells <= MAX_CELLS or context > 0 else "reduced"
    if solver == "dense":
        return GaussianFieldModel.fit(
            x, zonal=zonal, hemispheric=hemispheric, nugget=nugget, context=context
        )
    if context:
        raise ClimgenInputError(
            "solver='reduced' has no space–time conditioning: use context=0, or the dense "
            f"solver on a grid of ≤ {MAX_CELLS} cells"
        )
    return ReducedGaussianFieldModel.fit(
        x, zonal=zonal, hemispheric=hemispheric, nugget=nugget, rank=rank
    )


def load_field_model(path: str | Path):
    """The dense or reduced model :meth:`save` wrote to ``path``."""
    with np.load(path, allow_pickle=False) as f:
        reduced = "loadings" in f
    return (ReducedGaussianFieldModel if reduced else GaussianFieldModel).load(path)
