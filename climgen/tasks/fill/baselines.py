"""Baseline gap fillers on the sphere: nearest neighbour, zonal mean, Gaussian-process kriging.

Each works on canonical arrays — ``values`` (T, H, W) with NaN where missing, latitudes and
longitudes in degrees — needs no training, and returns ``(mean, std)`` of shape (T, H, W);
``std`` is the predictive standard deviation (kriging) or ``None`` (methods without an
uncertainty model). Observed points are returned unchanged (the caller re-inserts them bit for
bit anyway).

``"nearest"``
    each missing cell takes the value of the observed cell at the smallest great-circle
    distance. Found with a k-d tree on 3-D unit vectors: the chordal distance
    ``c = 2 sin(θ/2)`` is monotone in the great-circle angle θ, so the nearest point is the same.
``"zonal-mean"``
    each missing cell takes the mean of the observed cells of its latitude row (all cells of a
    row have equal area, so the plain mean is the area-weighted one); a row with no
    observation takes the climatology when one is given, else the area-weighted (cos φ) mean of
    all observed cells of that field (≈ 0 for anomalies).
``"kriging"``
    Gaussian-process regression (simple kriging with a constant mean, ``normalize_y``) per
    field with covariance ``σ² · Matérn_ν(c / ℓ) + τ² δ``, a Matérn kernel of the chordal
    distance ``c = ‖u_i − u_j‖ = 2 sin(θ_ij / 2)`` between unit vectors. A kernel that is
    positive definite on ℝ³ restricted to the sphere is positive definite on the sphere
    (Gneiting 2013; Yaglom 1987), which a Matérn of the great-circle distance θ itself is not
    for ν > 1/2. Hyper-parameters (σ², ℓ, τ²) are fitted per field by maximising the
    marginal likelihood (scikit-learn's ``GaussianProcessRegressor``) on at most
    ``max_fit_points`` observed cells; prediction then conditions on all observed cells. The
    predictive std includes the nugget τ² (the error of predicting a cell value).

References
----------
Rasmussen & Williams (2006), *Gaussian Processes for Machine Learning*, MIT Press, ch. 2, 4, 5.
Gneiting (2013), *Strictly and non-strictly positive definite functions on spheres*,
Bernoulli 19, 1327–1349.
Cowtan & Way (2014), *Coverage bias in the HadCRUT4 temperature series*, QJRMS 140, 1935–1944
(kriging of HadCRUT4).
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
from scipy.spatial import cKDTree

from climgen.data.progress import progress as progress_bar
from climgen.errors import ClimgenInputError, require

__all__ = [
    "unit_vectors",
    "fill_nearest",
    "fill_zonal_mean",
    "fill_kriging",
    "sphere_kernel",
    "crps_gaussian",
]

LOGGER = logging.getLogger(__name__)


def unit_vectors(lat_deg, lon_deg) -> np.ndarray:
    """Unit vectors (H, W, 3) of the cells of a lat/lon grid (degrees)."""
    lat = np.deg2rad(np.asarray(lat_deg, dtype=float))[:, None]
    lon = np.deg2rad(np.asarray(lon_deg, dtype=float))[None, :]
    x = np.cos(lat) * np.cos(lon)
    y = np.cos(lat) * np.sin(lon)
    z = np.broadcast_to(np.sin(lat), x.shape)
    return np.stack([x, y, z], axis=-1)


def _check_values(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise ClimgenInputError(f"expected values (T, H, W), got shape {values.shape}")
    if np.isinf(values).any():
        raise ClimgenInputError("values contain inf; missing cells must be NaN")
    empty = np.flatnonzero(~np.isfinite(values).reshape(values.shape[0], -1).any(1))
    if empty.size:
        raise ClimgenInputError(
            f"field(s) at index {empty[:5].tolist()} have no observed value at all: "
            "nothing to fill from"
        )
    return values


def fill_nearest(values, lat, lon) -> tuple[np.ndarray, None]:
    """Great-circle nearest-observed-neighbour fill of ``values`` (T, H, W), NaN = missing."""
    values = _check_values(values)
    points = unit_vectors(lat, lon).reshape(-1, 3)
    out = values.copy()
    for t, field in enumerate(values.reshape(values.shape[0], -1)):
        observed = np.isfinite(field)
        if observed.all():
            continue
        _, idx = cKDTree(points[observed]).query(points[~observed])
        out.reshape(values.shape[0], -1)[t, ~observed] = field[observed][idx]
    return out, None


def fill_zonal_mean(values, lat, lon=None, climatology=None) -> tuple[np.ndarray, None]:
    """Row-mean fill; empty rows take ``climatology`` (H, W) or the field's observed mean."""
    values = _check_values(values)
    observed = np.isfinite(values)
    counts = observed.sum(-1, keepdims=True)
    sums = np.where(observed, values, 0.0).sum(-1, keepdims=True)
    row_mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    if climatology is not None:
        climatology = np.broadcast_to(np.asarray(climatology, dtype=np.float64), values.shape)
        fallback = climatology
    else:
        w = np.cos(np.deg2rad(np.asarray(lat, dtype=float)))[None, :, None] * observed
        global_mean = (np.where(observed, values, 0.0) * w).sum((-2, -1)) / w.sum((-2, -1))
        fallback = np.broadcast_to(global_mean[:, None, None], values.shape)
    filled = np.where(counts > 0, np.broadcast_to(row_mean, values.shape), fallback)
    return np.where(observed, values, filled), None


