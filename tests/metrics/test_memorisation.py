"""Shift-aware memorisation check: exact against brute force, ≈ 1 for new fields, ≪ 1 for copies."""

from __future__ import annotations

import numpy as np
import pytest

from climgen.errors import ClimgenInputError
from climgen.metrics import memorisation_ratio, nearest_training_distance


def _fields(rng, n, ny=16, nx=32, length=1.5):
    white = rng.standard_normal((n, ny, nx))
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :]
    filt = np.exp(-((2 * np.pi * length) ** 2) * (kx**2 + ky**2) / 2)
    f = np.fft.ifft2(np.fft.fft2(white) * filt).real
    return f / f.std()


def _brute(g, train, shifts_y, shifts_x, w):
    return min(
        np.sqrt((w * (g - np.roll(t, (sy, sx), axis=(0, 1))) ** 2).sum() / w.sum())
        for t in train
        for sy in shifts_y
        for sx in shifts_x
    )


@pytest.mark.parametrize("periodic", [True, (False, True), (True, False), False])
def test_nearest_distance_equals_brute_force_over_shifts(periodic):
    rng = np.random.default_rng(0)
    train, gen = _fields(rng, 4, 8, 12), _fields(rng, 3, 8, 12)
    py, px = (periodic, periodic) if isinstance(periodic, bool) else periodic
    w = np.ones((8, 12))
    if not py:  # row weights (e.g. cos φ) are allowed where y does not shift
        w = np.cos(np.linspace(-1.2, 1.2, 8))[:, None] * w
    got = nearest_training_distance(gen, train, periodic=periodic, weights=w)
    want = [_brute(g, train, range(8) if py else [0], range(12) if px else [0], w) for g in gen]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_memorisation_ratio_is_one_for_fresh_fields_and_small_for_shifted_copies():
    rng = np.random.default_rng(1)
    train, reference, fresh = _fields(rng, 40), _fields(rng, 24), _fields(rng, 24)
    idx = rng.integers(0, 40, 24)
    copies = np.stack(
        [np.roll(train[i], (rng.integers(16), rng.integers(32)), axis=(0, 1)) for i in idx]
    )
    copies = copies + 0.1 * rng.standard_normal(copies.shape)
    assert memorisation_ratio(fresh, train, reference, periodic=True) == pytest.approx(1, abs=0.1)
    assert memorisation_ratio(copies, train, reference, periodic=True) < 0.2
    # without the shifts the copies look new: why the search over shifts matters
    assert memorisation_ratio(copies, train, reference, periodic=False) > 0.8


def test_memorisation_needs_held_out_reference():
    rng = np.random.default_rng(2)
    train = _fields(rng, 5)
    with pytest.raises(ClimgenInputError, match="held-out"):
        memorisation_ratio(train, train, train)
    with pytest.raises(ClimgenInputError, match="per field"):
        nearest_training_distance(train, train[:, :8])
