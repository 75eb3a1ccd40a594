"""Per-variable normalisation statistics, computed streaming with dask and saved with models.

A :class:`Normalizer` maps each variable ``v`` to ``(x_v - center_v) / scale_v``:

``"standard"``
    ``center`` = area-weighted mean, ``scale`` = area-weighted standard deviation over all
    samples and grid points,

    .. math:: \\mu = \\frac{\\sum w_i x_i}{\\sum w_i}, \\qquad
              \\sigma^2 = \\frac{\\sum w_i (x_i - \\mu)^2}{\\sum w_i},

    with :math:`w \\propto \\cos\\varphi` on lat/lon grids and uniform weights otherwise
    (:func:`climgen.data.grids.area_weights`). Computed in one pass of float64 weighted
    sums of ``x - s`` and ``(x - s)^2``, shifted by ``s`` = mean of the first sample to avoid
    cancellation.
``"robust"``
    ``center`` = area-weighted median, ``scale`` = IQR / 1.349 (equal to σ for a Gaussian).
    Quantiles are estimated from streamed weighted histograms: one pass finds the range,
    one pass histograms it into 4096 bins, one more pass re-histograms the bin holding each
    quantile into 4096 sub-bins, and the quantile is read off the cumulative weights by
    linear interpolation. The error is below ``range / 4096**2`` (dask's approximate
    ``percentile`` merges per-chunk percentiles, has no weights and no error bound).

NaNs are skipped (observational fields have gaps); statistics that are NaN/inf or a zero
scale are refused with the variable named. Reference for IQR/1.349: Huber & Ronchetti,
*Robust Statistics* (2009), §5.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr

from climgen.data.grids import area_weights, detect_grid
from climgen.errors import ClimgenInputError

__all__ = ["Normalizer"]

_METHODS = ("standard", "robust")
_IQR_TO_SIGMA = 1.349
_BINS = 4096
_FORMAT_VERSION = 1


def _as_dask(da: xr.DataArray) -> dsa.Array:
    """The data as a dask array; lazily opened (non-dask) variables are chunked, not loaded."""
    data = da.data if isinstance(da.data, dsa.Array) else da.chunk("auto").data
    return data.astype(np.float64)


def _weights(da: xr.DataArray) -> np.ndarray:
    """Area weights broadcastable against ``da`` (uniform for fields without a 2-D grid)."""
    if da.ndim < 2:
        return np.ones((1,) * da.ndim)
    grid = detect_grid(da)
    w = area_weights(da, grid)
    w = w.transpose(*[d for d in da.dims if d in w.dims]).values
    return w.reshape([da.sizes[d] if d in grid.spatial_dims else 1 for d in da.dims])


def _broadcast(da: xr.DataArray) -> tuple[dsa.Array, dsa.Array]:
    """Values (float64 dask) and weights broadcast to the same shape and chunks."""
    x = _as_dask(da)
    w_np = _weights(da)
    w_chunks = tuple(c if n > 1 else (1,) for c, n in zip(x.chunks, w_np.shape, strict=True))
    w = dsa.broadcast_to(dsa.from_array(w_np, chunks=w_chunks), x.shape, chunks=x.chunks)
    return x, w


def _first_sample(da: xr.DataArray) -> np.ndarray:
    head = da.isel({da.dims[0]: 0}) if da.ndim > 2 else da
    return np.asarray(head.values, dtype=np.float64)


def _finite_weights(x: dsa.Array, w: dsa.Array) -> tuple[dsa.Array, dsa.Array]:
    finite = dsa.isfinite(x)
    return dsa.where(finite, x, 0.0), dsa.where(finite, w, 0.0)


def _bin_of(cum: np.ndarray, target: float) -> int:
    """Index k of the bin with cum[k] <= target < cum[k + 1] (clipped to the bins)."""
    return int(np.clip(np.searchsorted(cum, target, side="right") - 1, 0, cum.size - 2))


def _interpolate(cum: np.ndarray, counts: np.ndarray, edges: np.ndarray, target: float) -> float:
    """Quantile value: linear interpolation of the cumulative weights inside the bin."""
    k = _bin_of(cum, target)
    frac = 0.0 if counts[k] == 0 else np.clip((target - cum[k]) / counts[k], 0.0, 1.0)
    return float(edges[k] + frac * (edges[k + 1] - edges[k]))


@dataclass
class Normalizer:
    """Invertible per-variable affine normalisation ``(x - center) / scale``.

    Parameters
    ----------
    variables : variable names, in channel order for tensors.
    center, scale : per-variable statistics (see module docstring).
    method : ``"standard"`` or ``"robust"``.

    Example
    -------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"t": (("time", "y", "x"), np.arange(24.0).reshape(2, 3, 4))})
    >>> norm = Normalizer.fit(ds)
    >>> norm.center["t"], round(norm.scale["t"] ** 2, 6)  # mean and variance of 0..23
    (11.5, 47.916667)
    >>> bool(abs(norm.inverse_transform(norm.transform(ds))["t"] - ds["t"]).max() < 1e-12)
    True
    """

    variables: list[str]
    center: dict[str, float]
    scale: dict[str, float]
    method: str = "standard"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variables = list(self.variables)
        for v in self.variables:
            for kind, stats in (("center", self.center), ("scale", self.scale)):
                if v not in stats:
                    raise ClimgenInputError(f"Normalizer: no {kind} given for variable '{v}'")
                value = float(stats[v])
                if not np.isfinite(value):
                    raise ClimgenInputError(
                        f"Normalizer: {kind} of variable '{v}' is {value}; the data hold "
                        "only NaN or inf values"
                    )
                stats[v] = value
            if self.scale[v] <= 0:
                raise ClimgenInputError(
                    f"Normalizer: variable '{v}' has scale {self.scale[v]} (constant field, "
                    "std = 0); it cannot be normalised: drop it or give a scale by hand"
                )

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        ds: xr.Dataset | xr.DataArray,
        variables: str | Iterable[str] | None = None,
        method: str = "standard",
    ) -> Normalizer:
        """Compute statistics streaming with dask (never loading the whole array).

        Raises :class:`ClimgenInputError` for an unknown method or variable, statistics that
        are NaN (all-missing data) or a zero standard deviation.
        """
        if method not in _METHODS:
            raise ClimgenInputError(f"unknown normalisation method '{method}'; use {_METHODS}")
        if isinstance(ds, xr.DataArray):
            ds = ds.to_dataset(name=ds.name or "field")
        names = (
            list(ds.data_vars)
            if variables is None
            else ([variables] if isinstance(variables, str) else list(variables))
        )
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            raise ClimgenInputError(
                f"Normalizer.fit: variable(s) {missing} not found; "
                f"available: {sorted(map(str, ds.data_vars))}"
            )
        fit_one = cls._fit_standard if method == "standard" else cls._fit_robust
        stats = {v: fit_one(ds[v]) for v in names}
        for v, (c, s) in stats.items():
            if not (np.isfinite(c) and np.isfinite(s)):
                raise ClimgenInputError(
                    f"Normalizer.fit: statistics of variable '{v}' are not finite "
                    f"(center {c}, scale {s}): the data are all NaN or contain inf"
                )
            if s == 0:
                raise ClimgenInputError(
                    f"Normalizer.fit: variable '{v}' is constant (std = 0); it cannot be "
                    "normalised: drop it from the variables"
                )
        return cls(
            names,
            {v: c for v, (c, _) in stats.items()},
            {v: s for v, (_, s) in stats.items()},
            method,
        )

    @staticmethod
    def _fit_standard(da: xr.DataArray) -> tuple[float, float]:
        x, w = _broadcast(da)
        first = _first_sample(da)
        finite_first = first[np.isfinite(first)]
        shift = float(finite_first.mean()) if finite_first.size else 0.0
        has_inf = dsa.isinf(x).any()
        xs, wf = _finite_weights(x - shift, w)
        sw, s1, s2, inf = dask.compute(wf.sum(), (wf * xs).sum(), (wf * xs * xs).sum(), has_inf)
        if inf or sw == 0:
            return float("nan"), float("nan")
        m1 = s1 / sw
        var = max(s2 / sw - m1 * m1, 0.0)
        return float(shift + m1), float(np.sqrt(var))

    @staticmethod
    def _fit_robust(da: xr.DataArray) -> tuple[float, float]:
        x, w = _broadcast(da)
        has_inf = dsa.isinf(x).any()
        finite = dsa.isfinite(x)
        lo, hi, inf = dask.compute(
            dsa.where(finite, x, np.inf).min(), dsa.where(finite, x, -np.inf).max(), has_inf
        )
        if inf or not (np.isfinite(lo) and np.isfinite(hi)):
            return float("nan"), float("nan")
        if lo == hi:
            return float(lo), 0.0
        xf, wf = _finite_weights(x, w)
        xf = dsa.where(finite, x, lo)
        counts, edges = dsa.histogram(xf, bins=_BINS, range=(lo, hi), weights=wf)
        counts = np.asarray(counts.compute())
        qs = (0.25, 0.5, 0.75)
        cum = np.concatenate([[0.0], np.cumsum(counts)])
        bins = [_bin_of(cum, q * cum[-1]) for q in qs]
        sub_hists = dask.compute(
            *[
                dsa.histogram(xf, bins=_BINS, range=(edges[k], edges[k + 1]), weights=wf)[0]
                for k in bins
            ]
        )
        values = []
        for q, k, sub in zip(qs, bins, sub_hists, strict=True):
            sub = np.asarray(sub, dtype=np.float64)
            # The sub-histogram's closed upper edge may catch values of bin k + 1: rescale.
            if sub.sum() > 0:
                sub = sub * (counts[k] / sub.sum())
            sub_cum = cum[k] + np.concatenate([[0.0], np.cumsum(sub)])
            sub_edges = np.linspace(edges[k], edges[k + 1], _BINS + 1)
            values.append(_interpolate(sub_cum, sub, sub_edges, q * cum[-1]))
        q25, q50, q75 = values
        return float(q50), float((q75 - q25) / _IQR_TO_SIGMA)

    # ---------------------------------------------------------------- applying
    def _check_variables(self, names: Iterable[str]) -> None:
        unknown = [v for v in names if v not in self.center]
        if unknown:
            raise ClimgenInputError(
                f"Normalizer has no statistics for variable(s) {unknown}; "
                f"it was fitted on {self.variables}"
            )

    def _affine(self, data, inverse: bool, channel_dim: int):
        if isinstance(data, xr.Dataset):
            present = [v for v in self.variables if v in data.data_vars]
            out = data.copy()
            with xr.set_options(keep_attrs=True):
                for v in present:
                    c, s = self.center[v], self.scale[v]
                    out[v] = data[v] * s + c if inverse else (data[v] - c) / s
            return out
        if isinstance(data, xr.DataArray):
            name = data.name
            if name not in self.center:
                raise ClimgenInputError(
                    f"Normalizer: DataArray is named '{name}', which has no statistics; "
                    f"fitted variables are {self.variables} (set da.name)"
                )
            c, s = self.center[name], self.scale[name]
            with xr.set_options(keep_attrs=True):
                return data * s + c if inverse else (data - c) / s
        is_torch = isinstance(data, torch.Tensor)
        arr = data if is_torch else np.asarray(data)
        if arr.ndim < 1 or arr.shape[channel_dim] != len(self.variables):
            raise ClimgenInputError(
                f"Normalizer: array of shape {tuple(arr.shape)} has "
                f"{arr.shape[channel_dim] if arr.ndim else 0} channels along dim "
                f"{channel_dim}, expected {len(self.variables)} ({self.variables})"
            )
        shape = [1] * arr.ndim
        shape[channel_dim] = len(self.variables)
        center = np.array([self.center[v] for v in self.variables]).reshape(shape)
        scale = np.array([self.scale[v] for v in self.variables]).reshape(shape)
        if is_torch:
            dtype = arr.dtype if arr.is_floating_point() else torch.float32
            center = torch.as_tensor(center, dtype=dtype, device=arr.device)
            scale = torch.as_tensor(scale, dtype=dtype, device=arr.device)
        else:
            center, scale = (
                center.astype(np.result_type(arr, np.float32)),
                scale.astype(np.result_type(arr, np.float32)),
            )
        return arr * scale + center if inverse else (arr - center) / scale

    def transform(self, data, *, channel_dim: int = -3):
        """Normalise a Dataset/DataArray (coords and attrs kept) or an array/tensor whose
        ``channel_dim`` (default -3: ``(C, H, W)`` or ``(N, C, H, W)``) follows
        :attr:`variables`. Tensors keep dtype, device and autograd graph."""
        return self._affine(data, inverse=False, channel_dim=channel_dim)

    def inverse_transform(self, data, *, channel_dim: int = -3):
        """Undo :meth:`transform`: ``x * scale + center``."""
        return self._affine(data, inverse=True, channel_dim=channel_dim)

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Plain-Python statistics (JSON-serialisable)."""
        return {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "variables": list(self.variables),
            "center": dict(self.center),
            "scale": dict(self.scale),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping) -> Normalizer:
        """Rebuild from :meth:`state_dict` output (validates the statistics)."""
        try:
            return cls(
                variables=list(state["variables"]),
                center=dict(state["center"]),
                scale=dict(state["scale"]),
                method=str(state.get("method", "standard")),
                extra=dict(state.get("extra", {})),
            )
        except KeyError as exc:
            raise ClimgenInputError(
                f"Normalizer state is missing the key {exc}; expected variables, center, scale"
            ) from exc

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` as JSON (floats written with full precision)."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.state_dict(), fh, indent=2)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Normalizer:
        """Read statistics written by :meth:`to_json`."""
        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except FileNotFoundError as exc:
            raise ClimgenInputError(f"normaliser file not found: '{path}'") from exc
        except json.JSONDecodeError as exc:
            raise ClimgenInputError(f"normaliser file '{path}' is not valid JSON: {exc}") from exc
        return cls.from_state_dict(state)
