"""Linear, isotropic spectral filters in the same bases as :func:`field_spectrum`.

A filter multiplies every spectral coefficient of wavenumber k by a gain g(k):

.. math:: \\hat f'(k) = g(k)\\,\\hat f(k) \\quad\\Rightarrow\\quad P'(k) = g(k)^2 P(k)

so the gain that carries a spectrum P_a onto P_b is g = sqrt(P_b / P_a) (:func:`spectral_gain`).
The bases are those of the diagnostics, so a filtered field's spectrum is exactly
g² times the input's in :func:`climgen.metrics.field_spectrum`:

* ``"line"`` (periodic in x only, walls in y — Rayleigh–Bénard): the rfft along x of each row,
  gain per x-wavenumber index m = 0 … n_x/2;
* ``"planar"`` (doubly periodic): the rfft2 of the field, gain per ring of |k| (the rings of
  :func:`climgen.metrics.rapsd`, modes beyond Nyquist in the corners get the last ring's gain);
* ``"spherical"`` (global Gaussian or equiangular lat/lon grid): the real spherical-harmonic
  transform (torch-harmonics' orthonormal transform, computed in bounded memory by
  :mod:`climgen.metrics.sht`: 1.9 GB peak and 0.6 CPU s per filter at 720 × 1440, where
  torch-harmonics' own tables peak at 11.8 GB), gain per degree ℓ. For a T42 Gaussian grid
  the analysis–synthesis pair is exact up to ℓ = nlat − 1.
* ``"rows"`` (any grid periodic in x): the rfft along x of each row, one gain per *row and*
  x-wavenumber, g(y, m). On a lat/lon grid that is the zonal spectrum per latitude, on a
  wall-bounded flow the x-spectrum per height: the basis of statistics that are stationary
  in x but not in y, such as the variance per latitude and the structure functions along x
  (S_2(r) = 2 Σ_m P(y, m) (1 − cos 2πmr/n_x) at each row, averaged over rows). Its spectrum
  is :func:`row_spectrum`.

A use: fields emulated on a band-limited (spectrally truncated) grid, or with a steep
dissipation-range spectrum, carry small-scale power that the data do not have; a gain fitted
on training data removes it without touching the resolved scales (see
:class:`climgen.tasks.emulate.spectral_calibration.SpectralCalibration`).

References: Schaeffer (2013), G3 14, 751–758 (spherical harmonic transforms); Bonev et al.
(2023), torch-harmonics.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from climgen.data.grids import detect_grid, restore, to_canonical
from climgen.errors import ClimgenInputError
from climgen.metrics.sht import spherical_transform
from climgen.metrics.spectra import _ring_bins_cached, _sht, lat_grid_kind

__all__ = [
    "spectrum_kind_of",
    "spectral_gain",
    "apply_spectral_gain",
    "row_spectrum",
    "filter_line",
    "filter_planar",
    "filter_spherical",
    "ring_index",
    "spherical_coefficients",
]

FILTER_KINDS = ("line", "planar", "spherical", "rows")


def spectrum_kind_of(da: xr.DataArray) -> str:
    """The filter basis that matches ``field_spectrum(da)``: "line", "planar" or "spherical".

    Raises :class:`ClimgenInputError` for grids whose spectrum is windowed (regional or
    non-periodic), where no exact inverse exists.
    """
    grid = detect_grid(da)
    if grid.kind == "latlon":
        lat = np.asarray(da[grid.y_dim].values, dtype=float)
        if grid.periodic_x:
            try:
                if lat_grid_kind(lat) in ("legendre-gauss", "equiangular"):
                    return "spherical"
            except ClimgenInputError:
                pass
        raise ClimgenInputError(
            f"spectral filtering of '{da.name}' needs a global Gaussian or equiangular lat/lon "
            "grid (regional and cell-centred grids have no exact spherical-harmonic inverse)"
        )
    if grid.periodic_x and grid.periodic_y:
        return "planar"
    if grid.periodic_x:
        return "line"
    raise ClimgenInputError(
        f"spectral filtering of '{da.name}' needs a periodic x axis (its spectrum is windowed)"
    )


def spectral_gain(
    p_from: np.ndarray, p_to: np.ndarray, *, floor: float = 1e-30, max_gain: float = 1e3
) -> np.ndarray:
    """g(k) = sqrt(P_to(k) / P_from(k)), clipped to [0, max_gain]; 1 where P_from ≤ floor."""
    p_from = np.asarray(p_from, dtype=float)
    p_to = np.asarray(p_to, dtype=float)
    if p_from.shape != p_to.shape:
        raise ClimgenInputError(
            f"spectral_gain: spectra of different lengths {p_from.shape} and {p_to.shape}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.sqrt(np.clip(p_to, 0.0, None) / p_from)
    g = np.where(p_from > floor, g, 1.0)
    return np.clip(np.nan_to_num(g, nan=1.0, posinf=max_gain), 0.0, max_gain)


def filter_line(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Filter every row of (..., H, W) ``x`` along x (periodic):

    .. math:: f'(y, \\cdot) = \\mathrm{irfft}_x\\big(g(m)\\,\\mathrm{rfft}_x f(y, \\cdot)\\big),
              \\qquad m = 0 … W/2,

    ``gain`` of length W/2 + 1 (the ``"line"`` basis of :func:`field_spectrum`).
    """
    n = x.shape[-1]
    f = torch.fft.rfft(x, dim=-1)
    _check_length(gain, f.shape[-1], "line (n_x/2 + 1 x-wavenumbers)")
    return torch.fft.irfft(f * gain, n=n, dim=-1)


