"""The generative infiller on top of optimal interpolation: ``Infiller("partialconv",
prior="optimal-interpolation", residual=True, reconstruction="crps")``, members
``E_OI[x | obs] + r_i`` (:mod:`climgen.tasks.fill.networks`)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.fill.infiller import Infiller
from climgen.tasks.fill.masks import blob_masks

NY, NX = 12, 24


def _fields(n, seed):
    """Zonally and meridionally homogeneous Gaussian fields (a periodic GRF laid on a lat/lon
    grid): their covariance, learned from every longitude roll, is the exact one, and optimal
    interpolation is the exact conditional."""
    return grf_dataarray(n, NY, NX, slope=-4.0, kind="latlon", name="tas", units="K", seed=seed)


def _masks(like, seed):
    bank = blob_masks(like.sizes["time"], (NY, NX), coverage=(0.3, 0.5), seed=seed)
    return like.copy(data=bank.astype(np.float64)).rename("mask")


@pytest.fixture(scope="module")
def residual_net(tmp_path_factory):
    train = _fields(96, seed=0)
    net = Infiller(
        "partialconv",
        prior="optimal-interpolation",
        residual=True,
        context=1,
        roll_fields=True,
        reconstruction="crps",
        base_channels=4,
        lr=3e-3,
    )
    masks = _masks(train.isel(time=slice(0, 6)), seed=1)
    run = tmp_path_factory.mktemp("residual")
    net.fit(train, masks=masks, run_dir=run, max_steps=200, batch_size=4, progress=False)
    return net


def test_members_keep_observed_cells_and_their_mean_is_the_oi_conditional_mean(residual_net):
    test = _fields(6, seed=5)
    mask = _masks(test, seed=6)
    obs = test.where(mask == 1)
    out = residual_net.fill(obs, members=128, seed=3)
    keep = mask.values == 1
    given = obs.values[keep]
    assert np.array_equal(out.tas.values[keep], given)  # bit for bit
    members = out.tas_members.values
    assert all(np.array_equal(m[keep], given) for m in members)
    # E_OI[x | obs] of each field under its mask: the prior's own conditional (exact here)
    oi = np.stack(
        [
            residual_net.gaussian.condition(np.nan_to_num(o), k)[:2]
            for o, k in zip(obs.values, keep)
        ],
        axis=1,
    )
    oi_mean, oi_std = oi
    hidden = ~keep
    scale = np.sqrt(np.mean(oi_std[hidden] ** 2))
    assert scale > 0.1  # the gaps are uncertain: the check below is not trivially met

    def bias(mean):
        return np.sqrt(np.mean((mean - oi_mean)[hidden] ** 2)) / scale

    # Trained for 200 steps the members spread by ~0.75 σ_OI (a real ensemble, not the OI
    # mean repeated), and their mean stays within 0.15 σ_OI of E_OI[x | obs] (Monte Carlo
    # error of 128 members ≈ 0.07 σ_OI; at 60 steps it is 0.22: the mean converges).
    assert np.sqrt(np.mean(members.var(0)[hidden])) / scale > 0.5
    assert bias(members.mean(0)) < 0.15, bias(members.mean(0))
    # The same network without the residual connection is no estimate of the mean: the
    # criterion above tells a biased generator from an unbiased one.
    residual_net.family.residual_channel = None
    try:
        raw = residual_net.fill(obs, members=8, seed=3).tas.values
    finally:
        residual_net.family.residual_channel = 2  # ±1 neighbour: the OI mean is channel 2
    assert bias(raw) > 0.5


def test_residual_settings_survive_load_and_bad_options_are_refused(residual_net, tmp_path):
    again = Infiller.load(residual_net.run_dir)
    assert again.residual and again.family.residual_channel == 2
    test = _fields(3, seed=7)
    obs = test.where(_masks(test, seed=8) == 1)
    xr.testing.assert_identical(
        residual_net.fill(obs, members=4).drop_attrs(), again.fill(obs, members=4).drop_attrs()
    )
    with pytest.raises(ClimgenInputError, match="residual"):
        Infiller("partialconv", residual=True)
    with pytest.raises(ClimgenInputError, match="residual_channel"):
        Infiller("partialconv", base_channels=4, residual_channel=3).fit(
            _fields(4, seed=0), max_steps=1, run_dir=tmp_path, progress=False
        )


def test_flip_fields_items_are_mirrored_whole_and_their_prior_stays_exact():
    """flip_fields mirrors a training item about the equator; with a hemispherically symmetric
    OI covariance the mirrored item's prior channel is the OI mean of the mirrored field under
    the mirrored mask (what fill would compute): the augmentation teaches no wrong input."""
    import torch

    from climgen.data.dataset import FieldDataset
    from climgen.data.normalize import Normalizer
    from climgen.tasks.fill.networks import MaskedFields, PriorMeans
    from climgen.tasks.fill.oi import GaussianFieldModel

    # a north–south asymmetric mean: a mirrored field is told apart from the original
    train = (_fields(24, seed=2) + xr.DataArray(np.linspace(0, 3, NY), dims="lat")).rename("tas")
    model = GaussianFieldModel.fit(train.values, zonal=True, hemispheric=True, nugget=1e-3)
    bank = blob_masks(4, (NY, NX), coverage=(0.3, 0.5), seed=3).astype(np.float64)
    norm = Normalizer.fit(train.to_dataset(), ["tas"])
    center, scale = norm.center["tas"], norm.scale["tas"]
    fields = FieldDataset(train.to_dataset(), ["tas"], normalizer=norm)
    prior = PriorMeans(model, train.values, bank, center, scale)
    items = MaskedFields(fields, bank, context=0, aux=None, style="partialconv", seed=0,
                         prior=prior, flip=True)
    x0 = fields[5]
    seen = set()
    for _ in range(16):
        item = items[5]
        flipped = torch.equal(item["x"], torch.flip(x0, dims=(-2,)))
        assert flipped or torch.equal(item["x"], x0)
        seen.add(flipped)
        keep = item["mask"][0].numpy() > 0
        truth = item["x"][0].numpy().astype(np.float64) * scale + center
        expect = (model.conditional_means(truth[None], keep)[0] - center) / scale
        np.testing.assert_allclose(item["cond"][0].numpy(), expect, atol=1e-4)
    assert seen == {True, False}


def test_flip_fields_needs_a_symmetric_prior_and_grid(tmp_path):
    train = _fields(8, seed=0)
    masks = _masks(train.isel(time=slice(0, 2)), seed=1)
    net = Infiller("partialconv", prior="optimal-interpolation", flip_fields=True, base_channels=4)
    with pytest.raises(ClimgenInputError, match="flip_fields.*hemispheric"):
        net.fit(train, masks=masks, run_dir=tmp_path / "a", max_steps=1, progress=False)
    shifted = train.assign_coords(lat=train.lat + 1.0)
    net = Infiller("partialconv", flip_fields=True, base_channels=4)
    with pytest.raises(ClimgenInputError, match="flip_fields.*symmetric about the equator"):
        net.fit(shifted, masks=masks.assign_coords(lat=shifted.lat), run_dir=tmp_path / "b",
                max_steps=1, progress=False)
    with pytest.raises(ClimgenInputError, match="flip_fields must be true or false"):
        Infiller("partialconv", flip_fields="yes")


def test_member_noise_oi_recentres_the_oi_draws_on_the_network_mean(residual_net):
    """member_noise="oi": the members are the network's ensemble mean plus OI conditional
    deviations — their mean is the network's mean, their spread OI's posterior std, and the
    observed cells are kept."""
    test = _fields(3, seed=7)
    mask = _masks(test, seed=8)
    obs = test.where(mask == 1)
    keep = mask.values == 1
    own = residual_net.fill(obs, members=64, seed=4)
    residual_net.member_noise = "oi"
    try:
        out = residual_net.fill(obs, members=64, seed=4)
    finally:
        residual_net.member_noise = "network"
    assert out.attrs["climgen_fill_options"].count('"member_noise": "oi"') == 1
    members = out.tas_members.values
    assert all(np.array_equal(m[keep], obs.values[keep]) for m in members)
    np.testing.assert_allclose(out.tas.values, own.tas.values, atol=1e-9)
    oi_std = np.stack(
        [
            residual_net.gaussian.condition(np.nan_to_num(o), k)[1]
            for o, k in zip(obs.values, keep)
        ]
    )
    hidden = ~keep
    ratio = np.sqrt(np.mean(members.var(0, ddof=1)[hidden]) / np.mean(oi_std[hidden] ** 2))
    assert abs(ratio - 1) < 0.1, ratio  # 64 members: MC error of the variance ≈ 2 %
    with pytest.raises(ClimgenInputError, match="member_noise='oi' needs residual"):
        Infiller("partialconv", member_noise="oi", reconstruction="crps")


def test_member_noise_oi_needs_the_crps_ensemble_and_survives_reload(tmp_path):
    train = _fields(8, seed=0)
    masks = _masks(train.isel(time=slice(0, 2)), seed=1)
    prior = dict(prior="optimal-interpolation", residual=True, member_noise="oi", base_channels=4)
    with pytest.raises(ClimgenInputError, match="member_noise='oi' needs"):
        Infiller("partialconv", **prior).fit(
            train, masks=masks, run_dir=tmp_path / "l1", max_steps=1, progress=False
        )
    Infiller("partialconv", reconstruction="crps", **prior).fit(
        train, masks=masks, run_dir=tmp_path / "crps", max_steps=1, batch_size=4, progress=False
    )
    assert Infiller.load(tmp_path / "crps").member_noise == "oi"
