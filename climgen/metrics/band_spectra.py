"""Spectra along the periodic axis per band of rows: per latitude band, or per height band.

A spectrum averaged over all latitudes (or the isotropic 2-D spectrum) hides where a model
fails: storm tracks and the tropics have different zonal spectra, and in a wall-bounded flow
(Rayleigh–Bénard convection, a channel) the boundary layers and the bulk do. A 2-D radial
spectrum of a wall-bounded, roll-locked flow also zig-zags over decades and reads badly as a
ratio. Here the spectrum along x (longitude) is taken per row (:func:`row_power`, the same
convention as :func:`climgen.metrics.line_spectrum`) and averaged over the rows of each band,
with area weights (cos φ) on lat/lon grids.

Reference: Durran et al. (2017), MWR 145, 3901 (1-D spectra of limited-area fields);
Nastrom & Gage (1985), JAS 42, 950 (zonal spectra by latitude).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from climgen.data import grids
from climgen.errors import ClimgenInputError
from climgen.metrics._arrays import as_tensor, check_finite, to_like
from climgen.metrics.spectra import row_power

__all__ = ["band_spectra", "band_spectrum_distance", "default_band_edges", "LATITUDE_BAND_EDGES"]

#: Default latitude bands (degrees): polar, mid-latitude and tropical bands of each hemisphere.
LATITUDE_BAND_EDGES = (-90.0, -60.0, -30.0, 0.0, 30.0, 60.0, 90.0)


def default_band_edges(row_coord: np.ndarray, latlon: bool, n_bands: int = 4) -> np.ndarray:
    """Band edges covering ``row_coord``: 30° latitude bands on lat/lon grids (those holding
    rows), else ``n_bands`` bands of equal width (e.g. bottom boundary layer … top)."""
    y = np.asarray(row_coord, dtype=float)
    lo, hi = float(y.min()), float(y.max())
    if latlon:
        e = np.asarray(LATITUDE_BAND_EDGES)
        inner = e[(e > lo) & (e < hi)]
        return np.concatenate([[lo], inner, [hi]])
    return np.linspace(lo, hi, int(n_bands) + 1)


def _band_index(y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band of each row (last band closed on the right); rows outside all bands get −1."""
    idx = np.searchsorted(edges, y, side="right") - 1
    idx[y == edges[-1]] = edges.size - 2
    idx[(y < edges[0]) | (y > edges[-1])] = -1
    return idx


