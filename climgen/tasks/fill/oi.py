"""Optimal interpolation with a learned covariance: the Gaussian conditional of the fields.

The model treats a field ``x`` (N = H·W cells) as Gaussian, ``x ~ N(μ, C)``, with ``μ`` and
``C`` estimated from complete training fields (the empirical, "learned" covariance — it knows
that anomalies are larger and longer-ranged in mid-latitudes than in the tropics, which a
stationary kriging kernel does not). Given the observed cells ``o`` of a field, the missing
cells ``h`` follow the conditional Gaussian (Gandin 1963; Rasmussen & Williams 2006, eq. A.6):

.. math::

    \\hat x_h = μ_h + C_{ho} (C_{oo} + τ^2 I)^{-1} (y_o − μ_o), \\qquad
    \\operatorname{diag} P_h = \\operatorname{diag}\\big(C_{hh}
        − C_{ho} (C_{oo} + τ^2 I)^{-1} C_{oh}\\big) + τ^2,

where the nugget ``τ² = nugget · mean(diag C)`` regularises the solve. ``nugget="auto"``
(the default) picks it from a log grid (:data:`NUGGET_GRID`, 1e-8 … 1, widened decade by
decade up to :data:`NUGGET_LIMITS` while the best value sits on an edge and the likelihood
still rises there) by the Gaussian log-likelihood of the last 20 % of the training fields
under the covariance of the first 80 %,

.. math:: \\ell(τ^2) = -\\frac12 \\sum_t (x_t − μ)^T (C + τ^2 I)^{-1} (x_t − μ)
          - \\frac{n}{2} \\log\\det (C + τ^2 I),

then refits on all fields: a large nugget where few fields give a rank-deficient
covariance, a tiny one where symmetries give a well-determined one. The training fields carry
no observation error: for observations that do (real data), ``nugget="ml"`` of the infiller
estimates the nugget and a scale of C from the observations at fill time
(:mod:`~climgen.tasks.fill.oi_noise`, :meth:`GaussianFieldModel.with_noise`). Members are exact
draws from the conditional by conditioning unconditional draws (Journel & Huijbregts 1978;
Hoffman & Ribak 1991): ``x* ~ N(0, C)``, ``ε ~ N(0, τ²I)``, then
``x_h = \\hat x_h + x*_h + ε_h − C_{ho}(C_{oo} + τ²I)^{-1}(x*_o + ε_o)`` (the nugget at the
hidden cells too, so that the members' variance is the ``diag P_h`` above, τ² included).

Symmetries stretch the few training fields into a well-conditioned covariance:

- ``zonal=True`` (zonally homogeneous data, e.g. aqua-planet or Held–Suarez runs on a
  periodic longitude grid): statistics invariant under longitude shifts, so the covariance
  is block-circulant, ``C[(i, a), (j, b)] = c_ij((b − a) mod W)``, with the cross-covariance
  function ``c_ij(d) = ⟨x_i(a) x_j(a + d)⟩`` estimated from all T·W shifts by FFT along
  longitude. Only ``c`` (H × H × W) is stored.
- ``hemispheric=True`` (data statistically symmetric about the equator): every field also
  counts mirrored in latitude.

Without ``zonal`` the covariance is ``AᵀA / n`` of the anomaly matrix ``A`` (n × N) that is
stored instead (n = T, or 2T with ``hemispheric``): rank ≤ n, so the nugget matters.

``context=k`` (consecutive training fields) also learns the lagged covariances
``C^{(l)} = cov(x_t, x_{t+l})``, l ≤ 2k, and :meth:`GaussianFieldModel.condition_window`
conditions the field at t on the observed cells of the fields t − k … t + k as well
(space–time optimal interpolation); its members come from the Cholesky factor of the
posterior covariance of the hidden cells. Every lag is estimated with the one divisor T,
``C^{(l)} = (1/T) Σ_{t<T−l} a_t a_{t+l}ᵀ`` (the biased estimator; Brockwell & Davis 1991,
§7.2): the space–time covariance of a window is then a Gram matrix of zero-padded series,
positive semi-definite by construction, so ``C + τ²I`` always factorises (the divisor
T − l of the unbiased estimator gave indefinite windows from a few rough fields).

This is the classical statistical reconstruction of climate fields (optimal interpolation,
the full-rank limit of Kaplan et al. 1998's reduced-space OI), here as the strong linear
baseline a learned infiller has to beat.

References
----------
Gandin (1963), *Objective Analysis of Meteorological Fields*, Gidrometeoizdat.
Hoffman & Ribak (1991), *Constrained realizations of Gaussian fields*, ApJ 380, L5–L8.
Brockwell & Davis (1991), *Time Series: Theory and Methods*, 2nd ed., Springer.
Kaplan, Cane, Kushnir et al. (1998), *Analyses of global sea surface temperature
1856–1991*, JGR 103, 18567–18589.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from climgen.errors import ClimgenInputError

__all__ = ["GaussianFieldModel", "MAX_CELLS", "NUGGET_GRID", "NUGGET_LIMITS", "widened_search"]

MAX_CELLS = 20_000  # a dense N × N covariance: 3.2 GB of float64 at this size
NUGGET_GRID = tuple(10.0 ** np.arange(-8, 0.5, 1.0))  # candidates of nugget="auto"
NUGGET_LIMITS = (1e-15, 1e4)  # how far the search widens past an edge of NUGGET_GRID
HOLDOUT_FRACTION = 0.2


def _decade(value: float, step: int) -> float:
    """The power of ten ``step`` decades from ``value`` (itself a power of ten)."""
    return float(10.0 ** (round(np.log10(value)) + step))


def widened_search(score, grid=NUGGET_GRID, limits=NUGGET_LIMITS) -> dict[float, float]:
    """``score(nugget)`` on the log grid ``grid``, widened by decades past an edge.

    While the best candidate is the smallest (largest) one tried and the score still rose
    from its neighbour, the next decade below (above) is tried, down to ``limits[0]`` (up to
    ``limits[1]``): an optimum on the edge of the grid is not an optimum. Returns
    ``{nugget: score}`` of every candidate tried.
    """
    scores = {float(n): score(float(n)) for n in grid}
    while True:
        keys = sorted(scores)
        best = max(keys, key=scores.get)
        if best == keys[0] and len(keys) > 1 and scores[keys[0]] > scores[keys[1]]:
            nxt = _decade(best, -1)
            if nxt < limits[0] * (1 - 1e-9):
                break
        elif best == keys[-1] and len(keys) > 1 and scores[keys[-1]] > scores[keys[-2]]:
            nxt = _decade(best, +1)
            if nxt > limits[1] * (1 + 1e-9):
                break
        else:
            break
        scores[nxt] = score(nxt)
    return dict(sorted(scores.items()))


class GaussianFieldModel:
    """Mean and covariance of fields on an (H, W) grid, and their Gaussian conditionals.

    Build it with :meth:`fit`; :meth:`condition` gives the conditional mean and standard
    deviation of the missing cells and exact conditional members (conditioned unconditional
    draws: one N × N factorisation, reused), :meth:`condition_window` the same given the
    neighbouring fields too (members from the posterior covariance, which the lagged blocks
    make cheaper than a joint unconditional draw), :meth:`conditional_means` only the means
    of many fields under one mask.
    """

    def __init__(
        self,
        mean: np.ndarray,
        *,
        cross_cov: np.ndarray | None = None,
        anomalies: np.ndarray | None = None,
        series_length: int | None = None,
        context: int = 0,
        nugget: float = 1e-5,
        nugget_scores: dict | None = None,
    ):
        self.mean = np.asarray(mean, dtype=np.float64)  # (H, W)
        # zonal: (2·context + 1, H, H, W), lag l ≥ 0: c_ij^(l)(d) = cov(x_t[i, a], x_{t+l}[j, a+d])
        self.cross_cov = None if cross_cov is None else np.asarray(cross_cov, np.float64)
        if self.cross_cov is not None and self.cross_cov.ndim == 3:
            self.cross_cov = self.cross_cov[None]
        # otherwise: anomalies (n, N), consecutive series of series_length rows each
        self.anomalies = None if anomalies is None else np.asarray(anomalies, np.float64)
        if (self.cross_cov is None) == (self.anomalies is None):
            raise ValueError("give exactly one of cross_cov (zonal) or anomalies")
        if self.anomalies is not None:
            series_length = series_length or len(self.anomalies)
        self.series_length = None if series_length is None else int(series_length)
        self.context = int(context)
        self.nugget = float(nugget)
        self.nugget_scores = dict(nugget_scores or {})  # nugget → held-out log-likelihood
        self._cov: np.ndarray | None = None
        self._chol: np.ndarray | None = None

    # -- estimation ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        fields: np.ndarray,
        *,
        zonal: bool = False,
        hemispheric: bool = False,
        nugget: float | str = "auto",
        context: int = 0,
    ) -> GaussianFieldModel:
        """Estimate μ and C from complete fields ``(T, H, W)`` (see the module docstring);
        with ``context`` > 0 the fields must be consecutive in time."""
        x = _training_fields(fields)
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ClimgenInputError(f"context must be an int ≥ 0, got {context!r}")
        if x.shape[0] < 2 * context + 2:
            raise ClimgenInputError(
                f"context={context} needs ≥ {2 * context + 2} consecutive training fields, "
                f"got {x.shape[0]}"
            )
        if nugget == "auto":
            return cls._fit_auto(x, zonal=zonal, hemispheric=hemispheric, context=context)
        if isinstance(nugget, (bool, str)) or not (np.isfinite(nugget) and nugget > 0):
            raise ClimgenInputError(f"nugget must be a number > 0 or 'auto', got {nugget!r}")
        t, h, w = x.shape
        if h * w > MAX_CELLS:
            raise ClimgenInputError(
                f"optimal interpolation keeps a dense covariance of the {h}×{w} = {h * w} "
                f"cells; the limit is {MAX_CELLS}: coarsen the grid or use another method"
            )
        series = [x, x[:, ::-1, :]] if hemispheric else [x]
        stacked = np.concatenate(series)
        mean = stacked.mean(axis=(0, 2), keepdims=True)[0] if zonal else stacked.mean(axis=0)
        mean = np.broadcast_to(mean, (h, w)).copy()
        if not zonal:
            a = (stacked - mean).reshape(len(stacked), -1)
            return cls(mean, anomalies=a, series_length=t, context=context, nugget=nugget)
        # c_ij^(l)(d) = ⟨a_i(t, a) a_j(t + l, a + d)⟩ over t, a and the series: a
        # cross-correlation along longitude, by FFT.
        specs = [np.fft.rfft(s_ - mean, axis=-1) for s_ in series]  # (T, H, K) each
        cross_cov = np.stack(
            [
                np.fft.irfft(
                    sum(np.einsum("tik,tjk->ijk", sp[: t - lag].conj(), sp[lag:]) for sp in specs),
                    n=w,
                    axis=-1,
                )
                / (len(specs) * t * w)
                for lag in range(2 * context + 1)
            ]
        )
        return cls(mean, cross_cov=cross_cov, context=context, nugget=nugget)

    @classmethod
    def _fit_auto(
        cls, x: np.ndarray, *, zonal: bool, hemispheric: bool, context: int
    ) -> GaussianFieldModel:
        """``nugget="auto"``: the held-out likelihood over :data:`NUGGET_GRID`, widened past an
        edge (:func:`widened_search`; module doc)."""
        best, scores = held_out_nugget(
            x, lambda part: cls.fit(part, zonal=zonal, hemispheric=hemispheric, nugget=1.0)
        )
        model = cls.fit(x, zonal=zonal, hemispheric=hemispheric, nugget=best, context=context)
        model.nugget_scores = scores
        return model

    def log_likelihood(self, fields: np.ndarray, *, nugget: float | None = None) -> float:
        """Mean Gaussian log-likelihood per field of complete ``fields`` (T, H, W) under
        N(μ, C + τ²I), τ² = ``nugget`` (default: the model's) × mean(diag C)."""
        import scipy.linalg

        nugget = self.nugget if nugget is None else float(nugget)
        cov = self.covariance.copy()
        cov[np.diag_indices_from(cov)] += nugget * float(np.mean(np.diag(self.covariance)))
        try:
            chol = scipy.linalg.cholesky(cov, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return -np.inf
        d = (np.asarray(fields, dtype=np.float64) - self.mean).reshape(len(fields), -1)
        z = scipy.linalg.solve_triangular(chol, d.T, lower=True, check_finite=False)
        n = d.shape[1]
        logdet = 2 * np.log(np.diag(chol)).sum()
        return float(-0.5 * (np.sum(z * z) / len(fields) + logdet + n * np.log(2 * np.pi)))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean.shape)

    @property
    def covariance(self) -> np.ndarray:
        """The dense (N, N) covariance (built once, then cached)."""
        if self._cov is None:
            if self.cross_cov is not None:
                h, w = self.shape
                lag = (np.arange(w)[None, :] - np.arange(w)[:, None]) % w  # (b − a) mod W
                cov = self.cross_cov[0][:, :, lag]  # (H, H, W_a, W_b)
                self._cov = cov.transpose(0, 2, 1, 3).reshape(h * w, h * w)
            else:
                a = self.anomalies
                self._cov = a.T @ a / a.shape[0]
        return self._cov

    def block(self, lag: int, cells_a: np.ndarray, cells_b: np.ndarray) -> np.ndarray:
        """``cov(x_t[cells_a], x_{t+lag}[cells_b])`` for flat cell indices, |lag| ≤ 2·context."""
        if lag < 0:
            return self.block(-lag, cells_b, cells_a).T
        if lag > 2 * self.context:
            raise ValueError(f"lag {lag} beyond the fitted 2·context = {2 * self.context}")
        if self.cross_cov is not None:
            w = self.shape[1]
            ia, xa = np.divmod(np.asarray(cells_a), w)
            ib, xb = np.divmod(np.asarray(cells_b), w)
            return self.cross_cov[lag][ia[:, None], ib[None, :], (xb[None, :] - xa[:, None]) % w]
        if lag == 0:
            return self.covariance[np.ix_(cells_a, cells_b)]
        n = self.series_length
        rows = np.arange(len(self.anomalies)).reshape(-1, n)
        first, second = rows[:, : n - lag].reshape(-1), rows[:, lag:].reshape(-1)
        a = self.anomalies
        return a[first][:, cells_a].T @ a[second][:, cells_b] / len(a)

    @property
    def variance(self) -> np.ndarray:
        """diag C (N,), without building the dense covariance."""
        if self._cov is not None:
            return np.diag(self._cov).copy()
        if self.anomalies is not None:
            return np.einsum("tn,tn->n", self.anomalies, self.anomalies) / len(self.anomalies)
        h, w = self.shape
        return np.repeat(np.diagonal(self.cross_cov[0][:, :, 0]), w)

    @property
    def tau2(self) -> float:
        """The nugget τ² in the field's units squared."""
        return self.nugget * float(np.mean(self.variance))

    def with_noise(self, nugget: float, scale: float = 1.0) -> GaussianFieldModel:
        """This model with the covariance (every lag) times ``scale`` and ``nugget`` (relative
        to the scaled mean variance): N(μ, s·C + s·r·I) (:mod:`~climgen.tasks.fill.oi_noise`)."""
        s = float(scale)
        model = GaussianFieldModel(
            self.mean,
            cross_cov=None if self.cross_cov is None else self.cross_cov * s,
            anomalies=None if self.anomalies is None else self.anomalies * np.sqrt(s),
            series_length=self.series_length,
            context=self.context,
            nugget=nugget,
            nugget_scores=self.nugget_scores,
        )
        model._cov = None if self._cov is None else self._cov * s
        return model

    # -- conditioning ----------------------------------------------------------------------
    def _solve_parts(self, observed: np.ndarray):
        """Cholesky factor of C_oo + τ²I and the cross-covariance C_ho for one mask."""

        cov = self.covariance
        o = np.flatnonzero(observed)
        hid = np.flatnonzero(~observed)
        c_oo = cov[np.ix_(o, o)]
        c_oo[np.diag_indices_from(c_oo)] += self.tau2
        chol = self._cho_factor(c_oo)
        return o, hid, chol, cov[np.ix_(hid, o)]

    def _cho_factor(self, c_oo: np.ndarray):
        """Cholesky factor of the observed block, or one error saying what to change."""
        import scipy.linalg

        try:
            return scipy.linalg.cho_factor(c_oo, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            fields = self.series_length or "the"
            raise ClimgenInputError(
                f"optimal interpolation: the covariance of the {len(c_oo)} observed values "
                f"is not positive definite at nugget={self.nugget:.3g} (learned from "
                f"{fields} training fields for {self.mean.size} cells, context="
                f"{self.context}); give a larger nugget (e.g. nugget=1e-3) or more training "
                "fields"
            ) from None

    def condition(self, values: np.ndarray, observed: np.ndarray, *, members: int = 0, rng=None):
        """Conditional mean, std and (optionally) members of one field.

        ``values`` (H, W) with anything at unobserved cells, ``observed`` (H, W) bool.
        Returns ``(mean (H, W), std (H, W), draws (members, H, W) or None)``; observed cells
        keep their values and get std 0.
        """
        import scipy.linalg

        flat_obs, y, mu, mean, std, done = _start_condition(
            self.shape, self.mean, values, observed, members
        )
        if done is not None:
            return done
        o, hid, chol, c_ho = self._solve_parts(flat_obs)
        weights = scipy.linalg.cho_solve(chol, y[o] - mu[o], check_finite=False)
        mean[hid] = mu[hid] + c_ho @ weights
        v = scipy.linalg.solve_triangular(chol[0], c_ho.T, lower=True, check_finite=False)
        diag = np.diag(self.covariance)[hid] - np.einsum("oh,oh->h", v, v)
        std[hid] = np.sqrt(np.clip(diag, 0.0, None) + self.tau2)
        draws = None
        if members:
            rng = np.random.default_rng(rng)
            z = self._unconditional(members, rng)  # (M, N)
            noise = rng.standard_normal((members, o.size)) * np.sqrt(self.tau2)
            rhs = (z[:, o] + noise).T  # (o, M)
            correction = c_ho @ scipy.linalg.cho_solve(chol, rhs, check_finite=False)
            nugget_h = rng.standard_normal((members, hid.size)) * np.sqrt(self.tau2)
            draws = np.broadcast_to(mean, (members, mu.size)).copy()
            draws[:, hid] += z[:, hid] + nugget_h - correction.T  # x* + ε: C + τ²I, as std
        return mean.reshape(self.shape), std.reshape(self.shape), _shaped(draws, self.shape)

    def condition_window(
        self, values: np.ndarray, observed: np.ndarray, *, members: int = 0, rng=None
    ):
        """Space–time conditional of the middle field of a window of 2·context + 1 fields.

        ``values``/``observed`` (2k + 1, H, W), the target at index k (a neighbour outside the
        record: nothing observed). Returns ``(mean, std, draws)`` as :meth:`condition`.
        """
        import scipy.linalg

        k = self.context
        values = np.asarray(values, dtype=np.float64).reshape(2 * k + 1, -1)
        observed = np.asarray(observed, dtype=bool).reshape(2 * k + 1, -1)
        mu = self.mean.reshape(-1)
        mean = np.where(observed[k], values[k], mu)
        std = np.zeros_like(mu)
        hid = np.flatnonzero(~observed[k])
        if hid.size == 0:
            draws = np.broadcast_to(mean, (members, mu.size)).copy() if members else None
            return mean.reshape(self.shape), std.reshape(self.shape), _shaped(draws, self.shape)
        days = [(j - k, np.flatnonzero(observed[j])) for j in range(2 * k + 1)]
        days = [(lag, cells) for lag, cells in days if cells.size]
        c_oo = np.block([[self.block(lb - la, ca, cb) for lb, cb in days] for la, ca in days])
        c_oo[np.diag_indices_from(c_oo)] += self.tau2
        c_ho = np.concatenate([self.block(lag, hid, cells) for lag, cells in days], axis=1)
        y = np.concatenate([values[k + lag][cells] - mu[cells] for lag, cells in days])
        chol = self._cho_factor(c_oo)
        mean[hid] = mu[hid] + c_ho @ scipy.linalg.cho_solve(chol, y, check_finite=False)
        v = scipy.linalg.solve_triangular(chol[0], c_ho.T, lower=True, check_finite=False)
        posterior = self.block(0, hid, hid) - v.T @ v
        posterior[np.diag_indices_from(posterior)] += self.tau2
        std[hid] = np.sqrt(np.clip(np.diag(posterior), 0.0, None))
        draws = None
        if members:
            rng = np.random.default_rng(rng)
            posterior[np.diag_indices_from(posterior)] += 1e-10 * float(np.mean(std[hid] ** 2))
            factor = np.linalg.cholesky(posterior)
            draws = np.broadcast_to(mean, (members, mu.size)).copy()
            draws[:, hid] += rng.standard_normal((members, hid.size)) @ factor.T
        return mean.reshape(self.shape), std.reshape(self.shape), _shaped(draws, self.shape)

    def conditional_means(self, fields: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Conditional means ``x̂`` of many fields ``(T, H, W)`` under one mask ``(H, W)``
        (one factorisation for all of them); observed cells keep their values."""
        import scipy.linalg

        flat = np.asarray(fields, dtype=np.float64).reshape(len(fields), -1)
        flat_obs = np.asarray(observed, dtype=bool).reshape(-1)
        mu = self.mean.reshape(-1)
        out = np.where(flat_obs, flat, mu)
        if not flat_obs.all():
            o, hid, chol, c_ho = self._solve_parts(flat_obs)
            weights = scipy.linalg.cho_solve(chol, (flat[:, o] - mu[o]).T, check_finite=False)
            out[:, hid] = mu[hid] + (c_ho @ weights).T
        return out.reshape(len(fields), *self.shape)

    def _unconditional(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of N(0, C) (rows)."""
        if self.anomalies is not None:  # C = AᵀA/n: x = Aᵀ g / √n, exact and cheap
            a = self.anomalies
            g = rng.standard_normal((n, a.shape[0]))
            return g @ a / np.sqrt(a.shape[0])
        if self._chol is None:
            cov = self.covariance.copy()
            cov[np.diag_indices_from(cov)] += 1e-10 * float(np.mean(np.diag(cov)))
            self._chol = np.linalg.cholesky(cov)
        return rng.standard_normal((n, self._chol.shape[0])) @ self._chol.T

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` of plain arrays (no pickles)."""
        arrays = {
            "mean": self.mean,
            "nugget": np.float64(self.nugget),
            "context": np.int64(self.context),
        }
        if self.series_length is not None:
            arrays["series_length"] = np.int64(self.series_length)
        if self.nugget_scores:
            arrays["nugget_grid"] = np.array(list(self.nugget_scores), dtype=np.float64)
            arrays["nugget_log_likelihood"] = np.array(list(self.nugget_scores.values()))
        if self.cross_cov is not None:
            arrays["cross_cov"] = self.cross_cov
        else:
            arrays["anomalies"] = self.anomalies
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> GaussianFieldModel:
        with np.load(path, allow_pickle=False) as f:
            return cls(
                f["mean"],
                cross_cov=f["cross_cov"] if "cross_cov" in f else None,
                anomalies=f["anomalies"] if "anomalies" in f else None,
                series_length=int(f["series_length"]) if "series_length" in f else None,
                context=int(f["context"]) if "context" in f else 0,
                nugget=float(f["nugget"]),
                nugget_scores=(
                    dict(zip(f["nugget_grid"].tolist(), f["nugget_log_likelihood"].tolist()))
                    if "nugget_grid" in f
                    else None
                ),
            )


def _training_fields(fields) -> np.ndarray:
    """``fields`` as float64 (T, H, W), T ≥ 2, all finite: the complete fields OI fits on."""
    x = np.asarray(fields, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ClimgenInputError(
            f"optimal interpolation needs ≥ 2 complete fields (T, H, W), got {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ClimgenInputError(
            "optimal interpolation is fitted on complete fields: the training data have "
            f"{int((~np.isfinite(x)).sum())} NaN/inf values"
        )
    return x


def _shaped(draws, shape):
    return None if draws is None else draws.reshape(draws.shape[0], *shape)


def _start_condition(shape, field_mean, values, observed, members):
    """The part of ``condition`` every OI model shares: check the shape, flatten, put the
    observed values in the mean (std 0 there). ``done`` is the whole answer when every cell
    is observed (the members are copies of the field), else None."""
    if tuple(values.shape) != shape:
        raise ClimgenInputError(
            f"field of shape {tuple(values.shape)} but the covariance is for {shape}"
        )
    flat_obs = np.asarray(observed, dtype=bool).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    mu = field_mean.reshape(-1)
    mean = np.where(flat_obs, y, mu)
    std = np.zeros_like(mu)
    done = None
    if flat_obs.all():
        draws = np.broadcast_to(mean, (members, mu.size)).copy() if members else None
        done = mean.reshape(shape), std.reshape(shape), _shaped(draws, shape)
    return flat_obs, y, mu, mean, std, done


def held_out_nugget(x: np.ndarray, fit_part) -> tuple[float, dict[float, float]]:
    """``nugget="auto"`` for any OI model: ``fit_part(fields)`` on the first
    1 − :data:`HOLDOUT_FRACTION` of ``x``, its held-out log-likelihood over :data:`NUGGET_GRID`
    widened past an edge (:func:`widened_search`). Returns ``(best nugget, scores)``."""
    n_hold = max(1, int(round(HOLDOUT_FRACTION * len(x))))
    if len(x) - n_hold < 2:
        raise ClimgenInputError(
            f"nugget='auto' needs ≥ 3 training fields (got {len(x)}); give a nugget"
        )
    part = fit_part(x[:-n_hold])
    scores = widened_search(lambda nug: part.log_likelihood(x[-n_hold:], nugget=nug))
    return max(scores, key=scores.get), scores
