"""Structure inside the gaps (climgen.metrics.gaps): members vs mean estimates of a filler."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.metrics import GAP_STRUCTURE_NAMES, gap_structure, minkowski_functionals


def _case(seed, n=24, ny=36, nx=72):
    """A lat/lon GRF truth, an independent draw of the same statistics, and a gap: the
    western 40 longitudes and the 11 northernmost rows hidden."""
    truth = grf_dataarray(n, ny, nx, kind="latlon", slope=-2, seed=seed)
    draw = grf_dataarray(n, ny, nx, kind="latlon", slope=-2, seed=100 + seed).values
    hidden = np.zeros(truth.shape, bool)
    hidden[:, :, :40] = True
    hidden[:, 25:, :] = True
    return truth, draw, hidden


@pytest.mark.parametrize("seed", [0, 1])
def test_independent_draws_are_within_the_floor_and_a_smoothed_estimate_is_not(seed):
    truth, draw, hidden = _case(seed)
    member = np.where(hidden, draw, truth.values)  # a member: observed cells exact
    smooth = gaussian_filter(truth.values, (0, 2, 2), mode=("nearest", "nearest", "wrap"))
    out = gap_structure({"member": member, "mean": smooth}, truth, hidden)
    assert set(out["floor"]) == set(GAP_STRUCTURE_NAMES) and out["n_samples"] == 24
    assert all(out["floor"][k] > 0 for k in GAP_STRUCTURE_NAMES)
    assert max(out["ratios"]["member"].values()) <= 2.0, out["ratios"]["member"]
    r = out["ratios"]["mean"]  # too smooth: small scales, short boundaries, few blobs
    assert r["spectrum"] > 10 and r["boundary_length"] > 5 and r["euler_characteristic"] > 3, r


def test_the_truth_itself_is_at_distance_zero_and_observed_cells_do_not_count():
    truth, draw, hidden = _case(2, n=8)
    elsewhere = np.where(hidden, truth.values, draw)  # differs only on observed cells
    out = gap_structure({"truth": truth.values, "elsewhere": elsewhere}, truth, hidden)
    assert all(v == 0 for v in out["distances"]["truth"].values())
    assert out["distances"]["elsewhere"] == out["distances"]["truth"]


def test_arrays_given_with_a_north_to_south_truth_are_read_in_its_layout():
    truth, draw, hidden = _case(4, n=8)
    member = np.where(hidden, draw, truth.values)
    flipped = truth.isel(lat=slice(None, None, -1))  # a user's layout: north → south
    a = gap_structure(member, truth, hidden)
    b = gap_structure(member[:, ::-1], flipped, hidden[:, ::-1])
    assert a["distances"] == b["distances"] and a["floor"] == b["floor"]


def test_minkowski_region_equals_counting_the_cropped_field():
    f = np.random.default_rng(0).standard_normal((3, 20, 30))
    region = np.zeros((20, 30), bool)
    region[5:15, 4:16] = True
    nu = [-0.5, 0.0, 0.7]
    inside = minkowski_functionals(f, nu, periodic=(False, True), region=region)
    crop = minkowski_functionals(f[:, 5:15, 4:16], nu)
    for name in ("area_fraction", "boundary_length", "euler_characteristic"):
        np.testing.assert_allclose(getattr(inside, name), getattr(crop, name), atol=1e-12)
    everywhere = minkowski_functionals(f, nu, periodic=(False, True), region=np.ones((20, 30)))
    plain = minkowski_functionals(f, nu, periodic=(False, True))
    np.testing.assert_allclose(everywhere.euler_characteristic, plain.euler_characteristic)
    np.testing.assert_allclose(everywhere.boundary_length, plain.boundary_length)


def test_bad_input_gets_one_clear_error():
    truth, draw, hidden = _case(3, n=8)
    with pytest.raises(ClimgenInputError, match="at least 4 fields"):
        gap_structure(draw[:3], truth[:3], hidden[:3])
    with pytest.raises(ClimgenInputError, match="must match"):
        gap_structure(draw[:, :10], truth, hidden)
    small = np.zeros_like(hidden)
    small[:, 10, 10] = True
    with pytest.raises(ClimgenInputError, match="min_hidden"):
        gap_structure(draw, truth, small)
    with pytest.raises(ClimgenInputError, match="region holds no pixel"):
        minkowski_functionals(draw, [0.0], region=np.zeros(draw.shape[-2:], bool))
