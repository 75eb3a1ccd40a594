"""FieldDataset and to_xarray: canonical samples, exact round trips, errors, bounded memory."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.dataset import FieldDataset, to_xarray
from climgen.data.normalize import Normalizer
from climgen.errors import ClimgenInputError


@pytest.fixture
def flipped(latlon_da) -> xr.Dataset:
    """Latitude north→south, longitude in [-180, 180), float32 coords, two variables."""
    da = latlon_da.isel(lat=slice(None, None, -1))
    lon = (((da.lon.values + 180) % 360) - 180).astype(np.float32)
    da = da.assign_coords(lon=("lon", lon, da.lon.attrs)).sortby("lon")
    da = da.assign_coords(lat=da.lat.astype(np.float32))
    ds = da.to_dataset()
    ds["psl"] = (da * 100.0).assign_attrs(units="Pa")
    ds.attrs = {"title": "flipped"}
    return ds


def test_samples_are_canonical_float32(flipped):
    fd = FieldDataset(flipped, ["tas", "psl"])
    assert len(fd) == 5
    x = fd[3]
    assert x.shape == (2, 8, 16) and x.dtype == torch.float32
    canon = flipped.sortby("lat").assign_coords(lon=flipped.lon % 360).sortby("lon")
    np.testing.assert_allclose(x[0].numpy(), canon["tas"].isel(time=3).values, rtol=1e-6)
    np.testing.assert_allclose(x[1].numpy(), canon["psl"].isel(time=3).values, rtol=1e-6)
    assert fd.grid.periodic_x and not fd.grid.periodic_y


def test_round_trip_restores_lat_order_lon_convention_coords_attrs(flipped):
    fd = FieldDataset(flipped.astype(np.float32), ["tas", "psl"])
    batch = torch.stack([fd[i] for i in range(len(fd))])
    back = to_xarray(batch, flipped, variables=["tas", "psl"])
    expected = flipped.astype(np.float32)
    assert back.attrs.pop("climgen_version")
    xr.testing.assert_identical(back, expected)
    assert back.lat.dtype == np.float32 and back.lat.values[0] > back.lat.values[-1]
    assert back.lon.values.min() < 0
    # Single sample (C, H, W): spatial dims only, same coords and attrs.
    one = fd.to_xarray(fd[2], flipped)
    xr.testing.assert_identical(one["psl"], expected["psl"].isel(time=2, drop=True))


def test_round_trip_dataarray_shapes(latlon_da, planar_da):
    for da in (latlon_da.astype(np.float32), planar_da.astype(np.float32)):
        fd = FieldDataset(da)
        stacked = torch.stack([fd[i][0] for i in range(len(fd))])  # (N, H, W)
        xr.testing.assert_identical(
            to_xarray(stacked, da).drop_attrs(deep=False),
            da.drop_attrs(deep=False),
        )
        back = to_xarray(stacked, da)
        assert back.attrs["units" if "units" in da.attrs else "long_name"]
        assert "climgen_version" in back.attrs
        field = to_xarray(stacked[1], da, name="renamed")  # (H, W)
        assert field.name == "renamed" and field.dims == da.dims[1:]
        np.testing.assert_array_equal(field.values, da.isel(time=1).values)
    # A new sample count gets a plain index instead of like's time coordinate.
    more = to_xarray(torch.zeros(7, 8, 16), latlon_da)
    assert more.sizes["time"] == 7 and "time" not in more.coords


def test_to_xarray_shape_errors(latlon_da):
    with pytest.raises(ClimgenInputError, match="grid.*does not match.*'tas'"):
        to_xarray(torch.zeros(2, 4, 4), latlon_da)
    with pytest.raises(ClimgenInputError, match="3 channels but 2 variables"):
        to_xarray(torch.zeros(4, 3, 8, 16), latlon_da.to_dataset().assign(b=latlon_da))


def test_normalizer_applied_per_channel(flipped):
    norm = Normalizer.fit(flipped, ["tas", "psl"])
    fd = FieldDataset(flipped, ["tas", "psl"], normalizer=norm)
    z = torch.stack([fd[i] for i in range(len(fd))]).double()
    w = torch.cos(torch.deg2rad(torch.linspace(-78.75, 78.75, 8)))[:, None].double()
    mean = (z * w).sum((0, 2, 3)) / (w.sum() * 16 * 5)
    torch.testing.assert_close(mean, torch.zeros(2, dtype=torch.float64), atol=1e-5, rtol=0)
    raw = torch.as_tensor(FieldDataset(flipped, ["tas", "psl"])[0]).double()
    torch.testing.assert_close(norm.inverse_transform(z[0]), raw, rtol=1e-5, atol=1e-3)
    with pytest.raises(ClimgenInputError, match="no statistics.*'psl'"):
        FieldDataset(flipped, ["tas", "psl"], normalizer=Normalizer.fit(flipped, ["tas"]))


def test_nan_and_inf_named_by_variable_and_index(latlon_da):
    ds = latlon_da.to_dataset()
    ds["pr"] = latlon_da.copy()
    ds["pr"][3, 2, 5] = np.nan
    fd = FieldDataset(ds, ["tas", "pr"])
    fd[2]
    with pytest.raises(ClimgenInputError, match="'pr' at time index 3 has 1 NaN"):
        fd[3]
    ds["tas"][1, 0, 0] = np.inf
    with pytest.raises(ClimgenInputError, match="'tas' at time index 1 has 0 NaN and 1 inf"):
        FieldDataset(ds, ["tas", "pr"], return_mask=True)[1]


def test_return_mask_marks_nans_missing(latlon_da):
    da = latlon_da.where(latlon_da.lat > 0)
    x, mask = FieldDataset(da, return_mask=True)[0]
    expected = np.isfinite(da.isel(time=0).values)
    np.testing.assert_array_equal(mask[0].numpy(), expected.astype(np.float32))
    assert (x[mask == 0] == 0).all() and torch.isfinite(x).all()
    loader = torch.utils.data.DataLoader(FieldDataset(da, return_mask=True), batch_size=2)
    xb, mb = next(iter(loader))
    assert xb.shape == mb.shape == (2, 1, 8, 16)


def test_mismatched_grids_named(latlon_da):
    ds = latlon_da.to_dataset()
    ds["coarse"] = latlon_da.isel(lat=slice(0, 4), lon=slice(0, 8)).rename(lat="lat2", lon="lon2")
    with pytest.raises(ClimgenInputError, match=r"different grids: 'tas' .*'coarse'"):
        FieldDataset(ds, ["tas", "coarse"])


def test_unknown_dims_sample_dim_extra_dims_and_non_monotonic(latlon_da):
    odd = latlon_da.rename(lat="rows", lon="cols").drop_vars(["rows", "cols"])
    with pytest.raises(ClimgenInputError, match=r"'tas' with dims \('time', 'rows', 'cols'\)"):
        FieldDataset(odd)
    with pytest.raises(ClimgenInputError, match="sample dim 'member'.*'tas'"):
        FieldDataset(latlon_da, sample_dim="member")
    with pytest.raises(ClimgenInputError, match="'tas' has dims \\['level'\\]"):
        FieldDataset(latlon_da.expand_dims(level=2))
    shuffled = latlon_da.isel(lat=[0, 2, 1, 3, 4, 5, 6, 7])
    with pytest.raises(ClimgenInputError, match="'lat' of variable 'tas' is not monotonic"):
        FieldDataset(shuffled)
    with pytest.raises(ClimgenInputError, match="'grid'"):
        FieldDataset(latlon_da, patch_size=4, patching="grid")


def test_random_patches_wrap_only_periodic_axes(planar_da):
    fd = FieldDataset(planar_da, patch_size=(4, 10), seed=1)
    full = torch.as_tensor(FieldDataset(planar_da)[0])
    tiled = torch.cat([full, full], dim=-1)  # x periodic: a patch is a window of this
    for _ in range(20):
        p = fd[0]
        assert p.shape == (1, 4, 10)
        hits = [
            (i, j)
            for i in range(8 - 4 + 1)  # z is a wall axis: no wrap
            for j in range(12)
            if torch.equal(tiled[:, i : i + 4, j : j + 10], p)
        ]
        assert hits
    with pytest.raises(ClimgenInputError, match="height 9.*non-periodic height axis of size 8"):
        FieldDataset(planar_da, patch_size=9)


def test_tiles_cover_the_field(planar_da):
    fd = FieldDataset(planar_da, patch_size=4, patching="tiles")
    assert len(fd) == 4 * 2 * 3
    tiles = torch.stack([fd[k] for k in range(6)])  # the tiles of sample 0
    full = FieldDataset(planar_da)[0]
    rebuilt = tiles.reshape(2, 3, 1, 4, 4).permute(2, 0, 3, 1, 4).reshape(1, 8, 12)
    torch.testing.assert_close(rebuilt, full)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_half_gigabyte_store_streams_with_bounded_memory(tmp_path):
    """Normalizer.fit and a DataLoader over a 500 MB zarr store (1000 chunks of one field)
    grow the RSS by less than a quarter of the store.

    A first pass over a 48-field store of the same grid takes the one-off costs (imports,
    allocator arenas: ~100 MB alone) out of the measurement; then an honest pass grew by
    ~55 MB, and one that loads the store first by ~530 MB.
    """
    psutil = pytest.importorskip("psutil")
    dask_array = pytest.importorskip("dask.array")
    from climgen.data.io import open_fields

    n_time, ny, nx = 1000, 256, 512  # 1000 x 0.5 MiB float32 = 524 MB
    if shutil.disk_usage(tmp_path).free < 3 * n_time * ny * nx * 4:
        pytest.skip("needs ~1.5 GB free disk under tmp_path for the 500 MB store")

    def stream(n, name):
        data = dask_array.random.default_rng(n).standard_normal(
            (n, ny, nx), chunks=(1, ny, nx), dtype=np.float32
        )
        store = tmp_path / name
        xr.Dataset(
            {"f": (("time", "y", "x"), data)},
            coords={"time": np.arange(n), "y": np.arange(ny) * 1.0, "x": np.arange(nx) * 1.0},
        ).to_zarr(store, encoding={"f": {"compressors": None}})
        ds = open_fields(store)
        norm = Normalizer.fit(ds)
        loader = torch.utils.data.DataLoader(FieldDataset(ds, normalizer=norm), batch_size=16)
        peak, seen = 0, 0
        for batch in loader:
            seen += batch.shape[0]
            peak = max(peak, process.memory_info().rss)
        return norm, seen, peak

    process = psutil.Process()
    stream(48, "warm.zarr")
    rss0 = process.memory_info().rss
    norm, seen, peak = stream(n_time, "big.zarr")
    assert norm.center["f"] == pytest.approx(0.0, abs=1e-3)
    assert norm.scale["f"] == pytest.approx(1.0, abs=1e-3)
    assert seen == n_time
    growth_mb = (peak - rss0) / 2**20
    store_mb = n_time * ny * nx * 4 / 2**20
    assert growth_mb < store_mb / 4, f"RSS grew by {growth_mb:.0f} MB streaming {store_mb:.0f} MB"


def test_batched_read_equals_per_item_read(tmp_path):
    """DataLoader's batched fetch (__getitems__) returns exactly what per-item reads return."""
    from climgen.data.io import open_fields, write_fields
    from climgen.data.normalize import Normalizer
    from climgen.data.samples import grf_dataarray

    da = grf_dataarray(20, 8, 16, seed=0, name="psi")
    da[3, 2, 2] = np.nan
    write_fields(da.to_dataset(), tmp_path / "f.nc")
    ds = open_fields(tmp_path / "f.nc")
    for return_mask in (False, True):
        fd = FieldDataset(ds, ["psi"], normalizer=Normalizer.fit(ds), return_mask=return_mask)
        items = [5, 0, 19, 3, -1] if return_mask else [5, 0, 19, 7, -1]
        batched = fd.__getitems__(items)
        single = [fd[i] for i in items]
        for a, b in zip(batched, single):
            for x, y in zip(a if return_mask else [a], b if return_mask else [b]):
                assert torch.equal(x, y)
    fd = FieldDataset(ds, ["psi"])
    with pytest.raises(ClimgenInputError, match="index 3"):
        fd.__getitems__([1, 3])


