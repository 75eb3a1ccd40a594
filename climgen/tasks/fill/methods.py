"""Fill methods by name: one registry in place of an if/elif chain over method names.

Like pysteps' ``get_method(name)``: :func:`get_method` returns the :class:`FillMethod`
registered under a name (an unknown name raises :class:`ClimgenInputError` listing the
known ones), :func:`register_fill_method` adds one. A method's ``fill`` gets the
:class:`~climgen.tasks.fill.infiller.Infiller` and a :class:`FillRequest` (the fields with
NaN at the missing cells, canonical orientation, float64) and returns
``(mean, spread, ensemble, info)``: the filled fields of the targets, their predictive
standard deviation (or None), the members (or None) and what the output's provenance records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from climgen.errors import ClimgenInputError
from climgen.tasks.fill.baselines import fill_kriging, fill_nearest, fill_zonal_mean
from climgen.tasks.fill.gaussian import fill_gaussian
from climgen.tasks.fill.names import OI, OI_OPTIONS
from climgen.tasks.fill.networks import fill_network

__all__ = [
    "FillMethod",
    "FillRequest",
    "register_fill_method",
    "get_method",
    "available_fill_methods",
    "fill_method_names",
]


@dataclass(frozen=True)
class FillRequest:
    """What a method fills: ``gappy`` (n, H, W) fields with NaN where missing, ``keep`` the
    observed cells, ``targets`` the indices to fill (neighbours are context), ``lat``/``lon``
    the canonical coordinates (None when the grid has none), and the call's options."""

    gappy: np.ndarray
    keep: np.ndarray
    targets: np.ndarray
    lat: np.ndarray | None
    lon: np.ndarray | None
    members: int | None
    seed: int
    batch_size: int
    progress: bool
    tile_size: int | None = None
    tile_halo: int | None = None


@dataclass(frozen=True)
class FillMethod:
    """A fill method: its ``kind`` ("network", "statistical" or "baseline"), whether it is
    ``trained`` (``fit`` before ``fill``), whether it ``needs_latlon`` coordinates, the
    ``options`` it accepts (None: a network's, checked by its family) and its ``fill``."""

    name: str
    kind: str
    fill: Callable[[Any, FillRequest], tuple]
    trained: bool = False
    needs_latlon: bool = False
    options: frozenset | None = frozenset()
    description: str = ""


_METHODS: dict[str, FillMethod] = {}


def register_fill_method(method: FillMethod) -> FillMethod:
    """Make ``method.name`` valid as ``Infiller(method=...)`` (a name registered again is
    replaced)."""
    if method.kind not in ("network", "statistical", "baseline"):
        raise ClimgenInputError(
            f"fill method kind must be 'network', 'statistical' or 'baseline', got {method.kind!r}"
        )
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> FillMethod:
    """The fill method registered as ``name``; unknown names raise, listing the known ones."""
    if name not in _METHODS:
        raise ClimgenInputError(
            f"unknown fill method {name!r}; choose one of {', '.join(_METHODS)}"
        )
    return _METHODS[name]


def available_fill_methods() -> list[str]:
    """Names accepted by ``Infiller(method=...)``: networks, statistical, then baselines."""
    return list(_METHODS)


def fill_method_names(*, kind: str | None = None, trained: bool | None = None) -> tuple[str, ...]:
    """Names of the registered methods (in :func:`available_fill_methods` order), only those of
    ``kind`` ("network", "statistical", "baseline") and/or ``trained`` (fit before fill)."""
    return tuple(
        m.name
        for m in _METHODS.values()
        if (kind is None or m.kind == kind) and (trained is None or m.trained == trained)
    )


def _network(infiller, r: FillRequest) -> tuple:
    mean, spread, ensemble = fill_network(
        infiller,
        r.gappy,
        r.keep,
        r.members,
        r.seed,
        r.batch_size,
        r.targets,
        r.progress,
        r.tile_size,
        r.tile_halo,
    )
    return mean, spread, ensemble, {}


def _optimal_interpolation(infiller, r: FillRequest) -> tuple:
    return fill_gaussian(infiller, r.gappy, r.keep, r.members, r.seed, r.targets, r.progress)


def _nearest(infiller, r: FillRequest) -> tuple:
    mean, _ = fill_nearest(r.gappy[r.targets], r.lat, r.lon)
    return mean, None, None, {}


def _zonal_mean(infiller, r: FillRequest) -> tuple:
    lat = r.lat if r.lat is not None else np.zeros(r.gappy.shape[-2])
    climatology = infiller._climatology_for(r.gappy)
    mean, _ = fill_zonal_mean(r.gappy[r.targets], lat, climatology=climatology)
    return mean, None, None, {}


def _kriging(infiller, r: FillRequest) -> tuple:
    options = {"progress": r.progress, **infiller.options}
    mean, spread, kernels = fill_kriging(r.gappy[r.targets], r.lat, r.lon, **options)
    return mean, spread, None, {"kernels": kernels}


for _method in (
    FillMethod(
        "partialconv",
        "network",
        _network,
        trained=True,
        options=None,
        description="partial-convolution network (Liu et al. 2018)",
    ),
    FillMethod(
        "cvae",
        "network",
        _network,
        trained=True,
        options=None,
        description="conditional VAE (an ensemble of fills)",
    ),
    FillMethod(
        OI,
        "statistical",
        _optimal_interpolation,
        trained=True,
        options=OI_OPTIONS,
        description="Gaussian conditioning on a fitted covariance (Gandin 1963)",
    ),
    FillMethod(
        "nearest",
        "baseline",
        _nearest,
        needs_latlon=True,
        description="nearest observed cell on the sphere",
    ),
    FillMethod(
        "zonal-mean",
        "baseline",
        _zonal_mean,
        description="mean of the observed cells of the latitude row",
    ),
    FillMethod(
        "kriging",
        "baseline",
        _kriging,
        needs_latlon=True,
        options=frozenset({"max_fit_points", "nu", "seed", "blas_threads"}),
        description="Gaussian-process regression on the sphere, per field",
    ),
):
    register_fill_method(_method)
