"""The one training loop for every generative family (see docs/training.md).

The family owns its losses and update order (``training_step`` calls ``ctx.step`` for each
optimiser update; see :mod:`climgen.families.base`); the trainer owns everything else:
device, mixed precision, optimisers, EMA, gradient clipping, seeded reproducible batching
(:mod:`climgen.train.batching`), logging (tqdm, ``metrics.csv``, ``eval.csv``, optional
TensorBoard: :mod:`climgen.train.runlog`), evaluation hooks, atomic checkpoints, bit-identical
resume on CPU (:mod:`climgen.train.rng`) and the NaN/inf guard. Its options are
:class:`climgen.train.config.TrainConfig`.

Step numbering: ``training_step(batch, step, ctx)`` receives the number of steps completed
before it (0, 1, …, max_steps − 1); logs and checkpoints are labelled by completed steps
(``step_0000020`` holds the state after 20 steps).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from climgen.errors import ClimgenInputError
from climgen.train import checkpoint as ckpt
from climgen.train import distributed
from climgen.train.batching import BatchStream, ResumableBatchSampler, first_fields
from climgen.train.callbacks import Callback, SpectralEvalCallback
from climgen.train.config import CLOCKS, TrainConfig, TrainResult, amp_dtype, select_device
from climgen.train.context import EMA, TrainContext, build_optimizer
from climgen.train.rng import (
    deterministic_algorithms,
    rank_seed,
    restore_rng,
    rng_state,
    seed_everything,
)
from climgen.train.runlog import ClimgenTrainingError, LossWindow, RunLogs, format_value
from climgen.train.schedule import apply_lr_factor, lr_factor
from climgen.train.stopping import StopSignals, TrainingInterrupted, agree

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ClimgenTrainingError",
    "TrainingInterrupted",
    "ResumableBatchSampler",
    "select_device",
]

# Tests set this to "eager" to exercise the compile path without a C++ toolchain.
COMPILE_BACKEND = os.environ.get("CLIMGEN_COMPILE_BACKEND", "inductor")


def _latest_valid(run_dir: Path) -> Path | None:
    try:
        return ckpt.find_latest_valid(run_dir, warn=False)
    except ckpt.CheckpointError:
        return None


class Trainer:
    """Train ``family`` under ``config``, writing logs and checkpoints into ``run_dir``.

    Parameters
    ----------
    family : a :class:`climgen.families.base.Family` (``torch.nn.Module``).
    config : :class:`TrainConfig`, a mapping (``TrainConfig.from_dict``) or None (defaults).
    run_dir : run directory (created): ``metrics.csv``, ``eval.csv``, ``checkpoints/``.
    callbacks : :class:`Callback` instances.
    card : extra model-card entries (normaliser state, grid, variables, data provenance);
        JSON-serialisable, stored in every checkpoint's ``card.json``.
    """

    def __init__(
        self,
        family: torch.nn.Module,
        config: TrainConfig | Mapping | None,
        run_dir: str | os.PathLike,
        callbacks=(),
        card: dict | None = None,
    ):
        if not isinstance(family, torch.nn.Module):
            raise ClimgenInputError(
                f"family must be a torch.nn.Module family, got {type(family).__name__}"
            )
        for method in ("optimizer_groups", "training_step", "sample", "ema_module"):
            if not callable(getattr(family, method, None)):
                raise ClimgenInputError(f"family {type(family).__name__} has no {method}()")
        self.family = family
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.run_dir = Path(run_dir)
        self.callbacks: list[Callback] = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ClimgenInputError(f"callbacks must be Callback instances, got {cb!r}")
        self.card_extras = dict(card or {})
        ckpt.base_card(family, step=0, extras=self.card_extras)  # fail early if not JSON-able
        self.device = select_device(self.config.device)
        self.dist = distributed.env_info()
        if self.dist.enabled and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per process
        self._stop = StopSignals()
        self._finish_requested = False
        self._budget_used = 0.0  # fraction of max_time_s spent, as of the last step
        self.step = 0
        self.val_data = None
        self.ema: EMA | None = None
        self.ctx: TrainContext | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None
        self._best_requested = False
        self._batches: BatchStream | None = None
        self._losses = LossWindow(
            self.device, lambda: self.last_checkpoint or _latest_valid(self.run_dir)
        )
        self._logs = RunLogs(self.run_dir, keep_until=None, tensorboard=False, main=False)
        self._elapsed_before, self._t0 = 0.0, time.perf_counter()

    # -- public helpers for callbacks ----------------------------------------------------------

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics (``eval.csv``, TensorBoard, progress bar); rank 0 only."""
        self._logs.evaluation(step, self._elapsed(), metrics)

    def mark_best(self) -> None:
        """Mark the current state as best: a checkpoint is written now and ``best`` points to it."""
        self._best_requested = True

    def request_finish(self) -> None:
        """End training after the current step as if ``max_steps`` were reached: the final
        checkpoint is written and ``fit`` returns normally (for callbacks: budgets, early
        stopping). Unlike SIGTERM this is not an interruption."""
        self._finish_requested = True

    @contextlib.contextmanager
    def sampling_mode(self, use_ema: bool = True):
        """Eval mode, no gradients and (optionally) EMA weights; restores everything after."""
        was_training = self.family.training
        self.family.eval()
        swap = (
            self.ema.applied() if (use_ema and self.ema is not None) else contextlib.nullcontext()
        )
        try:
            with torch.no_grad(), swap:
                yield self.family
        finally:
            self.family.train(was_training)

    def val_batch(self, n: int) -> torch.Tensor | None:
        """Up to ``n`` validation fields as one (n, C, H, W) tensor (None without val_data)."""
        return first_fields(self.val_data, n)

    # -- setup -----------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        self.family.to(self.device)
        if cfg.channels_last:
            self.family.to(memory_format=torch.channels_last)
        if cfg.compile != "off":
            # In place, per sub-network: state_dict keys (checkpoints, EMA) stay the same.
            mode = None if cfg.compile == "default" else cfg.compile
            for module in self.family.children():
                module.compile(mode=mode, backend=COMPILE_BACKEND)
        grad_sync = None
        if self.dist.enabled:
            distributed.broadcast_module(self.family)  # identical replicas before any update
            world = self.dist.world_size

            def grad_sync(params):
                distributed.all_reduce_gradients(params, world)

        groups = self.family.optimizer_groups()
        if not isinstance(groups, Mapping) or not groups:
            raise ClimgenInputError(
                f"{type(self.family).__name__}.optimizer_groups() must return a non-empty dict"
            )
        self.optimizers = {name: build_optimizer(spec, name) for name, spec in groups.items()}
        dtype = amp_dtype(cfg, self.device)
        scalers = {}
        if dtype is torch.float16:
            scalers = {name: torch.amp.GradScaler(self.device.type) for name in self.optimizers}
        self.ctx = TrainContext(
            self.device,
            self.optimizers,
            amp_dtype=dtype,
            scalers=scalers,
            grad_clip=cfg.grad_clip,
            grad_sync=grad_sync,
        )
        ema_module = self.family.ema_module()
        self.ema = EMA(ema_module, cfg.ema_decay) if cfg.ema_decay and ema_module else None
        if self.val_data is not None and cfg.eval_every > 0:
            if not any(isinstance(cb, SpectralEvalCallback) for cb in self.callbacks):
                self.callbacks.append(SpectralEvalCallback())

    # -- state -----------------------------------------------------------------------------------

    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.ctx.scalers.items()},
            "updates": dict(self.ctx.updates),
            "ema_updates": self.ema.updates if self.ema else 0,
            "sampler": self._batches.state_dict(),
            "rng": rng_state(self.device),
            "elapsed_s": self._elapsed(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def _restore(self, path: Path) -> None:
        ckpt.load_weights_into(self.family, path, device=self.device)
        state = ckpt.load_trainer_state(path, map_location=self.device)
        if set(state["optimizers"]) != set(self.optimizers):
            raise ckpt.CheckpointError(
                f"checkpoint {path} has optimizer groups {sorted(state['optimizers'])}, the "
                f"family has {sorted(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scaler in self.ctx.scalers.items():
            if name in state["scalers"]:
                scaler.load_state_dict(state["scalers"][name])
        self.ctx.updates.update(state["updates"])
        if self.ema is not None:
            if (path / "ema.safetensors").exists():
                ckpt.load_weights_into(self.ema.shadow, path, ema=True, device=self.device)
                self.ema.updates = int(state["ema_updates"])
            else:
                warnings.warn(
                    f"{path} has no EMA weights; the EMA restarts from the weights", stacklevel=3
                )
                self.ema = EMA(self.ema.module, self.ema.decay)
        for cb, cb_state in zip(self.callbacks, state.get("callbacks", [])):
            cb.load_state_dict(cb_state)
        self.step = int(state["step"])
        self._batches.load_state_dict(state["sampler"])
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        restore_rng(
            state,
            self.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            reseed=self.config.seed + self.step,
            where=path,
        )

    def _save(self, best: bool) -> Path:
        """Write a checkpoint (rank 0; every rank takes part, the others wait for it)."""
        state = self._trainer_state()
        if self.dist.enabled:
            per_rank = distributed.gather_to_main(state["rng"], self.dist.world_size)
            if not self.dist.is_main:
                distributed.barrier()
                path = ckpt.checkpoint_dir(self.run_dir) / f"step_{self.step:07d}"
                return self._saved(path, best)
            state["rng_ranks"] = per_rank
        card = ckpt.base_card(self.family, step=self.step, extras=self.card_extras)
        card["train_config"] = self.config.to_dict()
        card["has_ema"] = self.ema is not None
        card["world_size"] = self.dist.world_size
        path = ckpt.save_checkpoint(
            self.run_dir,
            self.step,
            model=self.family,
            card=card,
            trainer_state=state,
            ema_model=self.ema.shadow if self.ema else None,
            keep_last=self.config.keep_last,
            best=best,
        )
        if self.dist.enabled:
            distributed.barrier()
        return self._saved(path, best)

    def _saved(self, path: Path, best: bool) -> Path:
        self.last_checkpoint = path
        if best:
            self.best_checkpoint = path
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t0)

    # -- the loop --------------------------------------------------------------------------------

    def _flush(self, reduce: bool = True) -> dict[str, float]:
        return self._losses.flush(self.dist.world_size if reduce else 1)

    def _consensus(self, started: float) -> tuple[bool, bool]:
        """``(finish, stop)`` after a step, the same on every rank: finish = a finish request
        or the time budget spent (on the slowest rank's clock); stop = a SIGTERM/SIGINT on any
        rank. Also records the budget fraction for :meth:`_schedule_lr`."""
        cfg = self.config
        elapsed = CLOCKS[cfg.time_clock]() - started if cfg.max_time_s > 0 else 0.0
        stop = self._stop.received is not None
        elapsed, finish, stop = agree(elapsed, self._finish_requested, stop, self.dist, self.device)
        self._budget_used = elapsed / cfg.max_time_s if cfg.max_time_s > 0 else 0.0
        return finish or (cfg.max_time_s > 0 and elapsed >= cfg.max_time_s), stop

    def _schedule_lr(self) -> None:
        """Set the learning rates for the coming step (no-op for a constant schedule)."""
        cfg = self.config
        if cfg.lr_schedule == "constant" and cfg.warmup_steps == 0:
            return
        progress = max(self.step / cfg.max_steps, self._budget_used)
        factor = lr_factor(cfg.lr_schedule, progress, self.step, cfg.warmup_steps, cfg.min_lr_ratio)
        apply_lr_factor(self.optimizers, factor)

    def _start(self, dataset, resume: bool) -> None:
        """Build optimisers and batches, then restore the latest checkpoint or seed afresh."""
        cfg = self.config
        self._build()
        self._batches = BatchStream.for_run(dataset, cfg, self.device, self.dist)
        self._elapsed_before, self._t0 = 0.0, time.perf_counter()
        existing = ckpt.list_checkpoints(self.run_dir)
        if resume and existing:
            self.last_checkpoint = ckpt.find_latest_valid(self.run_dir)
            self._restore(self.last_checkpoint)
            self.best_checkpoint = ckpt.best_pointer(self.run_dir)
        else:
            if existing:
                raise ClimgenInputError(
                    f"run directory {self.run_dir} already holds checkpoints; pass "
                    "resume=True (--resume) to continue it, or choose a new run directory"
                )
            if resume:
                warnings.warn(
                    f"nothing to resume in {self.run_dir}; starting from step 0", stacklevel=3
                )
            seed_everything(rank_seed(cfg.seed, self.dist.rank))
        self._logs = RunLogs(
            self.run_dir,
            keep_until=self.step if resume else None,
            tensorboard=cfg.tensorboard,
            main=self.dist.is_main,
        )

    def fit(self, dataset, *, val_data=None, resume: bool = False) -> TrainResult:
        """Train until ``config.max_steps`` steps are completed.

        dataset : a torch ``Dataset`` (items: tensors (C, H, W), (x, mask) pairs or dicts
            with "x") or an (N, C, H, W) tensor/array.
        val_data : validation fields (tensor/array or Dataset); with ``eval_every > 0`` and
            no :class:`SpectralEvalCallback` given, one is added that compares with them.
        resume : continue from the latest valid checkpoint of ``run_dir`` (starts from
            scratch, with a warning, when there is none).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        self.dist = distributed.init_from_env(self.device)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temporaries(self.run_dir)
        distributed.barrier()
        self.val_data = val_data
        self._start(dataset, resume)
        show = self.dist.is_main and cfg.progress and sys.stderr.isatty()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not show,
            dynamic_ncols=True,
            desc=getattr(self.family, "name", "train"),
        )
        self._finish_requested = False
        try:
            with deterministic_algorithms(cfg.deterministic, self.device), self._stop:
                last_losses = self._loop(bar)
            distributed.barrier()
        finally:
            bar.close()
            self._losses.clear()
            self._logs.close()
        result = TrainResult(
            step=self.step,
            losses=last_losses,
            run_dir=self.run_dir,
            checkpoint=self.last_checkpoint,
            best_checkpoint=self.best_checkpoint,
            metrics_path=self.run_dir / "metrics.csv",
            elapsed_s=self._elapsed(),
            eval_history=[
                h
                for cb in self.callbacks
                if isinstance(cb, SpectralEvalCallback)
                for h in cb.history
            ],
        )
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _loop(self, bar) -> dict[str, float]:
        """Steps until ``max_steps`` (or a finish request / the time budget); returns the last
        window-mean losses. Raises :class:`TrainingInterrupted` on SIGTERM/SIGINT."""
        cfg = self.config
        last_losses: dict[str, float] = {}
        end_step = cfg.max_steps
        self.family.train()
        for cb in self.callbacks:
            cb.on_fit_start(self)
        started = CLOCKS[cfg.time_clock]()
        self._budget_used = 0.0
        while self.step < end_step:
            batch = self._batches.next()
            self._schedule_lr()
            try:
                losses = self.family.training_step(batch, self.step, self.ctx)
            except Exception:
                # A NaN at an earlier step is the real cause: report it (no collective here,
                # the other ranks may not have failed).
                self._flush(reduce=False)
                raise
            self._losses.record(self.step, losses, type(self.family).__name__)
            if self.ema is not None:
                self.ema.update()
            self.step += 1
            bar.update(1)
            for cb in self.callbacks:
                cb.on_step_end(self, self.step, losses)
            finish, stop = self._consensus(started)
            # A callback may also have lowered config.max_steps (older budget callbacks).
            if self.step < end_step and (cfg.max_steps <= self.step or finish):
                end_step = self.step
            eval_now = cfg.eval_every > 0 and self.step % cfg.eval_every == 0
            ckpt_now = self.step == end_step or (
                cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0
            )
            if self.step % cfg.log_every == 0 or eval_now or ckpt_now:
                means = self._flush()
                if means:
                    last_losses = means
                if self.step % cfg.log_every == 0:
                    lrs = {n: o.param_groups[0]["lr"] for n, o in self.optimizers.items()}
                    self._logs.losses(self.step, self._elapsed(), means, lrs)
                    bar.set_postfix({k: format_value(v) for k, v in means.items()}, refresh=False)
            if eval_now:
                for cb in self.callbacks:
                    cb.on_eval(self, self.step)
            saved_now = ckpt_now or self._best_requested
            if saved_now:
                self._save(best=self._best_requested)
                self._best_requested = False
            if stop and self.step < end_step:
                self._flush()  # never checkpoint a non-finite state
                path = self.last_checkpoint if saved_now else self._save(best=False)
                raise TrainingInterrupted(self._stop.received or signal.SIGTERM, self.step, path)
        return last_losses
