"""Morphology and banded-spectrum distances of :func:`climgen.report.evaluate.evaluate`.

Spectra and one-point PDFs do not see the shapes of plumes, fronts and storms; these
distances do (definitions: docs/diagnostics.md, :mod:`climgen.metrics.morphology`):

====================  ==================================================================
minkowski_area        mean_ν |V0_gen − V0_ref| / max |V0_ref|, area fraction of {f > ν}
minkowski_length      the same for the boundary length V1
minkowski_euler       the same for the Euler characteristic V2 (components − holes)
gradient_pdf          W1 of the |∇f| distributions / mean |∇f|_ref
band_spectrum_lsd     mean over latitude (height) bands of the log-spectral distance of the
                      spectra along longitude (x); periodic-x grids only
====================  ==================================================================

Thresholds ν are the reference's 2 %…98 % quantiles (25 levels), fixed from the whole
reference so that its halves (the noise floor) are judged at the same levels.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.data import grids
from climgen.report.eval_measures import ReferenceSide, distance_with_floor

__all__ = ["MORPHOLOGY_DISTANCES", "measure_morphology"]

MORPHOLOGY_DISTANCES = (
    "minkowski_area",
    "minkowski_length",
    "minkowski_euler",
    "gradient_pdf",
    "band_spectrum_lsd",
)

_FUNCTIONALS = {
    "minkowski_area": "area_fraction",
    "minkowski_length": "boundary_length",
    "minkowski_euler": "euler_characteristic",
}


def measure_morphology(
    ref_da: xr.DataArray,
    gen: np.ndarray,
    ref: np.ndarray,
    grid: grids.GridInfo,
    weights: np.ndarray,
    factor: float,
    side: ReferenceSide | None = None,
):
    """Distances of :data:`MORPHOLOGY_DISTANCES` with floors, and the curves for the figures.

    ``ref_da`` is the canonical reference DataArray (for coordinates); ``gen``/``ref`` are
    (n, ny, nx) arrays; ``weights`` (ny, nx) area weights; ``side`` what is measured on the
    reference alone, shared by candidates. Returns ``(distances, curves)``.
    """
    from climgen.metrics import (
        band_spectra,
        band_spectrum_distance,
        default_band_edges,
        gradient_pdf_distance,
        minkowski_curve_distance,
        minkowski_functionals,
        reference_thresholds,
    )

    side = side or ReferenceSide()
    floors = side.floors
    periodic = (bool(grid.periodic_y), bool(grid.periodic_x))
    # Ties (e.g. quantised or clipped data) give repeated thresholds: count each level once.
    nu = side.value("thresholds", lambda: np.unique(reference_thresholds(ref, weights=weights)))

    def functionals(a):
        c = minkowski_functionals(a, nu, periodic=periodic, weights=weights)
        return {k: np.asarray(getattr(c, k), float) for k in _FUNCTIONALS.values()}

    curves = side.memoized("minkowski", functionals)

    def functional_distance(key):
        def fn(a, b):
            return minkowski_curve_distance(curves(a)[key], curves(b)[key])

        return fn

    distances = {
        name: distance_with_floor(name, functional_distance(key), gen, ref, factor, floors=floors)
        for name, key in _FUNCTIONALS.items()
    }
    lat = grid.kind == "latlon"
    y = np.asarray(ref_da[grid.y_dim].values, float) if grid.y_dim in ref_da.coords else None
    # On lat/lon grids the x step shrinks with cos φ (|∇f| per degree of great circle).
    dx = grid.dx * np.clip(np.cos(np.deg2rad(y)), 1e-6, None) if lat else grid.dx

    def grad(a, b):
        return gradient_pdf_distance(a, b, periodic=periodic, weights=weights, dy=grid.dy, dx=dx)

    distances["gradient_pdf"] = distance_with_floor(
        "gradient_pdf", grad, gen, ref, factor, floors=floors
    )
    out = {"thresholds": nu, "generated": curves(gen), "reference": curves(ref)}
    if grid.periodic_x:
        band_kw = dict(
            dx=1.0 / gen.shape[-1] if lat else grid.dx,
            row_coord=y,
            row_weights=np.clip(np.cos(np.deg2rad(y)), 0, None) if lat else None,
            latlon=lat,
        )
        edges = default_band_edges(np.arange(ref.shape[-2], dtype=float) if y is None else y, lat)

        def bands(a, b):
            return band_spectrum_distance(a, b, edges, **band_kw)

        distances["band_spectrum_lsd"] = distance_with_floor(
            "band_spectrum_lsd", bands, gen, ref, factor, floors=floors
        )
        k, pg, _ = band_spectra(gen, edges, **band_kw)
        pr = side.value("band spectra", lambda: band_spectra(ref, edges, **band_kw)[1])
        out["band_spectrum"] = {
            "k": np.asarray(k, float),
            "edges": edges,
            "band_dim": grid.y_dim,
            "k_units": "zonal wavenumber" if lat else "cycles per unit x",
            "generated": np.asarray(pg).mean(0),
            "reference": np.asarray(pr).mean(0),
        }
    return distances, out
