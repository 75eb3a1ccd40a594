"""Report page of domain translation: does translated A look like B, and better than the baseline?

Inputs are plain xarray Datasets (this module must not import ``climgen.tasks``): held-out
fields of domain A, held-out fields of domain B, the translation of those A fields by the
method under test, and the translations by baselines (quantile mapping), optionally the A → B
→ A reconstruction of a cycle-consistent method. Every candidate is scored against B with
:func:`climgen.report.evaluate.evaluate` — the distances and noise floors of the evaluation
report, not new ones:

- spectral log-error ``spectrum_lsd`` = sqrt(mean_k (log10 P̄_cand(k) − log10 P̄_B(k))²),
- ``wasserstein1`` W1 of the area-weighted value distributions (units of the field),
- ``covariance_error`` ‖Σ_cand − Σ_B‖_F / ‖Σ_B‖_F on B's 10 leading EOFs (Wu et al. 2020),
- ``ks`` (Kolmogorov–Smirnov),

each next to its noise floor (the same distance between two halves of B). The untranslated
A ("identity") is always a candidate: it is the A-vs-B distance a translation must shrink.
The cycle error is mean|a' − a| / std(a) (:func:`climgen.metrics.mae`), a' the reconstruction.

:func:`write_translate_page` draws the figures (PDFs, spectra with the ratio to B, EOF
explained variance, maps, cycle maps), writes ``scores.json`` and ``index.html``
(:func:`climgen.report.html.render_page`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.report.evaluate import EvaluationReport, evaluate

__all__ = [
    "SCORE_DISTANCES",
    "IDENTITY",
    "score_translations",
    "score_rows",
    "cycle_errors",
    "verdict_vs_baseline",
    "write_translate_page",
]

#: Distances of the score table, in order, with their column titles.
SCORE_DISTANCES = {
    "spectrum_lsd": "spectral log-error [decades]",
    "wasserstein1": "W1",
    "covariance_error": "covariance error",
    "ks": "KS",
}
#: Name of the untranslated-A candidate (the A-vs-B distance).
IDENTITY = "A untranslated (identity)"
#: Translated A "matches" the baseline's marginals when its W1 is at most this factor times
#: the baseline's, or within ``factor`` noise floors.
W1_TOLERANCE = 1.2


def score_translations(
    candidates: dict[str, Any],
    reference_b: Any,
    *,
    variables: Iterable[str] | str | None = None,
    sample_dim: str | None = None,
    factor: float = 2.0,
) -> dict[str, EvaluationReport]:
    """One :class:`EvaluationReport` per candidate (name → fields), each against ``reference_b``.

    ``sample_dim`` as :func:`climgen.report.evaluate.evaluate` (default: every non-spatial
    dim stacked, so an ensemble's ``member`` dim counts as more samples).
    """
    if not candidates:
        raise ClimgenInputError("score_translations needs at least one candidate")
    return {
        name: evaluate(
            fields,
            reference_b,
            variables=variables,
            sample_dim=sample_dim,
            progress=False,
            factor=factor,
        )
        for name, fields in candidates.items()
    }


def score_rows(
    reports: dict[str, EvaluationReport], keys: Iterable[str] = tuple(SCORE_DISTANCES)
) -> dict[str, dict[str, dict[str, dict[str, float | str]]]]:
    """candidate → variable → distance → {value, floor, ratio, status} (JSON-ready)."""
    out: dict[str, dict] = {}
    for name, report in reports.items():
        out[name] = {}
        for var, result in report.variables.items():
            out[name][var] = {
                k: {
                    "value": float(result.distances[k].value),
                    "floor": float(result.distances[k].floor),
                    "ratio": float(result.distances[k].ratio),
                    "status": result.distances[k].status,
                }
                for k in keys
            }
    return out


def cycle_errors(
    a: xr.Dataset, reconstructed: xr.Dataset, variables: Iterable[str]
) -> dict[str, float]:
    """mean|a' − a| / std(a) per variable (0: the A → B → A cycle returns its input)."""
    from climgen.metrics import mae

    out = {}
    for v in variables:
        x = np.asarray(a[v].values, float)
        r = np.asarray(reconstructed[v].transpose(*a[v].dims).values, float)
        if r.shape != x.shape:
            raise ClimgenInputError(
                f"cycle error of '{v}': reconstruction {r.shape} and input {x.shape} differ"
            )
        std = float(x.std())
        out[v] = float(mae(r, x)) / std if std > 0 else math.inf
    return out


def verdict_vs_baseline(
    scores: dict, candidate: str, baseline: str, variable: str, factor: float = 2.0
) -> dict[str, bool]:
    """Did ``candidate`` beat ``baseline`` on spectra and covariance, and match its W1?

    ``spectra`` / ``covariance``: strictly smaller spectral log-error / covariance error.
    ``marginals``: W1 ≤ :data:`W1_TOLERANCE` × the baseline's W1, or ≤ ``factor`` × floor.
    """
    c, b = scores[candidate][variable], scores[baseline][variable]
    w1 = c["wasserstein1"]
    return {
        "spectra": c["spectrum_lsd"]["value"] < b["spectrum_lsd"]["value"],
        "covariance": c["covariance_error"]["value"] < b["covariance_error"]["value"],
        "marginals": w1["value"] <= W1_TOLERANCE * b["wasserstein1"]["value"]
        or w1["value"] <= factor * w1["floor"],
    }


# ----------------------------------------------------------------------------------------------
# Figures

_COLORS = {"A": "0.45", "B": None, "translated": None, "baseline": "#1b9e77"}


def _canonical_samples(ds: xr.Dataset, variable: str) -> np.ndarray:
    """(n, ny, nx) values in canonical orientation, every non-spatial dim stacked."""
    from climgen.data.grids import detect_grid, to_canonical

    da = ds[variable]
    grid = detect_grid(da)
    can = to_canonical(da)[0]
    others = [d for d in can.dims if d not in (grid.y_dim, grid.x_dim)]
    can = can.transpose(*others, grid.y_dim, grid.x_dim)
    return np.asarray(can.values, float).reshape(-1, *can.shape[-2:])


def _styles(names: list[str]) -> dict[str, dict]:
    from climgen.report.plots import GENERATED_COLOR, REFERENCE_COLOR

    cycle = [GENERATED_COLOR, "#1b9e77", "#7570b3", "#e7298a", "#66a61e"]
    out = {}
    for i, name in enumerate(names):
        if name == "B":
            out[name] = dict(color=REFERENCE_COLOR, lw=2.2, ls="-")
        elif name == IDENTITY:
            out[name] = dict(color="0.45", lw=1.3, ls=":")
        else:
            out[name] = dict(color=cycle[(i - 2) % len(cycle)], lw=1.5, ls="--")
    return out


def _plot_pdfs(sets: dict[str, np.ndarray], weights, path: Path, name: str, units: str) -> Path:
    import matplotlib.pyplot as plt

    from climgen.metrics import histogram, shared_edges
    from climgen.report.plots import _label, _save

    pooled = np.concatenate([v.ravel() for v in sets.values()])
    edges = np.asarray(shared_edges(pooled, pooled, bins=64))
    styles = _styles(list(sets))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for label, values in sets.items():
        h = histogram(values, edges=edges, weights=weights)
        density = np.asarray(h.density, float)
        shown = density > 0
        ax.plot(centres[shown], density[shown], drawstyle="steps-mid", label=label, **styles[label])
    ax.set_yscale("log")
    ax.set_xlabel(_label(name, units))
    ax.set_ylabel("probability density")
    ax.set_title(f"{name}: distribution of values", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_spectra(reports: dict[str, EvaluationReport], variable: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from climgen.report.plots import _save

    first = next(iter(reports.values())).variables[variable].spectrum
    k = np.asarray(first["k"], float)
    ref = np.asarray(first["reference"], float)
    names = ["B", *reports]
    styles = _styles(names)
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(6.4, 6.2),
        sharex=True,
        gridspec_kw={"height_ratios": [2.2, 1]},
        constrained_layout=True,
    )
    top.loglog(k, ref, label="B (held out)", **styles["B"])
    ha, hb = (np.asarray(first[h], float) for h in ("reference_half_a", "reference_half_b"))
    with np.errstate(divide="ignore", invalid="ignore"):
        band = np.maximum(ha / hb, hb / ha)
    bottom.fill_between(k, 1 / band, band, color="0.85", label="noise floor (halves of B)")
    for name, report in reports.items():
        spec = report.variables[variable].spectrum
        if len(spec["k"]) != len(k) or not np.allclose(spec["k"], k):
            continue
        p = np.asarray(spec["generated"], float)
        top.loglog(k, p, label=name, **styles[name])
        with np.errstate(divide="ignore", invalid="ignore"):
            bottom.semilogx(k, p / ref, **styles[name])
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_yscale("log")
    unit = first.get("k_units") or ""
    bottom.set_xlabel(f"{first.get('dim', 'wavenumber')}" + (f" [{unit}]" if unit else ""))
    bottom.set_ylabel("ratio to B")
    top.set_ylabel("power")
    top.set_title(f"{variable}: power spectra", fontsize=10)
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    bottom.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _plot_eofs(sets: dict[str, np.ndarray], weights, path: Path, name: str, n: int = 10) -> Path:
    import matplotlib.pyplot as plt

    from climgen.metrics import eof_explained_variance
    from climgen.report.plots import _save

    styles = _styles(list(sets))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for label, values in sets.items():
        frac = np.asarray(eof_explained_variance(values, n_eofs=n, weights=weights), float)
        ax.plot(np.arange(1, frac.size + 1), frac, marker="o", ms=3, label=label, **styles[label])
    ax.set_yscale("log")
    ax.set_xlabel("EOF number")
    ax.set_ylabel("fraction of variance")
    ax.set_title(f"{name}: variance explained by the leading EOFs", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_maps(
    panels: list[tuple[str, np.ndarray]],
    path: Path,
    name: str,
    units: str,
    y,
    x,
    y_label: str,
    x_label: str,
    diverging_last: bool = False,
) -> Path:
    import matplotlib.pyplot as plt

    from climgen.report.plots import _label, _save

    plain = panels[:-1] if diverging_last else panels
    fields = [p for _, p in plain]
    vmin, vmax = np.percentile(np.concatenate([f.ravel() for f in fields]), [1, 99])
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    ny, nx = panels[0][1].shape
    aspect = float(np.clip(ny / nx, 0.2, 1.5))
    n = len(panels)
    fig, axes = plt.subplots(
        n, 1, figsize=(7.0, n * (7.0 * aspect + 0.6)), squeeze=False, constrained_layout=True
    )
    for ax, (title, field) in zip(axes[:, 0], panels):
        last = diverging_last and title == panels[-1][0]
        if last:
            lim = float(np.abs(field).max()) or 1.0
            mesh = ax.pcolormesh(x, y, field, cmap="PuOr", vmin=-lim, vmax=lim, shading="auto")
            fig.colorbar(mesh, ax=ax, shrink=0.9)
        else:
            mesh = ax.pcolormesh(x, y, field, cmap="RdBu_r", vmin=vmin, vmax=vmax, shading="auto")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(y_label)
        if not last:
            shared = mesh
    axes[-1, 0].set_xlabel(x_label)
    fig.colorbar(shared, ax=axes[: len(plain), 0], shrink=0.8, label=_label(name, units))
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Page


def _variables(translated: xr.Dataset, b: xr.Dataset, variables) -> list[str]:
    if variables is None:
        from climgen.data.grids import detect_grid

        names = []
        for v in translated.data_vars:
            try:
                detect_grid(translated[v])
            except ClimgenInputError:
                continue
            names.append(str(v))
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
    missing = [v for v in names if v not in b.data_vars]
    if not names or missing:
        raise ClimgenInputError(
            f"translation report: variable(s) {missing or names} not found in the domain-B "
            f"fields (variables: {list(b.data_vars)})"
        )
    return names


def _cell(d: dict) -> str:
    return f"{d['value']:.3g} (floor {d['floor']:.2g}, {d['ratio']:.1f}×)"


def write_translate_page(
    directory: str | Path,
    *,
    a: xr.Dataset,
    b: xr.Dataset,
    translated: xr.Dataset,
    method: str,
    baselines: dict[str, xr.Dataset] | None = None,
    reconstructed: xr.Dataset | None = None,
    variables: Iterable[str] | str | None = None,
    factor: float = 2.0,
    provenance: dict[str, Any] | None = None,
    notes: Iterable[str] = (),
) -> Path:
    """Write ``directory/index.html`` (+ PNGs and ``scores.json``); return the page's path.

    Parameters
    ----------
    a, b : held-out fields of domain A and domain B (one grid; B is the reference).
    translated : the method's translation of ``a`` (a ``member`` dim counts as samples).
    method : name of the method (row label "translated A (<method>)").
    baselines : label → translation of ``a`` by a baseline (e.g. {"quantile mapping": ...}).
        The first baseline is the one the summary compares with.
    reconstructed : the A → B → A cycle of ``a`` (cycle-consistent methods): adds the cycle
        error table and maps.
    notes : extra paragraphs for the scores section (e.g. how the baseline was fitted).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = _variables(translated, b, variables)
    label = f"translated A ({method})"
    baselines = dict(baselines or {})
    candidates = {IDENTITY: a, **baselines, label: translated}
    reports = score_translations(candidates, b, variables=names, factor=factor)
    scores = score_rows(reports)
    cycle = cycle_errors(a, reconstructed, names) if reconstructed is not None else None
    base = next(iter(baselines), None)
    verdicts = (
        {v: verdict_vs_baseline(scores, label, base, v, factor) for v in names} if base else {}
    )

    if base:
        met = all(all(x.values()) for x in verdicts.values())
        parts = []
        for v, ver in verdicts.items():
            parts.append(
                f"{v}: spectra {'better' if ver['spectra'] else 'not better'}, covariance "
                f"{'better' if ver['covariance'] else 'not better'}, marginal W1 "
                f"{'as good' if ver['marginals'] else 'worse'}"
            )
        summary = (
            f"{method} {'beats' if met else 'does not beat'} {base} on spectra and "
            f"covariance while matching its marginal distributions ({'; '.join(parts)})."
        )
    else:
        summary = f"Scores of {method} against domain B; no baseline was given."

    columns = ("candidate", "variable", *SCORE_DISTANCES.values())
    rows, highlight = [], []
    for cand in candidates:
        for v in names:
            rows.append((cand, v, *(_cell(scores[cand][v][k]) for k in SCORE_DISTANCES)))
            if cand == label and v in verdicts:
                n_ok = sum(verdicts[v].values())
                highlight.append({3: "matches", 0: "differs"}.get(n_ok, "close"))
            else:
                highlight.append("")
    score_table = _table(columns, rows, highlight, factor)
    paragraphs = (
        "Every row is scored against the held-out domain-B fields with the distances of the "
        "evaluation report; the noise floor is the same distance between two halves of B, and "
        f"the ratio value/floor ≤ {factor:g} means indistinguishable from B's own sampling "
        "noise. 'A untranslated' is the A-vs-B distance that a translation must shrink.",
        "Target: the translator beats the baseline on spectral log-error and covariance error "
        f"and matches it on the marginal distribution (W1 ≤ {W1_TOLERANCE:g}× the baseline's, "
        f"or ≤ {factor:g}× the floor). Green: all three; amber: some; red: none.",
        *notes,
    )
    sections = [_section("Scores", paragraphs, (score_table,), ())]
    if cycle is not None:
        sections.append(
            _section(
                "Cycle error",
                (
                    "mean|a' − a| / std(a) on the held-out A fields, a' = the A → B → A "
                    "reconstruction: 0 means the translation keeps all of the input (it is "
                    "invertible); a large value means the generator discards the input and "
                    "draws new fields (mode collapse or hallucination).",
                ),
                (
                    _table(
                        ("variable", "cycle error"),
                        tuple((v, c) for v, c in cycle.items()),
                        (),
                        factor,
                    ),
                ),
                (),
            )
        )
    for v in names:
        sections.append(
            _section(
                f"Variable {v}",
                (),
                (),
                tuple(
                    _variable_figures(
                        v, directory, a, b, translated, label, baselines, reconstructed, reports
                    )
                ),
            )
        )
    (directory / "scores.json").write_text(
        json.dumps(
            {
                "method": method,
                "baseline": base,
                "scores": scores,
                "cycle_error": cycle,
                "verdict": verdicts,
                "factor": factor,
            },
            indent=1,
        )
    )
    from climgen.report.html import render_page

    prov = dict(provenance or {})
    prov.setdefault(
        "samples (A, B, translated)",
        {
            v: f"{_canonical_samples(a, v).shape[0]}, {_canonical_samples(b, v).shape[0]}, "
            f"{_canonical_samples(translated, v).shape[0]}"
            for v in names
        },
    )
    return render_page(
        f"climgen translation report: {method}",
        sections,
        directory / "index.html",
        summary=summary,
        provenance=prov,
    )


def _table(columns, rows, highlight, factor):
    from climgen.report.html import Table

    return Table(
        columns=tuple(columns), rows=tuple(tuple(r) for r in rows), highlight=tuple(highlight)
    )


def _section(heading, paragraphs, tables, figures):
    from climgen.report.html import Section

    return Section(heading, tuple(paragraphs), tuple(tables), tuple(figures))


def _variable_figures(v, directory, a, b, translated, label, baselines, reconstructed, reports):
    from climgen.data.grids import area_weights, detect_grid, to_canonical
    from climgen.report.eval_figures import safe_name
    from climgen.report.html import Figure

    stem = safe_name(v)
    units = str(b[v].attrs.get("units", ""))
    sets = {"B": _canonical_samples(b, v), IDENTITY: _canonical_samples(a, v)}
    sets.update({name: _canonical_samples(ds, v) for name, ds in baselines.items()})
    sets[label] = _canonical_samples(translated, v)
    can_b, grid = to_canonical(b[v])
    one = can_b.isel({d: 0 for d in can_b.dims if d not in (grid.y_dim, grid.x_dim)})
    weights = np.asarray(area_weights(one, detect_grid(one)).values, float)
    y = np.asarray(one[grid.y_dim].values, float) if grid.y_dim in one.coords else None
    x = np.asarray(one[grid.x_dim].values, float) if grid.x_dim in one.coords else None
    ny, nx = sets["B"].shape[-2:]
    y = np.arange(ny) if y is None else y
    x = np.arange(nx) if x is None else x
    figs = []
    p = _plot_pdfs(sets, weights, directory / f"{stem}_pdf.png", v, units)
    figs.append(
        Figure(
            "Distributions (PDFs)",
            p.name,
            "Area-weighted density of all grid-point values on shared bins, log scale. B (solid "
            "blue) is the target; a good translation lies on it, in the centre and in the tails. "
            "Quantile mapping matches each grid point's training distribution by construction.",
        )
    )
    p = _plot_spectra({k: r for k, r in reports.items()}, v, directory / f"{stem}_spectrum.png")
    figs.append(
        Figure(
            "Power spectra",
            p.name,
            "Top: sample-mean power per wavenumber of every set; bottom: ratio to B, the grey band "
            "being the spread between two halves of B. Quantile mapping acts point by point and "
            "cannot create the spatial structure of B; a translation that leaves the band at high "
            "wavenumbers misses (ratio < 1) or invents (> 1) small-scale detail.",
        )
    )
    p = _plot_eofs(sets, weights, directory / f"{stem}_eofs.png", v)
    figs.append(
        Figure(
            "Covariance: variance explained by the leading EOFs",
            p.name,
            "Fraction of the total variance in each of the 10 leading EOFs of each set (own EOFs). "
            "The covariance error in the table compares covariances projected on B's EOFs; this "
            "plot shows whether the variance is spread over modes like B's.",
        )
    )
    panels = [
        ("A field (held-out #0)", sets[IDENTITY][0]),
        (f"{label} of that field", sets[label][0]),
        *((f"{name} of that field", sets[name][0]) for name in baselines),
        ("a B field (held-out #0)", sets["B"][0]),
    ]
    p = _plot_maps(panels, directory / f"{stem}_maps.png", v, units, y, x, grid.y_dim, grid.x_dim)
    figs.append(
        Figure(
            "Maps",
            p.name,
            "One held-out A field, its translations, and a B field (not its partner: the domains "
            "are unpaired), on one colour scale. Look for B's texture and plume sharpness in the "
            "translated panels.",
        )
    )
    if reconstructed is not None:
        rec = _canonical_samples(reconstructed, v)[0]
        panels = [
            ("A field (held-out #0)", sets[IDENTITY][0]),
            ("reconstruction a' = A → B → A", rec),
            ("a' − a", rec - sets[IDENTITY][0]),
        ]
        p = _plot_maps(
            panels,
            directory / f"{stem}_cycle.png",
            v,
            units,
            y,
            x,
            grid.y_dim,
            grid.x_dim,
            diverging_last=True,
        )
        figs.append(
            Figure(
                "Cycle",
                p.name,
                "An A field, its A → B → A reconstruction and the difference (own colour scale). "
                "Structure in the difference shows what the cycle loses.",
            )
        )
    return figs
