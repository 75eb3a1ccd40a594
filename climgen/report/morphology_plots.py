"""Figures of the morphology part of the evaluation report: Minkowski curves, band spectra.

Same conventions as :mod:`climgen.report.plots` (Agg backend, PNG at ``path``, generated in
orange, reference in blue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from climgen.report.plots import GENERATED_COLOR, REFERENCE_COLOR, _save

__all__ = ["plot_minkowski", "plot_band_spectra"]

_TITLES = {
    "area_fraction": "V0: area fraction",
    "boundary_length": "V1: boundary length / area",
    "euler_characteristic": "V2: Euler characteristic / area",
}


def plot_minkowski(
    thresholds,
    generated: dict,
    reference: dict,
    path: str | Path,
    *,
    name: str = "",
    units: str | None = None,
) -> Path:
    """Three panels, V0, V1, V2 of {f > ν} against the threshold ν."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, _TITLES):
        ax.plot(thresholds, reference[key], color=REFERENCE_COLOR, label="reference")
        ax.plot(thresholds, generated[key], "--", color=GENERATED_COLOR, label="generated")
        ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
        ax.set_title(_TITLES[key], fontsize=10)
        ax.set_xlabel(
            f"threshold ν of {name}" + (f" [{units}]" if units not in (None, "", "1") else "")
        )
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_band_spectra(
    k,
    generated: np.ndarray,
    reference: np.ndarray,
    edges,
    path: str | Path,
    *,
    band_dim: str = "y",
    k_label: str = "wavenumber",
    name: str = "",
) -> Path:
    """Spectra along x per band (one colour per band; reference solid, generated dashed)."""
    import matplotlib.pyplot as plt

    k = np.asarray(k, float)
    keep = k > 0
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(edges) - 1))
    for b, c in enumerate(colors):
        label = f"{band_dim} {edges[b]:g}…{edges[b + 1]:g}"
        ax.loglog(k[keep], reference[b][keep], color=c, label=label)
        ax.loglog(k[keep], generated[b][keep], "--", color=c)
    ax.set_xlabel(k_label)
    ax.set_ylabel("power per band")
    ax.set_title(
        f"{name}: spectra along x per band (solid reference, dashed generated)", fontsize=9
    )
    ax.legend(fontsize=7)
    return _save(fig, path)
