"""Domain translation: quantile mapping, PatchGAN receptive field, pix2pix, CycleGAN, Translator."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import xarray as xr

from climgen.data.samples import make_grf
from climgen.errors import ClimgenInputError
from climgen.families.base import build_family
from climgen.families.translation import (
    AugmentedCycleGAN,
    CycleGAN,
    PatchDiscriminator,
    Pix2Pix,
    UNetGenerator,
    cycle_consistency_loss,
    identity_loss,
    patch_receptive_field,
)
from climgen.metrics import rapsd
from climgen.tasks.translate.translator import (
    QuantileMapping,
    Translator,
    available_translate_methods,
)

TINY = dict(base_channels=8, depth=1, disc_channels=8, disc_layers=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Ctx:
    """Minimal StepContext: one Adam per optimiser group."""

    device = torch.device("cpu")

    def __init__(self, family):
        self.opts = {
            name: torch.optim.Adam(spec.params, lr=spec.lr, betas=spec.betas)
            for name, spec in family.optimizer_groups().items()
        }

    def step(self, loss, group):
        opt = self.opts[group]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def game_step(self, group, loss_min, loss_max):
        raise NotImplementedError

    def autocast(self):
        return contextlib.nullcontext()


def _planar(values, name="t", units="K"):
    n, ny, nx = values.shape
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={
            "time": np.arange(n),
            "y": ("y", np.arange(ny, dtype=float), {"axis": "Y", "periodic": "true"}),
            "x": ("x", np.arange(nx, dtype=float), {"axis": "X", "periodic": "true"}),
        },
        name=name,
        attrs={"units": units, "long_name": "test field"},
    ).to_dataset()


def _slope(fields: np.ndarray) -> float:
    k, p = rapsd(fields)
    k = np.asarray(k)
    p = np.asarray(p).reshape(-1, k.size).mean(0)
    keep = k > 0
    return float(np.polyfit(np.log(k[keep]), np.log(p[keep]), 1)[0])


# -- quantile mapping -----------------------------------------------------------------------


def test_registry_lists_methods():
    assert set(available_translate_methods()) == {
        "pix2pix",
        "cyclegan",
        "augmented-cyclegan",
        "quantile-mapping",
    }
    with pytest.raises(ClimgenInputError, match="unknown translation method"):
        Translator("nope")


def test_quantile_mapping_gaussian_to_standard_normal():
    rng = np.random.default_rng(0)
    n, ny, nx = 4000, 3, 4
    a = _planar(1.0 + 2.0 * rng.standard_normal((n, ny, nx)))
    b = _planar(rng.standard_normal((n, ny, nx)))
    new = _planar(1.0 + 2.0 * rng.standard_normal((2000, ny, nx)))
    out = Translator("quantile-mapping").fit(a, b).translate(new)["t"].values
    assert abs(out.mean()) < 0.03
    assert abs(out.std() - 1.0) < 0.03
    # Pointwise: the exact Gaussian map is (x − 1) / 2 (away from the clamped extreme tails).
    exact = (new["t"].values - 1.0) / 2.0
    central = np.abs(exact) < 2.0
    assert np.median(np.abs(out - exact)[central]) < 0.03
    assert np.abs(out - exact)[central].max() < 0.25


def test_quantile_mapping_is_monotone_and_fixes_identical_domains():
    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, size=(500, 6))
    qm = QuantileMapping(50).fit(a, a)
    x = np.sort(rng.gamma(2.0, size=(300, 6)), axis=0)
    y = qm.transform(x)
    assert np.all(np.diff(y, axis=0) >= -1e-12)
    inside = (x > qm.q_a.numpy()[:, 0]) & (x < qm.q_a.numpy()[:, -1])
    np.testing.assert_allclose(y[inside], x[inside], atol=1e-9)


def test_quantile_mapping_keeps_grid_attrs_and_provenance(tmp_path):
    rng = np.random.default_rng(2)
    a = _planar(rng.standard_normal((50, 4, 5)), units="K")
    a.attrs.update(history="made in a test", title="domain A", Nu_vol_mean=3.1)
    b = _planar(rng.standard_normal((60, 4, 5)) + 3.0, units="degC")
    tr = Translator("quantile-mapping", n_quantiles=20).fit(a, b, run_dir=tmp_path)
    out = tr.translate(a.isel(time=slice(0, 7)))
    assert out["t"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(out["time"].values, np.arange(7))
    np.testing.assert_array_equal(out["x"].values, a["x"].values)
    assert out["t"].attrs["units"] == "degC"
    assert out.attrs["climgen_method"] == "quantile-mapping"
    assert "made in a test" in out.attrs["history"]
    # Only the CF descriptive global attributes are the input's (provenance_attrs).
    assert out.attrs["title"] == "domain A" and "Nu_vol_mean" not in out.attrs
    again = Translator.load(tmp_path).translate(a.isel(time=slice(0, 7)))
    np.testing.assert_allclose(again["t"].values, out["t"].values)
    single = tr.translate(a.isel(time=0))
    assert single["t"].dims == ("y", "x")


def test_translator_input_errors():
    rng = np.random.default_rng(3)
    a = _planar(rng.standard_normal((10, 4, 5)))
    with pytest.raises(ClimgenInputError, match="must be fitted"):
        Translator().translate(a)
    with pytest.raises(ClimgenInputError, match="share one grid"):
        Translator().fit(a, _planar(rng.standard_normal((10, 4, 6))))
    with pytest.raises(ClimgenInputError, match="deterministic"):
        Translator().fit(a, a).translate(a, members=3)
    with pytest.raises(ClimgenInputError, match="n_quantiles"):
        Translator(bins=3)
    with pytest.raises(ClimgenInputError, match="no option"):
        Translator("cyclegan", not_an_option=1)
    with pytest.raises(ClimgenInputError, match="paired"):
        Translator("pix2pix", **TINY).fit(a, a.isel(time=slice(0, 5)), max_steps=1)


# -- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_layers", [0, 1, 2])
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
def test_patchgan_receptive_field_is_documented_size(n_layers, periodic):
    size = patch_receptive_field(n_layers)
    assert [patch_receptive_field(n) for n in range(4)] == [7, 16, 34, 70]
    torch.manual_seed(0)
    d = PatchDiscriminator(1, periodic, base_channels=4, n_layers=n_layers).double()
    n = 2 * size + 8
    x = torch.randn(1, 1, n, n, dtype=torch.float64, requires_grad=True)
    out = d(x)
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    (grad,) = torch.autograd.grad(out[0, 0, cy, cx], x)
    rows = np.flatnonzero(grad[0, 0].abs().sum(1).numpy() > 0)
    cols = np.flatnonzero(grad[0, 0].abs().sum(0).numpy() > 0)
    nonzero = (grad[0, 0] != 0).numpy()
    assert rows.size == size and cols.size == size
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert nonzero[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
    assert nonzero.sum() == size * size


def test_patchgan_wraps_periodic_axis():
    torch.manual_seed(0)
    d = PatchDiscriminator(1, (False, True), base_channels=4, n_layers=1).double()
    x = torch.randn(1, 1, 40, 24, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x)[0, 0, 10, 0], x)
    cols = grad[0, 0].abs().sum(0).numpy() > 0
    assert cols[0] and cols[-1]  # the window at the left edge wraps to the right edge
    assert cols.sum() == patch_receptive_field(1)


@pytest.mark.parametrize("shape", [(16, 32), (15, 21)])
def test_unet_generator_shapes_and_identity_start(shape):
    g = UNetGenerator(2, (False, True), base_channels=8, depth=2)
    x = torch.randn(3, 2, *shape)
    torch.testing.assert_close(g(x), x)  # zero-initialised head: untrained G is the identity


def test_cycle_loss_zero_for_identity_generators():
    a, b = torch.randn(4, 2, 8, 16), torch.randn(4, 2, 8, 16) + 3.0
    ident = torch.nn.Identity()
    assert float(cycle_consistency_loss(ident, ident, a, b)) == 0.0
    assert float(identity_loss(ident, ident, a, b)) == 0.0

    def shift(t):
        return t + 1.0

    def unshift(t):
        return t - 1.0

    assert float(cycle_consistency_loss(shift, unshift, a, b)) < 1e-6
    assert float(cycle_consistency_loss(shift, shift, a, b)) == pytest.approx(4.0)


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan", "augmented-cyclegan"])
def test_families_build_by_name_and_config_round_trip(family):
    fam = build_family(family, channels=2, shape=(8, 16), periodic=(False, True), **TINY)
    again = build_family(family, **fam.config)
    assert again.config == fam.config
    with pytest.raises(ClimgenInputError, match="cond"):
        fam.sample(2)
    with pytest.raises(ClimgenInputError, match="gan_loss"):
        build_family(family, channels=1, shape=(8, 8), gan_loss="began")


@pytest.mark.parametrize("gan_loss", ["lsgan", "hinge", "wgan-gp"])
def test_pix2pix_learns_a_paired_map(gan_loss):
    torch.manual_seed(0)
    a = torch.randn(64, 1, 8, 8)
    b = -a  # a field-wise map the L1 term makes learnable in a few steps
    fam = Pix2Pix(1, (8, 8), (True, True), **TINY, gan_loss=gan_loss, lr=3e-3, lr_d=3e-3)
    ctx = _Ctx(fam)
    g = torch.Generator().manual_seed(0)
    first = None
    # 40 steps: the L1 term ended at 0.20–0.26 of its first value at seeds 0, 1, 2 (every loss)
    for step in range(40):
        i = torch.randint(0, 64, (16,), generator=g)
        logs = fam.training_step({"x": a[i], "y": b[i]}, step, ctx)
        first = first if first is not None else float(logs["l1"])
        assert all(torch.isfinite(v) and not v.requires_grad for v in logs.values())
    assert float(logs["l1"]) < 0.5 * first


@pytest.mark.slow
def test_cyclegan_moves_spectral_slope_toward_target():
    """A (slope −3) → B (slope −2): a 100-step CycleGAN on 16×16 fields adds small-scale power.

    |slope − B's| / |A's − B's| after 100 steps was 0.16, 0.22, 0.13 at seeds 0, 1, 2 (0.05–0.14
    after 150; 0.55–0.87 after 50).
    """
    n = 16
    a = torch.tensor(make_grf(256, n, n, slope=-3, seed=1), dtype=torch.float32)[:, None]
    b = torch.tensor(make_grf(256, n, n, slope=-2, seed=2), dtype=torch.float32)[:, None]
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    test = torch.tensor(make_grf(64, n, n, slope=-3, seed=3), dtype=torch.float32)[:, None]
    test = (test - test.mean()) / test.std()
    torch.manual_seed(0)
    fam = CycleGAN(
        1, (n, n), (True, True), **TINY, cycle_weight=1.0, identity_weight=0.5, lr=2e-3, lr_d=2e-3
    )
    ctx = _Ctx(fam)
    g = torch.Generator().manual_seed(0)
    for step in range(100):
        i = torch.randint(0, 256, (16,), generator=g)
        j = torch.randint(0, 256, (16,), generator=g)
        fam.training_step({"x": a[i], "y": b[j]}, step, ctx)
    with torch.no_grad():
        out = fam.sample(64, cond=test)[:, 0].numpy()
    s_a, s_b, s_t = _slope(test[:, 0].numpy()), _slope(b[:, 0].numpy()), _slope(out)
    assert abs(s_t - s_b) < 0.5 * abs(s_a - s_b), (s_a, s_t, s_b)


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan", "augmented-cyclegan"])
def test_translator_networks_fit_translate_load(method, tmp_path):
    a = _planar(make_grf(24, 8, 16, slope=-3, seed=4).astype(np.float32) * 2 + 280.0)
    b = _planar(make_grf(24, 8, 16, slope=-2, seed=5).astype(np.float32) + 285.0, units="K")
    tr = Translator(method, **TINY).fit(
        a, b, run_dir=tmp_path, max_steps=4, batch_size=8, progress=False, device="cpu"
    )
    out = tr.translate(a.isel(time=slice(0, 5)))
    assert out["t"].shape == (5, 8, 16)
    assert np.isfinite(out["t"].values).all()
    # Output is in B's units: its mean is near B's mean, not A's.
    assert abs(float(out["t"].mean()) - 285.0) < abs(float(out["t"].mean()) - 280.0)
    assert out.attrs["climgen_method"] == method
    again = Translator.load(tmp_path).translate(a.isel(time=slice(0, 5)))
    np.testing.assert_allclose(again["t"].values, out["t"].values, atol=1e-5)


def test_quantile_mapping_multivariable_latlon_orientation():
    """A on a descending-latitude grid, B ascending: corrections land on the right cells."""
    rng = np.random.default_rng(5)
    lat = np.array([60.0, 20.0, -20.0, -60.0])
    lon = np.arange(0.0, 360.0, 60.0)
    climatology = rng.normal(0, 10, (4, 6))

    def dataset(values_t, values_p, latitudes):
        coords = {
            "time": np.arange(values_t.shape[0]),
            "lat": ("lat", latitudes, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        }
        dims = ("time", "lat", "lon")
        return xr.Dataset(
            {
                "t": (dims, values_t, {"units": "K"}),
                "p": (dims, values_p, {"units": "hPa"}),
            },
            coords=coords,
        )

    n = 800
    a = dataset(
        climatology + rng.standard_normal((n, 4, 6)),
        2 * climatology + rng.standard_normal((n, 4, 6)),
        lat,
    )
    b_t = climatology + 5.0 + rng.standard_normal((n, 4, 6))
    b_p = 2 * climatology - 3.0 + rng.standard_normal((n, 4, 6))
    b = dataset(b_t[:, ::-1], b_p[:, ::-1], lat[::-1])  # same climate, ascending latitude
    new = a.isel(time=slice(0, 200))
    out = Translator("quantile-mapping").fit(a, b).translate(new)
    np.testing.assert_array_equal(out["lat"].values, lat)
    for name, shift in (("t", 5.0), ("p", -3.0)):
        err = out[name].values - (new[name].values + shift)
        assert np.median(np.abs(err)) < 0.15, name


def test_augmented_cyclegan_trains_and_uses_its_latent_code():
    torch.manual_seed(0)
    a = torch.randn(32, 1, 8, 8)
    b = torch.randn(32, 1, 8, 8) * 0.5 + 1.0
    fam = AugmentedCycleGAN(1, (8, 8), (True, True), **TINY, latent_dim=2, lr=3e-3, lr_d=3e-3)
    ctx = _Ctx(fam)
    g = torch.Generator().manual_seed(0)
    for step in range(25):
        i = torch.randint(0, 32, (8,), generator=g)
        j = torch.randint(0, 32, (8,), generator=g)
        logs = fam.training_step({"x": a[i], "y": b[j]}, step, ctx)
        assert all(torch.isfinite(v) and not v.requires_grad for v in logs.values())
    assert {"cycle", "latent_cycle", "d_za_loss", "d_zb_loss"} <= set(logs)
    one = a[:1]
    members = fam.sample(4, torch.Generator().manual_seed(1), cond=one)
    assert members.shape == (4, 1, 8, 8)
    assert float(members.std(0).mean()) > 1e-4  # different codes, different translations
    z = torch.zeros(1, 2)
    torch.testing.assert_close(fam.translate(one, z=z), fam.translate(one, z=z))
    with pytest.raises(ClimgenInputError, match="latent codes"):
        fam.g_ab(one)


def test_translator_augmented_members(tmp_path):
    a = _planar(make_grf(16, 8, 8, slope=-3, seed=6).astype(np.float32))
    b = _planar(make_grf(16, 8, 8, slope=-2, seed=7).astype(np.float32))
    tr = Translator("augmented-cyclegan", **TINY, latent_dim=2, lr=3e-3, lr_d=3e-3).fit(
        a, b, run_dir=tmp_path, max_steps=15, batch_size=8, progress=False, device="cpu"
    )
    out = tr.translate(a.isel(time=slice(0, 3)), members=3, seed=4)
    assert out["t"].dims == ("member", "time", "y", "x")
    assert float(out["t"].std("member").mean()) > 0
    again = tr.translate(a.isel(time=slice(0, 3)), members=3, seed=4)
    np.testing.assert_array_equal(again["t"].values, out["t"].values)
    with pytest.raises(ClimgenInputError, match="members"):
        tr.translate(a, members=0)
