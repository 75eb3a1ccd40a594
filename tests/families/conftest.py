"""Family test helpers: a minimal StepContext (backward + optimiser step) and tiny GRF batches."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from climgen.data.samples import make_grf
from climgen.families.base import OptimizerSpec

_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def _build_optimizer(spec: OptimizerSpec) -> torch.optim.Optimizer:
    cls = _OPTIMIZERS[spec.kind]
    kwargs = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if spec.kind in ("adam", "adamw"):
        kwargs["betas"] = spec.betas
    return cls(spec.params, **kwargs)


class SimpleStepContext:
    """The smallest StepContext: plain optimisers from the family's specs, no AMP, no clipping."""

    def __init__(self, family: torch.nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.optimizers = {
            name: _build_optimizer(spec) for name, spec in family.optimizer_groups().items()
        }
        self.updates = {name: 0 for name in self.optimizers}

    def step(self, loss: torch.Tensor, group: str) -> None:
        opt = self.optimizers[group]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.updates[group] += 1

    def game_step(self, group: str, loss_min: torch.Tensor, loss_max: torch.Tensor) -> None:
        raise NotImplementedError("SimpleStepContext has no two-player optimiser")

    def autocast(self):
        return contextlib.nullcontext()


def train_family(
    family: torch.nn.Module,
    data: torch.Tensor,
    steps: int,
    *,
    batch_size: int = 16,
    seed: int = 0,
    cond: torch.Tensor | None = None,
) -> list[dict[str, float]]:
    """Run ``steps`` training steps on random mini-batches of ``data``; return the losses.

    Runs on one CPU thread: tiny models are dominated by thread synchronisation otherwise
    (several times slower on a loaded 2-core machine).
    """
    torch.manual_seed(seed)
    ctx = SimpleStepContext(family)
    family.train()
    picker = torch.Generator().manual_seed(seed)
    history = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(steps):
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=picker)
            batch = {"x": data[idx]}
            if cond is not None:
                batch["cond"] = cond[idx]
            losses = family.training_step(batch, step, ctx)
            for value in losses.values():
                assert not value.requires_grad
            history.append({k: float(v) for k, v in losses.items()})
    finally:
        torch.set_num_threads(threads)
    return history


@pytest.fixture
def step_context():
    """The SimpleStepContext class (call it with a family)."""
    return SimpleStepContext


@pytest.fixture
def trainer():
    """``train_family(family, data, steps, ...)`` → list of per-step loss dicts."""
    return train_family


@pytest.fixture
def tiny_grf() -> torch.Tensor:
    """(64, 1, 16, 16) float32 periodic Gaussian random fields with a k^-3 spectrum, unit std."""
    fields = make_grf(64, 16, 16, slope=-3.0, seed=0, dtype=np.float32)
    fields /= fields.std()
    return torch.from_numpy(fields)[:, None]
