"""The downscaling report page: maps, spectra with a ratio panel, upper-tail PDFs and scores.

:func:`write_downscale_page` takes plain xarray fields and a score dict (computed by
:func:`climgen.tasks.downscale.scoring.compare_methods`; this module never imports the task
layer) and writes ``index.html`` with four PNG figures next to it:

1. **maps** of one field: the coarse input, the fine truth and each method's output (member 0
   for ensembles), on one colour scale;
2. **spectra**: the sample-mean spectrum P̄(k) of the truth and of each method
   (:func:`climgen.metrics.mean_spectrum`), and below it the ratio P̄_method / P̄_truth; the
   shaded band is the upper half of wavenumbers scored by :func:`climgen.metrics.high_k_error`.
   Interpolation lies below 1 there (missing small-scale variance), a good generative method
   stays near 1;
3. **upper-tail PDFs**: the area-weighted density of values above the truth's 95th
   percentile, log scale, normalised by *all* values (so the curves show how often each
   extreme occurs); the dashed line is the truth's 99.9th percentile;
4. the **score table**, best RMSE row in green.

:func:`climgen.metrics.high_k_error` (decades) = √(mean_{k ≥ k_max/2} (log10 P̄_y − log10 P̄_x)²)
over the bins with positive truth power; a method's zero power is floored at 10⁻¹² · max P̄_x so
that it counts as a large error instead of dropping out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climgen.data.grids import area_weights, detect_grid, to_canonical
from climgen.errors import ClimgenInputError
from climgen.metrics import field_spectrum, mean_spectrum
from climgen.report.html import Figure, Section, Table, render_page
from climgen.report.plots import _label, _save

__all__ = [
    "on_truth_grid",
    "write_downscale_page",
    "SCORE_COLUMNS",
]

SCORE_COLUMNS = (
    ("rmse", "RMSE"),
    ("rmse_ratio", "RMSE / baseline"),
    ("spectral_high_k", "high-k spectral error [dec]"),
    ("spectral_ratio", "high-k spectral / baseline"),
    ("w1", "W1"),
    ("q999_error", "|Δ q99.9|"),
    ("conservation", "conservation error"),
    ("crps", "CRPS"),
)
_TRUTH_COLOR = "black"


def on_truth_grid(
    truth: xr.DataArray, output: xr.DataArray, member_dim: str = "member"
) -> xr.DataArray:
    """``output`` with the truth's dims order and coordinates (values matched by position).

    Interpolation baselines compute fine coordinates from coarse cell bounds, which on a
    Gaussian grid differ slightly from the truth's latitudes; positions are what match.
    """
    tgrid = detect_grid(truth)
    ogrid = detect_grid(output)
    lead = [d for d in truth.dims if d not in (tgrid.y_dim, tgrid.x_dim)]
    canon_t, _ = to_canonical(truth)
    canon_o, _ = to_canonical(output)
    members = [member_dim] if member_dim in canon_o.dims else []
    want = (*members, *lead, ogrid.y_dim, ogrid.x_dim)
    if set(canon_o.dims) != set(want):
        raise ClimgenInputError(
            f"output '{output.name}' has dims {output.dims}; expected the truth's dims "
            f"{truth.dims} (plus an optional '{member_dim}')"
        )
    values = canon_o.transpose(*want).values
    if values.shape[len(members) :] != canon_t.transpose(*lead, tgrid.y_dim, tgrid.x_dim).shape:
        raise ClimgenInputError(
            f"output '{output.name}' has shape {values.shape} but the truth "
            f"{tuple(canon_t.shape)}: it is not on the truth's fine grid"
        )
    dims = (*members, *lead, tgrid.y_dim, tgrid.x_dim)
    coords = {d: canon_t[d] for d in (*lead, tgrid.y_dim, tgrid.x_dim) if d in canon_t.coords}
    return xr.DataArray(values, dims=dims, coords=coords, name=truth.name, attrs=truth.attrs)


def _canon(da: xr.DataArray) -> tuple[xr.DataArray, Any]:
    canon, _ = to_canonical(da)
    grid = detect_grid(canon)
    return canon.transpose(..., grid.y_dim, grid.x_dim), grid


def _first_field(da: xr.DataArray, index: int) -> xr.DataArray:
    canon, grid = _canon(da)
    for d in canon.dims[:-2]:
        canon = canon.isel({d: index if d != "member" else 0})
    return canon


def _plot_maps(coarse, truth, outputs, path, index, name, units):
    import matplotlib.pyplot as plt

    panels = [("coarse input", _first_field(coarse, index)), ("truth", _first_field(truth, index))]
    panels += [(label, _first_field(out, index)) for label, out in outputs.items()]
    t = panels[1][1].values
    vmin, vmax = np.percentile(t, [1, 99])
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    ny, nx = t.shape
    aspect = float(np.clip(ny / nx, 0.2, 1.2))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(3.4 * ncols, 3.4 * aspect * nrows + 0.9),
        squeeze=False,
        constrained_layout=True,
    )
    mesh = None
    for ax, (title, field) in zip(axes.ravel(), panels):
        y_dim, x_dim = field.dims
        y = field[y_dim].values if y_dim in field.coords else np.arange(field.sizes[y_dim])
        x = field[x_dim].values if x_dim in field.coords else np.arange(field.sizes[x_dim])
        mesh = ax.pcolormesh(
            x, y, field.values, vmin=vmin, vmax=vmax, cmap="RdBu_r", shading="auto"
        )
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label=_label(name, units))
    return _save(fig, path)


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _plot_spectra(truth, outputs, path, name, fraction=0.5):
    import matplotlib.pyplot as plt

    k, pt = mean_spectrum(_canon(truth)[0])
    keep = (k > 0) & (pt > 0)
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(6.8, 6.4),
        sharex=True,
        gridspec_kw={"height_ratios": [2.2, 1.3]},
        constrained_layout=True,
    )
    top.loglog(k[keep], pt[keep], color=_TRUTH_COLOR, lw=2.2, label="truth")
    for color, (label, out) in zip(_colors(len(outputs)), outputs.items()):
        canon = _canon(out)[0]
        first = canon.isel(member=0) if "member" in canon.dims else canon
        _, p = mean_spectrum(first)
        shown = keep & (p > 0)
        top.loglog(k[shown], p[shown], color=color, lw=1.3, label=label)
        bottom.semilogx(k[shown], p[shown] / pt[shown], color=color, lw=1.3, label=label)
    # Exact zeros of interpolation spectra (at multiples of the coarse Nyquist) would
    # stretch the log axes over 30 decades: keep 4 decades below the truth and ratios in
    # [1e-4, 1e4].
    top.set_ylim(bottom=pt[keep].min() * 1e-4)
    bottom.set_ylim(1e-4, 1e4)
    kmax = k[keep].max()
    bottom.axvspan((1 - fraction) * kmax, kmax, color="0.88", label="scored band (high k)")
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_yscale("log")
    bottom.set_ylabel("ratio to truth")
    kind = str(field_spectrum(_first_field(truth, 0)).attrs.get("spectrum_kind", ""))
    bottom.set_xlabel("spherical-harmonic degree" if kind == "spherical" else "wavenumber")
    top.set_ylabel("power")
    top.set_title(f"{name}: sample-mean spectrum", fontsize=10)
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def _plot_tails(truth, outputs, path, name, units, bins=40):
    import matplotlib.pyplot as plt

    canon_t, grid = _canon(truth)
    w2 = area_weights(canon_t, grid).values
    t = canon_t.values
    wt = np.broadcast_to(w2, t.shape)
    arrays = {}
    for label, out in outputs.items():
        canon = _canon(out)[0]
        first = canon.isel(member=0) if "member" in canon.dims else canon
        arrays[label] = first.values
    lo = float(np.quantile(t, 0.95))
    hi = max(float(t.max()), *(float(a.max()) for a in arrays.values()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    width = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)

    def density(values, weights):
        h, _ = np.histogram(values.ravel(), edges, weights=weights.ravel())
        return h / (weights.sum() * width)

    dt = density(t, wt)
    ax.step(
        centres,
        np.where(dt > 0, dt, np.nan),
        where="mid",
        color=_TRUTH_COLOR,
        lw=2.2,
        label="truth",
    )
    for color, (label, values) in zip(_colors(len(arrays)), arrays.items()):
        d = density(values, np.broadcast_to(w2, values.shape))
        ax.step(centres, np.where(d > 0, d, np.nan), where="mid", color=color, lw=1.3, label=label)
    q = float(np.quantile(t, 0.999))
    ax.axvline(q, color="k", ls="--", lw=0.8, label="truth q99.9")
    ax.set_yscale("log")
    ax.set_xlabel(_label(name, units))
    ax.set_ylabel("probability density (of all values)")
    ax.set_title(f"{name}: upper tail (values above the truth's 95th percentile)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _score_table(scores: dict[str, dict[str, float]], baseline: str | None) -> Table:
    present = [(k, h) for k, h in SCORE_COLUMNS if any(k in s for s in scores.values())]
    rows = []
    for label, s in scores.items():
        rows.append((label, *(s.get(k, "—") for k, _ in present)))
    rmses = {label: s.get("rmse", np.inf) for label, s in scores.items()}
    best = min(rmses, key=rmses.get) if rmses else None
    highlight = tuple("matches" if label == best else "" for label in scores)
    caption = (
        "Lower is better for every column. Ratios are relative to the baseline "
        f"({baseline}); the green row has the lowest RMSE. Ensembles: RMSE, spectrum, W1 "
        "and quantile of member 0; CRPS over all members."
    )
    return Table(("method", *(h for _, h in present)), tuple(rows), caption, highlight)


def write_downscale_page(
    path,
    *,
    truth: xr.DataArray,
    coarse: xr.DataArray,
    outputs: dict[str, xr.DataArray],
    scores: dict[str, dict[str, float]],
    factor: int,
    baseline: str | None = "bicubic",
    title: str = "Downscaling report",
    provenance: dict[str, Any] | None = None,
    map_index: int = 0,
) -> Path:
    """Write the downscaling page (``path``, e.g. ``run/report/index.html``) and its figures.

    Parameters
    ----------
    truth : fine truth (samples..., y, x).
    coarse : the coarse input the methods were given (samples..., y/f, x/f).
    outputs : label → output on the truth's grid (an optional ``member`` dim).
    scores : label → score dict (keys of :data:`SCORE_COLUMNS`), e.g. from
        :func:`climgen.tasks.downscale.scoring.compare_methods`.
    map_index : which sample the maps show.
    """
    path = Path(path)
    folder = path.parent
    outputs = {label: on_truth_grid(truth, out) for label, out in outputs.items()}
    name = str(truth.name or "field")
    units = truth.attrs.get("units")
    maps = _plot_maps(coarse, truth, outputs, folder / "maps.png", map_index, name, units)
    spectra = _plot_spectra(truth, outputs, folder / "spectra.png", name)
    tails = _plot_tails(truth, outputs, folder / "tails.png", name, units)
    figures = (
        Figure(
            "Coarse input, truth and each method",
            maps.name,
            "One held-out field. All panels share one colour scale (the truth's 1st–99th "
            "percentile). Interpolation looks smooth; a good method shows the truth's small "
            "structures where the coarse field puts them.",
        ),
        Figure(
            "Spectra and their ratio to the truth",
            spectra.name,
            "Top: sample-mean power per wavenumber (log–log), truth in black. Bottom: ratio of "
            "each method's spectrum to the truth's; 1 is perfect. The grey band is the upper "
            "half of wavenumbers scored as the high-k spectral error. Curves falling below 1 "
            "lack small-scale variance (blur); above 1 they add noise.",
        ),
        Figure(
            "PDFs of extremes (upper tail)",
            tails.name,
            "Density of values above the truth's 95th percentile (area-weighted, normalised "
            "by all values, log scale). A curve that drops before the truth's does "
            "underestimates extremes; the dashed line is the truth's 99.9th percentile.",
        ),
    )
    table = _score_table(scores, baseline)
    best = min(scores, key=lambda m: scores[m].get("rmse", np.inf)) if scores else ""
    summary = ""
    if best:
        s = scores[best]
        summary = f"Lowest RMSE: {best} ({s['rmse']:.4g}"
        if "rmse_ratio" in s and baseline:
            summary += f", {s['rmse_ratio']:.2f}× {baseline}"
        summary += f"); high-k spectral error {s['spectral_high_k']:.3g} decades"
        if "spectral_ratio" in s and baseline:
            summary += f" ({s['spectral_ratio']:.2f}× {baseline})"
        summary += "."
    sections = [
        Section(
            "Scores",
            (
                f"{len(outputs)} method(s) downscale the coarse input ×{factor} per axis; each "
                "output is compared with the fine truth at the same points.",
            ),
            (table,),
        ),
        Section("Figures", (), (), figures),
    ]
    return render_page(title, sections, path, summary=summary, provenance=provenance)