def _filter_rows(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    ny, nx = x.shape[-2:]
    if tuple(gain.shape) != (ny, nx // 2 + 1):
        raise ClimgenInputError(
            f"per-row spectral gain has shape {tuple(gain.shape)}; the field needs "
            f"({ny}, {nx // 2 + 1}) (rows × x-wavenumbers)"
        )
    return torch.fft.irfft(torch.fft.rfft(x, dim=-1) * gain, n=nx, dim=-1)


def row_spectrum(da: xr.DataArray) -> np.ndarray:
    """Mean power |rfft_x f|² per row and x-wavenumber, shape (n_y, n_x/2 + 1).

    Averaged over every non-spatial dim; rows in the canonical order of
    :func:`climgen.data.grids.to_canonical` (latitude ascending) — the order the ``"rows"``
    gains of :func:`apply_spectral_gain` use. Unnormalised: only ratios of two such spectra
    (of fields on the same grid) are meaningful.
    """
    grid = detect_grid(da)
    if not grid.periodic_x:
        raise ClimgenInputError(
            f"per-row x-spectra of '{da.name}' need a periodic x axis (its spectrum is windowed)"
        )
    canon, _ = to_canonical(da, grid)
    x = torch.as_tensor(np.ascontiguousarray(canon.values, dtype=np.float64))
    if not torch.isfinite(x).all():
        raise ClimgenInputError(f"'{da.name}' has NaN/inf values: its spectrum needs them all")
    p = torch.fft.rfft(x, dim=-1).abs() ** 2
    return p.reshape(-1, *p.shape[-2:]).mean(0).numpy()


def ring_index(ny: int, nx: int, dy: float = 1.0, dx: float = 1.0) -> tuple[torch.Tensor, int]:
    """The ring of |k| of every rfft2 coefficient of a (ny, nx) grid: ``(index, n_bins)``.

    ``index`` (ny, nx/2 + 1), int64: ring i holds |k| ∈ [(i − ½)Δk, (i + ½)Δk) with
    Δk = 1 / max(nx·dx, ny·dy), the rings of :func:`climgen.metrics.rapsd`; modes beyond
    Nyquist (the corners) are put in the last ring, ``n_bins − 1``.
    """
    _, pair_index, _, n_bins = _ring_bins_cached(ny, nx, float(dy), float(dx), True)
    index = np.minimum(pair_index[::2], n_bins - 1).reshape(ny, nx // 2 + 1)
    return torch.as_tensor(index, dtype=torch.long), n_bins


def filter_planar(x: torch.Tensor, gain: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Filter doubly periodic (..., H, W) ``x`` isotropically:

    .. math:: f' = \\mathrm{irfft2}\\big(g(i(k))\\,\\mathrm{rfft2} f\\big),

    with i(k) the ring of |k| (:func:`ring_index`, grid spacings ``dy``, ``dx``); ``gain`` has
    one value per ring (the ``"planar"`` basis of :func:`field_spectrum`).
    """
    ny, nx = x.shape[-2:]
    index, n_bins = ring_index(ny, nx, dy, dx)
    _check_length(gain, n_bins, "planar (rings of rapsd)")
    return torch.fft.irfft2(torch.fft.rfft2(x) * gain[index], s=(ny, nx))


def spherical_coefficients(x: torch.Tensor, grid: str) -> torch.Tensor:
    """Orthonormal real spherical-harmonic coefficients a_ℓm, shape (..., L, M), of global
    (..., nlat, nlon) fields with rows south → north on a ``grid`` of
    :func:`climgen.metrics.lat_grid_kind` ("legendre-gauss" or "equiangular"):
    f = Σ_ℓm a_ℓm Y_ℓm (torch-harmonics ``RealSHT``, ``norm="ortho"``)."""
    nlat, nlon = x.shape[-2:]
    return _sht(nlat, nlon, grid)(x.flip(-2))  # torch-harmonics wants north → south


def filter_spherical(x: torch.Tensor, gain: torch.Tensor, grid: str) -> torch.Tensor:
    """Filter global (..., nlat, nlon) ``x`` (rows south → north) per spherical degree:

    .. math:: f' = \\sum_{ℓ, m} g(ℓ)\\, a_{ℓm} Y_{ℓm}, \\qquad a_{ℓm} = ⟨f, Y_{ℓm}⟩,

    ``gain`` of one value per degree ℓ (the ``"spherical"`` basis of :func:`field_spectrum`);
    ``grid`` as for :func:`spherical_coefficients`.
    """
    nlat, nlon = x.shape[-2:]
    coeffs = spherical_coefficients(x, grid)
    _check_length(gain, coeffs.shape[-2], "spherical (degrees ℓ)")
    coeffs = coeffs * gain.to(coeffs.real.dtype)[:, None]
    return spherical_transform(nlat, nlon, grid).inverse(coeffs).flip(-2)


def _check_length(gain: torch.Tensor, n: int, what: str) -> None:
    if gain.numel() != n:
        raise ClimgenInputError(f"spectral gain has {gain.numel()} values; the {what} need {n}")


def apply_spectral_gain(da: xr.DataArray, gain, kind: str | None = None) -> xr.DataArray:
    """Multiply each spectral coefficient of ``da`` by ``gain`` at its wavenumber.

    ``gain`` is indexed like the wavenumber axis of ``field_spectrum(da)`` (x-wavenumbers,
    rings or degrees ℓ), or for ``kind="rows"`` like :func:`row_spectrum` (rows ×
    x-wavenumbers); ``kind`` defaults to :func:`spectrum_kind_of`. Coordinates, dims
    order and attributes are kept; the computation is float64.
    """
    kind = kind or spectrum_kind_of(da)
    if kind not in FILTER_KINDS:
        raise ClimgenInputError(f"kind must be one of {FILTER_KINDS}, got {kind!r}")
    grid = detect_grid(da)
    canon, state = to_canonical(da, grid)
    x = torch.as_tensor(np.ascontiguousarray(canon.values, dtype=np.float64))
    if not torch.isfinite(x).all():
        raise ClimgenInputError(
            f"'{da.name}' has NaN/inf values: spectral filtering needs them all"
        )
    g = torch.as_tensor(np.asarray(gain, dtype=np.float64))
    if kind == "rows":
        if not grid.periodic_x:
            raise ClimgenInputError(f"per-row filtering of '{da.name}' needs a periodic x axis")
        y = _filter_rows(x, g)
        out = canon.copy(data=y.numpy().astype(canon.dtype, copy=False))
        return restore(out, state)
    g = g.reshape(-1)
    if kind == "line":
        y = filter_line(x, g)
    elif kind == "planar":
        y = filter_planar(x, g, grid.dy, grid.dx)
    else:
        lat = np.asarray(canon[grid.y_dim].values, dtype=float)
        y = filter_spherical(x, g, lat_grid_kind(lat))
    out = canon.copy(data=y.numpy().astype(canon.dtype, copy=False))
    return restore(out, state)
