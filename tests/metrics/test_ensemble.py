"""Fair CRPS, spread/skill and rank histograms on ensembles with known calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from climgen.errors import ClimgenInputError
from climgen.metrics import crps_fair, rank_histogram, rank_histogram_flatness, spread_skill_ratio


def crps_ensemble_bruteforce(ens, obs):
    """(1/M) Σ|x_i − y| − 1/(2M(M−1)) Σ_i Σ_j |x_i − x_j|, per point, by definition."""
    m = ens.shape[0]
    skill = np.abs(ens - obs).mean(axis=0)
    pair = np.abs(ens[:, None] - ens[None, :]).sum(axis=(0, 1))
    return skill - pair / (2 * m * (m - 1))


def _ensemble(rng, m=10, shape=(50, 20, 20), member_std=1.0, member_shift=0.0):
    obs = rng.normal(size=shape)
    ens = rng.normal(member_shift, member_std, size=(m, *shape))
    return ens, obs


@settings(max_examples=40, deadline=None)
@given(
    hs.integers(2, 7).flatmap(
        lambda m: hnp.arrays(np.float64, (m + 1, 3), elements=hs.floats(-100, 100))
    )
)
def test_fair_crps_equals_bruteforce(values):
    ens, obs = values[:-1], values[-1]
    np.testing.assert_allclose(
        crps_fair(ens, obs, reduce=False), crps_ensemble_bruteforce(ens, obs), atol=1e-9
    )


def test_fair_crps_of_perfect_ensemble_is_independent_of_members():
    # forecast N(0,1), obs N(0,1): E CRPS = E|X−Y| − E|X−X'|/2 = 1/√π for any M
    rng = np.random.default_rng(0)
    for m in (2, 20):
        ens, obs = _ensemble(rng, m=m, shape=(40_000,))
        assert crps_fair(ens, obs) == pytest.approx(1 / np.sqrt(np.pi), abs=0.015)


def test_perfect_ensemble_beats_biased_and_is_calibrated():
    rng = np.random.default_rng(1)
    ens, obs = _ensemble(rng)
    biased = ens + 0.8
    assert crps_fair(ens, obs) < crps_fair(biased, obs)
    assert spread_skill_ratio(ens, obs) == pytest.approx(1.0, abs=0.03)
    counts = rank_histogram(ens, obs, rng=0)
    assert counts.shape == (11,) and counts.sum() == obs.size
    assert rank_histogram_flatness(counts) < 1 + 4 * np.sqrt(2 / 10)


def test_under_dispersed_ensemble_gives_u_shape():
    rng = np.random.default_rng(2)
    ens, obs = _ensemble(rng, member_std=0.4)
    assert spread_skill_ratio(ens, obs) < 0.6
    counts = rank_histogram(ens, obs, rng=0)
    assert counts[0] > 2 * counts[1:-1].mean() and counts[-1] > 2 * counts[1:-1].mean()
    assert rank_histogram_flatness(counts) > 10
    over = _ensemble(rng, member_std=2.5)
    assert spread_skill_ratio(*over) > 1.5


def test_ties_are_broken_at_random():
    obs = np.zeros((5000,))
    ens = np.zeros((4, 5000))  # every member ties with obs
    counts = rank_histogram(ens, obs, rng=np.random.default_rng(3))
    assert rank_histogram_flatness(counts) < 3
    np.testing.assert_allclose(counts / 5000, 0.2, atol=0.03)


def test_member_axis_weights_and_dataarrays():
    rng = np.random.default_rng(4)
    ens, obs = _ensemble(rng, m=5, shape=(3, 6, 8))
    moved = np.moveaxis(ens, 0, 2)
    assert crps_fair(moved, obs, member_axis=2) == pytest.approx(crps_fair(ens, obs))
    lat = np.linspace(-75, 75, 6)
    coords = {"lat": lat, "lon": np.arange(8) * 45.0}
    da_obs = xr.DataArray(obs, dims=("time", "lat", "lon"), coords=coords)
    da_ens = xr.DataArray(moved, dims=("time", "lat", "member", "lon"), coords=coords)
    w = np.cos(np.deg2rad(lat))[:, None] * np.ones(8)
    expected = crps_fair(ens, obs, weights=w)
    assert crps_fair(da_ens, da_obs, member_axis="member") == pytest.approx(expected)
    assert crps_fair(da_ens, da_obs, member_axis=2) == pytest.approx(expected)
    assert spread_skill_ratio(da_ens, da_obs, member_axis="member") == pytest.approx(
        spread_skill_ratio(ens, obs, weights=w)
    )
    weighted = rank_histogram(ens, obs, rng=1, weights=w)
    assert weighted.sum() == pytest.approx(obs.size)


def test_torch_gradient_and_input_errors():
    ens = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    obs = torch.randn(10, dtype=torch.float64)
    score = crps_fair(ens, obs)
    score.backward()
    assert isinstance(score, torch.Tensor) and ens.grad.abs().sum() > 0
    with pytest.raises(ClimgenInputError, match=r"\(6, 10\).*\(11,\)"):
        crps_fair(ens.detach(), torch.zeros(11))
    with pytest.raises(ClimgenInputError, match="at least 2 members"):
        crps_fair(np.zeros((1, 3)), np.zeros(3))
    with pytest.raises(ClimgenInputError, match="obs contains"):
        spread_skill_ratio(np.zeros((3, 2)), np.array([0.0, np.inf]))
