"""Minkowski functionals and gradient statistics on shapes and fields with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erfc

from climgen.errors import ClimgenInputError
from climgen.metrics import (
    euler_characteristic,
    gradient_magnitude,
    gradient_pdf_distance,
    minkowski_curve_distance,
    minkowski_distances,
    minkowski_functionals,
)

Y, X = np.mgrid[0:64, 0:64]


def _disk(cy, cx, r):
    return np.hypot(Y - cy, X - cx) < r


def _smooth_grf(rng, n, ny, nx, length):
    """Unit-variance periodic GRF with a Gaussian spectrum; λ = <(∂x f)²>/σ² from its spectrum."""
    white = rng.standard_normal((n, ny, nx))
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    filt = np.exp(-((2 * np.pi * length) ** 2) * (kx**2 + ky**2) / 2)
    f = np.fft.ifft2(np.fft.fft2(white) * filt).real
    f /= f.std()
    power = np.abs(np.fft.fft2(f)) ** 2
    lam = float(((2 * np.pi * kx) ** 2 * power).sum() / power.sum())
    return f, lam


def test_euler_characteristic_of_disk_annulus_and_two_disks():
    assert euler_characteristic(_disk(32, 32, 10)) == 1
    assert euler_characteristic(_disk(32, 32, 15) & ~_disk(32, 32, 6)) == 0
    assert euler_characteristic(_disk(20, 20, 6) | _disk(45, 45, 8)) == 2
    # a batch gives one integer per image
    batch = np.stack([_disk(32, 32, 10), _disk(20, 20, 6) | _disk(45, 45, 8)])
    assert euler_characteristic(batch).tolist() == [1, 2]


def test_euler_characteristic_on_periodic_axes():
    full = np.ones((8, 8), bool)
    band = np.zeros((8, 8), bool)
    band[3:5] = True
    assert euler_characteristic(full) == 1
    assert euler_characteristic(full, periodic=True) == 0  # torus
    assert euler_characteristic(band, periodic=(False, True)) == 0  # ring around a cylinder
    assert euler_characteristic(band) == 1
    # a disk cut by the periodic seam is still one disk
    seam = np.roll(_disk(32, 32, 10), 32, axis=1)
    assert euler_characteristic(seam, periodic=True) == 1
    assert euler_characteristic(seam) == 2


def test_area_fraction_is_the_fraction_of_pixels_above_threshold():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((3, 20, 30))
    nu = np.array([0.7, -1.0, 0.0, 1.5])  # any order
    curves = minkowski_functionals(f, nu)
    np.testing.assert_allclose(curves.thresholds, nu)
    np.testing.assert_allclose(curves.area_fraction, [(f > v).mean() for v in nu], rtol=0, atol=0)
    # with (un-normalised) weights, the weighted fraction
    w = rng.uniform(0.5, 2.0, (20, 30))
    curves = minkowski_functionals(f, nu, weights=w)
    want = [(w * (f > v)).sum() / (w.sum() * 3) for v in nu]
    np.testing.assert_allclose(curves.area_fraction, want, rtol=1e-12)


def test_curves_match_the_pixel_count_of_each_threshold():
    """Curves over thresholds equal the per-threshold counts on the binary images."""
    rng = np.random.default_rng(2)
    f, _ = _smooth_grf(rng, 2, 32, 48, 2.0)
    nu = np.linspace(-1.5, 1.5, 7)
    curves = minkowski_functionals(f, nu, periodic=(False, True), dy=2.0, dx=0.5)
    area = 32 * 48 * 2.0 * 0.5
    chi = [euler_characteristic(f > v, periodic=(False, True)).sum() / (2 * area) for v in nu]
    np.testing.assert_allclose(curves.euler_characteristic, chi, rtol=1e-12)
    assert curves.area == area


def test_boundary_length_of_a_disk_is_its_circumference():
    r = 20.0
    yy, xx = np.mgrid[0:128, 0:128]
    disk = np.hypot(yy - 64.3, xx - 63.8) < r
    curves = minkowski_functionals(disk.astype(float), [0.5])
    assert curves.boundary_length[0] * 128 * 128 == pytest.approx(2 * np.pi * r, rel=0.03)


def test_gaussian_field_minkowski_curves_are_analytic():
    """Adler (1981): V2 = λ (2π)^-3/2 ν e^{-ν²/2}, V1 = √λ/2 e^{-ν²/2}, V0 = erfc(ν/√2)/2."""
    rng = np.random.default_rng(0)
    f, lam = _smooth_grf(rng, 24, 96, 96, 3.0)
    nu = np.array([-2.5, -2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 2.5])
    c = minkowski_functionals(f, nu, periodic=True)
    v2 = lam / (2 * np.pi) ** 1.5 * nu * np.exp(-(nu**2) / 2)
    v1 = np.sqrt(lam) / 2 * np.exp(-(nu**2) / 2)
    # shape: the curve is proportional to ν e^{-ν²/2}, with the analytic amplitude
    assert np.corrcoef(c.euler_characteristic, v2)[0, 1] > 0.99
    amplitude = np.dot(c.euler_characteristic, v2) / np.dot(v2, v2)
    assert amplitude == pytest.approx(1.0, abs=0.1)
    np.testing.assert_allclose(c.euler_characteristic, v2, atol=0.15 * np.abs(v2).max())
    np.testing.assert_allclose(c.boundary_length, v1, rtol=0.12)
    np.testing.assert_allclose(c.area_fraction, 0.5 * erfc(nu / np.sqrt(2)), atol=0.02)


def test_minkowski_distances_zero_for_same_set_and_thresholds_from_reference():
    rng = np.random.default_rng(3)
    f, _ = _smooth_grf(rng, 8, 32, 32, 2.0)
    d = minkowski_distances(f, f, periodic=True)
    assert d == {"area_fraction": 0.0, "boundary_length": 0.0, "euler_characteristic": 0.0}
    blobs = (f > 0.8).astype(float) + 0.01 * rng.standard_normal(f.shape)
    d = minkowski_distances(blobs, f, periodic=True)
    assert min(d.values()) > 0.05
    # torch in, torch out
    curves = minkowski_functionals(torch.from_numpy(f), [0.0], periodic=True)
    assert isinstance(curves.euler_characteristic, torch.Tensor)


def test_minkowski_curve_distance_formula_and_a_zero_reference_curve():
    ref, gen = np.array([0.0, 2.0, -4.0, 2.0]), np.array([1.0, 2.0, -2.0, 2.0])
    assert minkowski_curve_distance(gen, ref) == pytest.approx((1 + 2) / 4 / 4)
    # Euler characteristic 0 at every threshold (bands around a cylinder): no scale, so
    # identical curves are 0 apart and any other curve infinitely far (not a silent 0).
    zero = np.zeros(4)
    assert minkowski_curve_distance(zero, zero) == 0.0
    assert minkowski_curve_distance(gen, zero) == math.inf
    bands = np.broadcast_to(
        np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))[:, None], (16, 16)
    )
    blobs = np.random.default_rng(0).standard_normal((16, 16))
    d = minkowski_distances(blobs[None], np.array(bands)[None], [0.5], periodic=(True, True))
    assert d["euler_characteristic"] == math.inf


def test_minkowski_bad_thresholds_are_one_clear_error():
    with pytest.raises(ClimgenInputError, match="thresholds"):
        minkowski_functionals(np.zeros((4, 4)), [])
    with pytest.raises(ClimgenInputError, match="periodic"):
        euler_characteristic(np.zeros((4, 4)), periodic="yes")


def test_gradient_of_a_plane_is_exact_and_pdf_distance_of_a_doubled_field_is_one():
    yy, xx = np.mgrid[0:10, 0:12].astype(float)
    plane = 3.0 * xx * 0.5 - 4.0 * yy * 2.0  # d/dx = 3 per unit with dx = .5 → slope 3
    g = gradient_magnitude(plane[None], dy=2.0, dx=0.5)
    assert g.shape == (1, 8, 10)
    np.testing.assert_allclose(g, 5.0, rtol=1e-12)
    rng = np.random.default_rng(4)
    f, _ = _smooth_grf(rng, 4, 24, 24, 2.0)
    assert gradient_pdf_distance(f, f, periodic=True) == 0.0
    # |∇(2f)| = 2|∇f|: W1 of X and 2X is E[X] for X ≥ 0, i.e. 1 in units of the mean
    assert gradient_pdf_distance(2 * f, f, periodic=True) == pytest.approx(1.0, rel=1e-9)
