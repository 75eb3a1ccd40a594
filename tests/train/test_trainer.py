"""The trainer: config validation, bit-identical resume, NaN guard, EMA, clipping, logs, eval."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from climgen.errors import ClimgenInputError
from climgen.families.base import OptimizerSpec
from climgen.train import (
    Callback,
    ClimgenTrainingError,
    ResumableBatchSampler,
    SpectralEvalCallback,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
)
from climgen.train import context as train_context

SHAPE = (8, 8)


class ToyAE(nn.Module):
    """A one-group conv autoencoder; input noise draws from the global RNG (tests its resume)."""

    name = "toy-ae"

    def __init__(self, channels: int = 1, shape=SHAPE, periodic=(False, True), hidden: int = 4):
        super().__init__()
        self.config = {
            "channels": channels,
            "shape": list(shape),
            "periodic": list(periodic),
            "hidden": hidden,
        }
        self.enc = nn.Conv2d(channels, hidden, 3, padding=1)
        self.dec = nn.Conv2d(hidden, channels, 3, padding=1)
        self.nan_at: int | None = None
        self.delay = float(os.environ.get("TOY_DELAY", "0"))
        self.loss_scale = 1.0

    def optimizer_groups(self):
        return {"main": OptimizerSpec(list(self.parameters()), lr=1e-2, kind="adam")}

    def training_step(self, batch, step, ctx):
        x = batch["x"]
        with ctx.autocast():
            rec = self.dec(torch.tanh(self.enc(x + 0.1 * torch.randn_like(x))))
        loss = self.loss_scale * (rec.float() - x).square().mean()
        if self.nan_at == step:
            loss = loss * float("nan")
        ctx.step(loss, "main")
        if self.delay and step >= 10:
            time.sleep(self.delay)
        return {"rec": loss.detach()}

    def sample(self, n, generator=None):
        h = self.config["hidden"]
        device = self.dec.weight.device
        z = torch.randn(n, h, *self.config["shape"], generator=generator, device=device)
        return self.dec(z)

    def ema_module(self):
        return self.dec


class ToyGAN(nn.Module):
    """Two optimiser groups updated in turn, like a GAN (non-saturating loss)."""

    name = "toy-gan"

    def __init__(self, channels: int = 1, shape=SHAPE, periodic=(False, True), latent: int = 4):
        super().__init__()
        self.config = {"channels": channels, "shape": list(shape), "latent": latent}
        n = channels * shape[0] * shape[1]
        self.gen = nn.Sequential(nn.Linear(latent, n), nn.Unflatten(1, (channels, *shape)))
        self.disc = nn.Sequential(nn.Flatten(), nn.Linear(n, 8), nn.Tanh(), nn.Linear(8, 1))

    def optimizer_groups(self):
        return {
            "discriminator": OptimizerSpec(list(self.disc.parameters()), lr=1e-3),
            "generator": OptimizerSpec(
                list(self.gen.parameters()), lr=1e-3, kind="rmsprop", betas=(0.0, 0.0)
            ),
        }

    def sample(self, n, generator=None):
        z = torch.randn(n, self.config["latent"], generator=generator)
        return self.gen(z)

    def training_step(self, batch, step, ctx):
        x = batch["x"]
        fake = self.sample(x.shape[0])
        sp = nn.functional.softplus
        d_loss = sp(-self.disc(x)).mean() + sp(self.disc(fake.detach())).mean()
        ctx.step(d_loss, "discriminator")
        g_loss = sp(-self.disc(self.sample(x.shape[0]))).mean()
        ctx.step(g_loss, "generator")
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def ema_module(self):
        return self.gen


class DictData(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


# Tiny models: intra-op threads only add contention (fixture in tests/conftest.py; the
# subprocess scripts below set the same thread count).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_data(n: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, *SHAPE, generator=g)


def make_family(kind: str) -> nn.Module:
    torch.manual_seed(123)
    return ToyAE() if kind == "ae" else ToyGAN()


def config(**overrides) -> TrainConfig:
    base = dict(
        max_steps=40,
        batch_size=8,
        seed=3,
        device="cpu",
        log_every=5,
        checkpoint_every=10,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for (name, pa), (_, pb) in zip(a.family.state_dict().items(), b.family.state_dict().items()):
        assert torch.equal(pa, pb), f"parameter {name} differs"
    for group in a.optimizers:
        sa, sb = (
            a.optimizers[group].state_dict()["state"],
            b.optimizers[group].state_dict()["state"],
        )
        assert sa.keys() == sb.keys()
        for k in sa:
            for key, va in sa[k].items():
                vb = sb[k][key]
                assert torch.equal(torch.as_tensor(va), torch.as_tensor(vb)), (group, k, key)
    if a.ema is not None:
        for pa, pb in zip(a.ema.shadow.parameters(), b.ema.shadow.parameters()):
            assert torch.equal(pa, pb)


# -- TrainConfig ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_steps", 0),
        ("max_steps", 2.5),
        ("batch_size", "8"),
        ("amp", "fp8"),
        ("ema_decay", 1.0),
        ("grad_clip", -1.0),
        ("progress", "yes"),
        ("device", "gpu0"),
        ("keep_last", True),
        ("max_time_s", -1.0),
        ("time_clock", "gpu"),
        ("compile", "fast"),
        ("channels_last", "yes"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ClimgenInputError, match=field):
        TrainConfig(**{field: value})


def test_config_from_dict_rejects_typos_listing_valid_keys():
    with pytest.raises(ClimgenInputError) as err:
        TrainConfig.from_dict({"max_step": 10, "batch_size": 4})
    msg = str(err.value)
    assert "'max_step'" in msg and "did you mean 'max_steps'" in msg
    for key in TrainConfig.valid_keys():
        assert key in msg
    cfg = TrainConfig.from_dict({"max_steps": 10, "ema_decay": 0.99, "grad_clip": 1})
    assert cfg.max_steps == 10 and cfg.grad_clip == 1.0


def test_deterministic_fit_skips_the_nan_fill_and_restores_torch_flags(tmp_path):
    """During a deterministic fit the algorithms are deterministic but new tensors are not
    NaN-filled (a debugging aid that only costs time); afterwards both flags are as before."""
    import torch.utils.deterministic as det

    seen = {}

    class Record(Callback):
        def on_fit_start(self, trainer):
            seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
            seen["fill"] = det.fill_uninitialized_memory

    assert not torch.are_deterministic_algorithms_enabled() and det.fill_uninitialized_memory
    Trainer(make_family("ae"), config(max_steps=2), tmp_path, callbacks=[Record()]).fit(make_data())
    assert seen == {"deterministic": True, "fill": False}
    assert not torch.are_deterministic_algorithms_enabled() and det.fill_uninitialized_memory


# -- data ----------------------------------------------------------------------------------------


def test_sampler_permutes_each_epoch_and_resumes_mid_epoch():
    s = ResumableBatchSampler(10, 3, seed=1)
    epoch0 = list(s)
    assert len(epoch0) == 3 and all(len(b) == 3 for b in epoch0)
    assert len({i for b in epoch0 for i in b}) == 9  # no repeats; the 10th is dropped
    s.set_position(1, 0)
    epoch1 = list(s)
    assert epoch1 != epoch0
    s.set_position(1, 2)
    assert list(s) == epoch1[2:]


# -- resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, data, workers",
    [("ae", "tensor", 0), ("ae", "dataset", 2), ("gan", "dataset", 0)],
)
def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path, kind, data, workers):
    x = make_data()
    dataset = x if data == "tensor" else DictData(x)
    cfg = dict(ema_decay=0.9, num_workers=workers)
    straight = Trainer(make_family(kind), config(**cfg), tmp_path / "straight")
    straight.fit(dataset)

    Trainer(make_family(kind), config(max_steps=20, **cfg), tmp_path / "split").fit(dataset)
    torch.manual_seed(999)  # a different init and global RNG state: the checkpoint restores all
    resumed = Trainer(
        ToyAE(hidden=4) if kind == "ae" else ToyGAN(), config(**cfg), tmp_path / "split"
    )
    result = resumed.fit(dataset, resume=True)
    assert result.step == 40
    assert_same_state(straight, resumed)
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(5, 45, 5))


_KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {test_dir!r})
torch.set_num_threads({threads})
from test_trainer import make_family, make_data, config
from climgen.train import Trainer
Trainer(make_family("ae"), config(ema_decay=0.9, checkpoint_every=5), {run!r}).fit(make_data())
"""


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    run = tmp_path / "killed"
    script = _KILL_SCRIPT.format(
        test_dir=str(Path(__file__).parent), run=str(run), threads=torch.get_num_threads()
    )
    env = {**os.environ, "TOY_DELAY": "0.2"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 60
    try:
        while not (latest.exists() and latest.read_text().strip() >= "step_0000015"):
            assert proc.poll() is None, "training subprocess ended early"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "checkpoints" / "step_0000040").exists()

    straight = Trainer(make_family("ae"), config(ema_decay=0.9), tmp_path / "straight")
    straight.fit(make_data())
    resumed = Trainer(ToyAE(), config(ema_decay=0.9, checkpoint_every=5), run)
    assert resumed.fit(make_data(), resume=True).step == 40
    assert_same_state(straight, resumed)


