"""Figures of the evaluation report: sample maps, spectra, PDFs and structure functions.

Every function draws one figure with matplotlib's non-interactive Agg backend, saves it as a
PNG at ``path`` and returns that path (never ``plt.show``). Generated data are drawn in
orange, reference data in blue, throughout. Axis labels carry units taken from the CF
``units`` attribute where the caller passes them.

Maps of lat/lon fields get coastlines when cartopy is installed (``pip install
'climgen[maps]'``); without it they are drawn with plain longitude/latitude axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "GENERATED_COLOR",
    "REFERENCE_COLOR",
    "plot_sample_maps",
    "plot_spectra",
    "plot_pdfs",
    "plot_structure_functions",
]

GENERATED_COLOR = "#d95f02"
REFERENCE_COLOR = "#1b6ca8"
_DPI = 110


def _label(name: str, units: str | None) -> str:
    return f"{name} [{units}]" if units and units not in ("1", "") else name


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _cartopy():
    try:
        import cartopy.crs as ccrs  # noqa: F401

        return ccrs
    except ImportError:
        return None


def plot_sample_maps(
    generated: np.ndarray,
    reference: np.ndarray,
    path: str | Path,
    *,
    y: np.ndarray | None = None,
    x: np.ndarray | None = None,
    latlon: bool = False,
    n_maps: int = 3,
    name: str = "field",
    units: str | None = None,
    y_label: str = "y",
    x_label: str = "x",
) -> Path:
    """Draw ``n_maps`` generated samples (top row) above reference samples (bottom row).

    Parameters
    ----------
    generated, reference : arrays (n_samples, ny, nx) in canonical orientation (row 0 is
        the southernmost / lowest y).
    y, x : coordinate values of the rows and columns (default: indices).
    latlon : draw on a map with coastlines (cartopy, when installed) or lon/lat axes.

    All panels share one colour scale, the 1st–99th percentile of both sets pooled, so that
    a difference in amplitude shows as a difference in colour.
    """
    generated, reference = np.asarray(generated), np.asarray(reference)
    n = int(min(n_maps, len(generated), len(reference)))
    ny, nx = reference.shape[-2:]
    y = np.arange(ny) if y is None else np.asarray(y)
    x = np.arange(nx) if x is None else np.asarray(x)
    pooled = np.concatenate([generated[:n].ravel(), reference[:n].ravel()])
    vmin, vmax = np.percentile(pooled, [1, 99])
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    ccrs = _cartopy() if latlon else None
    aspect = ny / nx if not latlon else (y.max() - y.min() + 1e-9) / (x.max() - x.min() + 1e-9)
    width = 3.6 * n
    height = 2 * 3.6 * float(np.clip(aspect, 0.25, 1.5)) + 1.0
    subplot_kw = {"projection": ccrs.PlateCarree()} if ccrs else {}
    fig, axes = plt.subplots(
        2, n, figsize=(width, height), squeeze=False, subplot_kw=subplot_kw, constrained_layout=True
    )
    mesh = None
    for row, (data, title) in enumerate(((generated, "generated"), (reference, "reference"))):
        for col in range(n):
            ax = axes[row, col]
            kwargs = {"transform": ccrs.PlateCarree()} if ccrs else {}
            mesh = ax.pcolormesh(
                x, y, data[col], vmin=vmin, vmax=vmax, cmap="RdBu_r", shading="auto", **kwargs
            )
            ax.set_title(f"{title} #{col}", fontsize=9)
            if ccrs:
                ax.coastlines(linewidth=0.5)
            else:
                if not latlon:
                    ax.set_aspect("equal")
                if row == 1:
                    ax.set_xlabel(x_label)
                if col == 0:
                    ax.set_ylabel(y_label)
    fig.colorbar(mesh, ax=axes, shrink=0.8, label=_label(name, units))
    return _save(fig, path)


def plot_spectra(
    k: np.ndarray,
    power_generated: np.ndarray,
    power_reference: np.ndarray,
    path: str | Path,
    *,
    reference_halves: tuple[np.ndarray, np.ndarray] | None = None,
    k_label: str = "wavenumber",
    power_label: str = "power",
    name: str = "field",
) -> Path:
    """Log–log spectra (top) and the ratio generated/reference (bottom).

    Parameters
    ----------
    k : wavenumbers (or spherical-harmonic degrees) of the bins, shape (nk,).
    power_generated, power_reference : sample-mean spectra over the same bins.
    reference_halves : sample-mean spectra of the first and second half of the reference.
        Their ratio is the noise floor: the band ``[1/r, r]`` with
        ``r = max(P_a/P_b, P_b/P_a)`` is shaded in the ratio panel; a ratio gen/ref inside
        the band is indistinguishable from sampling noise.

    Bins with k ≤ 0 (the mean) or non-positive power are not drawn.
    """
    k = np.asarray(k, dtype=float)
    pg, pr = np.asarray(power_generated, float), np.asarray(power_reference, float)
    keep = (k > 0) & (pg > 0) & (pr > 0)
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(6.4, 6.0),
        sharex=True,
        gridspec_kw={"height_ratios": [2.2, 1]},
        constrained_layout=True,
    )
    top.loglog(k[keep], pr[keep], color=REFERENCE_COLOR, lw=2, label="reference")
    top.loglog(k[keep], pg[keep], color=GENERATED_COLOR, lw=1.5, ls="--", label="generated")
    top.set_ylabel(power_label)
    top.set_title(f"{name}: power spectrum", fontsize=10)
    top.grid(True, which="both", alpha=0.3)
    top.legend()
    ratio = pg[keep] / pr[keep]
    if reference_halves is not None:
        a, b = (np.asarray(h, float)[keep] for h in reference_halves)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.maximum(a / b, b / a)
        r = np.where(np.isfinite(r), r, np.nan)
        bottom.fill_between(k[keep], 1 / r, r, color="0.8", label="noise floor (reference halves)")
    bottom.semilogx(k[keep], ratio, color=GENERATED_COLOR, lw=1.5, label="generated / reference")
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.set_yscale("log")
    bottom.set_xlabel(k_label)
    bottom.set_ylabel("ratio")
    bottom.grid(True, which="both", alpha=0.3)
    bottom.legend(fontsize=8)
    return _save(fig, path)


def plot_pdfs(
    generated: np.ndarray,
    reference: np.ndarray,
    path: str | Path,
    *,
    weights: np.ndarray | None = None,
    bins: int = 64,
    name: str = "field",
    units: str | None = None,
) -> Path:
    """Probability densities of the values on shared bin edges, log-y, with Poisson bars.

    Both histograms use the same edges (spanning both sets) so their heights compare bin by
    bin. Error bars are the Poisson standard error of each bin, √(Σw²)/(Σw·Δ) in density
    units, as returned by :func:`climgen.metrics.histogram`. ``weights`` (ny, nx) are area
    weights applied to every sample.
    """
    from climgen.metrics import histogram, shared_edges

    generated, reference = np.asarray(generated, float), np.asarray(reference, float)
    edges = np.asarray(shared_edges(generated, reference, bins=bins))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    for data, color, label in (
        (reference, REFERENCE_COLOR, "reference"),
        (generated, GENERATED_COLOR, "generated"),
    ):
        h = histogram(data, edges=edges, weights=weights)
        centres = 0.5 * (edges[1:] + edges[:-1])
        density = np.asarray(h.density, float)
        err = np.asarray(h.error, float)
        shown = density > 0
        ax.errorbar(
            centres[shown],
            density[shown],
            # Lower bars stop at a tenth of the height: on a log axis a bar reaching 0
            # would run off the plot and hide the other curve.
            yerr=np.vstack([np.minimum(err[shown], 0.9 * density[shown]), err[shown]]),
            color=color,
            label=label,
            drawstyle="steps-mid",
            elinewidth=0.8,
            capsize=1.5,
        )
    ax.set_yscale("log")
    ax.set_xlabel(_label(name, units))
    ax.set_ylabel(f"probability density [1/{units}]" if units and units != "1" else "density")
    ax.set_title(f"{name}: distribution of values", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_structure_functions(
    lags: np.ndarray,
    s_generated: np.ndarray,
    s_reference: np.ndarray,
    path: str | Path,
    *,
    orders: Sequence[int] = (1, 2, 3, 4, 5, 6),
    flatness_generated: np.ndarray | None = None,
    flatness_reference: np.ndarray | None = None,
    lag_label: str = "lag r",
    name: str = "field",
) -> Path:
    """Structure functions S_p(r) (left, log–log) and flatness S_4/S_2² (right).

    ``s_generated``/``s_reference`` have shape (n_orders, n_lags) for ``orders``. Reference
    curves are solid, generated curves dashed, one shade per order. Gaussian increments have
    flatness 3 (dotted line); larger values mean intermittent, heavy-tailed increments.
    """
    lags = np.asarray(lags, float)
    sg, sr = np.asarray(s_generated, float), np.asarray(s_reference, float)
    with_flatness = flatness_generated is not None and flatness_reference is not None
    fig, axes = plt.subplots(
        1,
        2 if with_flatness else 1,
        figsize=(11 if with_flatness else 6, 4.4),
        squeeze=False,
        constrained_layout=True,
    )
    ax = axes[0, 0]
    shades = plt.cm.viridis(np.linspace(0.0, 0.85, len(orders)))
    keep = lags > 0
    for i, p in enumerate(orders):
        ax.loglog(lags[keep], sr[i, keep], color=shades[i], lw=2, label=f"p={p}")
        ax.loglog(lags[keep], sg[i, keep], color=shades[i], lw=1.2, ls="--")
    ax.set_xlabel(lag_label)
    ax.set_ylabel("S_p(r)")
    ax.set_title(f"{name}: structure functions (solid ref., dashed gen.)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    if with_flatness:
        ax = axes[0, 1]
        ax.semilogx(
            lags[keep],
            np.asarray(flatness_reference)[keep],
            color=REFERENCE_COLOR,
            lw=2,
            label="reference",
        )
        ax.semilogx(
            lags[keep],
            np.asarray(flatness_generated)[keep],
            color=GENERATED_COLOR,
            lw=1.5,
            ls="--",
            label="generated",
        )
        ax.axhline(3.0, color="k", lw=0.8, ls=":", label="Gaussian (3)")
        ax.set_xlabel(lag_label)
        ax.set_ylabel("flatness S_4 / S_2²")
        ax.set_title(f"{name}: flatness of increments", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
