"""Figures of an evaluation report: sample maps, spectra, value PDFs, structure functions.

:func:`draw_figures` draws one variable's figures into a folder (matplotlib via
:mod:`climgen.report.plots`, imported when first drawn) and returns their captions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from climgen.report.eval_results import VariableResult

__all__ = ["draw_figures", "safe_name"]


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "variable"


def draw_figures(var: VariableResult, directory: Path):
    from climgen.report import plots
    from climgen.report.html import Figure

    stem = safe_name(var.name)
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
    figures += _morphology_figures(var, directory, stem)
    return figures


def _morphology_figures(var: VariableResult, directory: Path, stem: str):
    from climgen.report import morphology_plots
    from climgen.report.html import Figure

    mo = var.morphology or {}
    figures = []
    if "thresholds" in mo:
        p = morphology_plots.plot_minkowski(
            mo["thresholds"],
            mo["generated"],
            mo["reference"],
            directory / f"{stem}_minkowski.png",
            name=var.name,
            units=var.units,
        )
        figures.append(
            Figure(
                "Minkowski functionals of excursion sets",
                p.name,
                "For each threshold ν (the reference's 2–98 % quantiles): the area fraction, "
                "the boundary length and the Euler characteristic (regions minus holes) of "
                "{field > ν}. They see the shape of plumes, fronts and storms, which spectra "
                "and PDFs do not: too many small blobs raise V1 and |V2|, merged structures "
                "lower them.",
            )
        )
    bs = mo.get("band_spectrum")
    if bs:
        p = morphology_plots.plot_band_spectra(
            bs["k"],
            bs["generated"],
            bs["reference"],
            bs["edges"],
            directory / f"{stem}_band_spectra.png",
            band_dim=bs.get("band_dim", "y"),
            k_label=bs.get("k_units", "wavenumber"),
            name=var.name,
        )
        figures.append(
            Figure(
                "Spectra along x per band",
                p.name,
                "Power along longitude (x) per latitude (height) band: where a model loses "
                "small scales — storm tracks or tropics, boundary layers or bulk — which a "
                "spectrum averaged over the whole field hides.",
            )
        )
    return figures
