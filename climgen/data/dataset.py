"""xarray → torch: a map-style Dataset of ``(C, H, W)`` samples, and tensors back to xarray.

:class:`FieldDataset` reads one sample (or one DataLoader batch) at a time from a lazy,
usually dask-backed Dataset, so memory stays at a few samples however large the store. A
dask array that xarray built straight from a file is read through the file's lazily indexed
array rather than through dask, whose every read culls the whole task graph (O(number of
chunks); see :func:`_direct_source`). Samples are
in climgen's canonical orientation (:func:`climgen.data.grids.to_canonical`: spatial dims
last, latitude south → north, longitude in [0, 360)); :func:`to_xarray` puts the user's
coordinates, latitude order, longitude convention and attributes back.

Channels follow ``variables``. Masks use 1 = observed, 0 = missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dask.array as dsa
import numpy as np
import torch
import xarray as xr

from climgen.data.grids import GridInfo, detect_grid, restore, to_canonical
from climgen.data.io import climgen_version, select_variables
from climgen.data.normalize import Normalizer
from climgen.data.patches import patch_offsets, patch_size_pair, random_patch
from climgen.errors import ClimgenInputError

__all__ = ["FieldDataset", "to_xarray", "check_same_grid"]

_PATCHING = ("random", "tiles")


def check_same_grid(ds: xr.Dataset, variables: Sequence[str]) -> GridInfo:
    """Grid of the first variable, after checking all share its spatial dims, sizes and coords.

    Raises :class:`ClimgenInputError` naming the variables and their spatial shapes.
    """
    grids = {v: detect_grid(ds[v]) for v in variables}
    first = variables[0]
    ref = grids[first]

    def describe(v: str) -> str:
        g = grids[v]
        return f"'{v}' {dict((d, ds[v].sizes[d]) for d in g.spatial_dims)}"

    for v in variables[1:]:
        g = grids[v]
        same_dims = g.spatial_dims == ref.spatial_dims
        same_sizes = same_dims and all(ds[v].sizes[d] == ds[first].sizes[d] for d in g.spatial_dims)
        if not same_sizes:
            raise ClimgenInputError(
                f"variables are on different grids: {describe(first)} vs {describe(v)}; "
                "regrid them to one grid first"
            )
    return ref


def _direct_source(da: xr.DataArray):
    """The file-backed lazy array behind a dask array that xarray built straight from a file.

    ``open_dataset``/``open_zarr`` with dask chunks wrap xarray's lazily indexed backend
    array in a dask graph of two layers: the array itself (``original-…``) and one getter
    per chunk. Any dask computation on it — even one sample — culls that graph, which costs
    O(number of chunks): 70–150 ms per read on a 20 GB store in 76 000 chunks. Indexing the
    backend array directly reads only the chunks that hold the samples (the same decoded
    values, through the same code path as dask's getter). Returns None when the dask array
    is anything else (rechunked, transposed, computed on, or not from a file): those are read
    through dask.
    """
    if da.chunks is None:  # not dask (``da.data`` would load a lazily indexed array)
        return None
    data = da.data
    if not isinstance(data, dsa.Array):
        return None
    layers = data.dask.layers
    if len(layers) != 2 or data.name not in layers:
        return None
    (source_name,) = [n for n in layers if n != data.name]
    source = layers[source_name]
    if not source_name.startswith("original-") or len(source) != 1:
        return None
    array = next(iter(source.values()))
    if type(array).__module__ != "xarray.core.indexing":
        return None
    if tuple(array.shape) != tuple(data.shape) or np.dtype(array.dtype) != data.dtype:
        return None
    return array


def _names(variables: str | Iterable[str] | None, ds: xr.Dataset) -> list[str]:
    if variables is None:
        return [str(v) for v in ds.data_vars]
    return [variables] if isinstance(variables, str) else list(variables)


class FieldDataset(torch.utils.data.Dataset):
    """Map-style torch Dataset of gridded samples ``(C, H, W)`` (float32).

    Parameters
    ----------
    ds : Dataset (or DataArray), lazily opened; never loaded whole.
    variables : variables to stack as channels, in order (default: all data variables).
    sample_dim : the dim indexed by the dataset (default ``"time"``).
    normalizer : optional :class:`~climgen.data.normalize.Normalizer` applied per sample.
    patch_size : optional ``h`` or ``(h, w)``; samples become patches.
    patching : ``"random"`` (one patch at a random offset per access; periodic axes wrap) or
        ``"tiles"`` (every tile of :func:`~climgen.data.patches.patch_offsets`; the dataset
        length becomes ``n_samples * n_tiles``).
    return_mask : return ``(x, mask)`` with mask 1 = observed, 0 = missing (NaN); NaNs in
        ``x`` are set to 0. Without it a NaN raises :class:`ClimgenInputError`.
    seed : seed of the random patch offsets (each DataLoader worker draws its own stream).
    periodic_x : override the detected periodicity of the x axis.

    Raises
    ------
    ClimgenInputError
        unknown variable or sample dim, variables on different grids, extra dims, an unknown
        patching mode, or (when reading) NaN/inf in a sample, naming variable and index.
    """

    def __init__(
        self,
        ds: xr.Dataset | xr.DataArray,
        variables: str | Iterable[str] | None = None,
        *,
        sample_dim: str = "time",
        normalizer: Normalizer | None = None,
        patch_size: int | tuple[int, int] | None = None,
        patching: str = "random",
        return_mask: bool = False,
        seed: int | None = None,
        periodic_x: bool | None = None,
    ) -> None:
        if isinstance(ds, xr.DataArray):
            ds = ds.to_dataset(name=ds.name or "field")
        self.variables = _names(variables, ds)
        ds = select_variables(ds, self.variables)
        for v in self.variables:
            if sample_dim not in ds[v].dims:
                raise ClimgenInputError(
                    f"sample dim '{sample_dim}' is not a dim of variable '{v}' "
                    f"(dims {tuple(ds[v].dims)}); pass sample_dim=<one of them>"
                )
        grid = check_same_grid(ds, self.variables)
        if periodic_x is not None:
            grid = detect_grid(ds[self.variables[0]], periodic_x=periodic_x)
        for v in self.variables:
            extra = [d for d in ds[v].dims if d not in (sample_dim, *grid.spatial_dims)]
            if extra:
                raise ClimgenInputError(
                    f"variable '{v}' has dims {extra} besides '{sample_dim}' and the spatial "
                    f"dims {grid.spatial_dims}; select one level (ds.isel({extra[0]}=0)) "
                    "or stack them into the sample dim"
                )
        if patching not in _PATCHING:
            raise ClimgenInputError(f"unknown patching '{patching}'; use one of {_PATCHING}")
        if normalizer is not None:
            normalizer._check_variables(self.variables)
        self.grid = grid
        self.sample_dim = sample_dim
        self.normalizer = normalizer
        self.return_mask = return_mask
        self.patching = patching
        self.seed = seed
        self._canonical = {}
        self._direct = {}
        for v in self.variables:
            canon, self.state = to_canonical(ds[v], grid)
            self._canonical[v] = canon
            source = _direct_source(canon)
            if source is not None:
                self._direct[v] = (source, canon.dims.index(sample_dim))
        self.n_samples = ds.sizes[sample_dim]
        self.shape = tuple(self._canonical[self.variables[0]].shape[-2:])
        self.patch_size = None if patch_size is None else patch_size_pair(patch_size)
        self._tiles: list[tuple[int, int]] = [(0, 0)]
        if self.patch_size is not None:
            rows, cols = patch_offsets(
                self.shape, self.patch_size, None, grid.periodic_x, grid.periodic_y
            )
            if patching == "tiles":
                self._tiles = [(i, j) for i in rows for j in cols]
        self._rng_owner: tuple | None = None
        self._rng: np.random.Generator | None = None
        if normalizer is not None:
            self._center = np.array([normalizer.center[v] for v in self.variables])[:, None, None]
            self._scale = np.array([normalizer.scale[v] for v in self.variables])[:, None, None]

    def __len__(self) -> int:
        per_sample = len(self._tiles) if self.patching == "tiles" and self.patch_size else 1
        return self.n_samples * per_sample

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        owner = (info.id, info.seed) if info is not None else (None, None)
        if self._rng is None or self._rng_owner != owner:
            if info is None:
                seq = [] if self.seed is None else [self.seed]
            else:
                seq = [info.seed % 2**63] if self.seed is None else [self.seed, info.id]
            self._rng = np.random.default_rng(seq or None)
            self._rng_owner = owner
        return self._rng

    def read(self, index: int) -> np.ndarray:
        """Sample ``index`` as float64 numpy ``(C, H, W)`` in canonical orientation, raw."""
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"sample {index} out of range for {self.n_samples} samples")
        index = index % self.n_samples
        return np.stack([self._read(v, [index])[0] for v in self.variables])

    def _read(self, v: str, index: list[int]) -> np.ndarray:
        """Samples ``index`` of variable ``v`` as float64 (n, H, W)."""
        direct = getattr(self, "_direct", {}).get(v)
        if direct is None:
            values = self._canonical[v].isel({self.sample_dim: index}).values
            return np.asarray(values, dtype=np.float64)
        source, axis = direct
        unique, inverse = np.unique(np.asarray(index, dtype=np.int64), return_inverse=True)
        key = [slice(None)] * len(source.shape)
        key[axis] = unique
        values = np.asarray(source[tuple(key)], dtype=np.float64)
        return np.moveaxis(values, axis, 0)[inverse.reshape(-1)]

    def _check(self, x: np.ndarray, index: int) -> np.ndarray:
        bad_inf = np.isinf(x)
        bad_nan = np.isnan(x)
        for c, v in enumerate(self.variables):
            n_inf, n_nan = int(bad_inf[c].sum()), int(bad_nan[c].sum())
            if n_inf or (n_nan and not self.return_mask):
                raise ClimgenInputError(
                    f"variable '{v}' at {self.sample_dim} index {index} has {n_nan} NaN and "
                    f"{n_inf} inf value(s); fill or mask them (FieldDataset(..., "
                    "return_mask=True) treats NaN as missing)"
                )
        return ~bad_nan

    def __getitem__(self, item: int):
        tiled = self.patching == "tiles" and self.patch_size is not None
        index, tile = divmod(item, len(self._tiles)) if tiled else (item, 0)
        x = self.read(index)
        observed = self._check(x, index)
        if self.normalizer is not None:
            x = (x - self._center) / self._scale
        x = np.where(observed, x, 0.0)
        out = torch.from_numpy(x.astype(np.float32))
        if self.return_mask:
            out = torch.cat([out, torch.from_numpy(observed.astype(np.float32))])
        if self.patch_size is not None:
            out = self._patch(out, tile)
        if self.return_mask:
            n = len(self.variables)
            return out[:n], out[n:]
        return out

    def __getitems__(self, items: list[int]) -> list:
        """Batched read used by ``DataLoader``: one indexed read per variable, not per sample.

        On lazily opened (dask/netCDF/zarr) data each read has a fixed cost of ~1 ms; reading
        a batch at once amortises it. Same values as ``[self[i] for i in items]``.
        """
        if self.patch_size is not None or len(items) < 2:
            return [self[i] for i in items]
        for i in items:
            if not -self.n_samples <= i < self.n_samples:
                raise IndexError(f"sample {i} out of range for {self.n_samples} samples")
        index = [i % self.n_samples for i in items]
        x = np.stack([self._read(v, index) for v in self.variables], axis=1)
        out = []
        for b, i in enumerate(index):
            xb = x[b]
            observed = self._check(xb, i)
            if self.normalizer is not None:
                xb = (xb - self._center) / self._scale
            t = torch.from_numpy(np.where(observed, xb, 0.0).astype(np.float32))
            out.append(
                (t, torch.from_numpy(observed.astype(np.float32))) if self.return_mask else t
            )
        return out

    def _patch(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        g = self.grid
        if self.patching == "random":
            return random_patch(x, self.patch_size, self._generator(), g.periodic_x, g.periodic_y)
        i, j = self._tiles[tile]
        h, w = self.patch_size
        rows = (torch.arange(h) + i) % self.shape[0]
        cols = (torch.arange(w) + j) % self.shape[1]
        return x.index_select(-2, rows).index_select(-1, cols)

    def template(self) -> xr.DataArray:
        """The first variable in the layout of the yielded fields (canonical orientation: y
        ascending, sample dim first), lazily, with its coordinates: the fields' grid."""
        return self._canonical[self.variables[0]]

    def to_xarray(self, tensor, like: xr.Dataset | xr.DataArray, **kwargs):
        """:func:`to_xarray` with this dataset's variables and sample dim."""
        kwargs.setdefault("variables", self.variables)
        kwargs.setdefault("sample_dim", self.sample_dim)
        return to_xarray(tensor, like, **kwargs)


def _as_numpy(tensor) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def to_xarray(
    tensor,
    like: xr.Dataset | xr.DataArray,
    *,
    variables: Sequence[str] | None = None,
    sample_dim: str = "time",
    name: str | None = None,
):
    """Turn canonical-orientation tensors back into xarray on ``like``'s grid.

    Shapes: ``(C, H, W)``, ``(N, C, H, W)``, ``(H, W)`` or ``(N, H, W)``. With one variable a
    3-D tensor is read as ``(N, H, W)``; with several as ``(C, H, W)``. The sample dim gets
    ``like``'s coordinate when the lengths agree, else a plain index. Latitude order, the
    longitude convention, dim order, coordinates and attributes of ``like`` are restored
    (:func:`climgen.data.grids.restore`), and ``climgen_version`` is added to the attrs.

    Returns a Dataset when ``like`` is a Dataset, else a DataArray (named ``name`` or like's
    name).
    """
    arr = _as_numpy(tensor)
    if isinstance(like, xr.DataArray):
        names = list(variables) if variables is not None else [like.name or name or "field"]
        if len(names) != 1:
            raise ClimgenInputError(
                f"to_xarray: like is a single DataArray but {len(names)} variables were given"
            )
        templates = {names[0]: like}
    else:
        names = list(variables) if variables is not None else [str(v) for v in like.data_vars]
        missing = [v for v in names if v not in like.data_vars]
        if missing:
            raise ClimgenInputError(
                f"to_xarray: variable(s) {missing} not in like; available {list(like.data_vars)}"
            )
        templates = {v: like[v] for v in names}
    n_var = len(names)
    if arr.ndim == 2:
        arr = arr[None, None]
        has_sample = False
    elif arr.ndim == 3:
        has_sample = n_var == 1
        arr = arr[:, None] if has_sample else arr[None]
    elif arr.ndim == 4:
        has_sample = True
    else:
        raise ClimgenInputError(
            f"to_xarray: tensor of shape {arr.shape} is not (H, W), (N, H, W), (C, H, W) "
            "or (N, C, H, W)"
        )
    if arr.shape[1] != n_var:
        raise ClimgenInputError(
            f"to_xarray: tensor of shape {tuple(_as_numpy(tensor).shape)} has {arr.shape[1]} "
            f"channels but {n_var} variables {names}"
        )
    out = {}
    for c, v in enumerate(names):
        out[v] = _one_variable(arr[:, c] if has_sample else arr[0, c], templates[v], sample_dim)
    version = {"climgen_version": climgen_version()}
    if isinstance(like, xr.DataArray):
        da = out[names[0]]
        da.attrs.update(version)
        return da.rename(name) if name is not None else da
    ds = xr.Dataset(out, attrs={**like.attrs, **version})
    return ds


def _one_variable(values: np.ndarray, template: xr.DataArray, sample_dim: str) -> xr.DataArray:
    grid = detect_grid(template)
    canon, state = to_canonical(template, grid)
    y, x = grid.spatial_dims
    if values.shape[-2:] != (canon.sizes[y], canon.sizes[x]):
        raise ClimgenInputError(
            f"to_xarray: tensor grid {values.shape[-2:]} does not match variable "
            f"'{template.name}' grid {(canon.sizes[y], canon.sizes[x])} ({y}, {x})"
        )
    coords = {d: canon[d] for d in (y, x) if d in canon.coords}
    dims: tuple[str, ...] = (y, x)
    if values.ndim == 3:
        dims = (sample_dim, y, x)
        if sample_dim in template.coords and template.sizes.get(sample_dim) == values.shape[0]:
            coords[sample_dim] = canon[sample_dim]
    da = xr.DataArray(
        values, dims=dims, coords=coords, name=template.name, attrs=dict(template.attrs)
    )
    da = restore(da, state)
    # Auxiliary coords over the grid (and over the sample dim when it matches) come along.
    for cname, coord in template.coords.items():
        if cname in da.coords or not set(coord.dims) <= set(da.dims):
            continue
        if all(da.sizes[d] == template.sizes[d] for d in coord.dims):
            da = da.assign_coords({cname: coord})
    da.encoding = {}
    return da
