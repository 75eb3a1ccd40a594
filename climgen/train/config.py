"""Options of the training loop (:class:`TrainConfig`), what ``fit`` returns, the device.

See docs/training.md for what each option does to the loop.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.train.schedule import LR_SCHEDULES

__all__ = ["TrainConfig", "TrainResult", "select_device", "amp_dtype", "CLOCKS"]

_AMP = ("auto", "off", "bf16", "fp16")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


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
        the CPU throughput of a small DCGAN (benchmarks/notes/2026-12-03-trainer-overhead.md).
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
        if self.time_clock not in CLOCKS:
            raise ClimgenInputError(
                f"TrainConfig.time_clock must be one of {tuple(CLOCKS)}, got {self.time_clock!r}"
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


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``config.amp`` asks for on ``device`` (None: full precision)."""
    amp, dev = config.amp, device.type
    if amp == "auto":
        return torch.bfloat16 if dev == "cuda" and torch.cuda.is_bf16_supported() else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if dev != "cuda":
            raise ClimgenInputError(f"amp='fp16' needs a CUDA device, not {device}")
        return torch.float16
    return None
