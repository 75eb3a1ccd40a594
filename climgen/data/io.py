"""Open and write gridded fields (netCDF or zarr) lazily, with errors that name the culprit.

:func:`open_fields` accepts one path, a glob pattern or a list of paths. netCDF files are
opened with :func:`xarray.open_dataset` (one file) or :func:`xarray.open_mfdataset` (many
files, combined by their coordinates); zarr stores with :func:`xarray.open_zarr`. Everything
stays lazy (dask-backed) so that a training run never loads the whole archive into memory.

Before handing a file to the netCDF library each path is checked: it must exist, be
non-empty and start with a netCDF signature (``CDF\\x01``/``CDF\\x02``/``CDF\\x05`` for the
classic formats, the HDF5 signature for netCDF-4). Classic files are additionally checked
for truncation, which the netCDF library itself does not detect (it reads zeros past the end).

:func:`write_fields` writes netCDF atomically (temporary file + :func:`os.replace`) or zarr,
prepends a line to the ``history`` attribute (CF convention: newest first) and drops on-disk
encodings (packing, chunk sizes, compressors) that no longer fit the data being written.
"""

from __future__ import annotations

import glob
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import xarray as xr

from climgen.errors import ClimgenInputError

__all__ = [
    "open_fields",
    "as_dataset",
    "write_fields",
    "select_variables",
    "climgen_version",
    "load_run_file",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CLASSIC_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_ZARR_MARKERS = (".zmetadata", "zarr.json", ".zgroup", ".zarray")
# Packing and storage-layout keys that describe the *source* file, not the data now held.
_STALE_ENCODING = (
    "dtype",
    "scale_factor",
    "add_offset",
    "chunksizes",
    "chunks",
    "preferred_chunks",
    "contiguous",
    "original_shape",
    "source",
    "compressor",
    "compressors",
    "filters",
    "serializer",
    "zlib",
    "complevel",
    "shuffle",
    "szip",
    "zstd",
    "bzip2",
    "blosc",
    "fletcher32",
    "shards",
)


def climgen_version() -> str:
    """The installed climgen version, or ``"unknown"`` when running from a bare checkout."""
    try:
        from importlib.metadata import version

        return version("climgen")
    except Exception:  # noqa: BLE001 - metadata missing in a bare checkout
        return "unknown"


def _is_zarr_path(path: Path) -> bool:
    if path.suffix == ".zarr":
        return True
    return path.is_dir() and any((path / marker).exists() for marker in _ZARR_MARKERS)


def _resolve_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        text = os.fspath(paths)
        if glob.has_magic(text):
            found = sorted(glob.glob(os.path.expanduser(text)))
            if not found:
                raise ClimgenInputError(f"no files match the pattern '{text}'")
            return [Path(p) for p in found]
        return [Path(os.path.expanduser(text))]
    resolved = [Path(os.path.expanduser(os.fspath(p))) for p in paths]
    if not resolved:
        raise ClimgenInputError("open_fields got an empty list of paths")
    return resolved


def _check_netcdf_file(path: Path) -> None:
    """Existence, emptiness, signature and (classic format) truncation of one netCDF file."""
    if not path.exists():
        raise ClimgenInputError(f"file not found: '{path}'")
    if path.is_dir():
        raise ClimgenInputError(
            f"'{path}' is a directory but not a zarr store (no .zmetadata, zarr.json, .zgroup)"
        )
    size = path.stat().st_size
    if size == 0:
        raise ClimgenInputError(f"file '{path}' is empty (0 bytes): was it written completely?")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:8] == _HDF5_SIGNATURE:
        return
    if head[:4] in _CLASSIC_SIGNATURES:
        if head[:4] != b"CDF\x05":
            _check_classic_complete(path)
        return
    raise ClimgenInputError(
        f"file '{path}' is not a netCDF or zarr file (it starts with {head[:8]!r}, expected "
        "the netCDF signature 'CDF' or the HDF5 signature of netCDF-4)"
    )


