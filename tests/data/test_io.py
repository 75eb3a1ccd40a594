"""open_fields / write_fields: lazy opening, many files, zarr, atomic writes, clear errors."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from climgen.data.io import open_fields, select_variables, write_fields
from climgen.errors import ClimgenInputError

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")


@pytest.fixture
def two_var_ds(latlon_da) -> xr.Dataset:
    ds = latlon_da.to_dataset()
    ds["pr"] = (latlon_da - 280.0).assign_attrs(units="mm/day")
    ds.attrs = {"title": "tiny", "history": "made by the test"}
    return ds


def test_open_single_netcdf_is_lazy_and_selects(tmp_path, two_var_ds):
    path = tmp_path / "a.nc"
    two_var_ds.to_netcdf(path)
    ds = open_fields(path, "tas")
    assert list(ds.data_vars) == ["tas"]
    assert isinstance(ds["tas"].data, dsa.Array)
    xr.testing.assert_allclose(ds["tas"].load(), two_var_ds["tas"])
    assert ds["tas"].attrs["units"] == "K"


def test_open_glob_and_list_combine_by_time(tmp_path, two_var_ds):
    for k in range(3):
        two_var_ds.isel(time=slice(2 * k, 2 * k + 2)).to_netcdf(tmp_path / f"part{k}.nc")
    from_glob = open_fields(str(tmp_path / "part*.nc"))
    from_list = open_fields([tmp_path / "part2.nc", tmp_path / "part0.nc", tmp_path / "part1.nc"])
    for ds in (from_glob, from_list):
        xr.testing.assert_allclose(ds.load(), two_var_ds[["tas", "pr"]])


@pytest.mark.parametrize("how", ["suffix", "directory", "engine"])
def test_open_zarr(tmp_path, two_var_ds, how):
    name = "store.zarr" if how == "suffix" else "store"
    two_var_ds.to_zarr(tmp_path / name)
    ds = open_fields(tmp_path / name, ["pr"], engine="zarr" if how == "engine" else None)
    assert isinstance(ds["pr"].data, dsa.Array)
    xr.testing.assert_allclose(ds["pr"].load(), two_var_ds["pr"])


def test_missing_file_names_path(tmp_path):
    with pytest.raises(ClimgenInputError, match="not found.*nothere.nc"):
        open_fields(tmp_path / "nothere.nc")


def test_glob_without_match_names_pattern(tmp_path):
    with pytest.raises(ClimgenInputError, match=r"no files match.*tas_\*\.nc"):
        open_fields(str(tmp_path / "tas_*.nc"))


def test_empty_file_says_empty(tmp_path):
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(ClimgenInputError, match=r"empty\.nc.*empty \(0 bytes\)"):
        open_fields(tmp_path / "empty.nc")


def test_non_netcdf_file_named(tmp_path):
    (tmp_path / "notes.nc").write_text("just some text, not a dataset\n")
    with pytest.raises(ClimgenInputError, match=r"notes\.nc.*not a netCDF or zarr"):
        open_fields(tmp_path / "notes.nc")


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF3_64BIT"])
def test_truncated_netcdf_named(tmp_path, two_var_ds, fmt):
    full = tmp_path / "full.nc"
    two_var_ds.to_netcdf(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClimgenInputError, match=r"cut\.nc.*corrupt"):
        open_fields(cut)


def test_missing_variable_lists_available(tmp_path, two_var_ds):
    two_var_ds.to_netcdf(tmp_path / "a.nc")
    with pytest.raises(ClimgenInputError, match=r"\['psl'\] not found.*available: \['pr', 'tas'\]"):
        open_fields(tmp_path / "a.nc", ["tas", "psl"])
    with pytest.raises(ClimgenInputError, match="psl"):
        select_variables(two_var_ds, "psl")


def test_write_netcdf_round_trip_history_and_atomic(tmp_path, two_var_ds):
    path = write_fields(two_var_ds, tmp_path / "out.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]  # no temporary left
    back = open_fields(path).load()
    xr.testing.assert_allclose(back, two_var_ds)
    for v in two_var_ds.variables:
        assert back[v].attrs == two_var_ds[v].attrs
    lines = back.attrs["history"].splitlines()
    assert "written by climgen" in lines[0] and lines[1] == "made by the test"
    assert back.attrs["title"] == "tiny"
    assert two_var_ds.attrs["history"] == "made by the test"  # input untouched


def test_write_drops_stale_packing(tmp_path, two_var_ds):
    packed = tmp_path / "packed.nc"
    enc = {"dtype": "int16", "scale_factor": 0.01, "add_offset": 280.0, "_FillValue": -32768}
    two_var_ds[["tas"]].to_netcdf(packed, encoding={"tas": enc})
    ds = open_fields(packed)
    changed = ds * 1000.0  # far outside the int16 range of the source packing
    changed["tas"].encoding = ds["tas"].encoding
    back = open_fields(write_fields(changed, tmp_path / "unpacked.nc")).load()
    np.testing.assert_allclose(back["tas"].values, changed["tas"].values)


def test_write_zarr_round_trip(tmp_path, two_var_ds):
    path = write_fields(two_var_ds, tmp_path / "out.zarr")
    write_fields(two_var_ds, path)  # overwriting an existing store works
    back = open_fields(path).load()
    xr.testing.assert_allclose(back, two_var_ds)
    assert back.attrs["history"].splitlines()[-1] == "made by the test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_write_into_missing_folder(tmp_path, two_var_ds):
    with pytest.raises(ClimgenInputError, match="does not exist"):
        write_fields(two_var_ds, tmp_path / "no" / "out.nc")
