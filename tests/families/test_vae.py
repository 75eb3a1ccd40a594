"""AE / VAE / CVAE: the analytic KL, interpolation geometry, training lowers the loss, sampling."""

import json
import math

import pytest
import torch

from climgen.errors import ClimgenInputError
from climgen.families import available_families, build_family
from climgen.families.vae import (
    VAE,
    Autoencoder,
    ConditionalVAE,
    gaussian_kl,
    interpolate,
    latent_arithmetic,
    lerp,
    slerp,
)

TINY = dict(latent_dim=8, base_channels=8)

# Every test starts from the same seed, so the weights of the models it builds (and any unseeded
# torch.randn) do not depend on test order (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("seeded_torch")


def test_families_are_registered():
    assert {"ae", "vae", "cvae"} <= set(available_families())


# --- the analytic KL --------------------------------------------------------------------------
def test_kl_is_zero_for_the_prior_itself():
    mu, logvar = torch.zeros(4, 7), torch.zeros(4, 7)
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.zeros(4))


def test_kl_matches_a_monte_carlo_estimate():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar = torch.tensor([-1.0, 0.3, 0.8], dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), 1.0)
    z = mu + (0.5 * logvar).exp() * torch.randn(200_000, 3, generator=gen, dtype=torch.float64)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    standard_error = log_ratio.std() / math.sqrt(z.shape[0])
    assert abs(float(gaussian_kl(mu, logvar)) - float(log_ratio.mean())) < 4 * standard_error


# --- interpolation ----------------------------------------------------------------------------
def test_slerp_hits_endpoints_and_preserves_norm():
    gen = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(2, 5, 16, generator=gen, dtype=torch.float64)
    z0 = 3 * z0 / z0.norm(dim=-1, keepdim=True)
    z1 = 3 * z1 / z1.norm(dim=-1, keepdim=True)
    t = torch.linspace(0, 1, 11)
    path = slerp(z0, z1, t)
    assert path.shape == (11, 5, 16)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path.norm(dim=-1), torch.full((11, 5), 3.0, dtype=torch.float64))
    # the straight line cuts inside the sphere
    assert lerp(z0, z1, 0.5).norm(dim=-1).max() < 3.0


def test_slerp_of_orthogonal_unit_vectors_is_the_bisector():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(slerp(e0, e1, 0.5), (e0 + e1) / math.sqrt(2))
    torch.testing.assert_close(slerp(e0, e0, 0.3), e0)  # parallel codes: finite, no 0/0


# --- training ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_vae_training_lowers_the_loss(tiny_grf, trainer):
    vae = VAE(1, (16, 16), periodic=(True, True), lr=2e-3, **TINY)
    # 60 steps: the mean loss fell by 0.29, 0.33, 0.29 at seeds 0, 1, 2 (0.48–0.51 at 150)
    history = trainer(vae, tiny_grf, 60)
    first = sum(h["loss"] for h in history[:10]) / 10
    last = sum(h["loss"] for h in history[-10:]) / 10
    assert last < first - 0.1
    for h in history:
        assert h["loss"] == pytest.approx(h["recon"] + vae.beta_at(0) * h["kl"], rel=1e-5)
    assert all(h["kl"] >= 0 for h in history)


@pytest.mark.slow
def test_autoencoder_training_lowers_the_loss_and_tracks_code_statistics(tiny_grf, trainer):
    ae = Autoencoder(1, (16, 16), periodic=(True, True), lr=2e-3, **TINY)
    history = trainer(ae, tiny_grf, 60)
    assert sum(h["recon"] for h in history[-10:]) < sum(h["recon"] for h in history[:10])
    assert int(ae.latent_updates) == 60
    assert torch.linalg.eigvalsh(ae.latent_covariance()).min() > -1e-5
    samples = ae.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 16, 16) and torch.isfinite(samples).all()


def test_autoencoder_code_statistics_are_running_moments_and_sampled_exactly():
    ae = Autoencoder(1, (8, 8), latent_dim=3, base_channels=4, prior_momentum=0.0)
    gen = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, -0.5, 0.3]])
    codes = torch.randn(3, 500, 3, generator=gen) @ mix.T + torch.tensor([1.0, -2.0, 0.5])
    for batch in codes:  # momentum 0 ⇒ 1/(k+1): the running mean over equal batches
        ae._update_latent_stats(batch)
    all_codes = codes.reshape(-1, 3)
    torch.testing.assert_close(ae.latent_mean, all_codes.mean(0))
    population_cov = torch.cov(all_codes.T, correction=0)
    torch.testing.assert_close(ae.latent_covariance(), population_cov, atol=1e-4, rtol=1e-4)
    drawn = ae.sample_latent(100_000, generator=gen)
    torch.testing.assert_close(drawn.mean(0), ae.latent_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(drawn.T), population_cov, atol=0.03, rtol=0)


def test_kl_warm_up_is_linear_then_constant():
    vae = VAE(1, (8, 8), beta=4.0, kl_warmup_steps=100, **TINY)
    assert [vae.beta_at(s) for s in (0, 50, 100, 1000)] == [0.0, 2.0, 4.0, 4.0]


def test_fixed_likelihood_scale_has_no_parameter():
    vae = VAE(1, (8, 8), likelihood_scale=0.5, **TINY)
    assert "log_scale" not in dict(vae.named_parameters())
    torch.testing.assert_close(vae.log_scale.exp(), torch.tensor([0.5]))


# --- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ae", "vae"])
def test_sampling_shapes_finite_and_seeded(name):
    family = build_family(name, channels=2, shape=(30, 40), **TINY)
    a = family.sample(3, generator=torch.Generator().manual_seed(5))
    b = family.sample(3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 2, 30, 40) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["ae", "vae", "cvae"])