def _check_classic_complete(path: Path) -> None:
    # scipy memory-maps every variable at its header offset: a truncated file fails here,
    # while the netCDF C library silently returns zeros for the missing bytes.
    import scipy.io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nc = scipy.io.netcdf_file(path, mode="r", mmap=True)
            nc.close()
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise ClimgenInputError(
            f"netCDF file '{path}' is corrupt or truncated (its header promises more data "
            f"than the {path.stat().st_size} bytes on disk): {exc}"
        ) from exc


def _default_chunks(is_zarr: bool) -> dict | str:
    # zarr: the store's own chunks. netCDF: dask's ~128 MiB blocks.
    return {} if is_zarr else "auto"


def select_variables(
    ds: xr.Dataset | xr.DataArray, variables: str | Iterable[str] | None, *, source: str = ""
) -> xr.Dataset:
    """Return a Dataset holding only ``variables`` (all data variables when ``None``).

    Raises :class:`ClimgenInputError` naming each missing variable and listing those available,
    or a variable of two or more dims that holds text instead of numbers.
    """
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name or "field")
    where = f" in '{source}'" if source else ""
    if variables is not None:
        names = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            raise ClimgenInputError(
                f"variable(s) {missing} not found{where}; available: "
                f"{sorted(map(str, ds.data_vars))}"
            )
        ds = ds[names]
    for name, var in ds.data_vars.items():
        # Text where a field belongs (wrong dtype); 1-byte char arrays are netCDF strings.
        text = var.dtype.kind in "UO" or (var.dtype.kind == "S" and var.dtype.itemsize > 1)
        if text and var.ndim >= 2:
            raise ClimgenInputError(
                f"variable '{name}'{where} holds text (dtype {var.dtype}), not numbers; "
                "climgen reads numeric fields"
            )
    return ds


def _open_error(path: str, exc: Exception) -> ClimgenInputError:
    return ClimgenInputError(f"cannot read '{path}': the file is corrupt or unreadable ({exc})")


def load_run_file(path: str | os.PathLike) -> xr.Dataset:
    """Read a small netCDF file of a run directory (a template, statics, a climatology) into
    memory; a missing, empty, truncated or corrupt file is one error naming it."""
    path = Path(path)
    _check_netcdf_file(path)
    try:
        return xr.load_dataset(path, engine="netcdf4")
    except Exception as exc:  # netCDF4/HDF5 raise OSError, RuntimeError, ValueError, ...
        raise _open_error(str(path), exc) from None


def open_fields(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    variables: str | Iterable[str] | None = None,
    *,
    chunks: dict | str | int | None = None,
    engine: str | None = None,
) -> xr.Dataset:
    """Open netCDF file(s) or a zarr store lazily as one Dataset.

    Parameters
    ----------
    paths : one path, a glob pattern (``"data/tas_*.nc"``) or a list of paths. A path ending
        in ``.zarr``, or a directory holding ``.zmetadata``/``zarr.json``/``.zgroup``, is a
        zarr store; everything else is netCDF.
    variables : variable name(s) to keep (default: all).
    chunks : dask chunks; default ``None`` means the store's own chunks for zarr and
        ``"auto"`` (~128 MiB blocks) for netCDF. The result is always dask-backed.
    engine : force ``"zarr"``, ``"netcdf4"``, ``"h5netcdf"`` or ``"scipy"``.

    Raises
    ------
    ClimgenInputError
        for a missing file, an unmatched glob, an empty, non-netCDF or truncated file, or a
        missing variable (each message names the path or variable).
    """
    resolved = _resolve_paths(paths)
    is_zarr = engine == "zarr" or all(_is_zarr_path(p) for p in resolved)
    chunks = _default_chunks(is_zarr) if chunks is None else chunks
    if is_zarr:
        for p in resolved:
            if not p.exists():
                raise ClimgenInputError(f"zarr store not found: '{p}'")
        try:
            if len(resolved) == 1:
                ds = xr.open_zarr(resolved[0], chunks=chunks)
            else:
                ds = xr.open_mfdataset(resolved, engine="zarr", chunks=chunks, combine="by_coords")
        except Exception as exc:  # noqa: BLE001
            raise ClimgenInputError(f"cannot open zarr store(s) {resolved}: {exc}") from exc
        return select_variables(ds, variables, source=str(resolved[0]))
    for p in resolved:
        _check_netcdf_file(p)
    # Naming the engine skips xarray's guessing through every installed backend plugin
    # (some, like Dedalus', are slow to import and print warnings).
    engine = engine or "netcdf4"
    try:
        if len(resolved) == 1:
            ds = xr.open_dataset(resolved[0], chunks=chunks, engine=engine)
        else:
            ds = xr.open_mfdataset(resolved, chunks=chunks, engine=engine, combine="by_coords")
    except ClimgenInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - netCDF library errors are OSError/RuntimeError
        culprit = str(resolved[0]) if len(resolved) == 1 else f"{len(resolved)} files"
        raise _open_error(culprit, exc) from exc
    source = str(resolved[0]) if len(resolved) == 1 else f"{resolved[0]} (+{len(resolved) - 1})"
    return select_variables(ds, variables, source=source)


