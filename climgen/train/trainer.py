"""The one training loop for every generative family (see docs/training.md).

The family owns its losses and update order (``training_step`` calls ``ctx.step`` for each
optimiser update; see :mod:`climgen.families.base`); the trainer owns everything else:
device, mixed precision, optimisers, EMA, gradient clipping, seeded reproducible batching,
logging (tqdm, ``metrics.csv``, ``eval.csv``, optional TensorBoard), evaluation hooks,
atomic checkpoints, bit-identical resume on CPU and the NaN/inf guard.

Step numbering: ``training_step(batch, step, ctx)`` receives the number of steps completed
before it (0, 1, …, max_steps − 1); logs and checkpoints are labelled by completed steps
(``step_0000020`` holds the state after 20 steps).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.train import checkpoint as ckpt
from climgen.train import distributed
from climgen.train.callbacks import Callback, SpectralEvalCallback
from climgen.train.context import EMA, TrainContext, build_optimizer
from climgen.train.schedule import LR_SCHEDULES, apply_lr_factor, lr_factor

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ClimgenTrainingError",
    "TrainingInterrupted",
    "ResumableBatchSampler",
    "select_device",
]


class ClimgenTrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step and loss."""


class TrainingInterrupted(ClimgenTrainingError):
    """SIGTERM/SIGINT stopped training after a completed step and a checkpoint was written.

    ``signum`` is the signal received, ``step`` the steps completed and ``checkpoint`` the
    checkpoint written on the way out; ``fit(..., resume=True)`` continues from it.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        name = signal.Signals(self.signum).name
        where = f"; checkpoint {checkpoint}" if checkpoint else ""
        super().__init__(
            f"training stopped by {name} after step {step}{where}; continue with --resume "
            "(resume=True)"
        )


_AMP = ("auto", "off", "bf16", "fp16")
_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# Tests set this to "eager" to exercise the compile path without a C++ toolchain.
COMPILE_BACKEND = os.environ.get("CLIMGEN_COMPILE_BACKEND", "inductor")


@dataclass
class TrainConfig:
    """Options of the training loop (families have their own options).

    max_steps : number of training steps (calls of ``family.training_step``).
    batch_size : fields per batch.
    seed : seeds torch/numpy/python RNGs and the per-epoch data permutations.
    device : "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps".
    amp : "auto" (bfloat16 autocast on CUDA when supported, off elsewhere), "bf16", "fp16"
        (CUDA, with a GradScaler per optimiser group) or "off".
    ema_decay : None, or d ∈ (0, 1) for an EMA of ``family.ema_module()`` weights.
    grad_clip : None, or the max L2 norm of each group's gradients (after AMP unscale).
    log_every : steps between rows of ``metrics.csv`` (losses averaged over the window).
    eval_every : steps between ``on_eval`` callbacks (0: never).
    checkpoint_every : steps between checkpoints (0: only at the end).
    keep_last : checkpoints kept (plus ``best``).
    num_workers : DataLoader worker processes.
    progress : show a tqdm bar (only when stderr is a terminal).
    deterministic : ``torch.use_deterministic_algorithms(True, warn_only=True)`` during fit,
        with ``torch.utils.deterministic.fill_uninitialized_memory`` off: that debugging aid
        (NaN-filling every new tensor) is not needed for reproducibility and cost ~13 % of
        the CPU throughput of a small DCGAN (benchmarks/RESULTS.md, issue 3).
    tensorboard : also log to ``run_dir/tensorboard`` when the package is installed.
    max_time_s : 0 (no limit), or a time budget in seconds for this call of ``fit``: training
        ends, with its final checkpoint, at the first step completed after the budget, even if
        ``max_steps`` is not reached (a resumed run gets a fresh budget).
    time_clock : the clock of ``max_time_s``: "wall" (elapsed time) or "cpu" (CPU time of this
        process, all threads; the fair budget for comparing models on a busy machine).
    compile : "off", or a ``torch.compile`` mode ("default", "reduce-overhead",
        "max-autotune") applied in place to each sub-network of the family
        (``module.compile()``: parameter names, checkpoints and EMA are unchanged). Worth it on
        GPU for long runs; the first steps pay the compilation.
    channels_last : keep 4-D weights and batches in channels-last memory format (faster
        convolutions with cuDNN/AMP on recent GPUs; no effect on the results).
    lr_schedule : "constant", "cosine" or "linear": every optimiser group's learning rate
        times a factor that decays with the progress of training (steps / max_steps, or the
        elapsed share of ``max_time_s`` when that is larger); see
        :mod:`climgen.train.schedule` for the formulas.
    warmup_steps : steps of linear warm-up from η₀/(warmup_steps + 1) to η₀ (0: none).
    min_lr_ratio : the factor the decaying schedules end at, in [0, 1).
    """

    max_steps: int = 1000
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    ema_decay: float | None = None
    grad_clip: float | None = None
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 500
    keep_last: int = 3
    num_workers: int = 0
    progress: bool = True
    deterministic: bool = True
    tensorboard: bool = False
    max_time_s: float = 0.0
    time_clock: str = "wall"
    compile: str = "off"
    channels_last: bool = False
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        def integer(name, minimum):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
                raise ClimgenInputError(
                    f"TrainConfig.{name} must be an integer ≥ {minimum}, got {v!r}"
                )
            setattr(self, name, int(v))

        def boolean(name):
            if not isinstance(getattr(self, name), bool):
                raise ClimgenInputError(
                    f"TrainConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )

        def optional_float(name, low, high, closed_high=False):
            v = getattr(self, name)
            if v is None:
                return
            ok = isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
            ok = ok and low < v and (v <= high if closed_high else v < high)
            if not ok:
                raise ClimgenInputError(
                    f"TrainConfig.{name} must be null or a number in ({low}, {high}"
                    f"{']' if closed_high else ')'}, got {v!r}"
                )
            setattr(self, name, float(v))

        for name, minimum in (
            ("max_steps", 1),
            ("batch_size", 1),
            ("seed", 0),
            ("log_every", 1),
            ("eval_every", 0),
            ("checkpoint_every", 0),
            ("keep_last", 1),
            ("num_workers", 0),
            ("warmup_steps", 0),
        ):
            integer(name, minimum)
        for name in ("progress", "deterministic", "tensorboard", "channels_last"):
            boolean(name)
        optional_float("ema_decay", 0.0, 1.0)
        optional_float("grad_clip", 0.0, float("inf"))
        v = self.max_time_s
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not v >= 0:
            raise ClimgenInputError(
                f"TrainConfig.max_time_s must be a number ≥ 0 (0: no limit), got {v!r}"
            )
        self.max_time_s = float(v)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ClimgenInputError(
                f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        v = self.min_lr_ratio
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 <= v < 1:
            raise ClimgenInputError(
                f"TrainConfig.min_lr_ratio must be a number in [0, 1), got {v!r}"
            )
        self.min_lr_ratio = float(v)
        if self.compile not in _COMPILE_MODES:
            raise ClimgenInputError(
                f"TrainConfig.compile must be one of {_COMPILE_MODES}, got {self.compile!r}"
            )
        if self.time_clock not in _CLOCKS:
            raise ClimgenInputError(
                f"TrainConfig.time_clock must be one of {tuple(_CLOCKS)}, got {self.time_clock!r}"
            )
        if not isinstance(self.amp, str) or self.amp not in _AMP:
            raise ClimgenInputError(f"TrainConfig.amp must be one of {_AMP}, got {self.amp!r}")
        if isinstance(self.device, torch.device):
            self.device = str(self.device)
        if not isinstance(self.device, str):
            raise ClimgenInputError(f"TrainConfig.device must be a string, got {self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise ClimgenInputError(
                    f"TrainConfig.device {self.device!r} is not a device "
                    "('auto', 'cpu', 'cuda', 'cuda:N' or 'mps')"
                ) from exc

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TrainConfig:
        """Build from a recipe mapping; unknown keys raise an error listing the valid ones."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ClimgenInputError(f"train options must be a mapping, got {type(d).__name__}")
        valid = cls.valid_keys()
        unknown = [k for k in d if k not in valid]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), valid, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ClimgenInputError(
                f"unknown train option(s) {', '.join(hints)}; valid keys: {', '.join(valid)}"
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns."""

    step: int
    losses: dict[str, float]
    run_dir: Path
    checkpoint: Path | None
    best_checkpoint: Path | None
    metrics_path: Path
    elapsed_s: float
    eval_history: list[dict[str, float]] = field(default_factory=list)


def select_device(name: str = "auto") -> torch.device:
    """ "auto" → cuda if available, else mps, else cpu; otherwise ``torch.device(name)``."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ClimgenInputError(f"device {name!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ClimgenInputError(f"device {name!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _seed_for(seed: int, epoch: int) -> int:
    # One generator seed per (seed, epoch) pair; distinct for all epochs < 2**20.
    return (int(seed) * 1_048_583 + int(epoch)) % (2**63 - 1)


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Batches of indices from a per-epoch random permutation, resumable mid-epoch.

    Epoch e uses ``torch.randperm(n)`` from a ``torch.Generator`` seeded by (seed, e);
    iteration starts at batch ``position`` of epoch ``epoch`` (``set_position``), so a
    resumed run sees exactly the batches an uninterrupted run would. The incomplete last
    batch of an epoch is dropped. Iterated in the main process, so it works with any
    ``num_workers``.

    With ``num_replicas`` > 1 (multi-process training) every rank draws the same global
    batch of ``batch_size`` indices and keeps its contiguous shard of
    ``batch_size / num_replicas`` of them (rank r: positions [r·b, (r+1)·b)), the role
    ``torch.utils.data.DistributedSampler`` plays for epoch-based loops.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0
    ):
        if batch_size % num_replicas:
            raise ClimgenInputError(
                f"TrainConfig.batch_size={batch_size} (the global batch) must be a multiple of "
                f"the number of processes ({num_replicas})"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.position = 0, 0

    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def set_position(self, epoch: int, position: int) -> None:
        self.epoch, self.position = int(epoch), int(position)

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.position

    def __iter__(self):
        g = torch.Generator().manual_seed(_seed_for(self.seed, self.epoch))
        perm = torch.randperm(self.n, generator=g)
        bs = self.batch_size
        shard = bs // self.num_replicas
        lo, hi = self.rank * shard, (self.rank + 1) * shard
        for b in range(self.position, self.batches_per_epoch()):
            yield perm[b * bs : (b + 1) * bs][lo:hi].tolist()


class _TensorItems(torch.utils.data.Dataset):
    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __len__(self):
        return self.tensor.shape[0]

    def __getitem__(self, i):
        return self.tensor[i]


def _as_batch(data) -> dict:
    """Collated items → ``{"x": ..., "mask": ...}``: tensors, (x,) / (x, mask) or dicts."""
    if isinstance(data, torch.Tensor):
        return {"x": data}
    if isinstance(data, Mapping):
        if "x" not in data:
            raise ClimgenInputError(f"dataset items are dicts without an 'x' key: {list(data)}")
        return dict(data)
    if isinstance(data, (list, tuple)) and 1 <= len(data) <= 2:
        return {"x": data[0], **({"mask": data[1]} if len(data) == 2 else {})}
    raise ClimgenInputError(
        "dataset items must be tensors, (x, mask) pairs or dicts with 'x'; got "
        f"{type(data).__name__}"
    )


def _to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


# -- RNG state as weights_only-loadable values --------------------------------------------------


def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
    }
    if device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])
    if device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def _rank_seed(seed: int, rank: int) -> int:
    # Rank 0 keeps the configured seed (so it matches a one-process run); the others get
    # distinct streams for their noise.
    return int(seed) if rank == 0 else (int(seed) + 1_000_003 * int(rank)) % 2**63


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    np.random.seed(seed % 2**32)
    random.seed(seed)