class SignalAt(Callback):
    """Sends this process ``signum`` at the end of step ``step`` (as a scheduler would)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, trainer, step, losses):
        if step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_the_step_and_resume_is_bit_identical(tmp_path, signum):
    before = signal.getsignal(signum)
    run = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted) as err:
        Trainer(
            make_family("gan"), config(ema_decay=0.9), run, callbacks=[SignalAt(13, signum)]
        ).fit(make_data())
    assert signal.getsignal(signum) is before  # the trainer's handler is gone again
    assert (err.value.signum, err.value.step) == (signum, 13)
    assert err.value.checkpoint == run / "checkpoints" / "step_0000013"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000013"
    assert signal.Signals(signum).name in str(err.value) and "resume" in str(err.value)

    straight = Trainer(make_family("gan"), config(ema_decay=0.9), tmp_path / "straight")
    straight.fit(make_data())
    resumed = Trainer(ToyGAN(), config(ema_decay=0.9), run)
    assert resumed.fit(make_data(), resume=True).step == 40
    assert_same_state(straight, resumed)


_TERM_SCRIPT = """
import sys, torch
sys.path.insert(0, {test_dir!r})
torch.set_num_threads({threads})
from test_trainer import make_family, make_data, config
from climgen.train import Trainer, TrainingInterrupted
try:
    Trainer(make_family("ae"), config(ema_decay=0.9, checkpoint_every=0), {run!r}).fit(make_data())
