"""Per-step machinery of the trainer: the optimiser registry, the StepContext and the EMA.

- :func:`register_optimizer` / :func:`build_optimizer`: optimisers by name. Built in: "adam",
  "adamw", "rmsprop", "sgd" (``torch.optim``). Other packages (the GAN family's two-player
  optimisers "optimistic-adam", "extragradient", "cgd") register a factory
  ``factory(spec: OptimizerSpec) -> torch.optim.Optimizer``. The optimiser must implement
  ``state_dict()`` / ``load_state_dict()`` (checkpoints) and ``zero_grad(set_to_none=True)``;
  a joint two-player optimiser used through ``ctx.game_step`` implements
  ``step(loss_min, loss_max)`` and computes its own gradients.
- :class:`TrainContext`: the :class:`climgen.families.base.StepContext` the trainer hands to
  ``family.training_step``: ``step(loss, group)`` = zero the group's gradients, backward,
  (AMP unscale), gradient-norm clipping, optimiser step, zero_grad.
- :class:`EMA`: exponential moving average of weights,
  θ_ema ← d·θ_ema + (1 − d)·θ after every training step (Polyak & Juditsky 1992; as used for
  GAN generators by Karras et al. 2018 and Yazıcı et al. 2019, "The unusual effectiveness of
  averaging in GAN training").
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from climgen.errors import ClimgenInputError
from climgen.train.two_player import TWO_PLAYER_OPTIMIZERS

if TYPE_CHECKING:  # no runtime import: families may import this registry without a cycle
    from climgen.families.base import OptimizerSpec

__all__ = [
    "register_optimizer",
    "available_optimizers",
    "build_optimizer",
    "TrainContext",
    "EMA",
]

OptimizerFactory = Callable[["OptimizerSpec"], torch.optim.Optimizer]


def _adam(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **spec.extra
    )


def _adamw(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        spec.params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay, **spec.extra
    )


def _rmsprop(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        spec.params, lr=spec.lr, weight_decay=spec.weight_decay, **spec.extra
    )


def _sgd(spec: OptimizerSpec) -> torch.optim.Optimizer:
    return torch.optim.SGD(spec.params, lr=spec.lr, weight_decay=spec.weight_decay, **spec.extra)


_OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
    "sgd": _sgd,
    **TWO_PLAYER_OPTIMIZERS,  # optimistic Adam, extra-Adam, competitive gradient descent
}


def register_optimizer(kind: str, factory: OptimizerFactory) -> None:
    """Make ``OptimizerSpec(kind=kind)`` buildable: ``factory(spec)`` returns the optimiser.

    The factory receives the whole :class:`OptimizerSpec` (``params``, ``lr``, ``betas``,
    ``weight_decay`` and the free-form ``extra`` dict). Registering an existing name replaces
    it (the last registration wins).

    >>> register_optimizer("my-sgd", lambda spec: torch.optim.SGD(spec.params, lr=spec.lr))
    """
    if not isinstance(kind, str) or not kind:
        raise ClimgenInputError(f"optimizer kind must be a non-empty string, got {kind!r}")
    if not callable(factory):
        raise ClimgenInputError(f"optimizer factory for {kind!r} must be callable")
    _OPTIMIZERS[kind] = factory


def available_optimizers() -> list[str]:
    """Names accepted as ``OptimizerSpec.kind``."""
    return sorted(_OPTIMIZERS)


def build_optimizer(spec: OptimizerSpec, group: str = "main") -> torch.optim.Optimizer:
    """Build the optimiser named by ``spec.kind`` (built-in or registered)."""
    if spec.kind not in _OPTIMIZERS:
        raise ClimgenInputError(
            f"optimizer group {group!r}: unknown optimizer kind {spec.kind!r}; choose one of "
            f"{', '.join(available_optimizers())} (or register one with "
            "climgen.train.register_optimizer)"
        )
    params = list(spec.params)
    if not params:
        raise ClimgenInputError(f"optimizer group {group!r} has no parameters")
    try:
        return _OPTIMIZERS[spec.kind](spec)
    except TypeError as exc:  # e.g. a misspelt key in spec.extra
        raise ClimgenInputError(
            f"optimizer group {group!r} ({spec.kind!r}): invalid options {spec.extra!r}: {exc}"
        ) from exc


class TrainContext:
    """The trainer's implementation of :class:`climgen.families.base.StepContext`.

    Parameters
    ----------
    device : where the batches and parameters live.
    optimizers : ``{group: optimiser}`` built from ``family.optimizer_groups()``.
    amp_dtype : ``None`` (full precision), ``torch.bfloat16`` or ``torch.float16``.
    scalers : ``{group: torch.amp.GradScaler}`` for float16 (empty otherwise).
    grad_clip : max global L2 norm of each group's gradients (after AMP unscale), or None.
    grad_sync : called with the group's parameters after backward and before unscale,
        clipping and the optimiser step; multi-process training passes
        :func:`climgen.train.distributed.all_reduce_gradients` (mean over the ranks).

    Attributes ``updates`` (``{group: number of optimiser steps}``) and ``grad_norms``
    (``{group: L2 norm of the last gradients before clipping}``, only when clipping) are
    kept for logging and tests.
    """

    def __init__(
        self,
        device: torch.device,
        optimizers: dict[str, torch.optim.Optimizer],
        *,
        amp_dtype: torch.dtype | None = None,
        scalers: dict[str, torch.amp.GradScaler] | None = None,
        grad_clip: float | None = None,
        grad_sync: Callable[[list[torch.nn.Parameter]], None] | None = None,
    ):
        self.device = device
        self.grad_sync = grad_sync
        self.optimizers = optimizers
        self.amp_dtype = amp_dtype
        self.scalers = scalers or {}
        self.grad_clip = grad_clip
        self.updates = {name: 0 for name in optimizers}
        self.grad_norms: dict[str, torch.Tensor] = {}
        self._params = {
            name: [p for g in opt.param_groups for p in g["params"]]
            for name, opt in optimizers.items()
        }

    def _optimizer(self, group: str) -> torch.optim.Optimizer:
        try:
            return self.optimizers[group]
        except KeyError:
            raise ClimgenInputError(
                f"ctx.step: unknown optimizer group {group!r}; the family declared "
                f"{', '.join(map(repr, self.optimizers))} in optimizer_groups()"
            ) from None

    def step(self, loss: torch.Tensor, group: str) -> None:
        """Backward ``loss`` and update the parameters of optimiser ``group``.

        The group's gradients are cleared first, so gradients that another group's backward
        left on these parameters (e.g. the discriminator's during a generator update) never
        leak into this update.
        """
        opt = self._optimizer(group)
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(group)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(self._params[group])
        if scaler is not None:
            scaler.unscale_(opt)
        if self.grad_clip is not None:
            self.grad_norms[group] = torch.nn.utils.clip_grad_norm_(
                self._params[group], self.grad_clip
            ).detach()
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.updates[group] += 1

    def game_step(self, group: str, loss_min: torch.Tensor, loss_max: torch.Tensor) -> None:
        """Joint two-player update: ``optimizer.step(loss_min, loss_max)`` of group ``group``.

        The joint optimiser computes its own (mixed second-order) gradients, so neither AMP
        loss scaling nor gradient clipping applies here.
        """
        opt = self._optimizer(group)
        if self.grad_sync is not None:
            raise ClimgenInputError(
                f"ctx.game_step({group!r}): joint two-player optimisers compute their own "
                "gradients, which multi-process training cannot average; train this family "
                "in one process or use a per-player optimiser kind"
            )
        if group in self.scalers:
            raise ClimgenInputError(
                f"ctx.game_step({group!r}): amp='fp16' loss scaling cannot drive a joint "
                "two-player optimiser; use amp='bf16' or amp='off'"
            )
        opt.zero_grad(set_to_none=True)
        try:
            opt.step(loss_min, loss_max)
        except TypeError as exc:
            raise ClimgenInputError(
                f"ctx.game_step({group!r}): optimizer {type(opt).__name__} has no "
                "step(loss_min, loss_max); declare the group with a joint kind such as 'cgd'"
            ) from exc
        opt.zero_grad(set_to_none=True)
        self.updates[group] += 1

    def autocast(self):
        """Mixed-precision context for forward passes (a no-op when AMP is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


class EMA:
    """Exponential moving average of a module's floating-point parameters.

    After update n = 0, 1, 2, …: θ_ema ← d_n·θ_ema + (1 − d_n)·θ with the warmed-up decay
    d_n = min(d, (1 + n)/(10 + n)) (decay d ∈ (0, 1)); buffers (e.g. batch-norm statistics)
    are copied. ``shadow`` is a frozen deep copy of the module in eval mode; it starts equal
    to the module's weights. Without the warm-up the initial (random) weights keep a weight
    d^n: 0.999^500 ≈ 0.61, i.e. a 500-step run with d = 0.999 samples mostly from its
    initialisation. Reference: the ``num_updates`` rule of TensorFlow's
    ``tf.train.ExponentialMovingAverage``.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module = module
        self.decay = float(decay)
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    def _pairs(self):
        live = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        avg = [p for p in self.shadow.parameters() if p.dtype.is_floating_point]
        return avg, live

    def current_decay(self) -> float:
        """d_n = min(d, (1 + n)/(10 + n)), the decay of the next update (n updates so far)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        avg, live = self._pairs()
        if avg:
            decay = self.current_decay()
            torch._foreach_mul_(avg, decay)
            torch._foreach_add_(avg, live, alpha=1.0 - decay)
        for b_avg, b in zip(self.shadow.buffers(), self.module.buffers()):
            b_avg.copy_(b)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """Temporarily put the averaged weights into the live module (bit-exact restore)."""
        backup = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        with torch.no_grad():
            self.module.load_state_dict(self.shadow.state_dict())
        try:
            yield self.module
        finally:
            with torch.no_grad():
                self.module.load_state_dict(backup)
