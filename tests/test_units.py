"""Units by meaning in ``fill`` (issue 24 item 5, as ``evaluate`` does): observations in
convertible units are converted to the run's with a logged note; incompatible units are one
error naming the variable, both units and the file."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError


def _kelvin(n, seed):
    da = grf_dataarray(n, 6, 12, kind="latlon", seed=seed, name="tas", units="K") + 280.0
    da.attrs["units"] = "K"
    return da.assign_coords(time=pd.date_range("2000-01-01", periods=n, freq="D"))


@pytest.fixture(scope="module")
def oi_kelvin():
    from climgen.tasks.fill.infiller import Infiller

    return Infiller("optimal-interpolation", nugget=1e-2).fit(_kelvin(12, seed=1))


def _gappy(da):
    return da.where(np.random.default_rng(2).random(da.shape) > 0.3)


def test_fill_converts_convertible_units_with_a_logged_note(oi_kelvin, caplog):
    obs_k = _gappy(_kelvin(3, seed=3))
    expected = oi_kelvin.fill(obs_k, members=1)
    for units, x in (("degC", obs_k - 273.15), ("kelvin", obs_k), ("mK", obs_k * 1000.0)):
        obs = x.assign_attrs(units=units)
        with caplog.at_level(logging.INFO, logger="climgen.tasks.fill.infiller"):
            out = oi_kelvin.fill(obs, members=1)
        assert out["tas"].attrs["units"] in ("K", "kelvin")  # the run's unit
        np.testing.assert_allclose(out["tas"].values, expected["tas"].values, rtol=1e-9)
        assert np.isfinite(out["tas"]).all()
    notes = [r.getMessage() for r in caplog.records if "converted" in r.getMessage()]
    assert len(notes) == 2 and "'degC'" in notes[0] and "x + 273.15" in notes[0]
    assert "0.001 x" in notes[1]
    assert "'mK'" in out.attrs["climgen_fill_units"]  # the output records it too


@pytest.mark.parametrize("units", ["m s-1", "bananas"])
def test_fill_refuses_incompatible_units_naming_variable_units_and_file(oi_kelvin, tmp_path, units):
    path = write_fields(_gappy(_kelvin(3, seed=3)).assign_attrs(units=units), tmp_path / "o.nc")
    with pytest.raises(ClimgenInputError) as err:
        oi_kelvin.fill(str(path), members=1)
    msg = str(err.value)
    assert "'tas'" in msg and f"'{units}'" in msg and str(path) in msg
    if units == "m s-1":
        assert "'K'" in msg


def test_anomaly_run_reads_celsius_absolute_values_and_anomalies(caplog):
    """A run trained on anomalies in K (it has a climatology): absolute values in degC take
    the 273.15 offset, anomalies in degC (differences) do not; both fill as the K anomalies."""
    from climgen.tasks.fill.infiller import Infiller

    train = _kelvin(12, seed=1) - 280.0
    inf = Infiller("optimal-interpolation", nugget=1e-2).fit(train.assign_attrs(units="K"))
    clim = (train.isel(time=0, drop=True) * 0 + 285.0 + train.lat / 10).assign_attrs(units="K")
    inf.anomaly_climatology = clim.rename("tas")  # as Infiller.load of such a run sets it
    anom = _gappy(_kelvin(3, seed=3) - 280.0).assign_attrs(units="K")
    expected = inf.fill(anom, members=1)["tas"].values
    with caplog.at_level(logging.INFO, logger="climgen.tasks.fill.infiller"):
        celsius = (anom + clim - 273.15).rename("tas").assign_attrs(units="degC")
        absolute = inf.fill(celsius, members=1)
        anomalies = inf.fill(anom.assign_attrs(units="degC"), members=1)
    np.testing.assert_allclose(absolute["tas_anomaly"].values, expected, atol=1e-9)
    np.testing.assert_allclose(anomalies["tas"].values, expected, atol=1e-9)
    assert absolute.attrs["climgen_fill_values"].startswith("absolute")
    assert anomalies.attrs["climgen_fill_values"].startswith("anomalies")
    assert "without the offset 273.15" in caplog.records[-1].getMessage()
