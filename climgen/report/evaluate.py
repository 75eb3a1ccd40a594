"""Judge generated fields against reference fields: physics diagnostics next to noise floors.

:func:`evaluate` compares, variable by variable, a set of generated fields with a reference
set on the same grid and returns an :class:`EvaluationReport`. Every distance
d(generated, reference) is reported with its **noise floor**, the same distance between two
halves of the reference (:func:`climgen.metrics.noise_floor`; averaged over 5 splits into
halves made of contiguous blocks, the first being first half vs second half), and a
verdict in words (Ravuri et al. 2021, Nature 597, 672, judge generative weather models
against the spread of the truth itself; design doc ``metrics.md`` §11):

* ``matches`` — d ≤ factor · floor (factor = 2 by default),
* ``close``   — factor · floor < d ≤ 5 · floor,
* ``differs`` — d > 5 · floor.

Distances per variable (all area-weighted on lat/lon grids):

====================  ==================================================================
spectrum_lsd          log-spectral distance sqrt(mean_k (log10 P_gen − log10 P_ref)²) of
                      the sample-mean spectra (rapsd or spherical C_ℓ, see field_spectrum)
spectrum_log_ratio    mean_k |log10(P_gen / P_ref)|
wasserstein1          W1 of the value distributions, units of the field
ks                    Kolmogorov–Smirnov statistic on the samples
tail_error            max over q ∈ {0.1 %, 1 %, 99 %, 99.9 %} of |ΔQ(q)| / σ_ref
mean_difference       |μ_gen − μ_ref| / σ_ref
std_log_ratio         |ln(σ_gen / σ_ref)|
skewness_difference   |γ1,gen − γ1,ref|
kurtosis_difference   |β2,gen − β2,ref|
covariance_error      ‖Σ_gen − Σ_ref‖_F / ‖Σ_ref‖_F of the covariance projected on the
                      reference's 10 leading EOFs (Wu et al. 2020)
structure_s2          mean_r |ln(S_2,gen(r) / S_2,ref(r))| along x
flatness_difference   mean_r |F_gen(r) − F_ref(r)|, F = S_4 / S_2², along x
====================  ==================================================================
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError
from climgen.metrics.floor import Verdict

__all__ = [
    "Distance",
    "VariableResult",
    "EvaluationReport",
    "evaluate",
    "classify",
    "MIN_REFERENCE_SAMPLES",
]

MIN_REFERENCE_SAMPLES = 4
CLOSE_FACTOR = 5.0
FLOOR_SPLITS = 5
SAMPLE_DIM = "sample"
STRUCTURE_ORDERS = (1, 2, 3, 4, 5, 6)
COVARIANCE_EOFS = 10

_DESCRIPTIONS = {
    "spectrum_lsd": "log-spectral distance of the mean power spectra, in decades (0 = same)",
    "spectrum_log_ratio": "mean |log10(P_gen/P_ref)| over wavenumbers, in decades",
    "wasserstein1": "Wasserstein-1 distance of the value distributions (units of the field)",
    "ks": "Kolmogorov–Smirnov statistic of the value distributions",
    "tail_error": "largest error of the 0.1/1/99/99.9 % quantiles, in reference std",
    "mean_difference": "|mean_gen − mean_ref| in reference std",
    "std_log_ratio": "|ln(std_gen/std_ref)|",
    "skewness_difference": "|skewness_gen − skewness_ref|",
    "kurtosis_difference": "|kurtosis_gen − kurtosis_ref| (Gaussian kurtosis = 3)",
    "covariance_error": "relative Frobenius error of the covariance on the 10 leading "
    "reference EOFs",
    "structure_s2": "mean |ln(S2_gen/S2_ref)| of the 2nd-order structure function along x",
    "flatness_difference": "mean |F_gen − F_ref| of the flatness S4/S2² along x",
}


# ----------------------------------------------------------------------------------------------
# Results


def classify(value: float, floor: float, factor: float = 2.0) -> Verdict:
    """The verdict on a distance against its noise floor (:func:`climgen.metrics.verdict`).

    Its ``level`` is "matches" (value ≤ factor·floor), "close" (≤ CLOSE_FACTOR·floor) or
    "differs"; a non-finite value or floor "differs". A zero floor accepts only zero.
    """
    from climgen.metrics import verdict

    if not (math.isfinite(value) and math.isfinite(floor)):
        return Verdict(
            f"differs (distance {value:.3g}, noise floor {floor:.3g}: not finite)",
            level="differs",
            ratio=math.inf,
            distance=value,
            floor=floor,
        )
    return verdict(abs(value), abs(floor), factor=factor, close_factor=max(CLOSE_FACTOR, factor))


def _ratio(value: float, floor: float) -> float:
    if floor > 0:
        return value / floor
    return 0.0 if value == 0 else math.inf


@dataclass
class Distance:
    """One distance between generated and reference data with its noise floor.

    ``ratio`` = value / floor; ``status`` the verdict's level ("matches", "close" or
    "differs"); ``verdict`` the sentence.
    """

    name: str
    value: float
    floor: float
    ratio: float
    status: str
    verdict: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _json_float(self.value),
            "floor": _json_float(self.floor),
            "ratio": _json_float(self.ratio),
            "status": self.status,
            "verdict": self.verdict,
            "description": self.description,
        }


@dataclass
class VariableResult:
    """Everything measured for one variable.

    ``spectrum`` holds the sample-mean spectra (keys ``k``, ``generated``, ``reference``,
    ``reference_half_a``, ``reference_half_b``, ``kind``, ``k_units``,
    ``effective_resolution``); ``structure`` the structure functions along x (``lags`` in
    coordinate units, ``orders``, ``generated``/``reference`` (n_orders, n_lags), flatness).
    The sample fields themselves are kept (not serialised) for the figures.
    """

    name: str
    units: str
    long_name: str
    grid: str
    spatial_dims: tuple[str, str]
    shape: tuple[int, int]
    n_generated: int
    n_reference: int
    distances: dict[str, Distance]
    moments: dict[str, dict[str, float]]
    quantile_errors: dict[str, float]
    spectrum: dict[str, Any]
    structure: dict[str, Any]
    generated_fields: np.ndarray | None = field(default=None, repr=False, compare=False)
    reference_fields: np.ndarray | None = field(default=None, repr=False, compare=False)
    weights: np.ndarray | None = field(default=None, repr=False, compare=False)
    y: np.ndarray | None = field(default=None, repr=False, compare=False)
    x: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def matches(self) -> bool:
        """True when no distance is beyond factor × its noise floor."""
        return all(d.status == "matches" for d in self.distances.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "long_name": self.long_name,
            "grid": self.grid,
            "spatial_dims": list(self.spatial_dims),
            "shape": list(self.shape),
            "n_generated": self.n_generated,
            "n_reference": self.n_reference,
            "matches": self.matches,
            "distances": {k: d.to_dict() for k, d in self.distances.items()},
            "moments": {w: _json_dict(m) for w, m in self.moments.items()},
            "quantile_errors": _json_dict(self.quantile_errors),
            "spectrum": _json_dict(self.spectrum),
            "structure": _json_dict(self.structure),
        }


def _json_float(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _json_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return _json_dict(v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _json_float(v)
    if hasattr(v, "item"):  # 0-d tensors/arrays
        return _json_value(v.item())
    return v


def _json_dict(d: dict) -> dict[str, Any]:
    return {str(k): _json_value(v) for k, v in d.items()}


@dataclass
class EvaluationReport:
    """Per-variable results of :func:`evaluate` with provenance.

    ``matches`` is True when every distance of every variable is within ``factor`` × its
    noise floor. ``to_json`` writes metrics.json, ``to_html`` a folder with index.html,
    figures and metrics.json, ``summary`` a text table.
    """

    variables: dict[str, VariableResult]
    provenance: dict[str, Any]
    factor: float = 2.0

    @property
    def matches(self) -> bool:
        return all(v.matches for v in self.variables.values())

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form (what metrics.json holds); non-finite floats become null."""
        return {
            "matches": self.matches,
            "factor": self.factor,
            "close_factor": max(CLOSE_FACTOR, self.factor),
            "provenance": _json_dict(self.provenance),
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (a file, or a folder → metrics.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
        return path

    def to_html(self, directory: str | Path) -> Path:
        """Write DIR/index.html, one PNG per figure and DIR/metrics.json; return index.html."""
        from climgen.report.html import render_html

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json(directory / "metrics.json")
        figures = {name: _draw_figures(var, directory) for name, var in self.variables.items()}
        return render_html(self.to_dict(), figures, directory / "index.html")

    def summary(self) -> str:
        """A plain-text table: one row per variable and distance."""
        header = (
            f"{'variable':<14} {'distance':<20} {'value':>10} {'floor':>10} {'ratio':>8}  verdict"
        )
        lines = [header, "-" * len(header)]
        for name, var in self.variables.items():
            for dname, d in var.distances.items():
                lines.append(
                    f"{name[:14]:<14} {dname:<20} {d.value:>10.4g} {d.floor:>10.4g} "
                    f"{d.ratio:>8.3g}  {d.status}"
                )
        overall = "matches" if self.matches else "differs"
        lines.append("-" * len(header))
        lines.append(
            f"overall: {overall} (a distance matches when ≤ {self.factor:g} × its noise floor)"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = ", ".join(self.variables)
        return f"EvaluationReport(variables=[{names}], matches={self.matches})"


# ----------------------------------------------------------------------------------------------
# Input handling


def _describe_source(obj: Any, role: str) -> str:
    if isinstance(obj, (str, Path)):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return ", ".join(str(p) for p in obj)
    src = getattr(obj, "encoding", {}).get("source")
    return str(src) if src else f"<in-memory {type(obj).__name__} ({role})>"


def _open(obj: Any, role: str) -> xr.Dataset:
    if isinstance(obj, xr.Dataset):
        return obj
    if isinstance(obj, xr.DataArray):
        return obj.to_dataset(name=obj.name if obj.name is not None else "field")
    if isinstance(obj, (str, Path)) or (
        isinstance(obj, (list, tuple)) and all(isinstance(p, (str, Path)) for p in obj)
    ):
        from climgen.data.io import open_fields

        return open_fields(obj)
    raise ClimgenInputError(
        f"{role}: expected an xarray Dataset/DataArray or a path to a netCDF/zarr file, "
        f"got {type(obj).__name__}"
    )


def _spatial_variables(ds: xr.Dataset) -> list[str]:
    out = []
    for name, da in ds.data_vars.items():
        if da.ndim < 2:
            continue
        try:
            grids.detect_grid(da)
        except ClimgenInputError:
            continue
        out.append(str(name))
    return out


def _select_variables(
    gen: xr.Dataset, ref: xr.Dataset, variables: Sequence[str] | None, gen_src: str, ref_src: str
) -> list[str]:
    if variables is None:
        variables = _spatial_variables(gen)
        if not variables:
            raise ClimgenInputError(
                f"generated data ({gen_src}) hold no gridded variable (one with lat/lon or "
                f"y/x dims); data variables: {list(map(str, gen.data_vars))}"
            )
    else:
        variables = [variables] if isinstance(variables, str) else list(variables)
        if not variables:
            raise ClimgenInputError("variables is empty: name at least one variable")
    for name in variables:
        for ds, role, src in ((gen, "generated", gen_src), (ref, "reference", ref_src)):
            if name not in ds.data_vars:
                raise ClimgenInputError(
                    f"variable '{name}' is missing from the {role} data ({src}); "
                    f"it has: {list(map(str, ds.data_vars))}"
                )
    return list(variables)


def _check_same_units(
    name: str, gen: xr.DataArray, ref: xr.DataArray, gen_src: str, ref_src: str
) -> None:
    """Raise when both sets declare ``units`` and they differ (e.g. degC vs K).

    Units are compared as strings after trimming and collapsing blanks; a set without a
    ``units`` attribute is not checked (nothing to compare).
    """
    g_units, r_units = gen.attrs.get("units"), ref.attrs.get("units")
    if g_units is None or r_units is None:
        return
    if " ".join(str(g_units).split()) != " ".join(str(r_units).split()):
        raise ClimgenInputError(
            f"variable '{name}': units differ: '{g_units}' in the generated data ({gen_src}) "
            f"but '{r_units}' in the reference ({ref_src}); convert one set to the other's "
            "units (and set its 'units' attribute) before evaluating"
        )


def _check_same_grid(name: str, gen: xr.DataArray, ref: xr.DataArray) -> None:
    """Raise when the canonical spatial grids of gen and ref differ, naming the dim."""
    g_gen, g_ref = grids.detect_grid(gen), grids.detect_grid(ref)
    if g_gen.kind != g_ref.kind:
        raise ClimgenInputError(
            f"variable '{name}': generated data are on a {g_gen.kind} grid but the reference on "
            f"a {g_ref.kind} grid"
        )
    for axis, dg, dr in (("y", g_gen.y_dim, g_ref.y_dim), ("x", g_gen.x_dim, g_ref.x_dim)):
        if dg != dr:
            raise ClimgenInputError(
                f"variable '{name}': the {axis} dim is called '{dg}' in the generated data but "
                f"'{dr}' in the reference; rename one, e.g. ds.rename({{'{dg}': '{dr}'}})"
            )
        if gen.sizes[dg] != ref.sizes[dr]:
            raise ClimgenInputError(
                f"variable '{name}': dim '{dg}' has size {gen.sizes[dg]} in the generated data "
                f"but {ref.sizes[dr]} in the reference; regrid one onto the other's grid"
            )
    cg, _ = grids.to_canonical(gen, g_gen)
    cr, _ = grids.to_canonical(ref, g_ref)
    for d in (g_gen.y_dim, g_gen.x_dim):
        if d in cg.coords and d in cr.coords:
            a, b = np.asarray(cg[d].values, float), np.asarray(cr[d].values, float)
            scale = max(float(np.abs(b).max()), 1.0)
            if not np.allclose(a, b, rtol=1e-5, atol=1e-6 * scale):
                worst = int(np.argmax(np.abs(a - b)))
                raise ClimgenInputError(
                    f"variable '{name}': coordinate '{d}' differs between the generated data "
                    f"and the reference (e.g. {a[worst]:.6g} vs {b[worst]:.6g} at index "
                    f"{worst}); both must be on the same grid"
                )


def _as_samples(
    da: xr.DataArray, sample_dim: str | None, role: str, name: str
) -> tuple[xr.DataArray, grids.GridInfo]:
    """Canonical (sample, y, x) DataArray: all non-spatial dims stacked into "sample"."""
    grid = grids.detect_grid(da)
    if sample_dim is not None and sample_dim not in da.dims:
        raise ClimgenInputError(
            f"variable '{name}' of the {role} data has no dim '{sample_dim}' (sample_dim); "
            f"its dims are {tuple(map(str, da.dims))}"
        )
    canon, _ = grids.to_canonical(da, grid)
    extra = list(grid.sample_dims)
    if sample_dim is not None:
        extra.remove(sample_dim)
        extra.insert(0, sample_dim)
    if not extra:
        canon = canon.expand_dims(SAMPLE_DIM)
    elif len(extra) == 1:
        canon = canon.rename({extra[0]: SAMPLE_DIM}) if extra[0] != SAMPLE_DIM else canon
        canon = canon.drop_vars(SAMPLE_DIM, errors="ignore")
    else:
        canon = canon.stack({"__stacked__": extra}).drop_vars(
            ["__stacked__", *extra], errors="ignore"
        )
        canon = canon.rename({"__stacked__": SAMPLE_DIM})
    canon = canon.transpose(SAMPLE_DIM, grid.y_dim, grid.x_dim)
    return canon, grids.detect_grid(canon)


def _subsample(da: xr.DataArray, max_samples: int | None) -> xr.DataArray:
    n = da.sizes[SAMPLE_DIM]
    if max_samples is None or n <= max_samples:
        return da
    # Evenly spaced rather than the first N: time series are autocorrelated.
    index = np.unique(np.linspace(0, n - 1, int(max_samples)).round().astype(int))
    return da.isel({SAMPLE_DIM: index})


def _check_finite(da: xr.DataArray, role: str, name: str, src: str) -> None:
    bad = int((~np.isfinite(da.values)).sum())
    if bad:
        raise ClimgenInputError(
            f"variable '{name}' of the {role} data ({src}) holds {bad} NaN/inf value(s) out of "
            f"{da.size}; evaluation needs complete fields: fill or crop the missing points first"
        )


# ----------------------------------------------------------------------------------------------
# Measurements


def _block_splits(n: int, n_splits: int = FLOOR_SPLITS, n_blocks: int = 8) -> list[np.ndarray]:
    """Sample orders whose first and second halves are unions of contiguous blocks.

    The samples are cut into ``n_blocks`` contiguous blocks (fewer for small n); each order
    puts half of the blocks first. The first order is the plain first-half/second-half split;
    the others are drawn (seeded, so reports are reproducible) from the balanced block
    assignments. Contiguous blocks keep autocorrelated samples together, so the floor is not
    made too small by splitting neighbours apart.
    """
    from itertools import combinations

    n_blocks = min(n_blocks, n) - min(n_blocks, n) % 2
    blocks = np.array_split(np.arange(n), n_blocks)
    first = [c for c in combinations(range(n_blocks), n_blocks // 2) if 0 in c]
    plain = tuple(range(n_blocks // 2))
    others = [c for c in first if c != plain]
    rng = np.random.default_rng(0)
    chosen = [plain] + [others[i] for i in rng.permutation(len(others))[: n_splits - 1]]
    orders = []
    for group in chosen:
        rest = [b for b in range(n_blocks) if b not in group]
        orders.append(np.concatenate([blocks[b] for b in (*group, *rest)]))
    return orders


def _distance(
    name: str,
    fn: Callable[[np.ndarray, np.ndarray], float],
    gen: np.ndarray,
    ref: np.ndarray,
    factor: float,
    *,
    atol: float = 1e-9,
) -> Distance:
    """d = fn(gen, ref) and its noise floor; values ≤ ``atol`` count as exactly 0, so that
    round-off (e.g. two zero-mean sets) is not judged against a round-off floor.

    The floor is the mean of :func:`climgen.metrics.noise_floor` ("halves") over
    :func:`_block_splits` orders of the reference: one split alone is a single noisy draw
    and makes a faithful model fail by chance too often.
    """
    from climgen.metrics import noise_floor

    value = float(fn(gen, ref))
    floors = [
        float(noise_floor(fn, ref[order], sample_axis=0, method="halves"))
        for order in _block_splits(ref.shape[0])
    ]
    return _judged(name, value, float(np.mean(floors)), factor, atol=atol)


def _judged(name: str, value: float, floor: float, factor: float, *, atol: float = 1e-9):
    """The :class:`Distance` of a value and its floor (|·| ≤ atol count as exactly 0)."""
    value = 0.0 if abs(value) <= atol else value
    floor = 0.0 if abs(floor) <= atol else floor
    words = classify(value, floor, factor)
    return Distance(
        name=name,
        value=value,
        floor=floor,
        ratio=_ratio(value, floor),
        status=words.level,
        verdict=str(words),
        description=_DESCRIPTIONS.get(name, ""),
    )


def _valid_bins(k: np.ndarray, *powers: np.ndarray) -> np.ndarray:
    """Bins with k > 0 whose power is finite in every sample and positive on average."""
    keep = np.isfinite(k) & (k > 0)
    for p in powers:
        keep &= np.isfinite(p).all(axis=0) & (np.nan_to_num(p).mean(axis=0) > 0)
    return keep


def _measure_spectrum(gen: xr.DataArray, ref: xr.DataArray, factor: float):
    from climgen.metrics import field_spectrum, spectral_errors

    sg, sr = field_spectrum(gen), field_spectrum(ref)
    spec_dim = sr.dims[-1]
    k = np.asarray(sr[spec_dim].values, float)
    pg = np.asarray(sg.values, float).reshape(-1, k.size)
    pr = np.asarray(sr.values, float).reshape(-1, k.size)
    keep = _valid_bins(k, pg, pr)
    k, pg, pr = k[keep], pg[:, keep], pr[:, keep]

    def lsd(a, b):
        return spectral_errors(a.mean(0), b.mean(0))["log_spectral_distance"]

    def mean_log(a, b):
        return spectral_errors(a.mean(0), b.mean(0))["mean_abs_log_ratio"]

    distances = {
        "spectrum_lsd": _distance("spectrum_lsd", lsd, pg, pr, factor),
        "spectrum_log_ratio": _distance("spectrum_log_ratio", mean_log, pg, pr, factor),
    }
    mean_g, mean_r = pg.mean(0), pr.mean(0)
    half = pr.shape[0] // 2
    eff = float(spectral_errors(mean_g, mean_r, k=k)["effective_resolution"])
    spectrum = {
        "kind": str(sr.attrs.get("spectrum_kind", spec_dim)),
        "dim": str(spec_dim),
        "k_units": str(sr.attrs.get("k_units", "")),
        "power_units": str(sr.attrs.get("units", "")),
        "k": k,
        "generated": mean_g,
        "reference": mean_r,
        "reference_half_a": pr[:half].mean(0),
        "reference_half_b": pr[half:].mean(0),
        # First k from which P_gen/P_ref stays below 0.5 (NaN → null: never).
        "effective_resolution": eff,
    }
    return distances, spectrum


def _memoized(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """``fn`` of one array, cached by the array's content (shape + hash of its bytes)."""
    memo: dict[tuple, Any] = {}

    def wrapper(a: np.ndarray):
        a = np.ascontiguousarray(a)
        key = (a.shape, a.dtype.str, hashlib.blake2b(a.data, digest_size=16).digest())
        if key not in memo:
            memo[key] = fn(a)
        return memo[key]

    return wrapper


def _measure_distributions(gen: np.ndarray, ref: np.ndarray, w: np.ndarray, factor: float):
    from climgen.metrics import ks_statistic, moments, quantile_errors, tail_error, wasserstein1

    def w1(a, b):
        return wasserstein1(a, b, weights_a=w, weights_b=w)

    def ks(a, b):
        return ks_statistic(a, b, weights_a=w, weights_b=w)

    def tail(a, b):
        return tail_error(a, b, weights_gen=w, weights_ref=w)

    one = _memoized(lambda a: moments(a, weights=w))

    def mom(a, b):
        # Four distances and their floors share the moments of the same few sets.
        return one(a), one(b)

    def mean_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["mean"] - mb["mean"]) / mb["std"]

    def std_ratio(a, b):
        ma, mb = mom(a, b)
        return abs(math.log(ma["std"] / mb["std"]))

    def skew_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["skewness"] - mb["skewness"])

    def kurt_diff(a, b):
        ma, mb = mom(a, b)
        return abs(ma["kurtosis"] - mb["kurtosis"])

    fns = {
        "wasserstein1": w1,
        "ks": ks,
        "tail_error": tail,
        "mean_difference": mean_diff,
        "std_log_ratio": std_ratio,
        "skewness_difference": skew_diff,
        "kurtosis_difference": kurt_diff,
    }
    m_gen, m_ref = mom(gen, ref)
    # W1 is in field units: its round-off tolerance scales with the reference spread.
    atol = {"wasserstein1": 1e-9 * max(float(m_ref["std"]), 1e-300)}
    distances = {
        name: _distance(name, fn, gen, ref, factor, atol=atol.get(name, 1e-9))
        for name, fn in fns.items()
    }
    q_err = quantile_errors(gen, ref, weights_gen=w, weights_ref=w)
    return (
        distances,
        {"generated": m_gen, "reference": m_ref},
        {f"{float(q):g}": float(v) for q, v in q_err.items()},
    )


def _measure_covariance(gen: np.ndarray, ref: np.ndarray, w: np.ndarray, factor: float):
    from climgen.metrics import covariance_error

    # Leading EOFs rather than the full D × D covariance: with n ≪ D samples the full
    # matrix is mostly sampling noise, while the large-scale covariance is well estimated.
    def cov(a, b):
        return covariance_error(a, b, n_eofs=COVARIANCE_EOFS, weights=w)

    return {"covariance_error": _distance("covariance_error", cov, gen, ref, factor)}


def _measure_structure(gen: np.ndarray, ref: np.ndarray, grid: grids.GridInfo, factor: float):
    from climgen.metrics import structure_functions

    periodic = bool(grid.periodic_x)
    max_lag = max(1, gen.shape[-1] // 2 if periodic else gen.shape[-1] // 4)
    i2 = STRUCTURE_ORDERS.index(2)
    i4 = STRUCTURE_ORDERS.index(4)

    @_memoized
    def sf(a):
        # Both structure distances and their floors reuse the same sets of fields.
        lags, s = structure_functions(
            a, axis=-1, orders=STRUCTURE_ORDERS, max_lag=max_lag, periodic=periodic
        )
        return np.asarray(lags, float), np.asarray(s, float)

    def flat(s):
        with np.errstate(divide="ignore", invalid="ignore"):
            return s[i4] / s[i2] ** 2

    def s2_log(a, b):
        _, sa = sf(a)
        _, sb = sf(b)
        ok = (sa[i2] > 0) & (sb[i2] > 0)
        return float(np.mean(np.abs(np.log(sa[i2][ok] / sb[i2][ok])))) if ok.any() else 0.0

    def flat_diff(a, b):
        fa, fb = flat(sf(a)[1]), flat(sf(b)[1])
        ok = np.isfinite(fa) & np.isfinite(fb)
        return float(np.mean(np.abs(fa[ok] - fb[ok]))) if ok.any() else 0.0

    distances = {
        "structure_s2": _distance("structure_s2", s2_log, gen, ref, factor),
        "flatness_difference": _distance("flatness_difference", flat_diff, gen, ref, factor),
    }
    lags, s_gen = sf(gen)
    _, s_ref = sf(ref)
    structure = {
        "lags": lags * grid.dx,
        "lag_units": "",
        "orders": list(STRUCTURE_ORDERS),
        "generated": s_gen,
        "reference": s_ref,
        "flatness_generated": flat(s_gen),
        "flatness_reference": flat(s_ref),
    }
    return distances, structure


# ----------------------------------------------------------------------------------------------
# Entry point


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("climgen")
    except Exception:  # noqa: BLE001 - not installed: fall back to the package attribute
        import climgen

        return str(getattr(climgen, "__version__", "unknown"))


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None lets tqdm switch itself off when stderr is not a terminal.
    return tqdm(total=total, desc="evaluate", unit="step", disable=None if enabled else True)


def evaluate(
    generated: Any,
    reference: Any,
    *,
    variables: Iterable[str] | str | None = None,
    sample_dim: str | None = None,
    max_samples: int | None = None,
    progress: bool = True,
    factor: float = 2.0,
    chunk_size: int | None = None,
) -> EvaluationReport:
    """Compare generated fields with reference fields and judge each distance.

    Parameters
    ----------
    generated, reference : xarray Dataset or DataArray, or path(s) to netCDF/zarr files.
        Both must be on the same spatial grid (same dim names and sizes, coordinates equal
        after canonical orientation); their sample counts may differ.
    variables : names to evaluate (default: every gridded variable of ``generated``).
    sample_dim : the dim that indexes samples (default: every non-spatial dim, stacked).
    max_samples : use at most this many samples of each set (evenly spaced).
    progress : show a progress bar (on a terminal only).
    factor : a distance matches when value ≤ factor × noise floor.
    chunk_size : evaluate in bounded memory, ``chunk_size`` samples at a time (lazily
        opened files and dask arrays are read chunk by chunk; see :mod:`climgen.report.
        streaming_eval`). Distances use the mergeable accumulators of
        :mod:`climgen.metrics.streaming`: equal to the in-memory values up to round-off,
        except W1, KS and the tail error, computed on 65 536 common bins (error bounds in
        ``provenance["binning"]``); ``covariance_error`` is left out above 1024 grid points;
        figures show the first chunk's samples. Default: everything in memory.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ClimgenInputError
        naming the variable, dim or file at fault: a variable missing from either set,
        ``units`` attributes that differ, grids that differ, NaN/inf values, or fewer than 4
        reference samples (the noise floor needs two halves of at least 2).
    """
    if max_samples is not None and int(max_samples) < MIN_REFERENCE_SAMPLES:
        raise ClimgenInputError(
            f"max_samples must be at least {MIN_REFERENCE_SAMPLES} (got {max_samples}): the "
            "noise floor compares two halves of the reference"
        )
    gen_src, ref_src = (
        _describe_source(generated, "generated"),
        _describe_source(reference, "reference"),
    )
    gen_ds, ref_ds = _open(generated, "generated"), _open(reference, "reference")
    names = _select_variables(gen_ds, ref_ds, variables, gen_src, ref_src)
    if chunk_size is not None:
        from climgen.report.streaming_eval import evaluate_streaming

        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ClimgenInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        results = {}
        for name in names:
            g_da, r_da = gen_ds[name], ref_ds[name]
            _check_same_units(name, g_da, r_da, gen_src, ref_src)
            _check_same_grid(name, g_da, r_da)
            g_can, _ = _as_samples(g_da, sample_dim, "generated", name)
            r_can, grid = _as_samples(r_da, sample_dim, "reference", name)
            results[name] = evaluate_streaming(
                name,
                _subsample(g_can, max_samples),
                _subsample(r_can, max_samples),
                grid,
                int(chunk_size),
                factor,
                (gen_src, ref_src),
                progress,
            )
        provenance = _provenance(gen_src, ref_src, names, results)
        provenance["chunk_size"] = int(chunk_size)
        provenance["binning"] = {n: r.spectrum.pop("binning") for n, r in results.items()}
        return EvaluationReport(variables=results, provenance=provenance, factor=factor)

    prepared = {}
    for name in names:
        g_da, r_da = gen_ds[name], ref_ds[name]
        _check_same_units(name, g_da, r_da, gen_src, ref_src)
        _check_same_grid(name, g_da, r_da)
        g_can, _ = _as_samples(g_da, sample_dim, "generated", name)
        r_can, grid = _as_samples(r_da, sample_dim, "reference", name)
        # A writable float64 copy: file-backed arrays are read-only, which torch warns about.
        g_can = _subsample(g_can, max_samples)
        g_can = g_can.copy(data=np.array(g_can.values, dtype=np.float64))
        r_can = _subsample(r_can, max_samples)
        r_can = r_can.copy(data=np.array(r_can.values, dtype=np.float64))
        if r_can.sizes[SAMPLE_DIM] < MIN_REFERENCE_SAMPLES:
            raise ClimgenInputError(
                f"variable '{name}': the reference ({ref_src}) has "
                f"{r_can.sizes[SAMPLE_DIM]} sample(s); at least {MIN_REFERENCE_SAMPLES} are "
                "needed to estimate the noise floor from two halves"
            )
        _check_finite(g_can, "generated", name, gen_src)
        _check_finite(r_can, "reference", name, ref_src)
        prepared[name] = (g_can, r_can, grid)

    steps = ("spectrum", "distributions", "covariance", "structure functions")
    results: dict[str, VariableResult] = {}
    with _progress(len(names) * len(steps), progress) as bar:
        for name, (g_can, r_can, grid) in prepared.items():
            gen = np.asarray(g_can.values, float)
            ref = np.asarray(r_can.values, float)
            weights = grids.area_weights(r_can, grid).values
            bar.set_description(f"{name}: {steps[0]}")
            distances, spectrum = _measure_spectrum(g_can, r_can, factor)
            bar.update()
            bar.set_description(f"{name}: {steps[1]}")
            d_dist, moments_, q_err = _measure_distributions(gen, ref, weights, factor)
            distances.update(d_dist)
            bar.update()
            bar.set_description(f"{name}: {steps[2]}")
            distances.update(_measure_covariance(gen, ref, weights, factor))
            bar.update()
            bar.set_description(f"{name}: {steps[3]}")
            d_sf, structure = _measure_structure(gen, ref, grid, factor)
            structure["lag_units"] = (
                str(r_can[grid.x_dim].attrs.get("units", ""))
                if (grid.x_dim in r_can.coords)
                else ""
            )
            distances.update(d_sf)
            bar.update()
            results[name] = VariableResult(
                name=name,
                units=str(r_can.attrs.get("units", "")),
                long_name=str(r_can.attrs.get("long_name", name)),
                grid=grid.kind,
                spatial_dims=(grid.y_dim, grid.x_dim),
                shape=(int(ref.shape[-2]), int(ref.shape[-1])),
                n_generated=int(gen.shape[0]),
                n_reference=int(ref.shape[0]),
                distances=distances,
                moments=moments_,
                quantile_errors=q_err,
                spectrum=spectrum,
                structure=structure,
                generated_fields=gen,
                reference_fields=ref,
                weights=weights,
                y=_coord(r_can, grid.y_dim, ref.shape[-2]),
                x=_coord(r_can, grid.x_dim, ref.shape[-1]),
            )

    provenance = _provenance(gen_src, ref_src, names, results)
    return EvaluationReport(variables=results, provenance=provenance, factor=factor)


def _provenance(gen_src: str, ref_src: str, names: list[str], results: dict) -> dict[str, Any]:
    return {
        "generated": gen_src,
        "reference": ref_src,
        "variables": names,
        "samples (generated)": {n: r.n_generated for n, r in results.items()},
        "samples (reference)": {n: r.n_reference for n, r in results.items()},
        "climgen version": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "noise floor": "same distance between two halves of the reference samples "
        "(mean over 5 splits into contiguous blocks)",
    }


def _coord(da: xr.DataArray, dim: str, n: int) -> np.ndarray:
    if dim in da.coords:
        return np.asarray(da[dim].values, float)
    return np.arange(n, dtype=float)


# ----------------------------------------------------------------------------------------------
# Figures


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "variable"


def _draw_figures(var: VariableResult, directory: Path):
    from climgen.report import plots
    from climgen.report.html import Figure

    stem = _safe(var.name)
    latlon = var.grid == "latlon"
    y_dim, x_dim = var.spatial_dims
    figures = []
    if var.generated_fields is not None and var.reference_fields is not None:
        p = plots.plot_sample_maps(
            var.generated_fields,
            var.reference_fields,
            directory / f"{stem}_maps.png",
            y=var.y,
            x=var.x,
            latlon=latlon,
            name=var.name,
            units=var.units,
            y_label=y_dim,
            x_label=x_dim,
        )
        figures.append(
            Figure(
                "Sample maps",
                p.name,
                "Top row: generated samples; bottom row: reference samples, on one shared "
                "colour scale (1st–99th percentile of both). Look for the same texture, "
                "amplitude and size of structures; a generated row that is smoother, blotchier "
                "or paler than the reference shows a problem before any number does.",
            )
        )
    spec = var.spectrum
    k_label = spec.get("dim", "wavenumber")
    k_units = spec.get("k_units") or ""
    if k_units and not k_units.endswith(" per 1") and k_units != spec.get("dim"):
        k_label += f" [{k_units}]"
    p = plots.plot_spectra(
        spec["k"],
        spec["generated"],
        spec["reference"],
        directory / f"{stem}_spectrum.png",
        reference_halves=(spec["reference_half_a"], spec["reference_half_b"]),
        k_label=k_label,
        power_label=f"power [{spec['power_units']}]" if spec.get("power_units") else "power",
        name=var.name,
    )
    figures.append(
        Figure(
            "Power spectrum",
            p.name,
            "Top: sample-mean power per wavenumber on log–log axes (reference solid, generated "
            "dashed); the slope tells how variance is spread over scales. Bottom: the ratio "
            "generated/reference; 1 is perfect, the grey band is how much two halves of the "
            "reference differ (the noise floor). A ratio leaving the band at high wavenumbers "
            "means missing (< 1) or spurious (> 1) small-scale detail, e.g. blur or "
            "checkerboard artefacts.",
        )
    )
    if var.generated_fields is not None and var.reference_fields is not None:
        p = plots.plot_pdfs(
            var.generated_fields,
            var.reference_fields,
            directory / f"{stem}_pdf.png",
            weights=var.weights,
            name=var.name,
            units=var.units,
        )
        figures.append(
            Figure(
                "Distribution of values",
                p.name,
                "Area-weighted probability density of all grid-point values on shared bins, "
                "log scale so that the tails are visible; bars are Poisson errors. Differences "
                "in the centre show a bias or wrong variance, differences in the wings show "
                "missing or exaggerated extremes (a common failure of generative models).",
            )
        )
    st = var.structure
    lag_units = st.get("lag_units") if st.get("lag_units") not in (None, "", "1") else None
    lag_label = f"lag r along {x_dim}" + (f" [{lag_units}]" if lag_units else "")
    p = plots.plot_structure_functions(
        st["lags"],
        st["generated"],
        st["reference"],
        directory / f"{stem}_structure.png",
        orders=st["orders"],
        flatness_generated=st["flatness_generated"],
        flatness_reference=st["flatness_reference"],
        lag_label=lag_label,
        name=var.name,
    )
    figures.append(
        Figure(
            "Structure functions and flatness",
            p.name,
            "Left: S_p(r) = ⟨|f(x+r) − f(x)|^p⟩ for p = 1…6 along x (reference solid, generated "
            "dashed): how much the field changes over a distance r; the slope at small r is its "
            "roughness. Right: flatness S_4/S_2², 3 for Gaussian increments; higher values mean "
            "intermittent, bursty increments. Generated curves should lie on the reference ones.",
        )
    )
    return figures
