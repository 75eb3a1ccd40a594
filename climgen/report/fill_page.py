"""The gap-filling report page: maps, a score table per method, error by latitude, spectra.

:func:`write_fill_page` takes plain arrays (canonical orientation: row 0 southernmost,
longitude ascending) and score dicts — it knows nothing of the task module that produced them
(``climgen.tasks.fill.cross_validation.cross_validation_report`` calls it) — and writes
``index.html`` with PNG figures next to it through :func:`climgen.report.html.render_page`:

- **maps** of one time step: the observed field (gaps blank), the hidden truth when given, and
  per method the filled field (ensemble mean), its spread (predictive std) and its error
  (filled − truth) on the hidden cells;
- **score table**: area-weighted RMSE, MAE, bias and correlation on the hidden cells, fair
  CRPS (ensembles; Gaussian CRPS for kriging) and spread/skill (≈ 1 when calibrated);
- **error by latitude**: the RMSE of each method per latitude row over hidden cells;
- **spectra**: zonal power spectrum (Fourier power along each latitude circle, cos φ-weighted
  mean over latitudes and times, :func:`climgen.metrics.zonal_spectrum`) of the filled fields
  against the complete truth — a method that fills with too-smooth values loses power at high
  wavenumbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics import zonal_spectrum
from climgen.report.html import Figure, Section, Table, render_page
from climgen.report.plots import GENERATED_COLOR, REFERENCE_COLOR, _label, _save, plt

__all__ = ["write_fill_page", "SCORE_COLUMNS", "zonal_power"]

# (key in the score dict, column heading)
SCORE_COLUMNS = (
    ("n_hidden", "hidden cells"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("bias", "bias"),
    ("corr", "correlation"),
    ("crps", "CRPS"),
    ("spread_skill", "spread/skill"),
)
_METHOD_COLORS = ("#d95f02", "#7570b3", "#1b9e77", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def zonal_power(fields: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """cos φ-weighted mean over latitudes and times of the zonal spectrum of (T, H, W) fields."""
    fields = np.asarray(fields, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    da = xr.DataArray(
        fields,
        dims=("time", "lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", np.arange(fields.shape[-1]) * 360.0 / fields.shape[-1]),
        },
        name="field",
    )
    power = np.asarray(zonal_spectrum(da).values)  # (T, H, M)
    w = np.clip(np.cos(np.deg2rad(lat)), 0, None)
    return (power.mean(0) * w[:, None]).sum(0) / w.sum()


def _check(name: str, array, shape) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.shape != tuple(shape):
        raise ClimgenInputError(f"{name} has shape {array.shape}, expected {tuple(shape)}")
    return array


def _map_panels(ax_row, panels, lat, lon, *, name, units):
    for ax, (title, data, kind, lim) in zip(ax_row, panels):
        if data is None:
            ax.axis("off")
            continue
        if kind == "field":
            cmap, vmin, vmax = "RdBu_r", -lim, lim
        elif kind == "spread":
            cmap, vmin, vmax = "viridis", 0.0, lim
        else:
            cmap, vmin, vmax = "PuOr_r", -lim, lim
        mesh = ax.pcolormesh(lon, lat, data, vmin=vmin, vmax=vmax, cmap=cmap, shading="auto")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        label = {"field": name, "spread": f"{name} spread", "error": f"{name} error"}[kind]
        plt.colorbar(mesh, ax=ax, shrink=0.8).set_label(_label(label, units), fontsize=7)


def _plot_maps(path, observed, truth, methods, lat, lon, index, *, name, units, time_label):
    hidden = ~np.isfinite(observed[index])
    pool = [observed[index][~hidden]]
    if truth is not None:
        pool.append(truth[index].ravel())
    pool += [m["mean"][index].ravel() for m in methods.values()]
    lim = float(np.nanpercentile(np.abs(np.concatenate(pool)), 99)) or 1.0
    spreads = [m["spread"][index][hidden] for m in methods.values() if m["spread"] is not None]
    spreads = [s[np.isfinite(s)] for s in spreads]
    spread_lim = (
        float(np.percentile(np.concatenate(spreads), 99)) if any(s.size for s in spreads) else 1.0
    )
    errors = []
    if truth is not None:
        errors = [(m["mean"][index] - truth[index])[hidden] for m in methods.values()]
    err_lim = float(np.percentile(np.abs(np.concatenate(errors)), 99)) if errors else 1.0
    rows = 1 + len(methods)
    fig, axes = plt.subplots(
        rows, 3, figsize=(13, 2.9 * rows), squeeze=False, constrained_layout=True
    )
    top = [
        (
            f"observed ({time_label}; {100 * (1 - hidden.mean()):.0f}% covered)",
            observed[index],
            "field",
            lim,
        ),
        ("hidden truth (complete field)", None if truth is None else truth[index], "field", lim),
        (None, None, None, None),
    ]
    _map_panels(axes[0], top, lat, lon, name=name, units=units)
    for row, (method, m) in enumerate(methods.items(), start=1):
        spread = m["spread"]
        has_spread = spread is not None and np.isfinite(spread[index][hidden]).any()
        error = None
        if truth is not None:
            error = np.where(hidden, m["mean"][index] - truth[index], np.nan)
        panels = [
            (f"{method}: filled (mean)", m["mean"][index], "field", lim),
            (f"{method}: spread", spread[index] if has_spread else None, "spread", spread_lim),
            (f"{method}: error on hidden cells", error, "error", err_lim or 1.0),
        ]
        _map_panels(axes[row], panels, lat, lon, name=name, units=units)
    for ax in axes[:, 0]:
        ax.set_ylabel("latitude", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("longitude", fontsize=7)
    return _save(fig, path)


def _plot_error_by_latitude(path, truth, hidden, methods, lat, *, name, units):
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    counts = hidden.sum(axis=(0, 2))
    for i, (method, m) in enumerate(methods.items()):
        sq = np.where(hidden, (m["mean"] - truth) ** 2, 0.0).sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            row_rmse = np.sqrt(sq / counts)
        ax.plot(lat, row_rmse, color=_METHOD_COLORS[i % len(_METHOD_COLORS)], label=method)
    ax.set_xlabel("latitude")
    ax.set_ylabel(_label(f"RMSE of {name} on hidden cells", units))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_spectra(path, truth, methods, lat, *, name):
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(6.4, 6.0),
        sharex=True,
        gridspec_kw={"height_ratios": [2.2, 1]},
        constrained_layout=True,
    )
    ref = zonal_power(truth, lat) if truth is not None else None
    k = None
    if ref is not None:
        k = np.arange(ref.size)
        top.loglog(k[1:], ref[1:], color=REFERENCE_COLOR, lw=2.2, label="complete (truth)")
    for i, (method, m) in enumerate(methods.items()):
        p = zonal_power(m["mean"], lat)
        k = np.arange(p.size)
        color = _METHOD_COLORS[i % len(_METHOD_COLORS)] if i else GENERATED_COLOR
        top.loglog(k[1:], p[1:], color=color, lw=1.3, ls="--", label=method)
        if ref is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                bottom.semilogx(k[1:], p[1:] / ref[1:], color=color, lw=1.3)
    top.set_ylabel("zonal power [field² m]")
    top.set_title(f"{name}: zonal spectrum of filled fields", fontsize=10)
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8)
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_yscale("log")
    bottom.set_xlabel("zonal wavenumber")
    bottom.set_ylabel("filled / complete")
    bottom.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


_GAP_COLUMNS = (
    ("spectrum", "spectrum"),
    ("area_fraction", "area fraction V0"),
    ("boundary_length", "boundary length V1"),
    ("euler_characteristic", "Euler characteristic V2"),
)


def _gap_table(checked: dict) -> Table | None:
    """Distance ÷ noise floor of the structure inside the gaps (scores["gaps"] of
    :func:`climgen.tasks.fill.cross_validation.cross_validate`), one row per method's mean
    and one for its members; None when no method has it."""
    rows, marks = [], []
    for method, m in checked.items():
        g = m["scores"].get("gaps") or {}
        for key, what in (("mean", "filled field (mean)"), ("members", "members (median)")):
            if key in g:
                ratios = [g[key][k] for k, _ in _GAP_COLUMNS]
                rows.append((method, what, *ratios))
                marks.append("matches" if max(ratios) <= 2 else "")
    if not rows:
        return None
    return Table(
        ("method", "estimate", *(h for _, h in _GAP_COLUMNS)),
        tuple(rows),
        caption="Structure inside the gaps: distance to the truth ÷ the truth's noise floor "
        "(the same distance between its two halves in time), on the hidden cells only — zonal "
        "spectra of the latitude bands that are mostly hidden, Minkowski functionals of the "
        "excursion sets at the truth's quantiles in the gaps (climgen.metrics.gap_structure). "
        "≤ 2 (green): the structure of the truth; a mean estimate is too smooth (≫ 2), an "
        "ensemble member should not be.",
        highlight=tuple(marks),
    )


def write_fill_page(
    out_dir: str | Path,
    *,
    observed: np.ndarray,
    methods: dict[str, dict],
    lat: np.ndarray,
    lon: np.ndarray,
    truth: np.ndarray | None = None,
    hidden: np.ndarray | None = None,
    name: str = "field",
    units: str | None = None,
    index: int = 0,
    time_labels: list[str] | None = None,
    title: str = "climgen gap-filling report",
    summary: str = "",
    notes: tuple[str, ...] = (),
    provenance: dict | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and its figures; return the page's path.

    Parameters
    ----------
    observed : (T, H, W) the input given to the methods, NaN where missing.
    methods : method name → ``{"mean": (T, H, W) filled, "spread": (T, H, W) or None,
        "scores": dict}`` with score keys of :data:`SCORE_COLUMNS` (missing ones shown "–").
    lat, lon : coordinates in degrees of the rows and columns (canonical orientation).
    truth : (T, H, W) the complete fields, when known (cross-validation); enables the error
        maps, the error-by-latitude figure and the truth line of the spectra.
    hidden : (T, H, W) bool, the scored cells (default: ``~isfinite(observed) & isfinite(truth)``).
    index : the time step drawn on the maps.
    """
    observed = np.asarray(observed, dtype=np.float64)
    if observed.ndim == 2:
        observed = observed[None]
    shape = observed.shape
    if not methods:
        raise ClimgenInputError("write_fill_page needs at least one method's result")
    if not 0 <= index < shape[0]:
        raise ClimgenInputError(f"index {index} is outside the {shape[0]} time steps")
    truth = None if truth is None else _check("truth", truth, shape)
    checked = {}
    for method, m in methods.items():
        mean = _check(f"filled field of {method!r}", m["mean"], shape)
        spread = m.get("spread")
        spread = None if spread is None else _check(f"spread of {method!r}", spread, shape)
        checked[str(method)] = {"mean": mean, "spread": spread, "scores": m.get("scores", {})}
    if hidden is None:
        hidden = ~np.isfinite(observed)
        if truth is not None:
            hidden &= np.isfinite(truth)
    hidden = np.broadcast_to(np.asarray(hidden, dtype=bool), shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = time_labels or [str(i) for i in range(shape[0])]
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    _plot_maps(
        out_dir / "fill_maps.png",
        observed,
        truth,
        checked,
        lat,
        lon,
        index,
        name=name,
        units=units,
        time_label=labels[index],
    )
    figures = [
        Figure(
            f"Maps at {labels[index]}",
            "fill_maps.png",
            "Top left: what the methods were given (blank = missing). Top middle: the complete "
            "field the hidden cells were taken from, when known. Each further row is one method: "
            "its filled field (ensemble mean for ensembles; observed cells are the input), its "
            "spread (predictive standard deviation; blank for methods without one) and its error "
            "on the hidden cells (filled − truth; the same colour scale for all methods).",
        )
    ]
    if truth is not None:
        _plot_error_by_latitude(
            out_dir / "fill_error_by_latitude.png",
            truth,
            hidden,
            checked,
            lat,
            name=name,
            units=units,
        )
        figures.append(
            Figure(
                "Error by latitude",
                "fill_error_by_latitude.png",
                "RMSE over the hidden cells of each latitude row (all times). Rows without "
                "hidden cells are not drawn. Lower is better; the gaps in the south and the "
                "tropics of historical records are where the methods differ most.",
            )
        )
    _plot_spectra(out_dir / "fill_spectra.png", truth, checked, lat, name=name)
    figures.append(
        Figure(
            "Zonal spectra of the filled fields",
            "fill_spectra.png",
            "Power of the Fourier modes along latitude circles (cos φ-weighted mean over "
            "latitudes and times) of each method's filled fields"
            + (
                ", against the complete truth (solid blue); the bottom panel is the ratio. "
                "A ratio below 1 at high wavenumbers means the filled fields are too smooth "
                "(typical of a mean estimate: an ensemble member keeps more small-scale power)."
                if truth is not None
                else "."
            ),
        )
    )
    rows = []
    for method, m in checked.items():
        s = m["scores"]
        rows.append((method, *(_fmt(s.get(key)) for key, _ in SCORE_COLUMNS)))
    rmses = [r[2] for r in rows if isinstance(r[2], (int, float))]
    best = min(rmses) if rmses else None
    highlight = tuple("matches" if best is not None and r[2] == best else "" for r in rows)
    table = Table(
        ("method", *(h for _, h in SCORE_COLUMNS)),
        tuple(rows),
        caption=(
            f"Scores on the hidden cells (area-weighted; {_label(name, units)}). RMSE/MAE/bias "
            "(filled − truth) in field units; correlation: area-weighted Pearson correlation "
            "over hidden cells; CRPS: fair CRPS of the ensemble (Gaussian predictive CRPS for "
            "kriging), lower is better; spread/skill: √(mean spread²)/RMSE (× √((M+1)/M) for "
            "ensembles), ≈ 1 when the spread is calibrated. Green: lowest RMSE."
        ),
        highlight=highlight,
    )
    sections = [
        Section(
            "Scores on hidden cells",
            paragraphs=(
                "Cells observed in the complete fields but hidden from the methods by the "
                "coverage mask are filled and compared with the truth; observed cells are kept "
                "as they are and not scored.",
                *notes,
            ),
            tables=(table,) + tuple(t for t in (_gap_table(checked),) if t is not None),
        ),
        Section("Figures", figures=tuple(figures)),
    ]
    return render_page(
        title, sections, out_dir / "index.html", summary=summary, provenance=provenance or {}
    )
