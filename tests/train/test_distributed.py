"""Multi-process training: 2 gloo processes under torchrun match one process on the same batch.

The workers run ``python -m torch.distributed.run --nproc_per_node 2`` on a small script that
imports the toy families from this module, so the real torchrun environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) drives the trainer.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from climgen.families.base import OptimizerSpec
from climgen.train import ResumableBatchSampler, TrainConfig, Trainer
from climgen.train.context import TrainContext

SHAPE = (8, 8)
REPO = Path(__file__).resolve().parents[2]


class DeterministicAE(nn.Module):
    """Two optimiser groups updated in turn, no noise: gradients depend on the batch only."""

    name = "det-ae"

    def __init__(self, hidden: int = 4):
        super().__init__()
        self.config = {"hidden": hidden}
        self.enc = nn.Conv2d(1, hidden, 3, padding=1)
        self.dec = nn.Conv2d(hidden, 1, 3, padding=1)

    def optimizer_groups(self):
        return {
            "enc": OptimizerSpec(list(self.enc.parameters()), lr=1e-2),
            "dec": OptimizerSpec(list(self.dec.parameters()), lr=1e-2, kind="sgd"),
        }

    def _loss(self, x):
        return (self.dec(torch.tanh(self.enc(x))) - x).square().mean()

    def training_step(self, batch, step, ctx):
        x = batch["x"]
        loss = self._loss(x)
        ctx.step(loss, "enc")
        ctx.step(self._loss(x), "dec")
        return {"rec": loss.detach()}

    def sample(self, n, generator=None):
        return self.dec(torch.randn(n, self.config["hidden"], *SHAPE, generator=generator))

    def ema_module(self):
        return self.dec


class NoisyGAN(nn.Module):
    """GAN-like alternation with noise from the global RNG (different on every rank)."""

    name = "noisy-gan"

    def __init__(self, latent: int = 4):
        super().__init__()
        self.config = {"latent": latent}
        n = SHAPE[0] * SHAPE[1]
        self.gen = nn.Sequential(nn.Linear(latent, n), nn.Unflatten(1, (1, *SHAPE)))
        self.disc = nn.Sequential(nn.Flatten(), nn.Linear(n, 8), nn.Tanh(), nn.Linear(8, 1))

    def optimizer_groups(self):
        return {
            "discriminator": OptimizerSpec(list(self.disc.parameters()), lr=1e-3),
            "generator": OptimizerSpec(list(self.gen.parameters()), lr=1e-3),
        }

    def sample(self, n, generator=None):
        return self.gen(torch.randn(n, self.config["latent"], generator=generator))

    def training_step(self, batch, step, ctx):
        x = batch["x"]
        sp = nn.functional.softplus
        fake = self.sample(x.shape[0])
        d_loss = sp(-self.disc(x)).mean() + sp(self.disc(fake.detach())).mean()
        ctx.step(d_loss, "discriminator")
        g_loss = sp(-self.disc(self.sample(x.shape[0]))).mean()
        ctx.step(g_loss, "generator")
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def ema_module(self):
        return self.gen


def make_data(n: int = 32) -> torch.Tensor:
    return torch.randn(n, 1, *SHAPE, generator=torch.Generator().manual_seed(0))


def config(**overrides) -> TrainConfig:
    base = dict(
        max_steps=12,
        batch_size=8,
        seed=5,
        device="cpu",
        log_every=3,
        checkpoint_every=6,
        ema_decay=0.9,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


_WORKER = """
import os, sys, torch
sys.path.insert(0, {test_dir!r})
torch.set_num_threads(1)
from test_distributed import DeterministicAE, NoisyGAN, make_data, config
from climgen.train import Trainer
rank = int(os.environ["RANK"])
out = {out!r}
torch.manual_seed(100 + rank)  # a different init on every rank: rank 0's must be broadcast
ae = DeterministicAE()
Trainer(ae, config(), f"{{out}}/ae_rank{{rank}}").fit(make_data())
torch.manual_seed(200 + rank)
gan = NoisyGAN()
Trainer(gan, config(), f"{{out}}/gan_rank{{rank}}").fit(make_data())
os.makedirs(f"{{out}}/weights", exist_ok=True)
torch.save({{"ae": ae.state_dict(), "gan": gan.state_dict()}}, f"{{out}}/weights/{{rank}}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _losses(path: Path) -> np.ndarray:
    rows = list(csv.DictReader(open(path)))
    return np.array([[float(r[k]) for k in r if k not in ("step", "time_s")] for r in rows])


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """Two workers with the environment torchrun gives them (the launcher itself is tested by
    test_torchrun_climgen_train_recipe; starting it costs several seconds)."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(_WORKER.format(test_dir=str(Path(__file__).parent), out=str(out)))
    _wait(_launch_workers(script, out))
    return out


def _launch_workers(script: Path, cwd: Path, *args: str, nproc: int = 2) -> list:
    """``nproc`` processes of ``script`` with the environment torchrun would give them."""
    port = str(_free_port())
    procs = []
    for rank in range(nproc):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def _wait(procs: list, timeout: float = 120) -> None:
    for rank, proc in enumerate(procs):
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, f"rank {rank}:\n{log[-3000:]}"


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_same_global_batch(two_process_run, tmp_path):
    out = two_process_run
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(100)  # rank 0's initial weights
        single = DeterministicAE()
        Trainer(single, config(), tmp_path / "single").fit(make_data())
    finally:
        torch.set_num_threads(previous)
    w0 = torch.load(out / "weights" / "0.pt", weights_only=True)
    w1 = torch.load(out / "weights" / "1.pt", weights_only=True)
    for name, value in single.state_dict().items():
        # Replicas stay identical (same averaged gradients), and equal one process's run on
        # the global batch up to float32 summation order.
        assert torch.equal(w0["ae"][name], w1["ae"][name]), name
        torch.testing.assert_close(w0["ae"][name], value, rtol=1e-4, atol=1e-5)
    # Logged losses are the mean over ranks of the shard means = the global-batch mean.
    np.testing.assert_allclose(
        _losses(out / "ae_rank0" / "metrics.csv"),
        _losses(tmp_path / "single" / "metrics.csv"),
        rtol=1e-4,
    )


@pytest.mark.slow
def test_gan_replicas_stay_identical_with_per_rank_noise(two_process_run):
    w0 = torch.load(two_process_run / "weights" / "0.pt", weights_only=True)["gan"]
    w1 = torch.load(two_process_run / "weights" / "1.pt", weights_only=True)["gan"]
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name


@pytest.mark.slow
def test_only_rank_0_writes_files(two_process_run):
    for family in ("ae", "gan"):
        assert not (two_process_run / f"{family}_rank1").exists()
        run0 = two_process_run / f"{family}_rank0"
        assert (run0 / "metrics.csv").is_file()
        assert (run0 / "checkpoints" / "step_0000012" / "model.safetensors").is_file()
    state = torch.load(
        two_process_run / "gan_rank0" / "checkpoints" / "step_0000012" / "trainer_state.pt",
        weights_only=True,
    )
    # Every rank's RNG state is kept, so a resumed 2-process run redraws the same noise.
    assert len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])


_RECIPE = """
task: emulate
data:
  paths: data.nc
  variables: [psi]
family:
  name: vae
  options: {latent_dim: 4, base_channels: 4}
train: {max_steps: 4, batch_size: 8, checkpoint_every: 2, log_every: 2}
run_dir: run
"""


@pytest.mark.slow
def test_torchrun_climgen_train_recipe(tmp_path):
    from climgen.data.samples import grf_dataarray

    grf_dataarray(16, 16, 32, seed=0, name="psi").to_dataset().to_netcdf(tmp_path / "data.nc")
    (tmp_path / "recipe.yaml").write_text(textwrap.dedent(_RECIPE))
    proc = _torchrun(["-m", "climgen", "train", "recipe.yaml", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("trained vae") == 1  # rank 0 reports, rank 1 is silent
    run = tmp_path / "run"
    assert (run / "checkpoints" / "step_0000004").is_dir()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4]


def test_sampler_shards_the_global_batch_over_ranks():
    whole = list(ResumableBatchSampler(20, 6, seed=2))
    shards = [list(ResumableBatchSampler(20, 6, seed=2, num_replicas=3, rank=r)) for r in range(3)]
    for b, batch in enumerate(whole):
        assert [i for s in shards for i in s[b]] == batch  # disjoint, and together the batch


def test_global_batch_must_split_evenly():
    with pytest.raises(ValueError, match="batch_size=10.*multiple.*3"):
        ResumableBatchSampler(20, 10, num_replicas=3)


def test_joint_optimizer_is_refused_when_gradients_are_averaged():
    ctx = TrainContext(
        torch.device("cpu"),
        {"game": torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)},
        grad_sync=lambda params: None,
    )
    with pytest.raises(ValueError, match="multi-process"):
        ctx.game_step("game", torch.zeros(()), torch.zeros(()))


_KILL_WORKER = """
import os, sys, time, torch
sys.path.insert(0, {test_dir!r})
torch.set_num_threads(1)
from test_distributed import NoisyGAN, make_data, config
from climgen.train import Callback, Trainer

class Slow(Callback):  # leaves time to kill the job between two checkpoints
    def on_step_end(self, trainer, step, losses):
        time.sleep(0.1)

rank = int(os.environ["RANK"])
out = {out!r}
cfg = config(max_steps=16, checkpoint_every=4)
def run(run_dir, resume=False, callbacks=()):
    torch.manual_seed(300 + rank)
    gan = NoisyGAN()
    Trainer(gan, cfg, f"{{out}}/{{run_dir}}", callbacks=callbacks).fit(make_data(), resume=resume)
    torch.save(gan.state_dict(), f"{{out}}/{{run_dir}}-weights{{rank}}.pt")
if sys.argv[1] == "first":
    run("straight")                          # uninterrupted reference run
    open(f"{{out}}/straight-done{{rank}}", "w").close()
    run("killed", callbacks=[Slow()])        # SIGKILLed from outside mid-training
else:
    run("killed", resume=True)
"""


@pytest.mark.slow
def test_two_process_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_KILL_WORKER.format(test_dir=str(Path(__file__).parent), out=str(tmp_path)))
    procs = _launch_workers(script, tmp_path, "first")
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    try:
        while not (latest.exists() and latest.read_text().strip() >= "step_0000008"):
            ended = [p for p in procs if p.poll() is not None]
            assert not ended, "a worker ended before the kill:\n" + ended[0].stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint at step 8 within 120 s"
            time.sleep(0.02)
        for p in procs:  # kill -9 of the whole job: no handler, no final checkpoint
            os.kill(p.pid, signal.SIGKILL)
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 2
    assert not (tmp_path / "killed" / "checkpoints" / "step_0000016").exists()

    _wait(_launch_workers(script, tmp_path, "resume"))
    for rank in range(2):
        straight = torch.load(tmp_path / f"straight-weights{rank}.pt", weights_only=True)
        resumed = torch.load(tmp_path / f"killed-weights{rank}.pt", weights_only=True)
        for name, value in straight.items():
            assert torch.equal(resumed[name], value), (rank, name)
    rows = list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(3, 17, 3))


_FINISH_WORKER = """
import json, os, sys, torch
sys.path.insert(0, {test_dir!r})
torch.set_num_threads(1)
from test_distributed import DeterministicAE, make_data, config
from climgen.train import Trainer
from climgen.train.callbacks import Callback
rank = int(os.environ["RANK"])

class FinishOnRank1(Callback):
    def on_step_end(self, trainer, step, losses):
        if rank == 1 and step == 4:
            trainer.request_finish()

out = {{}}
for name, extra in (("plain", {{}}), ("cosine", {{"lr_schedule": "cosine", "max_time_s": 1e4}})):
    torch.manual_seed(0)
    ae = DeterministicAE()
    cfg = config(checkpoint_every=0, ema_decay=None, **extra)
    res = Trainer(ae, cfg, f"run_{{name}}", callbacks=[FinishOnRank1()]).fit(make_data())
    out[name] = {{"step": res.step, "enc": float(ae.enc.weight.sum())}}
json.dump(out, open(f"finish_{{rank}}.json", "w"))
"""


@pytest.mark.slow
def test_a_finish_request_on_one_rank_ends_every_rank_at_the_same_step(tmp_path):
    """The per-step agreement is a collective made on every rank whatever its flags: a finish
    request seen by rank 1 alone (no time budget) ends both ranks after step 4, with or
    without a time-budgeted learning-rate schedule, instead of hanging rank 1."""
    import json

    script = tmp_path / "worker.py"
    script.write_text(_FINISH_WORKER.format(test_dir=str(Path(__file__).parent)))
    _wait(_launch_workers(script, tmp_path), timeout=60)
    r0, r1 = (json.loads((tmp_path / f"finish_{r}.json").read_text()) for r in (0, 1))
    for name in ("plain", "cosine"):
        assert r0[name]["step"] == r1[name]["step"] == 4
        assert r0[name]["enc"] == r1[name]["enc"]  # replicas stayed identical
