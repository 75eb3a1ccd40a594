"""Choosing an emulator's checkpoint on a validation run (climgen.tasks.emulate.selection)."""

from __future__ import annotations

import pytest
import torch

from climgen.data.samples import grf_dataarray
from climgen.errors import ClimgenInputError
from climgen.tasks.emulate.emulator import Emulator
from climgen.tasks.emulate.selection import choose_checkpoint
from climgen.train.checkpoint import (
    checkpoint_dir,
    list_checkpoints,
    load_family,
    save_checkpoint,
    verify_checkpoint,
)

# Tiny models: intra-op threads only add contention (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(seed: int, n: int = 64):
    ds = grf_dataarray(n, 16, 32, slope=-3.0, seed=seed, name="psi").to_dataset()
    ds.attrs["seed"] = seed  # as the data recipes write it
    return ds


def test_the_checkpoint_is_chosen_on_the_validation_run_and_a_broken_one_is_never_chosen(
    tmp_path,
):
    train, validation = _run(1), _run(3)
    run = tmp_path / "run"
    Emulator("vae", latent_dim=4, base_channels=4).fit(
        train, run_dir=run, max_steps=6, batch_size=16, checkpoint_every=2, progress=False
    )
    # A checkpoint whose weights are wrecked (what a diverged step looks like): step 5.
    family, _ = load_family(checkpoint_dir(run) / "step_0000004")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in family.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 3.0)
    card = verify_checkpoint(checkpoint_dir(run) / "step_0000004")
    card = {k: v for k, v in card.items() if k not in ("format", "format_version", "files")}
    save_checkpoint(run, 5, model=family, card=card, keep_last=None)
    assert [int(p.name[-7:]) for p in list_checkpoints(run)] == [2, 4, 5, 6]

    em = Emulator.load(run)
    logged = []
    best, scores = choose_checkpoint(
        em, run, train, validation, n_samples=32, seed=0, log=logged.append
    )
    assert sorted(scores) == [2, 4, 5, 6] and len(logged) == 4
    assert best.key == max(s.key for s in scores.values())
    assert best.step != 5
    assert scores[5].typical_ratio > 3 * best.typical_ratio  # the wrecked one is far off
    # The emulator is left holding the chosen checkpoint, raw (no calibration asked).
    assert em.checkpoint_step == best.step and em.calibration is None
    chosen, _ = load_family(checkpoint_dir(run) / f"step_{best.step:07d}")
    for a, b in zip(em.family.state_dict().values(), chosen.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Candidates by step, with the calibration fitted for each.
    best2, scores2 = choose_checkpoint(
        em,
        run,
        train,
        validation,
        n_samples=32,
        seed=0,
        steps=[2, 6],
        log=lambda _: None,
        calibrate=dict(n_samples=32),
    )
    assert sorted(scores2) == [2, 6] and em.checkpoint_step == best2.step
    assert em.calibration is not None


def test_choosing_refuses_the_training_run_and_missing_steps(tmp_path):
    train = _run(1)
    run = tmp_path / "run"
    Emulator("vae", latent_dim=4, base_channels=4).fit(
        train, run_dir=run, max_steps=2, batch_size=16, checkpoint_every=2, progress=False
    )
    em = Emulator.load(run)
    with pytest.raises(ClimgenInputError, match="same run"):
        choose_checkpoint(em, run, train, _run(1, n=64), n_samples=8)
    with pytest.raises(ClimgenInputError, match=r"step\(s\) \[7\]"):
        choose_checkpoint(em, run, train, _run(3), n_samples=8, steps=[7])
    with pytest.raises(ClimgenInputError, match="every"):
        choose_checkpoint(em, run, train, _run(3), n_samples=8, every=0)
