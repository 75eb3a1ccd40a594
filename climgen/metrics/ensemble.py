"""Probabilistic scores of an ensemble against observations: fair CRPS, spread/skill, ranks.

The ensemble is shaped like the observations with one extra member dim (``member_axis``,
default 0): ``ensemble`` (M, ..., ny, nx), ``obs`` (..., ny, nx). Scores averaged over
points use area weights (``weights`` broadcastable to ``obs``; cos-lat derived for
DataArrays on lat/lon grids). For DataArrays ``member_axis`` may also be a dim name.

References: Ferro (2014), QJRMS 140, 1917–1923 and Zamo & Naveau (2018), Math. Geosci. 50,
209–234 (fair CRPS); Fortin et al. (2014), J. Hydrometeor. 15, 1708–1713 (spread/skill);
Hamill (2001), MWR 129, 550–560 and Candille & Talagrand (2005), QJRMS 131, 2131–2150
(rank histograms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import common_kind, prepare, prepare_weights, scalar_like, to_like

__all__ = ["crps_fair", "spread_skill_ratio", "rank_histogram", "rank_histogram_flatness"]


def _ensemble_and_obs(ensemble: Any, obs: Any, member_axis, weights: Any):
    """Tensors (M, *obs.shape) and obs.shape, weights broadcast to obs (or None), kind."""
    if isinstance(ensemble, xr.DataArray):
        dim = member_axis if isinstance(member_axis, str) else None
        if dim is None:
            try:
                dim = ensemble.dims[member_axis]
            except (IndexError, TypeError) as exc:
                raise ClimgenInputError(
                    f"member_axis {member_axis!r} is not a dim of ensemble {ensemble.dims}"
                ) from exc
        if dim not in ensemble.dims:
            raise ClimgenInputError(f"member dim '{dim}' not in ensemble dims {ensemble.dims}")
        ensemble = ensemble.transpose(dim, ...)
        member_axis = 0
    elif isinstance(member_axis, str):
        raise ClimgenInputError("member_axis can be a dim name only when ensemble is a DataArray")
    te, ke, we = prepare(ensemble, "ensemble")
    to, ko, wo = prepare(obs, "obs", weights)
    te, to, kind = common_kind(te, ke, to, ko)
    if te.ndim == 0 or not -te.ndim <= member_axis < te.ndim:
        raise ClimgenInputError(
            f"member_axis {member_axis} out of range for ensemble of shape {tuple(te.shape)}"
        )
    te = torch.movedim(te, member_axis, 0)
    if te.shape[1:] != to.shape:
        raise ClimgenInputError(
            f"ensemble has shape {tuple(te.shape)} (members first) but obs has shape "
            f"{tuple(to.shape)}: obs must match the ensemble without its member dim"
        )
    if wo is None and we is not None:
        wo = we[0]
    if wo is not None:
        wo = prepare_weights(wo, to, "weights", "obs")
    return te, to, wo, kind


def _wmean(x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return x.mean() if w is None else (x * w).sum() / w.sum()


def crps_fair(
    ensemble: Any,
    obs: Any,
    *,
    member_axis: int | str = 0,
    weights: Any = None,
    reduce: bool = True,
):
    r"""Fair (unbiased-in-M) continuous ranked probability score of an ensemble.

    .. math::
        \mathrm{CRPS}_{fair} = \frac1M\sum_i |x_i - y|
            - \frac{1}{2M(M-1)}\sum_{i,j} |x_i - x_j|
        = \frac1M\sum_i |x_i - y| - \frac{1}{M(M-1)}\sum_{i=1}^M (2i - M - 1)\, x_{(i)}

    with :math:`x_{(i)}` the sorted members, evaluated in the sorted O(M log M) form.
    Units: those of the field; lower is better, 0 only for a perfect deterministic forecast.
    Its expectation does not depend on M (Ferro 2014; Zamo & Naveau 2018).
    ``reduce=True`` gives the area-weighted mean; ``False`` the score at every point
    (shape of ``obs``). Needs M ≥ 2. Differentiable for torch input.
    """
    te, to, w, kind = _ensemble_and_obs(ensemble, obs, member_axis, weights)
    m = te.shape[0]
    if m < 2:
        raise ClimgenInputError(f"the fair CRPS needs at least 2 members, ensemble has {m}")
    skill = (te - to.unsqueeze(0)).abs().mean(dim=0)
    xs, _ = torch.sort(te, dim=0)
    i = torch.arange(1, m + 1, dtype=te.dtype, device=te.device)
    coef = (2 * i - m - 1).reshape((m,) + (1,) * to.ndim)
    spread = (coef * xs).sum(dim=0) / (m * (m - 1))
    crps = skill - spread
    if not reduce:
        return to_like(crps, kind)
    return scalar_like(_wmean(crps, w), kind)


def spread_skill_ratio(ensemble: Any, obs: Any, *, member_axis: int | str = 0, weights: Any = None):
    r"""Spread/skill ratio with the finite-ensemble correction (Fortin et al. 2014).

    .. math:: \mathrm{SSR} = \sqrt{\frac{M+1}{M}}\,
        \frac{\sqrt{\overline{s^2}}}{\sqrt{\overline{(\bar x - y)^2}}}

    with :math:`s^2` the unbiased (ddof = 1) ensemble variance at each point, :math:`\bar x`
    the ensemble mean and overbars area-weighted means over points. Dimensionless; ≈ 1 for a
    statistically consistent ensemble, < 1 under-dispersed, > 1 over-dispersed.
    """
    te, to, w, kind = _ensemble_and_obs(ensemble, obs, member_axis, weights)
    m = te.shape[0]
    if m < 2:
        raise ClimgenInputError(f"spread needs at least 2 members, ensemble has {m}")
    var = te.var(dim=0, unbiased=True)
    mse = (te.mean(dim=0) - to) ** 2
    err = _wmean(mse, w)
    if not bool(err > 0):
        raise ClimgenInputError("the ensemble mean equals obs everywhere: the ratio is undefined")
    ratio = np.sqrt((m + 1) / m) * _wmean(var, w).sqrt() / err.sqrt()
    return scalar_like(ratio, kind)


def rank_histogram(
    ensemble: Any,
    obs: Any,
    *,
    member_axis: int | str = 0,
    rng: Any = None,
    weights: Any = None,
):
    """Rank (Talagrand) histogram: how often obs falls at rank 0 … M among the M members.

    The rank of y is #{x_i < y} plus, when members tie with y, a uniform random draw from
    0 … #{x_i = y} (random tie-breaking, Hamill 2001 §3c), so discrete fields stay flat.
    ``rng`` is a seed or :class:`numpy.random.Generator`. Returns counts of length M + 1
    (integers; area-weighted sums normalised to the number of points when weights are given
    or derived from DataArrays). Flat ⇔ consistent; U-shaped ⇔ under-dispersed; ∩ ⇔ over.
    """
    te, to, w, kind = _ensemble_and_obs(ensemble, obs, member_axis, weights)
    m = te.shape[0]
    te, to = te.detach(), to.detach()
    below = (te < to.unsqueeze(0)).sum(dim=0)
    ties = (te == to.unsqueeze(0)).sum(dim=0)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    u = torch.from_numpy(gen.random(tuple(to.shape))).to(te.device)
    rank = below + torch.floor(u * (ties + 1).to(u.dtype)).long()
    if w is None:
        counts = torch.bincount(rank.reshape(-1), minlength=m + 1)
    else:
        ww = w.detach().reshape(-1).double()
        counts = torch.bincount(
            rank.reshape(-1), weights=ww * ww.numel() / ww.sum(), minlength=m + 1
        )
    return to_like(counts, kind)


def rank_histogram_flatness(counts: Any) -> float:
    r"""Flatness δ of a rank histogram (Candille & Talagrand 2005), equal to χ²/dof.

    .. math:: \delta = \frac{\sum_k (s_k - N/(M+1))^2}{N M/(M+1)}

    with :math:`s_k` the M + 1 counts and N their sum. This is the same number as the
    Pearson χ² against a flat histogram divided by its M degrees of freedom. Its expectation
    is 1 for a statistically consistent ensemble; δ ≫ 1 means a non-flat histogram (compare
    with 1 + a few × sqrt(2/M) for sampling noise).
    """
    c = np.asarray(
        counts.detach().cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.float64
    ).reshape(-1)
    if c.size < 2 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ClimgenInputError("counts must be ≥ 2 finite non-negative rank-histogram counts")
    n, k = c.sum(), c.size
    if n <= 0:
        raise ClimgenInputError("counts are all zero: nothing was ranked")
    expected = n / k
    return float(((c - expected) ** 2).sum() / (n * (k - 1) / k))
