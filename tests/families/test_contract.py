"""One contract for every family, driven by the real trainer: learns, samples, survives reload."""

from __future__ import annotations

import pytest
import torch

from climgen.data.samples import make_grf
from climgen.families.base import available_families, build_family
from climgen.train import TrainConfig, Trainer, load_family

SHAPE = (16, 32)
# (family, options, the logged loss that must fall early in training)
CASES = [
    ("ae", {"latent_dim": 8, "base_channels": 8}, "loss"),
    ("vae", {"latent_dim": 8, "base_channels": 8}, "loss"),
    ("gan", {"loss": "non-saturating", "latent_dim": 8, "base_channels": 8}, "d_loss"),
    (
        "gan",
        {"loss": "hinge", "latent_dim": 8, "base_channels": 8, "spectral_norm": True},
        "d_loss",
    ),
    ("gan", {"loss": "lsgan", "latent_dim": 8, "base_channels": 8, "generator": "style"}, "d_loss"),
    ("pixelcnn", {"hidden_channels": 16, "n_layers": 4, "kernel_size": 3, "mixtures": 3}, "loss"),
    ("flow", {"levels": 2, "steps_per_level": 2, "hidden_channels": 16}, "loss"),
    ("diffusion", {"base_channels": 8, "channel_mults": (1, 2), "lr": 2e-3}, "loss"),
]
# Conditional families have their own tests (cvae below; the others in tests/tasks/: test_downscale,
# test_fill and test_translate: they need a condition or observations).
COND_FAMILIES = {"cvae", "superres", "partialconv", "pix2pix", "cyclegan", "augmented-cyclegan"}


def test_every_registered_family_is_covered():
    covered = {name for name, _, _ in CASES} | COND_FAMILIES
    assert set(available_families()) <= covered, "add new families to the contract"


@pytest.fixture(scope="module")
def grf_data():
    x = make_grf(128, *SHAPE, slope=-3.0, seed=0).astype("float32")
    x = (x - x.mean()) / x.std()
    return torch.from_numpy(x)[:, None]


@pytest.mark.parametrize(
    "name, options, falling",
    CASES,
    ids=[f"{c[0]}-{c[1].get('loss', c[1].get('generator', ''))}" for c in CASES],
)
def test_family_contract(name, options, falling, grf_data, tmp_path):
    torch.set_num_threads(1)
    family = build_family(name, channels=1, shape=SHAPE, periodic=(True, True), **options)
    assert repr(family)
    config = TrainConfig(
        max_steps=60,
        batch_size=16,
        seed=0,
        log_every=1,
        checkpoint_every=60,
        progress=False,
        ema_decay=None,
    )
    Trainer(family, config, tmp_path).fit(grf_data)

    import csv

    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    values = [float(r[falling]) for r in rows]
    assert all(torch.isfinite(torch.tensor(values)))
    assert sum(values[-10:]) / 10 < sum(values[:10]) / 10, f"{falling} did not fall: {values}"

    family.eval()
    with torch.no_grad():
        a = family.sample(6, generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, 1, *SHAPE)
    assert torch.isfinite(a).all()
    assert a.std() > 0

    reloaded, ckpt = load_family(tmp_path)
    assert ckpt.card["family"] == name
    with torch.no_grad():
        b = reloaded.sample(6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_conditional_vae_contract(tmp_path):
    torch.set_num_threads(1)
    family = build_family(
        "cvae",
        channels=1,
        shape=SHAPE,
        periodic=(True, True),
        latent_dim=8,
        base_channels=8,
        cond_channels=1,
    )
    x = torch.randn(32, 1, *SHAPE)
    data = [{"x": x[i], "cond": x[i] * 0.5} for i in range(32)]
    config = TrainConfig(max_steps=10, batch_size=8, progress=False, checkpoint_every=10)
    Trainer(family, config, tmp_path).fit(data)
    reloaded, _ = load_family(tmp_path)
    cond = torch.randn(3, 1, *SHAPE)
    with torch.no_grad():
        a = family.eval().sample(3, generator=torch.Generator().manual_seed(1), cond=cond)
        b = reloaded.sample(3, generator=torch.Generator().manual_seed(1), cond=cond)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (3, 1, *SHAPE)
