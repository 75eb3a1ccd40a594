"""Empirical quantile mapping per grid point, T(x) = Q_B(F_A(x)): the bias-correction baseline
of translation (:class:`~climgen.tasks.translate.translator.Translator`) and the marginal stage
of spectral calibration (:mod:`climgen.tasks.emulate.spectral_calibration`).

Its own module so that both wings use it without importing each other. Reference: Panofsky &
Brier (1968), *Some Applications of Statistics to Meteorology*; Maraun (2013), J. Climate 26,
2137–2143 (quantile mapping as bias correction).
"""

from __future__ import annotations

import numpy as np
import torch

from climgen.errors import ClimgenInputError

__all__ = ["QuantileMapping"]


class QuantileMapping:
    """Empirical quantile mapping per grid point: ``T(x) = Q_B(F_A(x))``.

    ``fit(a, b)`` with arrays (N_A, P) and (N_B, P) (P grid points × variables, samples first)
    stores Q_A, Q_B at ``n_quantiles`` levels p_j = j / (n − 1) (linear-interpolated order
    statistics, numpy's default). ``transform(x)`` with x (N, P) finds p = F_A(x) by linear
    interpolation in Q_A (clamped to [0, 1]) and returns Q_B(p). Vectorised over grid points
    with :func:`torch.searchsorted`. If A and B are Gaussian, T is the affine map
    x ↦ μ_B + σ_B (x − μ_A) / σ_A up to sampling error.
    """

    def __init__(self, n_quantiles: int = 100):
        if isinstance(n_quantiles, bool) or not isinstance(n_quantiles, int) or n_quantiles < 2:
            raise ClimgenInputError(f"option 'n_quantiles' must be an int ≥ 2, got {n_quantiles!r}")
        self.n_quantiles = n_quantiles
        self.q_a: torch.Tensor | None = None
        self.q_b: torch.Tensor | None = None

    def fit(self, a, b) -> QuantileMapping:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ClimgenInputError(
                f"quantile mapping needs (samples, points) arrays on one grid, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            )
        levels = np.linspace(0, 1, self.n_quantiles)
        # numpy, not torch.quantile, which refuses inputs of more than 2**24 elements.
        self.q_a = torch.from_numpy(np.ascontiguousarray(np.quantile(a, levels, axis=0).T))
        self.q_b = torch.from_numpy(np.ascontiguousarray(np.quantile(b, levels, axis=0).T))
        return self

    def transform(self, x) -> np.ndarray:
        if self.q_a is None:
            raise ClimgenInputError("quantile mapping must be fitted first: call fit(a, b)")
        x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.q_a.shape[0]:
            raise ClimgenInputError(
                f"quantile mapping was fitted on {self.q_a.shape[0]} points, got an array "
                f"{tuple(x.shape)}"
            )
        p = _interp_rows(x.T.contiguous(), self.q_a, _levels_like(self.q_a))
        return _interp_rows(p, _levels_like(self.q_b), self.q_b).T.numpy()

    def state(self) -> dict[str, np.ndarray]:
        return {"q_a": self.q_a.numpy(), "q_b": self.q_b.numpy()}

    @classmethod
    def from_state(cls, state) -> QuantileMapping:
        qm = cls(int(state["q_a"].shape[1]))
        qm.q_a = torch.as_tensor(state["q_a"], dtype=torch.float64)
        qm.q_b = torch.as_tensor(state["q_b"], dtype=torch.float64)
        return qm


def _levels_like(q: torch.Tensor) -> torch.Tensor:
    n = q.shape[1]
    return torch.linspace(0, 1, n, dtype=q.dtype).expand(q.shape[0], n).contiguous()


def _interp_rows(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.interp``: x (P, N), increasing xp (P, n), fp (P, n); ends held constant.

    Ties in xp (a value repeated in the sample, e.g. dry days) map to the upper end of the tie.
    """
    n = xp.shape[1]
    hi = torch.searchsorted(xp, x, right=True).clamp(1, n - 1)
    lo = hi - 1
    x0, x1 = xp.gather(1, lo), xp.gather(1, hi)
    y0, y1 = fp.gather(1, lo), fp.gather(1, hi)
    width = x1 - x0
    t = torch.where(width > 0, (x - x0) / torch.where(width > 0, width, 1.0), 0.0)
    return y0 + t.clamp(0, 1) * (y1 - y0)
