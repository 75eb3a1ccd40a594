"""The observation-error nugget of optimal interpolation, estimated from the observations.

``nugget="auto"`` (:mod:`climgen.tasks.fill.oi`) is chosen on the complete training fields,
which carry no observation error: on smooth simulated fields it is ~1e-14, and real
observations (measurement and sampling errors, another climate) conditioned on that
near-singular covariance explode (RMSE 1 811 K on HadCRUT4 1893-08). ``nugget="ml"``
instead estimates the nugget, and the amplitude of the learned covariance, from the
observations being filled, by maximising the Gaussian marginal likelihood of their observed
cells (type-II maximum likelihood; Rasmussen & Williams 2006, §5.4.1; Cressie 1993, §2.6).
The model of the observed values ``y_o`` of a field is

.. math::

    y_o \\sim N\\big(μ_o,\\; s\\,(C_{oo} + r I)\\big), \\qquad τ^2 = s\\,r,

with ``C`` the learned covariance, ``s`` a variance scale (the simulated climate's anomaly
amplitude need not be the observed one: daily Held–Suarez anomalies are ~4× larger than
real monthly ones) and ``r`` the nugget relative to ``C``. Pooled over the fields being
filled (fields t with n_t observed cells, assumed independent: a composite likelihood when
they are consecutive days), with ``C_oo = U Λ Uᵀ`` (one eigendecomposition per distinct
mask) and ``z = Uᵀ(y_o − μ_o)``,

.. math::

    \\log p = -\\frac12 \\sum_t \\Big[\\frac{1}{s} \\sum_i \\frac{z_{ti}^2}{λ_i + r}
        + \\sum_i \\log(λ_i + r) + n_t \\log s + n_t \\log 2π\\Big],

so each ``r`` costs O(n) once the masks are factorised. For a given ``r`` the best scale is
closed-form, ``ŝ(r) = Q(r)/N`` with ``Q`` the pooled quadratic form and ``N = Σ n_t``; the
profile likelihood ``−(N/2) log ŝ(r) − ½ Σ_t Σ_i log(λ_i + r)`` (+ const) is maximised over
``log r`` on a grid of half decades (:data:`RELATIVE_GRID` × mean(diag C)) and refined by a
bounded scalar search around the best point. ``scale=False`` keeps ``s = 1`` and maximises
``log p`` over ``r`` alone. The conditional mean depends on ``r`` only; ``s`` sets the
conditional variance (the spread), so both matter for the CRPS.

The reduced-space model (:mod:`climgen.tasks.fill.oi_reduced`, ``C = BBᵀ + diag ρ``) gets the
same estimate with the quadratic form and the determinant from the Woodbury identity and the
determinant lemma, one r × r Cholesky factor per ``r`` and mask.

References
----------
Rasmussen & Williams (2006), *Gaussian Processes for Machine Learning*, MIT Press, §5.4.1
(marginal likelihood), eq. 2.30.
Cressie (1993), *Statistics for Spatial Data*, revised ed., Wiley, §2.6 (the nugget effect:
measurement error), §2.6.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from climgen.errors import ClimgenInputError

__all__ = [
    "ML",
    "NoiseEstimate",
    "RELATIVE_GRID",
    "MAX_MASKS",
    "check_nugget",
    "estimate_noise",
    "noisy_model",
]

ML = "ml"  # the nugget option: maximum marginal likelihood of the observations
RELATIVE_GRID = tuple(10.0 ** np.arange(-10.0, 2.01, 0.5))  # r / mean(diag C), searched
MAX_MASKS = 16  # distinct masks factorised for the estimate (the most frequent ones)


def check_nugget(value, what: str = "nugget"):
    """``value`` if it is a valid nugget option — a finite number > 0, ``"auto"`` (held-out
    likelihood of the training fields) or ``"ml"`` (marginal likelihood of the observations)
    — else one error naming ``what``."""
    if value in ("auto", ML):
        return value
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float)):
        bad = True
    else:
        bad = not (np.isfinite(value) and value > 0)
    if bad:
        raise ClimgenInputError(
            f"{what} must be a number > 0 (τ² over the mean learned variance), 'auto' (chosen "
            f"on the training fields) or {ML!r} (estimated from the observations), got {value!r}"
        )
    return value


@dataclass(frozen=True)
class NoiseEstimate:
    """The marginal-likelihood estimate: ``nugget`` (r relative to the learned mean variance,
    the model's ``nugget`` convention), ``scale`` (s) and ``tau2`` (s·r, the observation-error
    variance in the field's units squared), the maximised log-likelihood per observed value,
    the number of observed values and of masks used, and ``scores`` {nugget: profile
    log-likelihood per observed value} of every candidate tried."""

    nugget: float
    scale: float
    tau2: float
    log_likelihood: float
    n_observed: int
    n_masks: int
    scores: dict = field(default_factory=dict)


def _dense_terms(model, cells: np.ndarray, anomalies: np.ndarray):
    """``terms(r) -> (Σ_t quadratic form, Σ_t log det)`` for the fields of one mask
    (``anomalies`` (k, n_o) = y_o − μ_o) under the dense covariance: one eigendecomposition."""
    lam, vecs = np.linalg.eigh(model.covariance[np.ix_(cells, cells)])
    lam = np.clip(lam, 0.0, None)
    power = np.sum((anomalies @ vecs) ** 2, axis=0)  # Σ_t z_ti²
    k = len(anomalies)
    return lambda r: (float(np.sum(power / (lam + r))), k * float(np.sum(np.log(lam + r))))


def _reduced_terms(model, cells: np.ndarray, anomalies: np.ndarray):
    """The same for ``C = BBᵀ + diag ρ``: Woodbury and the determinant lemma per ``r``."""
    b, rho = model.loadings[cells], model.residual[cells]
    k = len(anomalies)

    def terms(r: float):
        d = rho + r
        chol = np.linalg.cholesky(np.eye(b.shape[1]) + (b / d[:, None]).T @ b)
        proj = np.linalg.solve(chol, ((anomalies / d) @ b).T)
        quad = float(np.sum(anomalies**2 / d) - np.sum(proj**2))
        logdet = float(np.log(d).sum() + 2 * np.log(np.diag(chol)).sum())
        return quad, k * logdet

    return terms


def estimate_noise(
    model,
    values: np.ndarray,
    observed: np.ndarray,
    *,
    scale: bool = True,
    max_masks: int = MAX_MASKS,
) -> NoiseEstimate:
    """Maximum-marginal-likelihood nugget (and variance scale) of the observed cells of
    ``values`` (T, H, W) (``observed`` (T, H, W) bool) under the OI ``model`` (dense or
    reduced); see the module docstring. Fields are grouped by mask; the ``max_masks`` most
    frequent masks enter the estimate."""
    import scipy.optimize

    x = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    obs = np.asarray(observed, dtype=bool).reshape(len(values), -1)
    masks, group, counts = np.unique(obs, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = [g for g in np.argsort(counts, kind="stable")[::-1] if masks[g].sum() >= 2]
    order = order[:max_masks]
    if not order:
        raise ClimgenInputError(
            "nugget='ml' estimates the observation error from the observed cells: the fields "
            "to fill have fewer than 2 observed cells each"
        )
    mu = model.mean.reshape(-1)
    dense = not hasattr(model, "loadings")  # reduced: C = BBᵀ + diag ρ
    parts, n_obs = [], 0
    for g in order:
        cells = np.flatnonzero(masks[g])
        anomalies = x[group == g][:, cells] - mu[cells]
        parts.append((_dense_terms if dense else _reduced_terms)(model, cells, anomalies))
        n_obs += anomalies.size
    mean_var = float(np.mean(model.variance))

    def profile(log_rel: float) -> tuple[float, float]:
        """(log-likelihood per observed value, best scale) at r = 10^log_rel · mean var."""
        r = 10.0**log_rel * mean_var
        quad, logdet = (sum(v) for v in zip(*(p(r) for p in parts)))
        s = quad / n_obs if scale else 1.0
        ll = -0.5 * (quad / s + logdet + n_obs * (np.log(s) + np.log(2 * np.pi)))
        return ll / n_obs, s

    logs = np.log10(RELATIVE_GRID)
    scores = {float(10.0**g): profile(g)[0] for g in logs}
    best = float(logs[int(np.argmax(list(scores.values())))])
    lo, hi = max(best - 0.5, logs[0]), min(best + 0.5, logs[-1])
    found = scipy.optimize.minimize_scalar(
        lambda g: -profile(g)[0], bounds=(lo, hi), method="bounded", options={"xatol": 1e-3}
    )
    if -found.fun > scores[float(10.0**best)]:
        best = float(found.x)
    ll, s = profile(best)
    scores[float(10.0**best)] = ll
    nugget = float(10.0**best)
    return NoiseEstimate(
        nugget=nugget,
        scale=float(s),
        tau2=float(s * nugget * mean_var),
        log_likelihood=float(ll),
        n_observed=int(n_obs),
        n_masks=len(order),
        scores=dict(sorted(scores.items())),
    )


def noisy_model(model, values: np.ndarray, observed: np.ndarray, **options):
    """``(model with the estimated nugget and scale, NoiseEstimate)`` for filling ``values``
    (T, H, W) observed at ``observed``: :func:`estimate_noise`, then the learned covariance
    times ``s`` with the nugget ``r`` (``model.with_noise``)."""
    est = estimate_noise(model, values, observed, **options)
    return model.with_noise(est.nugget, est.scale), est
