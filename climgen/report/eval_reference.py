"""Reference rows of an evaluation: the training data itself and an IAAFT surrogate of it.

A model's distances mean most next to two yardsticks scored against the same reference with
the same noise floors (issue 23; design: metrics.md §8b, §11):

* **training data itself** — what a perfect emulator of the training set gets (on an
  independent test run this is *not* zero: it is the run-to-run difference);
* **surrogate (IAAFT)** — :func:`climgen.metrics.iaaft_surrogate` of the training fields: the
  same 2-D power spectrum and row-wise marginals, random phases. It is what calibration (a
  linear filter plus a quantile map) reaches without learning any structure; a model row is
  informative only where it beats it.

Also the shift-aware memorisation ratio (:func:`climgen.metrics.memorisation_ratio`) of the
model and of the surrogate: ≈ 1 for new fields, ≪ 1 for copies of training fields.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.report.eval_inputs import subsample

__all__ = [
    "REFERENCE_ROWS",
    "SURROGATE_ITERATIONS",
    "SURROGATE_MAX_FIELDS",
    "SURROGATE_ROW",
    "TRAINING_ROW",
    "memorisation",
    "reference_candidates",
]

TRAINING_ROW = "training data"
SURROGATE_ROW = "surrogate (IAAFT)"
REFERENCE_ROWS = (TRAINING_ROW, SURROGATE_ROW)
#: At most this many training fields (evenly spaced) are turned into surrogates, with this
#: many IAAFT iterations: the rings up to half the Nyquist wavenumber converge within ~10,
#: the far tail of a steep spectrum slowly (docs/diagnostics.md); this bounds the cost.
SURROGATE_MAX_FIELDS = 128
SURROGATE_ITERATIONS = 50


def reference_candidates(
    train: xr.DataArray, n_generated: int, *, seed: int = 0, periodic_y: bool = True
) -> dict[str, xr.DataArray]:
    """The training set and its IAAFT surrogate, canonical (sample, y, x) DataArrays.

    The surrogate ends on the spectral step (``end="spectrum"``): its spectra are exact and
    its marginals approximate. Ending on the rank step instead (exact marginals) leaves a
    white residual that dominates the far tail of steep or truncated spectra — measured on
    the in-run split, RBC b: spectral log-error 1.76 decades (floor 0.13) against 0.153; HS
    ω500: 0.64 (floor 0.044) against 0.044 — which would make any model look better than
    the surrogate on spectra. W1 and KS stay within 2× their floors either way. On grids
    periodic in x only (lat/lon, walls) only the zonal phases are drawn (``phases="x"``):
    per-row zonal spectra, the coherence between rows and C_ℓ stay those of the data.

    The surrogate has as many fields as the model's sample (at most
    :data:`SURROGATE_MAX_FIELDS`), made from evenly spaced training fields.
    """
    from climgen.metrics import iaaft_surrogate

    n = max(4, min(int(n_generated), SURROGATE_MAX_FIELDS))
    src = subsample(train, n)
    values = iaaft_surrogate(
        np.asarray(src.values, dtype=np.float64),
        n_iter=SURROGATE_ITERATIONS,
        seed=seed,
        end="spectrum",
        phases="2d" if periodic_y else "x",
    )
    surrogate = src.copy(data=values)
    surrogate.attrs["surrogate"] = "IAAFT (Schreiber & Schmitz 1996) of the training fields"
    return {TRAINING_ROW: train, SURROGATE_ROW: surrogate}


def memorisation(
    candidates: dict[str, np.ndarray],
    train: np.ndarray,
    ref: np.ndarray,
    grid: grids.GridInfo,
    weights: np.ndarray,
) -> dict[str, float]:
    """Shift-aware memorisation ratio of each candidate set (generated, surrogate, …).

    Shifts run along the grid's periodic axes; weights are the area weights (per row).
    """
    from climgen.metrics import memorisation_ratios

    periodic = (bool(grid.periodic_y), bool(grid.periodic_x))
    return memorisation_ratios(candidates, train, ref, periodic=periodic, weights=weights)
