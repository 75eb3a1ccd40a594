"""Synthetic fields whose spectrum and PDF are known exactly: for tests, demos and baselines.

Gaussian random field (GRF)
---------------------------
A periodic field on an ``ny × nx`` grid with spacings ``dy``, ``dx`` whose Fourier modes are
independent complex Gaussians with variance

.. math::  E|\\hat f(\\mathbf k)|^2 / (n_y n_x)^2 = P(k)
           = \\sigma^2 \\, k^{\\beta} / \\sum_{\\mathbf k' \\ne 0} k'^{\\beta},
           \\qquad k = |\\mathbf k| = \\sqrt{k_x^2 + k_y^2},\\; k_x = \\mathrm{fftfreq}(n_x, d_x)

(``β = slope``; the mean mode is zero). ``P`` is the *per-mode* power in the normalisation of
:func:`climgen.metrics.rapsd` (Σ_k P(k) = mean square), so the ring-mean spectrum of the field
is ``expected_grf_power(k)`` and its one-point PDF is N(0, σ²) exactly (a linear map of white
Gaussian noise). Reference: e.g. Lang & Potthoff (2011), *Fast simulation of Gaussian random
fields*, Monte Carlo Methods Appl. 17, 195–214.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "make_grf",
    "expected_grf_power",
    "grf_dataarray",
    "spherical_harmonic",
    "gaussian_latitudes",
]


def _modal_wavenumber(ny: int, nx: int, dy: float, dx: float) -> np.ndarray:
    ky = np.fft.fftfreq(ny, d=dy)
    kx = np.fft.rfftfreq(nx, d=dx)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _check_grid(ny: int, nx: int, dy: float, dx: float) -> None:
    for name, n in (("ny", ny), ("nx", nx)):
        if int(n) != n or n < 2:
            raise ClimgenInputError(f"{name} must be an integer ≥ 2, got {n!r}")
    for name, d in (("dy", dy), ("dx", dx)):
        if not np.isfinite(d) or d <= 0:
            raise ClimgenInputError(f"grid spacing {name} must be positive and finite, got {d!r}")


def _power_norm(ny: int, nx: int, dy: float, dx: float, slope: float) -> float:
    """Σ over the full (not half) plane of k^slope, excluding k = 0."""
    kf = np.sqrt(np.fft.fftfreq(ny, d=dy)[:, None] ** 2 + np.fft.fftfreq(nx, d=dx)[None, :] ** 2)
    kf = kf[kf > 0]
    return float(np.sum(kf**slope))


def expected_grf_power(
    k, ny: int, nx: int, *, slope: float = -3.0, dy: float = 1.0, dx: float = 1.0, std: float = 1.0
) -> np.ndarray:
    """Expected per-mode power P(k) of :func:`make_grf` at wavenumbers ``k`` (units of 1/dx)."""
    k = np.asarray(k, dtype=float)
    out = np.zeros_like(k)
    pos = k > 0
    out[pos] = std**2 * k[pos] ** slope / _power_norm(ny, nx, dy, dx, slope)
    return out


def make_grf(
    n_samples: int,
    ny: int,
    nx: int,
    *,
    slope: float = -3.0,
    dy: float = 1.0,
    dx: float = 1.0,
    std: float = 1.0,
    seed=None,
    dtype=np.float64,
) -> np.ndarray:
    """Draw ``n_samples`` periodic Gaussian random fields with isotropic power law ``k**slope``.

    Parameters
    ----------
    n_samples, ny, nx : output shape ``(n_samples, ny, nx)``; ny ≠ nx allowed.
    slope : spectral exponent β of the per-mode power P(k) ∝ k^β (β = −3 is a typical
        enstrophy-cascade slope).
    dy, dx : grid spacings (physical units; wavenumbers are cycles per unit).
    std : expected standard deviation σ of the field (pointwise N(0, σ²)).
    seed : anything :func:`numpy.random.default_rng` accepts.

    Example
    -------
    >>> f = make_grf(4, 64, 256, slope=-3, dy=2.0, dx=0.5, seed=0)
    >>> f.shape
    (4, 64, 256)
    """
    _check_grid(ny, nx, dy, dx)
    if n_samples < 1:
        raise ClimgenInputError(f"n_samples must be ≥ 1, got {n_samples}")
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_samples, ny, nx))
    k = _modal_wavenumber(ny, nx, dy, dx)
    amp = np.zeros_like(k)
    pos = k > 0
    # E|rfft2(white)|² = ny·nx, so scaling mode k by sqrt(P(k)·ny·nx) gives per-mode power P(k).
    amp[pos] = np.sqrt(
        expected_grf_power(k[pos], ny, nx, slope=slope, dy=dy, dx=dx, std=std) * ny * nx
    )
    field = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(ny, nx))
    return field.astype(dtype, copy=False)


def gaussian_latitudes(nlat: int) -> np.ndarray:
    """Latitudes (degrees, south → north) of the Gauss–Legendre grid with ``nlat`` rows."""
    x, _ = np.polynomial.legendre.leggauss(nlat)
    return np.rad2deg(np.arcsin(x))


def grf_dataarray(
    n_samples: int,
    ny: int,
    nx: int,
    *,
    slope: float = -3.0,
    dy: float = 1.0,
    dx: float = 1.0,
    std: float = 1.0,
    seed=None,
    kind: str = "planar",
    name: str = "field",
    units: str = "1",
) -> xr.DataArray:
    """A GRF as a CF-annotated DataArray.

    ``kind="planar"``: dims ``(time, y, x)``, coordinates ``i·dy``/``i·dx``, both axes marked
    periodic. ``kind="latlon"``: dims ``(time, lat, lon)`` on a global cell-centred grid
    (``dy``/``dx`` ignored: 180/ny and 360/nx degrees); the field is the planar GRF laid on
    the grid (not isotropic on the sphere), useful for layout and PDF tests.
    """
    if kind == "planar":
        data = make_grf(n_samples, ny, nx, slope=slope, dy=dy, dx=dx, std=std, seed=seed)
        y = xr.Variable(
            "y",
            np.arange(ny) * dy,
            {"units": "1", "axis": "Y", "periodic": "true", "long_name": "y"},
        )
        x = xr.Variable(
            "x",
            np.arange(nx) * dx,
            {"units": "1", "axis": "X", "periodic": "true", "long_name": "x"},
        )
        coords = {"y": y, "x": x}
        dims = ("time", "y", "x")
    elif kind == "latlon":
        dlat, dlon = 180.0 / ny, 360.0 / nx
        data = make_grf(n_samples, ny, nx, slope=slope, dy=dlat, dx=dlon, std=std, seed=seed)
        lat = xr.Variable(
            "lat",
            -90 + dlat * (np.arange(ny) + 0.5),
            {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"},
        )
        lon = xr.Variable(
            "lon",
            dlon * (np.arange(nx) + 0.5),
            {"standard_name": "longitude", "units": "degrees_east", "axis": "X"},
        )
        coords = {"lat": lat, "lon": lon}
        dims = ("time", "lat", "lon")
    else:
        raise ClimgenInputError(f"kind must be 'planar' or 'latlon', got {kind!r}")
    coords["time"] = xr.Variable("time", np.arange(n_samples), {"long_name": "sample index"})
    return xr.DataArray(
        data,
        dims=dims,
        coords=coords,
        name=name,
        attrs={
            "units": units,
            "long_name": f"Gaussian random field, P(k) ∝ k^{slope:g}",
            "spectral_slope": float(slope),
        },
    )


def spherical_harmonic(ell: int, m: int, lat_deg, lon_deg) -> np.ndarray:
    """Real spherical harmonic Y_ℓ^m on a lat/lon grid (orthonormal on the unit sphere).

    m > 0 gives √2·Re Y_ℓ^m (∝ cos mλ), m < 0 gives √2·Im Y_ℓ^|m| (∝ sin |m|λ), m = 0 the
    zonal harmonic. Returns an array of shape (len(lat), len(lon)).
    """
    from scipy.special import sph_harm_y

    if ell < 0 or abs(m) > ell:
        raise ClimgenInputError(f"need ℓ ≥ 0 and |m| ≤ ℓ, got ℓ={ell}, m={m}")
    theta = np.deg2rad(90.0 - np.asarray(lat_deg, dtype=float))[:, None]
    phi = np.deg2rad(np.asarray(lon_deg, dtype=float))[None, :]
    y = sph_harm_y(ell, abs(m), theta, phi)
    if m == 0:
        return np.real(y) * np.ones_like(phi)
    return np.sqrt(2.0) * (np.real(y) if m > 0 else np.imag(y))