@pytest.mark.slow  # starting the forkserver and its workers imports torch twice
@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_zarr_store_through_worker_processes_gives_the_direct_reads(tmp_path):
    """Two forkserver DataLoader workers (prefetching) over a dask-backed zarr store that the
    parent has already read (as Normalizer.fit does) deliver the batches in order."""
    from climgen.data.io import open_fields
    from climgen.data.samples import grf_dataarray

    grf_dataarray(48, 8, 16, seed=0, name="psi").to_dataset().to_zarr(
        tmp_path / "s.zarr", encoding={"psi": {"chunks": (4, 8, 16)}}
    )
    ds = open_fields(tmp_path / "s.zarr")
    fd = FieldDataset(ds, ["psi"], normalizer=Normalizer.fit(ds))
    direct = torch.stack([fd[i] for i in range(48)])  # the parent reads the store first
    order = torch.randperm(48, generator=torch.Generator().manual_seed(0)).tolist()
    sampler = [order[i : i + 8] for i in range(0, 48, 8)]
    loader = torch.utils.data.DataLoader(
        fd,
        batch_sampler=sampler,
        num_workers=2,
        prefetch_factor=2,
        multiprocessing_context="forkserver",
        timeout=60,
    )
    for batch, idx in zip(loader, sampler, strict=True):
        assert torch.equal(batch, direct[idx])


@pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")
def test_reads_bypass_the_dask_graph_and_equal_dask_reads(tmp_path):
    """Samples of a file opened with dask are read from the file's lazy array directly (a
    dask read culls the whole graph: O(number of chunks)); values equal dask's, including
    CF-decoded missing values, unsorted and repeated indices."""
    from climgen.data.io import open_fields, write_fields
    from climgen.data.samples import grf_dataarray

    da = grf_dataarray(40, 8, 16, seed=0, name="psi", units="K")
    da[7, 1, 1] = np.nan
    write_fields(da.to_dataset(), tmp_path / "f.nc")
    da.to_dataset().to_zarr(tmp_path / "f.zarr", encoding={"psi": {"chunks": (4, 8, 16)}})
    items = [9, 2, 31, 2, 0, 39]
    for path in (tmp_path / "f.nc", tmp_path / "f.zarr"):
        ds = open_fields(path, chunks={"time": 4})
        fd = FieldDataset(ds, ["psi"], return_mask=True)
        assert set(fd._direct) == {"psi"}, path
        expected = np.asarray(ds["psi"].values[items], dtype=np.float64)
        np.testing.assert_array_equal(fd._read("psi", items), expected)
        np.testing.assert_array_equal(fd.read(7)[0], ds["psi"].values[7])
        through_dask = FieldDataset(ds.chunk({"time": 8}), ["psi"], return_mask=True)
        assert through_dask._direct == {}  # rechunked: not the file's array any more
        for a, b in zip(fd.__getitems__(items), through_dask.__getitems__(items)):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # A transposed store is read through dask too, with the same canonical samples.
    t = open_fields(tmp_path / "f.zarr").transpose("time", "x", "y")
    fd_t = FieldDataset(t, ["psi"], return_mask=True)
    assert fd_t._direct == {}
    assert torch.equal(fd_t[3][0], FieldDataset(ds, ["psi"], return_mask=True)[3][0])
