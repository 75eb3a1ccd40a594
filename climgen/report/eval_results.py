"""Result types of :func:`climgen.report.evaluate.evaluate`: distances, verdicts, reports.

:class:`Distance` (one distance with its noise floor and verdict), :class:`VariableResult`
(everything measured for one variable) and :class:`EvaluationReport` (all variables with
provenance; JSON, HTML and a text summary). :func:`classify` and :func:`judged` turn a
distance and its floor into a verdict: "matches" (d ≤ factor · floor), "close"
(d ≤ 5 · floor) or "differs". Definitions of the distances: docs/diagnostics.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from climgen.data.outputs import refuse_existing, replacing_folder
from climgen.metrics.floor import Verdict

__all__ = [
    "CLOSE_FACTOR",
    "DESCRIPTIONS",
    "Distance",
    "EvaluationReport",
    "VariableResult",
    "classify",
    "judged",
]

CLOSE_FACTOR = 5.0

DESCRIPTIONS = {
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
    "minkowski_area": "Minkowski V0: mean |Δ area fraction of {f > ν}| / its max, ν at the "
    "reference's quantiles",
    "minkowski_length": "Minkowski V1: mean |Δ boundary length of {f > ν}| / its max",
    "minkowski_euler": "Minkowski V2: mean |Δ Euler characteristic of {f > ν}| / its max "
    "(components − holes)",
    "gradient_pdf": "W1 of the gradient-magnitude PDFs / mean |∇f| of the reference",
    "band_spectrum_lsd": "log-spectral distance of the spectra along x per latitude/height "
    "band, mean over bands (decades)",
}


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
    coordinate units, ``orders``, ``generated``/``reference`` (n_orders, n_lags), flatness);
    ``morphology`` the Minkowski curves over ``thresholds`` and the band spectra.
    ``reference_rows`` (only with ``train=``): row name ("training data", "surrogate
    (IAAFT)") → the same distances for that set; ``memorisation``: set name → shift-aware
    memorisation ratio (≈ 1 new fields, ≪ 1 copies of training fields).
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
    morphology: dict[str, Any] = field(default_factory=dict)
    reference_rows: dict[str, dict[str, Distance]] = field(default_factory=dict)
    memorisation: dict[str, float] = field(default_factory=dict)
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
            "morphology": _json_dict(self.morphology),
            "reference_rows": {
                row: {k: d.to_dict() for k, d in ds.items()}
                for row, ds in self.reference_rows.items()
            },
            "memorisation": _json_dict(self.memorisation),
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
    #: per variable, what was measured on the reference alone (floors, reference statistics,
    #: reference rows: :class:`climgen.report.eval_measures.ReferenceSide`), for
    #: ``evaluate(..., reuse=this report)``; not part of the report's files.
    reference_sides: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

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

    def to_html(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write DIR/index.html, one PNG per figure and DIR/metrics.json; return index.html.

        An existing ``directory`` is refused unless it is an empty folder or ``overwrite=True``
        (as ``climgen evaluate -o DIR --overwrite``); an existing file is always refused. The
        report is written to a temporary folder beside ``directory`` and renamed into place,
        so a failure midway leaves an old report intact.
        """
        from climgen.report.eval_figures import draw_figures
        from climgen.report.html import render_html

        directory = refuse_existing(directory, overwrite=overwrite, folder=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        with replacing_folder(directory) as tmp:
            self.to_json(tmp / "metrics.json")
            figures = {name: draw_figures(var, tmp) for name, var in self.variables.items()}
            render_html(self.to_dict(), figures, tmp / "index.html")
        return directory / "index.html"

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
        lines.extend(self._reference_rows_summary())
        lines.append(
            f"overall: {overall} (a distance matches when ≤ {self.factor:g} × its noise floor)"
        )
        for name, note in (self.provenance.get("units") or {}).items():
            lines.append(f"note: '{name}': {note}")
        return "\n".join(lines)

    def _reference_rows_summary(self) -> list[str]:
        """Ratios to the floor of the model beside the reference rows, where there are any."""
        lines = []
        for name, var in self.variables.items():
            if not var.reference_rows:
                continue
            rows = list(var.reference_rows)
            head = f"{'variable':<14} {'distance (ratio to floor)':<26} {'model':>8}" + "".join(
                f" {r[:20]:>20}" for r in rows
            )
            lines += [head, "-" * len(head)]
            for dname, d in var.distances.items():
                cells = "".join(
                    f" {var.reference_rows[r][dname].ratio:>20.3g}"
                    if dname in var.reference_rows[r]
                    else f" {'':>20}"
                    for r in rows
                )
                lines.append(f"{name[:14]:<14} {dname:<26} {d.ratio:>8.3g}{cells}")
            for who, rho in var.memorisation.items():
                lines.append(
                    f"{name[:14]:<14} memorisation ratio of {who}: {rho:.3g} "
                    "(≈ 1: new fields; ≪ 1: copies of training fields)"
                )
            lines.append("-" * len(head))
        return lines

    def __repr__(self) -> str:
        names = ", ".join(self.variables)
        return f"EvaluationReport(variables=[{names}], matches={self.matches})"


def judged(name: str, value: float, floor: float, factor: float, *, atol: float = 1e-9):
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
        description=DESCRIPTIONS.get(name, ""),
    )