except TrainingInterrupted as exc:
    print(exc.step, flush=True)
    sys.exit(128 + exc.signum)
"""


@pytest.mark.slow
def test_sigterm_from_outside_stops_cleanly_and_resume_matches(tmp_path):
    run = tmp_path / "terminated"
    script = _TERM_SCRIPT.format(
        test_dir=str(Path(__file__).parent), run=str(run), threads=torch.get_num_threads()
    )
    env = {**os.environ, "TOY_DELAY": "0.2"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    metrics = run / "metrics.csv"
    deadline = time.monotonic() + 60
    try:
        while not (metrics.exists() and "\n10," in metrics.read_text()):
            assert proc.poll() is None, "training subprocess ended early"
            assert time.monotonic() < deadline, "no progress within 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    stopped_at = int(out.decode().split()[-1])
    assert 10 <= stopped_at < 40
    assert ckpt_names(run) == [f"step_{stopped_at:07d}"]

    straight = Trainer(make_family("ae"), config(ema_decay=0.9), tmp_path / "straight")
    straight.fit(make_data())
    resumed = Trainer(ToyAE(), config(ema_decay=0.9, checkpoint_every=0), run)
    assert resumed.fit(make_data(), resume=True).step == 40
    assert_same_state(straight, resumed)


def ckpt_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step_*"))


def test_fresh_fit_into_a_run_with_checkpoints_is_refused(tmp_path):
    Trainer(make_family("ae"), config(max_steps=10), tmp_path).fit(make_data())
    with pytest.raises(ClimgenInputError, match="resume"):
        Trainer(make_family("ae"), config(max_steps=10), tmp_path).fit(make_data())


# -- NaN guard -----------------------------------------------------------------------------------


@pytest.mark.parametrize("log_every", [1, 50])
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, log_every):
    family = make_family("ae")
    family.nan_at = 12  # the 13th step; checkpoints every 5 steps
    trainer = Trainer(family, config(checkpoint_every=5, log_every=log_every), tmp_path)
    with pytest.raises(ClimgenTrainingError, match=r"step 12: rec = nan") as err:
        trainer.fit(make_data())
    assert "step_0000010" in str(err.value)
    assert isinstance(err.value, RuntimeError)
    ck = load_checkpoint(tmp_path)
    assert ck.step == 10
    assert all(torch.isfinite(v).all() for v in ck.weights.values())
    assert not (tmp_path / "checkpoints" / "step_0000015").exists()


# -- EMA, clipping, optimisers, AMP --------------------------------------------------------------


def test_ema_follows_the_exponential_average_formula(tmp_path):
    decay = 0.8
    family = make_family("ae")
    manual = [p.detach().clone() for p in family.dec.parameters()]
    used = []

    class Track(Callback):
        def on_step_end(self, trainer, step, losses):
            d = min(decay, (1 + len(used)) / (10 + len(used)))  # warmed-up decay d_n
            used.append(d)
            for m, p in zip(manual, family.dec.parameters()):
                m.mul_(d).add_(p.detach(), alpha=1 - d)

    trainer = Trainer(family, config(max_steps=15, ema_decay=decay), tmp_path, callbacks=[Track()])
    trainer.fit(make_data())
    assert trainer.ema.updates == 15
    # The warm-up: d_0 = 0.1, rising with n; 15 updates stay below d = 0.8 (d_14 = 15/24).
    assert used[0] == 0.1 and used[-1] == min(decay, 15 / 24) and used == sorted(used)
    for m, e, p in zip(manual, trainer.ema.shadow.parameters(), family.dec.parameters()):
        torch.testing.assert_close(e, m, rtol=1e-6, atol=1e-7)
        assert not torch.equal(e, p)


class RecordingSGD(torch.optim.SGD):
    norms: list[float] = []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        RecordingSGD.norms.append(
            float(
                torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(gr) for gr in grads])
                )
            )
        )
        return super().step(closure)


def test_grad_clip_bounds_the_update_norm(tmp_path, monkeypatch):
    monkeypatch.setitem(
        train_context._OPTIMIZERS,
        "recording-sgd",
        lambda spec: RecordingSGD(spec.params, lr=spec.lr),
    )
    RecordingSGD.norms = []
    family = make_family("ae")
    family.loss_scale = 1e3
    monkeypatch.setattr(
        family,
        "optimizer_groups",
        lambda: {"main": OptimizerSpec(list(family.parameters()), lr=1e-4, kind="recording-sgd")},
    )
    trainer = Trainer(family, config(max_steps=6, grad_clip=0.5), tmp_path)
    trainer.fit(make_data())
    assert len(RecordingSGD.norms) == 6
    assert max(RecordingSGD.norms) <= 0.5 * (1 + 1e-5)
    assert float(trainer.ctx.grad_norms["main"]) > 0.5  # clipping was active
    assert trainer.ctx.updates == {"main": 6}


def test_unknown_optimizer_kind_lists_choices(tmp_path, monkeypatch):
    family = make_family("ae")
    monkeypatch.setattr(
        family,
        "optimizer_groups",
        lambda: {"main": OptimizerSpec(list(family.parameters()), kind="adamm")},
    )
    with pytest.raises(ClimgenInputError, match="unknown optimizer kind 'adamm'.*adam, adamw"):
        Trainer(family, config(max_steps=2), tmp_path).fit(make_data())


class JointGDA(torch.optim.Optimizer):
    """Simultaneous gradient descent (first player) / ascent (second) for ctx.game_step."""

    def __init__(self, params, n_min, lr):
        super().__init__(params, {"lr": lr})
        self.n_min = n_min
        self.calls = 0

    def step(self, loss_min, loss_max):
        params = self.param_groups[0]["params"]
        p_min, p_max = params[: self.n_min], params[self.n_min :]
        g_min = torch.autograd.grad(loss_min, p_min, retain_graph=True)
        g_max = torch.autograd.grad(loss_max, p_max)
        with torch.no_grad():
            for p, g in zip(p_min, g_min):
                p.sub_(self.param_groups[0]["lr"] * g)
            for p, g in zip(p_max, g_max):
                p.add_(self.param_groups[0]["lr"] * g)
        self.calls += 1


def test_game_step_drives_a_joint_optimizer(tmp_path, monkeypatch):
    family = make_family("gan")
    n_min = len(list(family.gen.parameters()))
    monkeypatch.setitem(
        train_context._OPTIMIZERS,
        "toy-gda",
        lambda spec: JointGDA(spec.params, spec.extra["n_min"], spec.lr),
    )
    params = list(family.gen.parameters()) + list(family.disc.parameters())
    monkeypatch.setattr(
        family,
        "optimizer_groups",
        lambda: {"game": OptimizerSpec(params, lr=1e-2, kind="toy-gda", extra={"n_min": n_min})},
    )

    def game(batch, step, ctx):
        value = family.disc(family.sample(8)).mean() - family.disc(batch["x"]).mean()
        ctx.game_step("game", value, value)  # generator minimises, critic maximises
        return {"value": value.detach()}

    monkeypatch.setattr(family, "training_step", game)
    before = [p.detach().clone() for p in params]
    trainer = Trainer(family, config(max_steps=4), tmp_path)
    trainer.fit(make_data())
    assert trainer.ctx.updates == {"game": 4} and trainer.optimizers["game"].calls == 4
    changed = [not torch.equal(a, p) for a, p in zip(before, params)]
    assert all(changed[:n_min]) and changed[n_min]  # generator and the critic's first layer


def test_bf16_autocast_on_cpu_trains(tmp_path):
    trainer = Trainer(make_family("ae"), config(max_steps=5, amp="bf16"), tmp_path)
    with trainer.ctx.autocast() if trainer.ctx else torch.autocast("cpu", torch.bfloat16):
        pass
    result = trainer.fit(make_data())
    assert trainer.ctx.amp_dtype is torch.bfloat16
    assert math.isfinite(result.losses["rec"])
    with trainer.ctx.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16


# -- logs, items, eval ---------------------------------------------------------------------------


def test_csv_has_one_row_per_log_step_with_loss_and_lr_columns(tmp_path):
    Trainer(make_family("gan"), config(max_steps=20, log_every=5), tmp_path).fit(make_data())
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    for r in rows:
        assert {"time_s", "d_loss", "g_loss", "lr_generator", "lr_discriminator"} <= set(r)
        assert math.isfinite(float(r["d_loss"])) and float(r["lr_generator"]) == 1e-3
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)


def test_item_kinds_tensor_pair_and_dict_reach_the_family_as_batches(tmp_path):
    x = make_data(16)
    seen = []

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return x[i], torch.ones(1, *SHAPE)

    family = make_family("ae")
    step = family.training_step

    def spy(batch, s, ctx):
        seen.append(sorted(batch))
        assert batch["x"].shape == (8, 1, *SHAPE)
        return step(batch, s, ctx)

    family.training_step = spy
    Trainer(family, config(max_steps=2), tmp_path / "a").fit(Pairs())
    Trainer(family, config(max_steps=2), tmp_path / "b").fit(x.numpy())
    assert seen == [["mask", "x"]] * 2 + [["x"]] * 2


def test_spectral_eval_scores_are_zero_against_itself_and_log10_4_for_double_amplitude():
    ref = make_data(16).double()
    cb = SpectralEvalCallback(ref)
    same = cb.scores(ref)
    assert same["lsd"] == pytest.approx(0.0, abs=1e-12) and same["w1"] == pytest.approx(0.0)
    doubled = cb.scores(2 * ref)  # power × 4 in every wavenumber bin
    assert doubled["lsd"] == pytest.approx(np.log10(4.0), rel=1e-9)
    assert doubled["w1"] == pytest.approx(float(ref.abs().mean()), rel=1e-9)


def test_eval_callback_logs_and_marks_best_checkpoint(tmp_path):
    x = make_data()
    trainer = Trainer(
        make_family("ae"),
        config(max_steps=30, eval_every=7, checkpoint_every=0, ema_decay=0.9),
        tmp_path,
    )
    result = trainer.fit(x, val_data=x[:12])
    rows = list(csv.DictReader(open(tmp_path / "eval.csv")))
    assert [int(r["step"]) for r in rows] == [7, 14, 21, 28]
    assert all(math.isfinite(float(r["lsd"])) and float(r["w1"]) >= 0 for r in rows)
    assert len(result.eval_history) == 4
    best_step = min(result.eval_history, key=lambda h: h["lsd"])["step"]
    assert result.best_checkpoint.name == f"step_{best_step:07d}"
    assert (tmp_path / "checkpoints" / "best").read_text().strip() == f"step_{best_step:07d}"
    assert load_checkpoint(tmp_path, which="best").step == best_step
    assert result.checkpoint.name == "step_0000030"


# -- time budget and request_finish ---------------------------------------------------------------


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_time_budget_ends_after_the_step_past_it_with_a_final_checkpoint(tmp_path, clock):
    class Burn(Callback):
        """Each step costs ≥ 20 ms of both wall and CPU time."""

        def on_step_end(self, trainer, step, losses):
            t0 = time.process_time()
            while time.process_time() - t0 < 0.02:
                pass

    cfg = config(max_steps=10_000, checkpoint_every=0, max_time_s=0.1, time_clock=clock)
    now = time.perf_counter if clock == "wall" else time.process_time
    t0 = now()
    result = Trainer(make_family("ae"), cfg, tmp_path / "run", callbacks=[Burn()]).fit(make_data())
    # The budget was spent, and the run ended long before max_steps (≥ 200 s of steps).
    assert now() - t0 >= 0.1
    assert 1 <= result.step < 1000
    assert result.checkpoint is not None
    assert load_checkpoint(result.checkpoint).step == result.step


def test_request_finish_from_a_callback_ends_like_max_steps(tmp_path):
    class FinishAt(Callback):
        def on_step_end(self, trainer, step, losses):
            if step == 7:
                trainer.request_finish()

    result = Trainer(
        make_family("ae"), config(checkpoint_every=0), tmp_path / "run", callbacks=[FinishAt()]
    ).fit(make_data())
    assert result.step == 7
    assert result.checkpoint is not None and load_checkpoint(result.checkpoint).step == 7


@pytest.mark.parametrize("option", [{"compile": "default"}, {"channels_last": True}])
def test_compile_and_channels_last_train_to_the_same_weights(tmp_path, monkeypatch, option):
    from climgen.train import trainer as trainer_module

    # The dynamo path without a C++ toolchain: graphs are captured, then run eagerly.
    monkeypatch.setattr(trainer_module, "COMPILE_BACKEND", "eager")
    plain = Trainer(make_family("ae"), config(max_steps=6), tmp_path / "plain")
    plain.fit(make_data())
    other = Trainer(make_family("ae"), config(max_steps=6, **option), tmp_path / "other")
    other.fit(make_data())
    for (name, a), (_, b) in zip(
        plain.family.state_dict().items(), other.family.state_dict().items()
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # Checkpoints keep the plain parameter names (no "_orig_mod." prefix).
    assert set(load_checkpoint(tmp_path / "other").weights) == set(plain.family.state_dict())


def test_batch_stream_channels_last_gives_the_same_batches_in_channels_last_format():
    from climgen.train.batching import BatchStream

    data = torch.arange(6 * 2 * 3 * 4, dtype=torch.float32).reshape(6, 2, 3, 4)
    kw = dict(batch_size=3, seed=0, device=torch.device("cpu"))
    plain, last = BatchStream(data, **kw), BatchStream(data, channels_last=True, **kw)
    for _ in range(3):
        a, b = plain.next()["x"], last.next()["x"]
        assert torch.equal(a, b)
        assert b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous()