# -- CSV logging ------------------------------------------------------------------------------


class _CSVLog:
    """Append-only CSV whose header grows when new columns appear (rare: rewrite once)."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        self.columns: list[str] = []
        rows: list[dict] = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("step") and int(r["step"]) <= keep_until]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="") as f:
            if self.columns:
                writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
                writer.writeheader()
                writer.writerows(rows)

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            rows = []
            if self.columns:
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, restval="").writerow(row)


def _format_value(v: float) -> str:
    return f"{v:.4g}"


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
        self._stop_signal: int | None = None
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
        self._pending: list[tuple[int, list[str], torch.Tensor]] = []
        self._eval_log: _CSVLog | None = None
        self._tb = None
        self._elapsed_before, self._t0 = 0.0, time.perf_counter()

    # -- public helpers for callbacks ----------------------------------------------------------

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record evaluation metrics (``eval.csv``, TensorBoard, progress bar); rank 0 only."""
        if self._eval_log is None:
            return
        row = {"step": step, "time_s": f"{self._elapsed():.3f}"}
        row.update({k: repr(float(v)) for k, v in metrics.items()})
        self._eval_log.write(row)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"eval/{k}", float(v), step)

    def mark_best(self) -> None:
        """Mark the current state as best: a checkpoint is written now and ``best`` points to it."""
        self._best_requested = True

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
        data = self.val_data
        if data is None:
            return None
        if isinstance(data, (torch.Tensor, np.ndarray)):
            return torch.as_tensor(data)[:n]
        items = [_as_batch(data[i])["x"] for i in range(min(n, len(data)))]
        return torch.stack(items)

    # -- setup -----------------------------------------------------------------------------------

    def _amp_dtype(self) -> torch.dtype | None:
        amp, dev = self.config.amp, self.device.type
        if amp == "auto":
            return torch.bfloat16 if dev == "cuda" and torch.cuda.is_bf16_supported() else None
        if amp == "bf16":
            return torch.bfloat16
        if amp == "fp16":
            if dev != "cuda":
                raise ClimgenInputError(f"amp='fp16' needs a CUDA device, not {self.device}")
            return torch.float16
        return None

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
        amp_dtype = self._amp_dtype()
        scalers = {}
        if amp_dtype is torch.float16:
            scalers = {name: torch.amp.GradScaler(self.device.type) for name in self.optimizers}
        self.ctx = TrainContext(
            self.device,
            self.optimizers,
            amp_dtype=amp_dtype,
            scalers=scalers,
            grad_clip=cfg.grad_clip,
            grad_sync=grad_sync,
        )
        ema_module = self.family.ema_module()
        self.ema = EMA(ema_module, cfg.ema_decay) if cfg.ema_decay and ema_module else None

    def _build_data(self, dataset) -> None:
        cfg = self.config
        if isinstance(dataset, np.ndarray):  # numpy's float64 default is rarely meant
            dataset = torch.from_numpy(
                dataset.astype(np.float32) if dataset.dtype == np.float64 else dataset
            )
        self._tensor_data = dataset if isinstance(dataset, torch.Tensor) else None
        if self._tensor_data is not None:
            dataset = _TensorItems(self._tensor_data)
        n = len(dataset)
        if n < cfg.batch_size:
            raise ClimgenInputError(
                f"the dataset has {n} items, fewer than TrainConfig.batch_size={cfg.batch_size}"
            )
        self._sampler = ResumableBatchSampler(
            n, cfg.batch_size, cfg.seed, num_replicas=self.dist.world_size, rank=self.dist.rank
        )
        self._epoch, self._position, self._iter = 0, 0, None
        if self._tensor_data is not None and cfg.num_workers == 0:
            self._loader = None  # in-memory: index the tensor directly, no per-item collate
            return
        self._loader_generator = torch.Generator()
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.num_workers > 0,
            generator=self._loader_generator,  # keeps the global RNG out of worker seeding
            # Forked workers inherit the parent's open HDF5/netCDF handles and hang on their
            # first read once the parent has read the file (as Normalizer.fit does).
            multiprocessing_context="forkserver" if cfg.num_workers > 0 else None,
        )

    def _next_batch(self) -> dict:
        while True:
            if self._iter is None:
                self._sampler.set_position(self._epoch, self._position)
                if self._loader is None:
                    self._iter = (self._tensor_data[idx] for idx in self._sampler)
                else:
                    self._loader_generator.manual_seed(_seed_for(self.config.seed, self._epoch))
                    self._iter = iter(self._loader)
            try:
                data = next(self._iter)
            except StopIteration:
                self._epoch, self._position, self._iter = self._epoch + 1, 0, None
                continue
            self._position += 1
            batch = _to_device(_as_batch(data), self.device)
            if self.config.channels_last:
                batch = {
                    k: v.contiguous(memory_format=torch.channels_last)
                    if isinstance(v, torch.Tensor) and v.ndim == 4
                    else v
                    for k, v in batch.items()
                }
            return batch

    # -- state -----------------------------------------------------------------------------------

    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.ctx.scalers.items()},
            "updates": dict(self.ctx.updates),
            "ema_updates": self.ema.updates if self.ema else 0,
            "sampler": {"epoch": self._epoch, "position": self._position},
            "rng": _rng_state(self.device),
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
        self._epoch = int(state["sampler"]["epoch"])
        self._position = int(state["sampler"]["position"])
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        rng = state["rng"]
        if self.dist.rank > 0:
            per_rank = state.get("rng_ranks") or []
            if len(per_rank) == self.dist.world_size:
                rng = per_rank[self.dist.rank]
            else:
                warnings.warn(
                    f"{path} holds RNG states of {max(len(per_rank), 1)} process(es), this run "
                    f"has {self.dist.world_size}: rank {self.dist.rank} reseeds its noise",
                    stacklevel=3,
                )
                _set_rng_state(rng, self.device)  # CUDA/MPS entries, then a fresh stream
                _seed_everything(_rank_seed(self.config.seed + self.step, self.dist.rank))
                return
        _set_rng_state(rng, self.device)

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

    def _record(self, step: int, losses) -> list[str]:
        if not isinstance(losses, Mapping) or not losses:
            raise ClimgenInputError(
                f"{type(self.family).__name__}.training_step must return a non-empty dict of "
                f"scalar losses, got {type(losses).__name__}"
            )
        names = list(losses)
        values = torch.stack(
            [
                torch.as_tensor(v).detach().reshape(()).float().to(self.device)
                for v in losses.values()
            ]
        )
        self._pending.append((step, names, values))
        return names

    def _flush(self, reduce: bool = True) -> dict[str, float]:
        """Check pending losses for NaN/inf (one device sync); returns their window means.

        In multi-process training the losses are first averaged over the ranks (a collective:
        every rank flushes at the same steps), so all ranks log, and stop on, the same values.
        """
        if not self._pending:
            return {}
        flat = torch.cat([v for _, _, v in self._pending])
        if reduce and self.dist.enabled:
            flat = distributed.all_reduce_mean(flat, self.dist.world_size)
        flat = flat.tolist()
        sums: dict[str, list[float]] = {}
        i = 0
        for step, names, _ in self._pending:
            for name in names:
                value = flat[i]
                i += 1
                if not np.isfinite(value):
                    self._pending.clear()
                    last = self.last_checkpoint or self._previous_checkpoint()
                    raise ClimgenTrainingError(
                        f"non-finite loss at step {step}: {name} = {value}. Training stopped "
                        "without checkpointing this state; last good checkpoint: "
                        f"{last if last else 'none written yet'}. Try a lower learning rate, "
                        "grad_clip, or amp='off'."
                    )
                sums.setdefault(name, []).append(value)
        self._pending.clear()
        return {k: float(np.mean(v)) for k, v in sums.items()}

    # -- stopping on SIGTERM / SIGINT --------------------------------------------------------------

    def _catch_stop_signals(self) -> dict:
        """Turn SIGTERM/SIGINT into a request to stop after the current step (main thread only).

        A second SIGINT while stopping raises KeyboardInterrupt at once.
        """
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum, frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, request_stop)
        return previous

    def request_finish(self) -> None:
        """End training after the current step as if ``max_steps`` were reached: the final
        checkpoint is written and ``fit`` returns normally (for callbacks: budgets, early
        stopping). Unlike SIGTERM this is not an interruption."""
        self._finish_requested = True

    def _consensus(self, started: float) -> tuple[bool, bool]:
        """``(finish, stop)`` after a step, the same on every rank: finish = a finish request
        or the time budget spent (on the slowest rank's clock); stop = a SIGTERM/SIGINT on any
        rank. Also records the budget fraction for :meth:`_schedule_lr`. Under DDP it is one
        small all-reduce per step, made on every rank whatever its flags (a rank-dependent
        collective would hang the others)."""
        cfg = self.config
        elapsed = _CLOCKS[cfg.time_clock]() - started if cfg.max_time_s > 0 else 0.0
        finish, stop = self._finish_requested, self._stop_signal is not None
        if self.dist.enabled:
            elapsed, f, s = distributed.max_over_ranks([elapsed, finish, stop], self.device)
            finish, stop = f > 0, s > 0
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

    def _previous_checkpoint(self) -> Path | None:
        try:
            return ckpt.find_latest_valid(self.run_dir, warn=False)
        except ckpt.CheckpointError:
            return None

    def _log(self, means: dict[str, float], bar) -> None:
        if self._metrics_log is None:
            return
        row = {"step": self.step, "time_s": f"{self._elapsed():.3f}"}
        row.update({k: repr(v) for k, v in means.items()})
        for name, opt in self.optimizers.items():
            row[f"lr_{name}"] = repr(float(opt.param_groups[0]["lr"]))
        self._metrics_log.write(row)
        if self._tb is not None:
            for k, v in means.items():
                self._tb.add_scalar(f"loss/{k}", v, self.step)
        bar.set_postfix({k: _format_value(v) for k, v in means.items()}, refresh=False)

    def _open_tensorboard(self):
        if not self.config.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn(
                "tensorboard=True but the tensorboard package is not installed; "
                "logging to CSV only",
                stacklevel=3,
            )
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

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
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clean_temporaries(self.run_dir)
        distributed.barrier()
        self.val_data = val_data
        if (
            val_data is not None
            and cfg.eval_every > 0
            and not any(isinstance(cb, SpectralEvalCallback) for cb in self.callbacks)
        ):
            self.callbacks.append(SpectralEvalCallback())
        self._build()
        self._build_data(dataset)
        self._elapsed_before, self._t0 = 0.0, time.perf_counter()
        existing = ckpt.list_checkpoints(self.run_dir)
        if resume and existing:
            self._restore(ckpt.find_latest_valid(self.run_dir))
            self.last_checkpoint = ckpt.find_latest_valid(self.run_dir, warn=False)
            best = ckpt._read_pointer(ckpt.checkpoint_dir(self.run_dir) / "best")
            self.best_checkpoint = ckpt.checkpoint_dir(self.run_dir) / best if best else None
        else:
            if existing:
                raise ClimgenInputError(
                    f"run directory {self.run_dir} already holds checkpoints; pass "
                    "resume=True (--resume) to continue it, or choose a new run directory"
                )
            if resume:
                warnings.warn(
                    f"nothing to resume in {self.run_dir}; starting from step 0", stacklevel=2
                )
            _seed_everything(_rank_seed(cfg.seed, self.dist.rank))
        keep = self.step if resume else None
        if main:
            self._metrics_log = _CSVLog(self.run_dir / "metrics.csv", keep)
            self._eval_log = _CSVLog(self.run_dir / "eval.csv", keep)
            self._tb = self._open_tensorboard()
        else:
            self._metrics_log = self._eval_log = self._tb = None

        previous_det = torch.are_deterministic_algorithms_enabled()
        previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        previous_fill = torch.utils.deterministic.fill_uninitialized_memory
        if cfg.deterministic:
            torch.utils.deterministic.fill_uninitialized_memory = False
            if self.device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        show = main and cfg.progress and sys.stderr.isatty()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not show,
            dynamic_ncols=True,
            desc=getattr(self.family, "name", "train"),
        )
        last_losses: dict[str, float] = {}
        previous_handlers = self._catch_stop_signals()
        self._finish_requested = False
        end_step = cfg.max_steps
        try:
            self.family.train()
            for cb in self.callbacks:
                cb.on_fit_start(self)
            started = _CLOCKS[cfg.time_clock]()
            self._budget_used = 0.0
            while self.step < end_step:
                batch = self._next_batch()
                self._schedule_lr()
                try:
                    losses = self.family.training_step(batch, self.step, self.ctx)
                except Exception:
                    # A NaN at an earlier step is the real cause: report it (no collective here,
                    # the other ranks may not have failed).
                    self._flush(reduce=False)
                    raise
                self._record(self.step, losses)
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
                        self._log(means, bar)
                if eval_now:
                    for cb in self.callbacks:
                        cb.on_eval(self, self.step)
                if ckpt_now or self._best_requested:
                    self._save(best=self._best_requested)
                    self._best_requested = False
                    saved_now = True
                else:
                    saved_now = False
                if stop and self.step < end_step:
                    self._flush()  # never checkpoint a non-finite state
                    path = self.last_checkpoint if saved_now else self._save(best=False)
                    raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, self.step, path)
            distributed.barrier()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            bar.close()
            self._pending.clear()
            if self._tb is not None:
                self._tb.close()
            torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
            torch.utils.deterministic.fill_uninitialized_memory = previous_fill
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
