"""Synthetic fields: their one-point PDF and layout are what the docstrings promise."""

import numpy as np
import pytest
from scipy import stats

from climgen.data.grids import detect_grid
from climgen.data.samples import (
    gaussian_latitudes,
    grf_dataarray,
    make_grf,
    spherical_harmonic,
)
from climgen.errors import ClimgenInputError


def test_grf_is_gaussian_with_requested_std():
    field = make_grf(64, 64, 64, slope=-1.0, std=2.5, seed=0)
    assert field.std() == pytest.approx(2.5, rel=0.05)
    # Pointwise values across independent samples are N(0, σ²).
    values = field[:, 10, 20]
    assert stats.kstest(values / 2.5, "norm").pvalue > 0.01


def test_grf_is_periodic_and_reproducible():
    a = make_grf(2, 32, 48, seed=7)
    b = make_grf(2, 32, 48, seed=7)
    np.testing.assert_array_equal(a, b)
    # Periodic: the jump across the boundary is like any neighbour difference.
    wrap = np.abs(a[..., 0] - a[..., -1]).mean()
    inner = np.abs(np.diff(a, axis=-1)).mean()
    assert wrap < 3 * inner


def test_grf_rejects_bad_sizes():
    with pytest.raises(ClimgenInputError, match="ny"):
        make_grf(1, 1, 8)
    with pytest.raises(ClimgenInputError, match="dx"):
        make_grf(1, 8, 8, dx=-1.0)


@pytest.mark.parametrize("kind, expected", [("planar", "planar"), ("latlon", "latlon")])
def test_grf_dataarray_grid_is_detected(kind, expected):
    da = grf_dataarray(3, 16, 32, kind=kind, seed=0)
    grid = detect_grid(da)
    assert grid.kind == expected
    assert grid.periodic_x


def test_spherical_harmonics_are_orthonormal_under_gaussian_quadrature():
    lat = gaussian_latitudes(24)
    lon = np.arange(48) * 7.5
    w = np.polynomial.legendre.leggauss(24)[1][:, None] * (2 * np.pi / 48)
    y1 = spherical_harmonic(3, 2, lat, lon)
    y2 = spherical_harmonic(3, -2, lat, lon)
    assert (w * y1 * y1).sum() == pytest.approx(1.0, abs=1e-10)
    assert (w * y1 * y2).sum() == pytest.approx(0.0, abs=1e-10)
