"""Spectral calibration of emulated fields: a fitted linear filter that gives samples the
mean power spectrum of the training data.

After training, the emulator's mean spectrum P_model(k) is compared with the training data's
P_data(k) in the basis of the diagnostics (x-wavenumber, ring or spherical degree ℓ, see
:func:`climgen.metrics.field_spectrum`) and every sample is filtered with

.. math:: g(k) = \\sqrt{P_{data}(k) / P_{model}(k)}, \\qquad \\hat f'(k) = g(k)\\,\\hat f(k),

so that the calibrated samples' mean spectrum equals P_data(k) (up to the sampling noise of
the estimate). It is a linear, isotropic, per-variable post-processing fitted on training
data only — the spectral analogue of quantile mapping's bias correction of marginals. It is
what makes an emulator respect data that are band-limited (a T42 model's fields have ~no
power beyond ℓ ≈ 42; a convolutional generator's high-ℓ noise is decades above it) or have a
steep dissipation range (Rayleigh–Bénard), where a few orders of magnitude of excess
small-scale power dominate log-spectral errors while being invisible on maps.

It does not fix anything else: one-point PDFs, covariance of large scales and extremes are
the model's own; the benchmarks show raw and calibrated samples side by side. References:
Wiener (1949), *Extrapolation, Interpolation, and Smoothing of Stationary Time Series* (linear
filters fixed by spectra); Panofsky & Brier (1968), *Some Applications of Statistics to
Meteorology* (the empirical-CDF bias correction this mirrors for spectra).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics.spectra import field_spectrum
from climgen.metrics.spectral_filter import apply_spectral_gain, spectral_gain, spectrum_kind_of

__all__ = ["SpectralCalibration"]

_VERSION = 1


def _mean_spectrum(da: xr.DataArray, sample_dim: str) -> np.ndarray:
    spec = field_spectrum(da)
    lead = [d for d in spec.dims[:-1]]
    return np.asarray(spec.mean(lead).values if lead else spec.values, dtype=float)


class SpectralCalibration:
    """Per-variable spectral gains g(k) = sqrt(P_data / P_model), applied to samples.

    Build with :meth:`fit`; apply with :meth:`apply`; store as JSON with :meth:`save` /
    :meth:`load` (plain numbers, no code).
    """

    def __init__(self, gains: dict[str, np.ndarray], kinds: dict[str, str], n_fit: int = 0):
        self.gains = {v: np.asarray(g, dtype=float) for v, g in gains.items()}
        self.kinds = dict(kinds)
        self.n_fit = int(n_fit)

    @classmethod
    def fit(
        cls,
        generated: xr.Dataset,
        data: xr.Dataset,
        variables: list[str],
        *,
        sample_dim: str = "sample",
        data_sample_dim: str = "time",
        max_gain: float = 1e3,
    ) -> SpectralCalibration:
        """Gains carrying the mean spectrum of ``generated`` onto that of ``data``."""
        gains, kinds = {}, {}
        for v in variables:
            for name, ds in (("generated", generated), ("data", data)):
                if v not in ds:
                    raise ClimgenInputError(
                        f"spectral calibration: variable '{v}' is not in the {name} fields "
                        f"(variables: {list(ds.data_vars)})"
                    )
            kinds[v] = spectrum_kind_of(data[v])
            p_gen = _mean_spectrum(generated[v], sample_dim)
            p_data = _mean_spectrum(data[v], data_sample_dim)
            gains[v] = spectral_gain(p_gen, p_data, max_gain=max_gain)
        return cls(gains, kinds, n_fit=int(generated.sizes.get(sample_dim, 0)))

    def apply(self, ds: xr.Dataset) -> xr.Dataset:
        """Filter every calibrated variable of ``ds`` (coords and attrs kept)."""
        out = ds.copy()
        for v, g in self.gains.items():
            if v not in ds:
                raise ClimgenInputError(
                    f"spectral calibration was fitted for '{v}', which is not in the fields "
                    f"(variables: {list(ds.data_vars)})"
                )
            out[v] = apply_spectral_gain(ds[v], g, self.kinds[v])
        bases = ", ".join(sorted(set(self.kinds.values())))
        out.attrs["climgen_spectral_calibration"] = (
            f"linear spectral gain sqrt(P_data/P_model) per {bases} wavenumber, fitted on "
            f"{self.n_fit} samples against the training data"
        )
        return out

    def to_dict(self) -> dict:
        return {
            "version": _VERSION,
            "n_fit": self.n_fit,
            "variables": {
                v: {"kind": self.kinds[v], "gain": [float(x) for x in g]}
                for v, g in self.gains.items()
            },
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpectralCalibration:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            variables = d["variables"]
            gains = {v: np.asarray(e["gain"], dtype=float) for v, e in variables.items()}
            kinds = {v: str(e["kind"]) for v, e in variables.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClimgenInputError(f"{path}: not a climgen spectral calibration ({exc})") from exc
        return cls(gains, kinds, n_fit=d.get("n_fit", 0))

    def __repr__(self) -> str:
        return f"SpectralCalibration(variables={list(self.gains)}, kinds={self.kinds})"
