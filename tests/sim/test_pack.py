"""int16 CF packing: round trip within half a quantisation step, NaN kept, bad input named."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.sim.pack import (
    INT16_LEVELS,
    PACKING_NOTE,
    pack_int16,
    packing_of,
    quantise,
    write_packed,
)


def _dataset(rng) -> xr.Dataset:
    field = rng.normal(loc=280.0, scale=15.0, size=(6, 5, 8))
    field[0, 0, 0] = np.nan
    return xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), field, {"units": "K"}),
            "b": (("time", "lat", "lon"), rng.uniform(0, 1, size=(6, 5, 8)).astype(np.float32)),
            "count": (("time",), np.arange(6)),
        },
        coords={"time": np.arange(6.0), "lat": np.linspace(-60, 60, 5), "lon": np.arange(8.0)},
    )


def test_round_trip_within_half_a_quantisation_step(tmp_path, rng):
    ds = _dataset(rng)
    path = write_packed(ds, tmp_path / "packed.nc")
    with xr.open_dataset(path, engine="netcdf4") as back:
        for name in ("tas", "b"):
            values = ds[name].values.astype(np.float64)
            finite = values[np.isfinite(values)]
            step = (finite.max() - finite.min()) / INT16_LEVELS
            assert back[name].attrs["quantisation_step"] == pytest.approx(step)
            error = np.abs(back[name].values - values)
            assert np.nanmax(error) <= 0.5 * step * (1 + 1e-6)
            np.testing.assert_array_equal(np.isnan(back[name].values), np.isnan(values))
        np.testing.assert_array_equal(back["count"].values, ds["count"].values)
        assert back.attrs["packing"] == PACKING_NOTE
        np.testing.assert_array_equal(back["lat"].values, ds["lat"].values)
    with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as raw:
        assert raw["tas"].dtype == np.int16
        assert raw["count"].dtype != np.int16
        assert np.abs(raw["b"].values).max() <= INT16_LEVELS // 2
        assert "_FillValue" not in raw["lat"].attrs


def test_extremes_hit_the_ends_of_the_int16_range(tmp_path):
    values = np.linspace(-3.0, 5.0, 101)
    ds = xr.Dataset({"x": (("n",), values)})
    path = write_packed(ds, tmp_path / "ends.nc")
    with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as raw:
        q = raw["x"].values.astype(int)
    assert q.min() == -INT16_LEVELS // 2 and q.max() == INT16_LEVELS // 2


def test_constant_field_is_exact(tmp_path):
    ds = xr.Dataset({"c": (("n",), np.full(7, 0.123456789))})
    path = write_packed(ds, tmp_path / "const.nc")
    with xr.open_dataset(path, engine="netcdf4") as back:
        np.testing.assert_array_equal(back["c"].values, ds["c"].values)


def test_pack_leaves_data_in_memory_unchanged(rng):
    ds = _dataset(rng)
    packed = pack_int16(ds, variables=["b"])
    xr.testing.assert_identical(packed["b"].drop_attrs(), ds["b"].drop_attrs())
    assert packed["b"].encoding["dtype"] == "int16"
    assert "dtype" not in packed["tas"].encoding
    assert packed["b"].encoding["chunksizes"] == (1, 5, 8)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"variables": ["nope"]}, "nope"), ({"variables": ["count"]}, "count")],
)
def test_bad_variables_are_named(rng, kwargs, needle):
    with pytest.raises(ClimgenInputError, match=needle):
        pack_int16(_dataset(rng), **kwargs)


def test_all_nan_variable_is_refused():
    ds = xr.Dataset({"gap": (("n",), np.full(3, np.nan))})
    with pytest.raises(ClimgenInputError, match="gap"):
        pack_int16(ds)


def test_quantise_is_what_a_packed_round_trip_gives(tmp_path, rng):
    ds = _dataset(rng).drop_vars("count").fillna(280.0)
    with xr.open_dataset(write_packed(ds, tmp_path / "packed.nc"), engine="netcdf4") as back:
        scale, offset = packing_of(back["tas"])
    # other values (a model's output) written with the data's scale_factor/add_offset …
    other = ds["tas"] + rng.normal(scale=0.3, size=ds["tas"].shape)
    other = other.clip(float(ds["tas"].min()), float(ds["tas"].max()))
    enc = {"tas": {"dtype": "int16", "scale_factor": scale, "add_offset": offset}}
    other.to_dataset(name="tas").to_netcdf(tmp_path / "other.nc", encoding=enc)
    with xr.open_dataset(tmp_path / "other.nc", engine="netcdf4") as read:
        written = read["tas"].values
    # … and read back are what quantise gives, within the float round-off of the decoder
    q = quantise(other, scale, offset)
    assert isinstance(q, xr.DataArray) and q.dims == other.dims
    np.testing.assert_allclose(q.values, written, rtol=0, atol=1e-9 * abs(offset))
    assert np.abs(q.values - other.values).max() <= 0.5 * scale * (1 + 1e-9)
    assert packing_of(ds["tas"]) is None
    with pytest.raises(ClimgenInputError, match="scale"):
        quantise(np.zeros(3), 0.0)
