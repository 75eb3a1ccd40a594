"""Issue 24 item 1: the training seed alone fixes a run, from its initial weights on.

Two fits with the same seed, started from different global RNG states, give bit-identical
checkpoints and outputs on CPU, for every task; a ``climgen train`` killed with SIGKILL and
continued with ``--resume`` ends where an uninterrupted run ends. No test here seeds torch.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file

from climgen.cli import main
from climgen.data.io import write_fields
from climgen.data.samples import grf_dataarray
from climgen.train import find_latest_valid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scramble_global_rngs(k: int) -> None:
    """Leave torch/numpy/python global RNGs in a state that depends on ``k``."""
    torch.manual_seed(1000 + k)
    torch.rand(17 * (k + 1))
    np.random.seed(k)
    random.seed(k)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ck = find_latest_valid(run_dir)
    out = load_file(str(ck / "model.safetensors"))
    if (ck / "ema.safetensors").exists():
        out.update({f"ema.{k}": v for k, v in load_file(str(ck / "ema.safetensors")).items()})
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs between the two runs"


def _planar(n=16, ny=16, nx=16, seed=0, name="psi"):
    return grf_dataarray(n, ny, nx, seed=seed, name=name)


def _emulate(run_dir):
    from climgen.tasks.emulate.emulator import Emulator

    em = Emulator("vae", latent_dim=4, base_channels=4)
    em.fit(_planar(), run_dir=run_dir, max_steps=2, batch_size=8, seed=5, progress=False)
    return em.sample(3, seed=1)


def _fill(run_dir):
    from climgen.tasks.fill.infiller import Infiller

    da = grf_dataarray(12, 8, 16, kind="latlon", seed=3, name="tas")
    net = Infiller("partialconv", base_channels=4, num_levels=2)
    net.fit(da, run_dir=run_dir, max_steps=2, batch_size=4, seed=5, progress=False)
    obs = da.isel(time=slice(0, 2)).where(np.arange(16) % 3 != 0)
    return net.fill(obs, members=2, seed=1)


def _downscale(run_dir):
    from climgen.tasks.downscale.downscaler import Downscaler

    da = _planar(n=16, ny=16, nx=16, seed=4)
    down = Downscaler(4, "regression", base_channels=4, n_blocks=1)
    down.fit(da, run_dir=run_dir, max_steps=2, batch_size=8, seed=5, progress=False)
    return down.downscale(down.coarsen(da.isel(time=slice(0, 2))), members=1)


def _translate(run_dir):
    from climgen.tasks.translate.translator import Translator

    a, b = _planar(n=8, seed=6), _planar(n=8, seed=7)
    tr = Translator("pix2pix", base_channels=4, depth=1, disc_channels=4, disc_layers=1)
    tr.fit(a, b, run_dir=run_dir, max_steps=2, batch_size=4, seed=5, progress=False)
    return tr.translate(a.isel(time=slice(0, 2)), seed=1)


@pytest.mark.parametrize("task", [_emulate, _fill, _downscale, _translate])
def test_same_seed_gives_identical_weights_and_outputs_whatever_the_global_rng(tmp_path, task):
    outputs = []
    for k in (0, 1):
        _scramble_global_rngs(k)
        outputs.append(task(tmp_path / f"run{k}"))
    _assert_same_weights(tmp_path / "run0", tmp_path / "run1")
    xr.testing.assert_equal(outputs[0].drop_attrs(), outputs[1].drop_attrs())


def test_another_seed_gives_other_initial_weights(tmp_path):
    from climgen.tasks.emulate.emulator import Emulator

    for seed in (0, 1):
        Emulator("vae", latent_dim=4, base_channels=4).fit(
            _planar(),
            run_dir=tmp_path / f"s{seed}",
            max_steps=1,
            batch_size=8,
            seed=seed,
            progress=False,
        )
    wa, wb = _weights(tmp_path / "s0"), _weights(tmp_path / "s1")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


_SLOW_TRAIN = """
import sys, time, torch
torch.set_num_threads(1)
from climgen.train import batching
_next = batching.BatchStream.next
def slow(self):
    time.sleep(0.25)
    return _next(self)
batching.BatchStream.next = slow
from climgen.cli import main
sys.exit(main(["train", sys.argv[1], "-q"]))
"""


def _recipe(folder: Path, run: str) -> Path:
    path = folder / f"{run}.yaml"
    path.write_text(
        "task: emulate\n"
        "data: {paths: data.nc, variables: [psi], train_fraction: 0.8}\n"
        "family: {name: vae, options: {latent_dim: 4, base_channels: 4}}\n"
        "train: {max_steps: 12, batch_size: 8, checkpoint_every: 2, seed: 3, ema_decay: 0.9}\n"
        "evaluate: {n_samples: 4}\n"
        f"run_dir: {run}\n"
    )
    return path


@pytest.mark.slow
def test_cli_train_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    write_fields(_planar(n=30).to_dataset(), tmp_path / "data.nc")
    killed = _recipe(tmp_path, "killed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_TRAIN, str(killed)], env=env)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    try:
        while not (latest.exists() and latest.read_text().strip() >= "step_0000004"):
            assert proc.poll() is None, "training subprocess ended early"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "checkpoints" / "step_0000012").exists()

    _scramble_global_rngs(7)
    assert main(["train", str(killed), "-q", "--resume"]) == 0
    _scramble_global_rngs(8)
    assert main(["train", str(_recipe(tmp_path, "straight")), "-q"]) == 0
    _assert_same_weights(tmp_path / "killed", tmp_path / "straight")
    a = xr.load_dataset(tmp_path / "killed" / "samples.nc")
    b = xr.load_dataset(tmp_path / "straight" / "samples.nc")
    xr.testing.assert_equal(a.drop_attrs(), b.drop_attrs())