def sphere_kernel(
    variance: float = 1.0,
    length_scale: float = 0.3,
    noise: float = 0.05,
    *,
    nu: float = 1.5,
    length_scale_bounds=(0.01, 4.0),
):
    """scikit-learn kernel ``σ²·Matérn_ν(‖u − u'‖/ℓ) + τ²δ`` on 3-D unit vectors.

    ``length_scale`` ℓ is in chordal units of the unit sphere (ℓ = 0.3 ≈ 1 900 km on Earth:
    great-circle distance ≈ 2R·arcsin(ℓ/2)); ``noise`` is τ² (the nugget).
    """
    gp = require("sklearn.gaussian_process.kernels", "fill", "kriging gap filling")
    return gp.ConstantKernel(variance, (1e-4, 1e4)) * gp.Matern(
        length_scale, length_scale_bounds, nu=nu
    ) + gp.WhiteKernel(noise, (1e-6, 1e1))


def fill_kriging(
    values,
    lat,
    lon,
    *,
    max_fit_points: int = 1000,
    nu: float = 1.5,
    seed: int = 0,
    blas_threads: int | None = 1,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Kriging fill with per-field maximum-likelihood hyper-parameters (see module docstring).

    Returns ``(mean, std, kernels)``; ``std`` is 0 at observed cells; ``kernels`` describes the
    fitted kernel of each field (for provenance). ``blas_threads`` caps the BLAS threads
    during the fit (``None``: leave as is): the Cholesky factorisations of a few thousand
    points are fastest on one thread, and many times slower when threads compete for cores.
    ``progress`` shows a bar over the fields (on a terminal). Hyper-parameters fitted at a
    bound of their range (scikit-learn's ConvergenceWarning, one per field) are reported in
    one log line for all fields.
    """
    require("sklearn", "fill", "kriging gap filling")
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    if blas_threads is None:
        return _fill_kriging(values, lat, lon, max_fit_points, nu, seed, progress)
    with threadpool_limits(limits=int(blas_threads), user_api="blas"):
        return _fill_kriging(values, lat, lon, max_fit_points, nu, seed, progress)


def _fill_kriging(values, lat, lon, max_fit_points, nu, seed, show):
    from sklearn import gaussian_process as gpr_module
    from sklearn.exceptions import ConvergenceWarning

    values = _check_values(values)
    points = unit_vectors(lat, lon).reshape(-1, 3)
    n_t = values.shape[0]
    mean = values.copy().reshape(n_t, -1)
    std = np.zeros_like(mean)
    rng = np.random.default_rng(seed)
    kernels = []
    at_bound: dict[int, set[str]] = {}  # field → hyper-parameters fitted at a bound
    fields = enumerate(values.reshape(n_t, -1))
    for t, field in progress_bar(fields, total=n_t, desc="kriging", unit="field", enabled=show):
        observed = np.isfinite(field)
        x_obs, y_obs = points[observed], field[observed]
        if observed.sum() < 3 or np.ptp(y_obs) == 0:
            # Too few points or no variance to fit: a constant field with zero spread.
            mean[t, ~observed] = y_obs.mean()
            kernels.append("constant")
            continue
        subset = (
            rng.choice(observed.sum(), max_fit_points, replace=False)
            if observed.sum() > max_fit_points
            else slice(None)
        )
        gpr = gpr_module.GaussianProcessRegressor(
            sphere_kernel(nu=nu), normalize_y=True, n_restarts_optimizer=0, random_state=seed
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gpr.fit(x_obs[subset], y_obs[subset])
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                match = _AT_BOUND.search(str(w.message))
                at_bound.setdefault(t, set()).add(
                    f"{match['name']} at its {match['side']} bound" if match else "no convergence"
                )
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        final = gpr_module.GaussianProcessRegressor(gpr.kernel_, optimizer=None, normalize_y=True)
        final.fit(x_obs, y_obs)
        if (~observed).any():
            mu, sd = final.predict(points[~observed], return_std=True)
            mean[t, ~observed], std[t, ~observed] = mu, sd
        kernels.append(str(gpr.kernel_))
    if at_bound:
        _report_bounds(at_bound, n_t)
    return mean.reshape(values.shape), std.reshape(values.shape), kernels


_AT_BOUND = re.compile(r"parameter (?P<name>\S+) is close to the specified (?P<side>upper|lower)")


def _report_bounds(at_bound: dict[int, set[str]], n_fields: int) -> None:
    """One log line for all of scikit-learn's per-field ConvergenceWarnings."""
    what = sorted(set().union(*at_bound.values()))
    fields = sorted(at_bound)
    shown = ", ".join(map(str, fields[:10])) + (", …" if len(fields) > 10 else "")
    LOGGER.warning(
        "kriging: for %d of %d field(s) (index %s) a kernel hyper-parameter was fitted at a "
        "bound of its search range (%s); the fill uses those kernels (climgen_kriging_kernels "
        "in the output): usually harmless (a very smooth field drives the nugget to its floor)",
        len(fields),
        n_fields,
        shown,
        "; ".join(what),
    )


def crps_gaussian(mean, std, obs) -> np.ndarray:
    """CRPS of N(μ, σ²) for observation y, pointwise (Gneiting & Raftery 2007, eq. 21).

    .. math:: \\mathrm{CRPS} = \\sigma\\,[z(2\\Phi(z) - 1) + 2\\varphi(z) - 1/\\sqrt\\pi],
              \\quad z = (y - \\mu)/\\sigma

    σ = 0 gives the absolute error. Units of the field.
    """
    from scipy.special import erf

    mean, std, obs = (np.asarray(a, dtype=np.float64) for a in (mean, std, obs))
    safe = np.where(std > 0, std, 1.0)
    z = (obs - mean) / safe
    cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    crps = safe * (z * (2 * cdf - 1) + 2 * pdf - 1 / np.sqrt(np.pi))
    return np.where(std > 0, crps, np.abs(obs - mean))
