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

An optional first stage, ``per_row=True``, fits a gain per row *and* x-wavenumber,
g(y, m) = sqrt(P_data(y, m) / P_model(y, m)): on a lat/lon grid the zonal spectrum of every
latitude, on a wall-bounded flow the x-spectrum at every height. It carries the statistics
that are stationary along x only — the variance profile across latitudes/heights and the
structure functions along x — which an isotropic gain cannot. The isotropic gain is then
fitted on its output, so the diagnostics' spectrum is matched last (the stages do not commute;
in the other order the per-latitude filter leaks power to high ℓ).

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
from climgen.metrics.spectral_filter import (
    apply_spectral_gain,
    row_spectrum,
    spectral_gain,
    spectrum_kind_of,
)

__all__ = ["SpectralCalibration"]

_VERSION = 2


def _mean_spectrum(da: xr.DataArray, kind: str) -> np.ndarray:
    if kind == "rows":
        return row_spectrum(da)
    spec = field_spectrum(da)
    lead = list(spec.dims[:-1])
    return np.asarray(spec.mean(lead).values if lead else spec.values, dtype=float)


class SpectralCalibration:
    """Per-variable chains of spectral gains g = sqrt(P_data / P_model), applied to samples.

    ``stages[v]`` is a list of ``(kind, gain)`` applied in order (kinds of
    :func:`climgen.metrics.spectral_filter.apply_spectral_gain`). Build with :meth:`fit`;
    apply with :meth:`apply`; store as JSON with :meth:`save` / :meth:`load` (plain numbers,
    no code).
    """

    def __init__(self, stages: dict[str, list[tuple[str, np.ndarray]]], n_fit: int = 0):
        self.stages = {
            v: [(str(k), np.asarray(g, dtype=float)) for k, g in chain]
            for v, chain in stages.items()
        }
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
        per_row: bool = False,
    ) -> SpectralCalibration:
        """Gains carrying the mean spectrum of ``generated`` onto that of ``data``.

        ``per_row``: first a stage g(y, m) per row and x-wavenumber (grids periodic in x),
        then the isotropic gain fitted on its output.
        """
        stages = {}
        for v in variables:
            for name, ds in (("generated", generated), ("data", data)):
                if v not in ds:
                    raise ClimgenInputError(
                        f"spectral calibration: variable '{v}' is not in the {name} fields "
                        f"(variables: {list(ds.data_vars)})"
                    )
            # The per-row stage goes first: the isotropic gain fitted last keeps the
            # diagnostics' spectrum exact, while a per-row gain fitted last leaks power to
            # high degrees ℓ (each latitude filtered on its own), which a band-limited T42
            # field shows at once.
            kinds = (["rows"] if per_row else []) + [spectrum_kind_of(data[v])]
            current, chain = generated[v], []
            for i, kind in enumerate(kinds):
                gain = spectral_gain(
                    _mean_spectrum(current, kind), _mean_spectrum(data[v], kind), max_gain=max_gain
                )
                chain.append((kind, gain))
                if i < len(kinds) - 1:
                    current = apply_spectral_gain(current, gain, kind)
            stages[v] = chain
        return cls(stages, n_fit=int(generated.sizes.get(sample_dim, 0)))

    def apply(self, ds: xr.Dataset) -> xr.Dataset:
        """Filter every calibrated variable of ``ds`` (coords and attrs kept)."""
        out = ds.copy()
        for v, chain in self.stages.items():
            if v not in ds:
                raise ClimgenInputError(
                    f"spectral calibration was fitted for '{v}', which is not in the fields "
                    f"(variables: {list(ds.data_vars)})"
                )
            da = ds[v]
            for kind, gain in chain:
                da = apply_spectral_gain(da, gain, kind)
            out[v] = da
        bases = " then ".join(dict.fromkeys(k for c in self.stages.values() for k, _ in c))
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
                v: {"stages": [{"kind": k, "gain": g.tolist()} for k, g in chain]}
                for v, chain in self.stages.items()
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
        """Read a calibration saved by :meth:`save` (version 1 files: a single stage)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            stages = {}
            for v, e in d["variables"].items():
                chain = e["stages"] if "stages" in e else [e]
                stages[v] = [(str(s["kind"]), np.asarray(s["gain"], dtype=float)) for s in chain]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClimgenInputError(f"{path}: not a climgen spectral calibration ({exc})") from exc
        return cls(stages, n_fit=d.get("n_fit", 0))

    def __repr__(self) -> str:
        kinds = {v: [k for k, _ in c] for v, c in self.stages.items()}
        return f"SpectralCalibration(stages={kinds})"
