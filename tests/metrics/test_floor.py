"""Noise floors and verdicts in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.errors import ClimgenInputError
from climgen.metrics import Verdict, noise_floor, verdict, wasserstein1


def test_halves_split_along_the_sample_axis():
    ref = np.arange(10.0)[:, None] * np.ones((1, 3))
    seen = []

    def record(a, b):
        seen.append((a.copy(), b.copy()))
        return 1.5

    assert noise_floor(record, ref) == 1.5
    np.testing.assert_array_equal(seen[0][0][:, 0], np.arange(5))
    np.testing.assert_array_equal(seen[0][1][:, 0], np.arange(5, 10))
    noise_floor(record, ref.T, sample_axis=1)
    assert seen[1][0].shape == (3, 5)


def test_random_splits_are_disjoint_and_bootstrap_draws_from_reference():
    ref = np.arange(21.0)

    def disjoint(a, b):
        assert len(set(a) & set(b)) == 0 and len(a) == len(b) == 10
        return 0.0

    assert noise_floor(disjoint, ref, method="random", n_boot=5, rng=0) == 0.0
    draws = []
    noise_floor(lambda a, b: draws.append(a) or 0.0, ref, method="bootstrap", n_boot=3, rng=1)
    assert len(draws) == 3 and all(set(d) <= set(ref) for d in draws)


def test_floor_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    small = noise_floor(wasserstein1, rng.normal(size=1000), method="random", rng=1)
    large = noise_floor(wasserstein1, rng.normal(size=16_000), method="random", rng=1)
    assert large / small == pytest.approx(0.25, rel=0.4)


def test_dataarray_and_torch_references_keep_their_type():
    da = xr.DataArray(
        np.random.default_rng(2).normal(size=(8, 3, 4)),
        dims=("time", "lat", "lon"),
        coords={"lat": [-30.0, 0.0, 30.0], "lon": np.arange(4) * 90.0},
    )

    def check(a, b):
        assert isinstance(a, xr.DataArray) and a.sizes["time"] == 4
        return wasserstein1(a, b)

    assert noise_floor(check, da, sample_axis="time") > 0
    t = torch.randn(10, 4)
    assert noise_floor(lambda a, b: wasserstein1(a, b), t, method="random", rng=0) > 0


def test_verdict_words():
    assert verdict(1.0, 1.0) == "matches the reference (within 2× the noise floor)"
    assert verdict(2.0, 1.0).level == "matches"
    assert verdict(3.0, 1.0) == "close (within 5×)"
    v = verdict(7.3, 1.0)
    assert v == "differs (7.3× the noise floor)"
    assert isinstance(v, Verdict) and isinstance(v, str) and v.ratio == pytest.approx(7.3)
    assert verdict(250.0, 1.0) == "differs (250× the noise floor)"
    assert verdict(1.2, 1.0, factor=1.0).level == "close"


def test_verdict_with_zero_floor_and_bad_input():
    assert verdict(0.0, 0.0).level == "matches"
    zero = verdict(0.1, 0.0)
    assert zero.level == "differs" and math.isinf(zero.ratio) and "noise floor is 0" in zero
    with pytest.raises(ClimgenInputError, match="distance"):
        verdict(float("nan"), 1.0)
    with pytest.raises(ClimgenInputError, match="method"):
        noise_floor(wasserstein1, np.zeros(10), method="halfs")
    with pytest.raises(ClimgenInputError, match="at least 4"):
        noise_floor(wasserstein1, np.zeros(3))