def as_dataset(data, variables=None) -> xr.Dataset:
    """A Dataset from a Dataset, a DataArray, or path(s)/glob of netCDF/zarr files.

    A DataArray becomes a one-variable Dataset (named ``field`` when it has no name); paths go
    through :func:`open_fields` with ``variables``.
    """
    if isinstance(data, xr.DataArray):
        return data.to_dataset(name=data.name or "field")
    if isinstance(data, xr.Dataset):
        return data
    if isinstance(data, (str, os.PathLike, list, tuple)):
        return open_fields(data, variables)
    raise ClimgenInputError(
        f"expected an xarray Dataset/DataArray or file path(s), got {type(data).__name__}"
    )


def _history_line(path: Path) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp}: written by climgen {climgen_version()} write_fields -> {path.name}"


def _clean_encoding(ds: xr.Dataset, *, netcdf: bool) -> xr.Dataset:
    ds = ds.copy()
    for name in ds.data_vars:
        enc = {k: v for k, v in ds[name].encoding.items() if k not in _STALE_ENCODING}
        if netcdf and ds[name].dtype.kind == "f":
            enc.update(zlib=True, complevel=4)
        ds[name].encoding = enc
    for name in ds.coords:
        enc = ds[name].encoding
        ds[name].encoding = {
            k: v for k, v in enc.items() if k not in _STALE_ENCODING or k == "dtype"
        }
    return ds


def write_fields(ds: xr.Dataset | xr.DataArray, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` (``.zarr`` → zarr store, anything else → netCDF-4).

    netCDF is written to a temporary file in the same directory and moved into place with
    :func:`os.replace`, so a crash never leaves a half-written file under ``path``. A zarr
    store is written to a temporary directory and renamed. A line
    ``"<UTC time>: written by climgen <version> ..."`` is prepended to ``history``; data
    variables lose their source packing/chunk encodings (floats are written as floats,
    zlib-compressed for netCDF), coordinates keep theirs (time units and calendars).
    Returns the path written.
    """
    path = Path(path)
    if isinstance(ds, xr.DataArray):
        ds = ds.to_dataset(name=ds.name or "field")
    is_zarr = path.suffix == ".zarr"
    out = _clean_encoding(ds, netcdf=not is_zarr)
    previous = str(ds.attrs.get("history", "")).strip()
    line = _history_line(path)
    out.attrs = {**ds.attrs, "history": f"{line}\n{previous}" if previous else line}
    if not path.parent.exists():
        raise ClimgenInputError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if is_zarr:
            out.to_zarr(tmp, mode="w")
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
        else:
            out.to_netcdf(tmp, engine="netcdf4")
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return path
