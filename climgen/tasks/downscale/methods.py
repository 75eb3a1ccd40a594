"""Downscaling methods by name and kind, the files of a run directory, shared input checks.

Each name of :data:`DOWNSCALE_METHODS` has a :class:`MethodSpec`; its ``kind`` picks the
object that does the kind's work in the Downscaler: interpolation
(:class:`~climgen.tasks.downscale.interpolation_method.InterpolationMethod`), a network
(:class:`~climgen.tasks.downscale.network_method.NetworkMethod`) or CorrDiff diffusion
(:class:`~climgen.tasks.downscale.diffusion_method.DiffusionMethod`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "MethodSpec",
    "DOWNSCALE_METHODS",
    "available_downscale_methods",
    "check_finite",
]

# Files of a run directory.
FINE_TEMPLATE = "fine_template.nc"
COARSE_TEMPLATE = "coarse_template.nc"
STATIC = "static.nc"
NORMALIZER = "normalizer.json"
CALIBRATION = "spectral_calibration.json"
BASELINE = "baseline.json"


@dataclass(frozen=True)
class MethodSpec:
    """A downscaling method: ``kind`` "interpolation", "network" or "corrdiff" (family +
    default options)."""

    name: str
    kind: str
    description: str
    family: str | None = None
    defaults: dict = field(default_factory=dict)


DOWNSCALE_METHODS: dict[str, MethodSpec] = {
    "nearest": MethodSpec("nearest", "interpolation", "block copy of each coarse cell"),
    "bilinear": MethodSpec("bilinear", "interpolation", "separable linear interpolation"),
    "bicubic": MethodSpec("bicubic", "interpolation", "Keys (1981) cubic convolution, a=-0.5"),
    "lanczos": MethodSpec("lanczos", "interpolation", "Lanczos-3 windowed sinc"),
    "regression": MethodSpec(
        "regression",
        "network",
        "EDSR-style residual net with pixel shuffle, L1 loss",
        "superres",
        {"content_loss": "l1"},
    ),
    "srgan": MethodSpec(
        "srgan",
        "network",
        "SRGAN: the regression generator with noise inputs against a conditional critic",
        "superres",
        {"content_loss": "l1", "adversarial": "non-saturating", "noise_channels": 2},
    ),
    "diffusion": MethodSpec(
        "diffusion",
        "corrdiff",
        "CorrDiff: regression mean + EDM diffusion of the residual, conditioned on the mean",
        "diffusion",
    ),
}
CORRDIFF_OPTIONS = ("regression_options", "diffusion_options")


def available_downscale_methods() -> list[str]:
    """Names accepted as ``Downscaler(method=...)``: baselines first, then trained models."""
    return list(DOWNSCALE_METHODS)


def check_finite(da: xr.DataArray, where: str) -> None:
    bad = int((~np.isfinite(da.values)).sum())
    if bad:
        raise ClimgenInputError(
            f"variable '{da.name}' of {where} has {bad} NaN/inf value(s); downscaling needs "
            "complete fields (fill the gaps first, e.g. with climgen's gap filling)"
        )