def test_config_rebuilds_the_same_architecture(name):
    family = build_family(name, channels=1, shape=(12, 20), **TINY)
    rebuilt = build_family(name, **json.loads(json.dumps(family.config)))
    rebuilt.load_state_dict(family.state_dict())
    x = torch.randn(2, 1, 12, 20)
    cond = torch.randn(2, 1, 12, 20) if name == "cvae" else None
    torch.testing.assert_close(rebuilt.reconstruct(x, cond), family.reconstruct(x, cond))
    assert family.ema_module() is family.decoder
    assert set(family.optimizer_groups()) == {"main"}


def test_cvae_samples_depend_on_the_condition():
    cvae = ConditionalVAE(1, (16, 16), cond_channels=2, **TINY)
    c1, c2 = torch.randn(2, 1, 2, 16, 16)
    a = cvae.sample(4, generator=torch.Generator().manual_seed(0), cond=c1)
    b = cvae.sample(4, generator=torch.Generator().manual_seed(0), cond=c2)
    assert a.shape == (4, 1, 16, 16)
    assert (a - b).abs().mean() > 1e-4
    with pytest.raises(ClimgenInputError, match="cond"):
        cvae.sample(4)


@pytest.mark.slow
def test_trained_cvae_follows_its_condition(tiny_grf, trainer):
    # x is the condition plus a little noise: a CVAE that uses c must track it.
    cond = tiny_grf
    data = cond + 0.1 * torch.randn(cond.shape, generator=torch.Generator().manual_seed(3))
    cvae = ConditionalVAE(1, (16, 16), periodic=(True, True), cond_channels=1, lr=2e-3, **TINY)
    # 50 steps: at seeds 0, 1, 2 corr(out, c1) ≥ 0.99 and the gap to c2 ≥ 0.92 (as at 80)
    trainer(cvae, data, 50, cond=cond)
    c1, c2 = cond[:1], cond[1:2]
    out = cvae.sample(8, generator=torch.Generator().manual_seed(0), cond=c1)

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    assert corr(out, c1.expand_as(out)) > 0.5
    assert corr(out, c1.expand_as(out)) > corr(out, c2.expand_as(out)) + 0.3


def test_cvae_training_step_requires_a_condition(step_context):
    cvae = ConditionalVAE(1, (8, 8), **TINY)
    with pytest.raises(ClimgenInputError, match="cond"):
        cvae.training_step({"x": torch.randn(2, 1, 8, 8)}, 0, step_context(cvae))


# --- latent helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolation_ends_at_the_reconstructions(mode):
    vae = VAE(1, (12, 20), **TINY).eval()
    x0, x1 = torch.randn(2, 1, 12, 20)
    path = interpolate(vae, x0, x1, steps=5, mode=mode)
    assert path.shape == (5, 1, 12, 20)
    torch.testing.assert_close(path[0], vae.reconstruct(x0[None])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[-1], vae.reconstruct(x1[None])[0], atol=1e-5, rtol=1e-5)
    batched = interpolate(vae, torch.randn(3, 1, 12, 20), torch.randn(3, 1, 12, 20), steps=4)
    assert batched.shape == (4, 3, 1, 12, 20)


def test_latent_arithmetic_with_a_equal_b_reconstructs_c():
    ae = Autoencoder(1, (12, 20), **TINY).eval()
    a, c = torch.randn(2, 2, 1, 12, 20)
    torch.testing.assert_close(
        latent_arithmetic(ae, a, a, c), ae.reconstruct(c), atol=1e-5, rtol=1e-5
    )


# --- bad input --------------------------------------------------------------------------------
def test_bad_batch_and_options_give_clear_errors(step_context):
    vae = VAE(1, (8, 8), **TINY)
    with pytest.raises(ClimgenInputError, match=r"batch\['x'\].*\(B, 1, 8, 8\)"):
        vae.training_step({"x": torch.randn(2, 3, 8, 8)}, 0, step_context(vae))
    with pytest.raises(ClimgenInputError, match="likelihood_scale"):
        VAE(1, (8, 8), likelihood_scale="fixed")
    with pytest.raises(ClimgenInputError, match="latent_dimm"):
        build_family("vae", channels=1, shape=(8, 8), latent_dimm=4)
    # The grid options are checked as for every family (a bool is no channel count).
    for bad, match in (
        ({"channels": True}, "'channels'"),
        ({"shape": (8,)}, "'shape'"),
        ({"periodic": (True,)}, "'periodic'"),
        ({"latent_dim": 0}, "'latent_dim'"),
    ):
        with pytest.raises(ClimgenInputError, match=match):
            build_family("vae", **{"channels": 1, "shape": (8, 8), **TINY, **bad})


def test_an_all_ones_mask_equals_no_mask_and_masked_values_are_ignored():
    vae = VAE(1, (8, 8), likelihood_scale=1.0, **TINY)
    x = torch.randn(3, 1, 8, 8)
    torch.manual_seed(0)
    plain = vae.loss(x)
    torch.manual_seed(0)
    ones = vae.loss(x, mask=torch.ones(3, 1, 8, 8))
    torch.testing.assert_close(plain["loss"], ones["loss"])
    # a value the mask hides does not enter the reconstruction term of the AE
    ae = Autoencoder(1, (8, 8), **TINY).eval()
    mask = torch.ones(3, 1, 8, 8)
    mask[:, :, 0, 0] = 0
    recon = ae.decode(ae.encode(x))
    expected = ((recon - x).pow(2) * mask).sum() / mask.sum()
    torch.testing.assert_close(ae.loss(x, mask=mask)["recon"], expected)
