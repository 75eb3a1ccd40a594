"""Checkpoints: atomic writes, corrupt-file fallback, weights_only loading, cards, pruning."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import climgen
from climgen.errors import ClimgenInputError
from climgen.families import base as family_base
from climgen.families.base import OptimizerSpec
from climgen.train import (
    CheckpointError,
    TrainConfig,
    Trainer,
    find_latest_valid,
    list_checkpoints,
    load_checkpoint,
    load_family,
    load_trainer_state,
    save_checkpoint,
)
from climgen.train import checkpoint as ckpt_module

SHAPE = (6, 6)


class TinyAE(nn.Module):
    name = "tiny-ae"

    def __init__(self, channels: int = 1, shape=SHAPE, periodic=(False, True), hidden: int = 3):
        super().__init__()
        self.config = {
            "channels": channels,
            "shape": list(shape),
            "periodic": list(periodic),
            "hidden": hidden,
        }
        self.enc = nn.Conv2d(channels, hidden, 3, padding=1)
        self.dec = nn.Conv2d(hidden, channels, 3, padding=1)

    def optimizer_groups(self):
        return {"main": OptimizerSpec(list(self.parameters()), lr=1e-2, kind="adamw")}

    def training_step(self, batch, step, ctx):
        x = batch["x"]
        loss = (self.dec(torch.relu(self.enc(x))) - x).square().mean()
        ctx.step(loss, "main")
        return {"rec": loss.detach()}

    def sample(self, n, generator=None):
        z = torch.randn(n, self.config["hidden"], *self.config["shape"], generator=generator)
        return self.dec(z)

    def ema_module(self):
        return self.dec


# Tiny models: intra-op threads only add contention (fixture in tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 1, *SHAPE, generator=torch.Generator().manual_seed(1))


def train(run_dir, steps: int = 20, every: int = 10, **kw) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(
        max_steps=steps,
        batch_size=4,
        device="cpu",
        checkpoint_every=every,
        progress=False,
        log_every=5,
        **kw,
    )
    trainer = Trainer(TinyAE(), cfg, run_dir, card={"variables": ["b"], "grid": {"ny": 6}})
    trainer.fit(data())
    return trainer


def latest_name(run_dir) -> str:
    return (run_dir / "checkpoints" / "latest").read_text().strip()


def test_layout_and_model_card(tmp_path):
    train(tmp_path, ema_decay=0.9)
    ck_dir = tmp_path / "checkpoints" / "step_0000020"
    assert {p.name for p in ck_dir.iterdir()} == {
        "model.safetensors",
        "ema.safetensors",
        "card.json",
        "trainer_state.pt",
    }
    card = json.loads((ck_dir / "card.json").read_text())
    assert card["family"] == "tiny-ae" and card["config"]["hidden"] == 3
    assert card["step"] == 20 and card["variables"] == ["b"] and card["grid"] == {"ny": 6}
    assert card["climgen_version"] == climgen.__version__
    assert card["torch_version"] == torch.__version__
    assert card["train_config"]["max_steps"] == 20 and card["has_ema"] is True
    assert latest_name(tmp_path) == "step_0000020"


def test_load_family_rebuilds_from_card_and_samples_identically(tmp_path, monkeypatch):
    monkeypatch.setitem(family_base._REGISTRY, "tiny-ae", TinyAE)
    trainer = train(tmp_path, ema_decay=0.5)
    family, ck = load_family(tmp_path, ema=False)
    assert ck.step == 20
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    with torch.no_grad():
        torch.testing.assert_close(
            family.sample(3, g[0]), trainer.family.sample(3, g[1]), rtol=0, atol=0
        )
    ema_family, _ = load_family(tmp_path, ema=True)
    for a, b in zip(ema_family.dec.parameters(), trainer.ema.shadow.parameters()):
        assert torch.equal(a, b)


def test_crash_mid_write_keeps_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: after model.safetensors is written
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        train(tmp_path, steps=20, every=10)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000010"]
    assert latest_name(tmp_path) == "step_0000010"
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    assert load_checkpoint(tmp_path).step == 10


def test_truncated_latest_falls_back_to_previous_with_a_clear_error(tmp_path, caplog):
    train(tmp_path, steps=20, every=10)
    newest = tmp_path / "checkpoints" / "step_0000020"
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match=r"model.safetensors.*truncated.*step_0000010"):
        load_checkpoint(newest)
    with caplog.at_level("WARNING", logger="climgen.train.checkpoint"):
        assert find_latest_valid(tmp_path).name == "step_0000010"
    (record,) = caplog.records  # a logged warning naming the step, not a Python warning
    assert "falling back to checkpoint step 10" in record.getMessage()
    assert "step_0000020" in record.getMessage() and "truncated" in record.getMessage()
    caplog.clear()
    assert load_checkpoint(tmp_path).step == 10
    assert "step 10" in caplog.text


def test_flipped_byte_is_detected_by_checksum(tmp_path):
    train(tmp_path, steps=10, every=10)
    state = tmp_path / "checkpoints" / "step_0000010" / "trainer_state.pt"
    raw = bytearray(state.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    state.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="trainer_state.pt does not match its recorded SHA"):
        load_checkpoint(tmp_path / "checkpoints" / "step_0000010")


def test_resume_falls_back_past_a_corrupt_latest(tmp_path, caplog, recwarn):
    train(tmp_path, steps=20, every=10)
    (tmp_path / "checkpoints" / "step_0000020" / "card.json").write_text("{not json")
    torch.manual_seed(0)
    trainer = Trainer(
        TinyAE(),
        TrainConfig(max_steps=20, batch_size=4, device="cpu", checkpoint_every=10, progress=False),
        tmp_path,
    )
    with caplog.at_level("WARNING", logger="climgen.train.checkpoint"):
        result = trainer.fit(data(), resume=True)
    assert "falling back to checkpoint step 10" in caplog.text and "card.json" in caplog.text
    assert not [w for w in recwarn if "checkpoint" in str(w.message)]
    assert result.step == 20 and latest_name(tmp_path) == "step_0000020"
    assert load_checkpoint(tmp_path).step == 20


class Arbitrary:
    """Unpickling this would need code execution: weights_only must refuse it."""


def test_trainer_state_is_read_with_weights_only(tmp_path, monkeypatch):
    model = TinyAE()
    path = save_checkpoint(
        tmp_path,
        1,
        model=model,
        card={"family": "tiny-ae"},
        trainer_state={"step": 1, "payload": Arbitrary()},
    )
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_trainer_state(path)

    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "load", spy)
    run = tmp_path / "run"
    train(run, steps=10, every=5)
    torch.manual_seed(0)
    Trainer(
        TinyAE(),
        TrainConfig(max_steps=15, batch_size=4, device="cpu", checkpoint_every=5, progress=False),
        run,
    ).fit(data(), resume=True)
    assert seen and all(flag is True for flag in seen)


def test_keep_last_prunes_old_checkpoints_but_keeps_best(tmp_path):
    model = TinyAE()
    for step in range(1, 7):
        save_checkpoint(tmp_path, step, model=model, card={}, keep_last=2, best=(step == 2))
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_0000002", "step_0000005", "step_0000006"]
    assert load_checkpoint(tmp_path, which="best").step == 2


def test_shared_tensors_round_trip(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

    torch.manual_seed(0)
    src = Tied()
    path = save_checkpoint(tmp_path, 1, model=src, card={})
    dst = Tied()
    ckpt_module.load_weights_into(dst, path)
    assert torch.equal(dst.a.weight, src.a.weight) and dst.b.weight is dst.a.weight


def test_card_extras_must_be_json_and_not_reserved(tmp_path):
    with pytest.raises(ClimgenInputError, match="'grid'"):
        Trainer(TinyAE(), TrainConfig(device="cpu"), tmp_path, card={"grid": object()})
    with pytest.raises(ClimgenInputError, match="'step'"):
        Trainer(TinyAE(), TrainConfig(device="cpu"), tmp_path, card={"step": 3})
