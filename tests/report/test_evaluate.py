"""evaluate(): verdicts against the noise floor, input checks, and the report's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.report.evaluate import EvaluationReport, evaluate

N, NY, NX = 16, 32, 48
DISTANCES = {
    "spectrum_lsd",
    "spectrum_log_ratio",
    "wasserstein1",
    "ks",
    "tail_error",
    "mean_difference",
    "std_log_ratio",
    "skewness_difference",
    "kurtosis_difference",
    "covariance_error",
    "structure_s2",
    "flatness_difference",
    "minkowski_area",
    "minkowski_length",
    "minkowski_euler",
    "gradient_pdf",
    "band_spectrum_lsd",
}


def _grf(seed, slope=-3.0, n=N, **kw):
    return grf_dataarray(n, NY, NX, slope=slope, seed=seed, name="v", units="K", **kw)


@pytest.fixture(scope="module")
def reference():
    return _grf(0)


@pytest.fixture(scope="module")
def same_report(reference):
    return evaluate(_grf(1), reference, progress=False)


@pytest.fixture(scope="module")
def wrong_report(reference):
    return evaluate(_grf(2, slope=-2.0), reference, progress=False)


def test_every_distance_has_floor_and_verdict(same_report):
    var = same_report.variables["v"]
    assert set(var.distances) == DISTANCES
    for d in var.distances.values():
        assert d.floor >= 0 and d.value >= 0
        assert d.status in ("matches", "close", "differs")
        assert d.status.split()[0] in d.verdict


@pytest.mark.parametrize("name", ["spectrum_lsd", "spectrum_log_ratio"])
def test_wrong_slope_differs_on_spectral_distances(wrong_report, name):
    d = wrong_report.variables["v"].distances[name]
    assert d.status == "differs" and "differs" in d.verdict
    assert d.value > 5 * d.floor
    assert not wrong_report.matches


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_same_distribution_matches_on_spectrum(reference, seed):
    report = evaluate(_grf(seed), reference, progress=False)
    for name in ("spectrum_lsd", "spectrum_log_ratio"):
        assert report.variables["v"].distances[name].status == "matches"


def test_reference_against_itself_is_at_distance_zero(reference):
    report = evaluate(reference, reference, progress=False)
    var = report.variables["v"]
    for d in var.distances.values():
        assert d.value == pytest.approx(0.0, abs=1e-9)
        assert d.status == "matches"
    assert report.matches


def test_variance_error_seen_by_distribution_distances():
    # A shallow spectrum: many modes share the variance, so its sampling noise is small.
    gen = _grf(1, slope=-1.0) * 2.0
    var = evaluate(gen, _grf(0, slope=-1.0), progress=False).variables["v"]
    assert var.distances["std_log_ratio"].value == pytest.approx(np.log(2.0), rel=0.2)
    for name in ("wasserstein1", "std_log_ratio", "tail_error"):
        assert var.distances[name].status == "differs"
    # Scaling leaves the shape of the spectrum and the flatness unchanged, not its level.
    assert var.distances["flatness_difference"].status != "differs"
    assert var.distances["spectrum_lsd"].value == pytest.approx(np.log10(4.0), rel=0.15)


def test_moments_of_gaussian_reference(same_report):
    m = same_report.variables["v"].moments["reference"]
    assert abs(m["skewness"]) < 0.3
    assert m["kurtosis"] == pytest.approx(3.0, abs=0.5)


def test_json_round_trip(tmp_path, wrong_report):
    path = wrong_report.to_json(tmp_path / "metrics.json")
    data = json.loads(path.read_text())
    assert data["matches"] is False
    assert data["factor"] == 2.0
    var = data["variables"]["v"]
    assert set(var["distances"]) == DISTANCES
    assert {"value", "floor", "ratio", "status", "verdict"} <= set(var["distances"]["ks"])
    assert var["units"] == "K" and var["shape"] == [NY, NX]
    assert len(var["spectrum"]["k"]) == len(var["spectrum"]["generated"])
    assert {"generated", "reference"} == set(var["moments"])
    assert data["provenance"]["variables"] == ["v"]


def test_to_html_writes_page_figures_and_json(tmp_path, wrong_report):
    index = wrong_report.to_html(tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    text = index.read_text()
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == [
        "v_band_spectra.png",
        "v_maps.png",
        "v_minkowski.png",
        "v_pdf.png",
        "v_spectrum.png",
        "v_structure.png",
    ]
    for name in pngs:
        assert f'src="{name}"' in text
    assert (tmp_path / "rep" / "metrics.json").exists()
    assert "differs" in text and "<script" not in text and "http" not in text


def test_summary_lists_every_distance(wrong_report):
    text = wrong_report.summary()
    for name in DISTANCES:
        assert name in text
    assert "overall: differs" in text


def test_dataset_paths_and_sample_dims(tmp_path, reference):
    gen = _grf(4).rename(time="sample").to_dataset()
    gen.to_netcdf(tmp_path / "gen.nc")
    reference.to_dataset().to_netcdf(tmp_path / "ref.nc")
    report = evaluate(tmp_path / "gen.nc", str(tmp_path / "ref.nc"), progress=False)
    assert isinstance(report, EvaluationReport)
    assert report.provenance["generated"] == str(tmp_path / "gen.nc")
    assert report.variables["v"].n_generated == N


def test_extra_dims_are_stacked_and_max_samples(reference):
    members = xr.concat([_grf(5, n=8), _grf(6, n=8)], dim="member")
    report = evaluate(members, reference, progress=False)
    assert report.variables["v"].n_generated == 16
    report = evaluate(members, reference, max_samples=6, progress=False)
    assert report.variables["v"].n_generated == 6
    assert report.variables["v"].n_reference == 6


def test_latlon_orientation_is_canonicalised():
    ref = _grf(0, kind="latlon")
    gen = _grf(1, kind="latlon")
    flipped = gen.isel(lat=slice(None, None, -1))
    a = evaluate(gen, ref, progress=False).variables["v"]
    b = evaluate(flipped, ref, progress=False).variables["v"]
    assert a.grid == "latlon"
    for name in DISTANCES:
        assert a.distances[name].value == pytest.approx(b.distances[name].value, rel=1e-6)


# -- units by meaning (UDUNITS-2) --------------------------------------------------------------


def _in_units(da, units, offset=0.0):
    out = da + offset
    out.attrs = {**da.attrs, "units": units}
    return out


@pytest.mark.parametrize("chunk_size", [None, 8])
def test_convertible_units_are_converted_with_a_note(reference, chunk_size):
    ref = _in_units(reference, "K", 280.0)
    gen_k = _in_units(_grf(1), "K", 280.0)
    gen_c = _in_units(gen_k, "degC", -273.15)  # the same temperatures in Celsius
    a = evaluate(gen_k, ref, progress=False, chunk_size=chunk_size)
    b = evaluate(gen_c, ref, progress=False, chunk_size=chunk_size)
    assert "units" not in a.provenance
    note = b.provenance["units"]["v"]
    assert "'degC'" in note and "'K'" in note and "273.15" in note
    assert "note: 'v'" in b.summary() and "degC" in json.dumps(b.to_dict())
    assert b.variables["v"].units == "K"
    for name, d in a.variables["v"].distances.items():
        assert b.variables["v"].distances[name].value == pytest.approx(d.value, rel=1e-6, abs=1e-9)
        assert b.variables["v"].distances[name].status == d.status


def test_same_unit_spelled_differently_passes_unchanged(reference):
    a = evaluate(_grf(1), reference, progress=False)
    b = evaluate(_in_units(_grf(1), "kelvin"), reference, progress=False)
    assert "units" not in b.provenance
    for name, d in a.variables["v"].distances.items():
        assert b.variables["v"].distances[name].value == d.value


def test_incompatible_or_unknown_units_are_refused(reference):
    with pytest.raises(ClimgenInputError, match=r"'v'.*'m s-1'.*'K'.*cannot be converted"):
        evaluate(_in_units(_grf(1), "m s-1"), reference, progress=False)
    with pytest.raises(ClimgenInputError, match=r"'v'.*'bananas'.*UDUNITS"):
        evaluate(_in_units(_grf(1), "bananas"), reference, progress=False)


# -- bad input ---------------------------------------------------------------------------------


def test_missing_variable_is_named(reference):
    gen = _grf(1).rename("w")
    with pytest.raises(ClimgenInputError, match="'w'.*missing from the reference"):
        evaluate(gen, reference, progress=False)
    with pytest.raises(ClimgenInputError, match="'nope'"):
        evaluate(_grf(1), reference, variables=["nope"], progress=False)


def test_grid_size_mismatch_names_dim(reference):
    gen = _grf(1).isel(x=slice(0, NX - 2))
    with pytest.raises(ClimgenInputError, match="dim 'x' has size 46"):
        evaluate(gen, reference, progress=False)


def test_grid_coordinate_mismatch_names_dim(reference):
    gen = _grf(1).assign_coords(y=reference.y.values * 2.0)
    with pytest.raises(ClimgenInputError, match="coordinate 'y' differs"):
        evaluate(gen, reference, progress=False)


def test_grid_dim_name_mismatch(reference):
    gen = _grf(1).rename(y="z")
    with pytest.raises(ClimgenInputError, match="'z'.*'y'"):
        evaluate(gen, reference, progress=False)


def test_nan_is_counted_and_named(reference):
    gen = _grf(1).copy()
    gen.values[0, :3, 0] = np.nan
    with pytest.raises(ClimgenInputError, match=r"'v' of the generated data .* 3 NaN"):
        evaluate(gen, reference, progress=False)


def test_too_few_reference_samples(reference):
    with pytest.raises(ClimgenInputError, match="3 sample"):
        evaluate(_grf(1), reference.isel(time=slice(0, 3)), progress=False)


def test_missing_sample_dim(reference):
    with pytest.raises(ClimgenInputError, match="no dim 'member'"):
        evaluate(_grf(1), reference, sample_dim="member", progress=False)


# -- real data ---------------------------------------------------------------------------------

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.slow
@pytest.mark.shared_data
def test_heldsuarez_halves_on_the_sphere():
    path = SHARED / "heldsuarez_train.nc"
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (optional, read-only real data)")
    ds = xr.open_dataset(path)[["tas"]].isel(time=slice(0, 32))
    report = evaluate(ds.isel(time=slice(0, 16)), ds.isel(time=slice(16, 32)), progress=False)
    var = report.variables["tas"]
    assert var.grid == "latlon" and var.spectrum["dim"] == "degree"
    assert var.units == str(ds["tas"].attrs.get("units", ""))
    # Two stretches of the same simulation: the spectrum is the same climate.
    assert var.distances["spectrum_lsd"].status in ("matches", "close")