def band_spectra(
    field: Any,
    bands: Any = None,
    *,
    dx: float = 1.0,
    row_coord: Any = None,
    row_weights: Any = None,
    latlon: bool = False,
):
    r"""Power spectrum along x per band of rows (latitude or height bands).

    .. math:: P_b(k_m) = \frac{\sum_{y \in b} w_y\, c_m |\hat f_m(y)|^2 / n_x^2}
                             {\sum_{y \in b} w_y}, \qquad k_m = \frac{m}{n_x d_x}

    f̂ the rfft of each row along x, c_m = 2 for 0 < m < n_x/2 and 1 otherwise, the row mean
    (m = 0) left out, so Σ_m P_b is the (weighted) mean row variance in band b; w_y are row
    weights (cos φ on lat/lon grids, else 1). Units: field².

    ``field`` is (..., ny, nx) (samples kept) or a DataArray: then the grid gives the row
    coordinate (latitude or height), the weights, and the x spacing; on lat/lon grids k is
    the zonal wavenumber m (cycles per circle), on planar grids cycles per unit of x.
    ``bands``: an int (that many equal-width bands), a sequence of edges in row-coordinate
    units, or None (30° latitude bands; 4 height bands on planar grids). ``row_coord``
    defaults to the row index. Returns ``(k, power, edges)`` with power (..., n_bands, nk)
    for arrays (numpy or torch like the input); a DataArray with dims (..., ``band``,
    ``wavenumber``) and coords ``band_lower``/``band_upper`` for a DataArray.
    """
    if isinstance(field, xr.DataArray):
        return _band_dataarray(field, bands)
    t, kind = as_tensor(field, "field")
    if t.ndim < 2 or t.shape[-1] < 2:
        raise ClimgenInputError(f"field must be (..., ny, nx) with nx ≥ 2, got {tuple(t.shape)}")
    check_finite(t, "band_spectra field")
    ny, nx = t.shape[-2:]
    y = np.arange(ny, dtype=float) if row_coord is None else np.asarray(row_coord, dtype=float)
    if y.shape != (ny,):
        raise ClimgenInputError(f"row_coord must have {ny} values (one per row), got {y.shape}")
    if bands is None or np.isscalar(bands):
        edges = default_band_edges(y, latlon, 4 if bands is None else int(bands))
    else:
        edges = np.asarray(bands, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ClimgenInputError(f"bands must be ≥ 2 increasing edges or a count, got {bands}")
    idx = _band_index(y, edges)
    n_bands = edges.size - 1
    counts = np.bincount(idx[idx >= 0], minlength=n_bands)
    if np.any(counts == 0):
        empty = [f"[{edges[b]:g}, {edges[b + 1]:g}]" for b in np.flatnonzero(counts == 0)]
        raise ClimgenInputError(f"band(s) {', '.join(empty)} hold no row of the field")
    wy = np.ones(ny) if row_weights is None else np.asarray(row_weights, dtype=float)
    if wy.shape != (ny,) or np.any(wy < 0):
        raise ClimgenInputError(f"row_weights must be {ny} non-negative values, got {wy.shape}")
    member = np.zeros((n_bands, ny))
    member[idx[idx >= 0], np.flatnonzero(idx >= 0)] = wy[idx >= 0]
    norm = member.sum(axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ClimgenInputError("a band has zero total row weight")
    avg = torch.as_tensor(member / norm, dtype=t.dtype, device=t.device)
    power = torch.einsum("by,...yk->...bk", avg, row_power(t))
    k = np.fft.rfftfreq(nx, d=dx)
    k_out = k if kind == "numpy" else torch.as_tensor(k, dtype=t.dtype, device=t.device)
    return k_out, to_like(power, kind), edges


def _band_dataarray(da: xr.DataArray, bands: Any) -> xr.DataArray:
    canon, _ = grids.to_canonical(da)
    g = grids.detect_grid(canon)
    y = np.asarray(canon[g.y_dim].values, dtype=float) if g.y_dim in canon.coords else None
    latlon = g.kind == "latlon"
    wy = np.clip(np.cos(np.deg2rad(y)), 0.0, None) if latlon else None
    dx = 1.0 / canon.sizes[g.x_dim] if latlon else g.dx  # lat/lon: k = m cycles per circle
    k, power, edges = band_spectra(
        canon.values, bands, dx=dx, row_coord=y, row_weights=wy, latlon=latlon
    )
    if latlon:
        k = np.round(k).astype(int) if g.periodic_x else k
    lead = [d for d in canon.dims if d not in (g.y_dim, g.x_dim)]
    coords = {d: canon[d] for d in lead if d in canon.coords}
    units = canon[g.x_dim].attrs.get("units", "1") if g.x_dim in canon.coords else "1"
    k_units = "zonal wavenumber (cycles per circle)" if latlon else f"cycles per {units}"
    coords["wavenumber"] = xr.Variable("wavenumber", k, {"units": k_units})
    coords["band_lower"] = xr.Variable("band", edges[:-1])
    coords["band_upper"] = xr.Variable("band", edges[1:])
    return xr.DataArray(
        power,
        dims=(*lead, "band", "wavenumber"),
        coords=coords,
        name=f"{da.name}_band_power",
        attrs={
            "long_name": f"spectrum of {da.name} along {g.x_dim} per band of {g.y_dim}",
            "units": f"({da.attrs.get('units', '1')})^2",
            "spectrum_kind": "zonal-bands" if latlon else "x-bands",
            "k_units": k_units,
            "band_dim": g.y_dim,
        },
    )


def band_spectrum_distance(gen: Any, ref: Any, bands: Any = None, **kwargs) -> float:
    r"""Mean over bands of the log-spectral distance of the sample-mean band spectra (decades).

    .. math:: d = \frac1{N_b}\sum_b \Big(\operatorname{mean}_{k>0}
              \big(\log_{10} \bar P^{gen}_b(k) - \log_{10} \bar P^{ref}_b(k)\big)^2\Big)^{1/2}

    over wavenumbers where both mean spectra are positive; ``bands`` and keyword arguments as
    in :func:`band_spectra` (both sets get the same bands). 0 for identical spectra.
    """
    from climgen.metrics.spectra import log_spectral_distance

    def mean_power(x):
        k, p, edges = band_spectra(x, bands, **kwargs)
        p = np.asarray(torch.as_tensor(p).detach().cpu(), dtype=float)
        return np.asarray(k, dtype=float), p.reshape(-1, *p.shape[-2:]).mean(0), edges

    k, pg, eg = mean_power(gen)
    _, pr, er = mean_power(ref)
    if pg.shape != pr.shape or not np.allclose(eg, er):
        raise ClimgenInputError(
            f"gen and ref give different band spectra ({pg.shape} over edges {eg} vs "
            f"{pr.shape} over {er}): they must share the grid"
        )
    out = []
    for b in range(pr.shape[0]):
        ok = (k > 0) & (pg[b] > 0) & (pr[b] > 0)
        if ok.any():
            out.append(log_spectral_distance(pg[b][ok], pr[b][ok]))
    if not out:
        raise ClimgenInputError("band_spectrum_distance: no band with positive power in both sets")
    return float(np.mean(out))
