"""Learning-rate schedules applied by the trainer to every optimiser group.

A schedule is a factor f ∈ [min_lr_ratio, 1] that multiplies each group's initial learning
rate η₀ (the one the family asked for), so the ratio between groups (TTUR) is kept:

    η(p) = η₀ · w(s) · g(p),    w(s) = min(1, (s + 1) / (warmup_steps + 1)),

with s the steps completed, p ∈ [0, 1] the progress of training and

- ``constant``: g(p) = 1;
- ``cosine``:   g(p) = r + (1 − r) · ½ (1 + cos π p)   (Loshchilov & Hutter 2017, SGDR,
  without restarts);
- ``linear``:   g(p) = r + (1 − r) · (1 − p),

r = ``min_lr_ratio``. Progress is p = s / max_steps, or, when the run has a time budget
(``TrainConfig.max_time_s``), the larger of that and the budget's elapsed fraction, so a
run stopped by its budget still ends at the low end of the schedule. Time-based progress is
only as reproducible as the clock; with a step budget the schedule is a function of the step
and ``--resume`` stays bit-identical.

η₀ is kept in each param group as ``initial_lr`` (the key torch's own schedulers use), so it
is saved with the optimiser state and restored on resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

__all__ = ["LR_SCHEDULES", "lr_factor", "apply_lr_factor"]

LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(
    kind: str, progress: float, step: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> float:
    """The factor η/η₀ of schedule ``kind`` at ``progress`` ∈ [0, 1] after ``step`` steps."""
    p = min(max(float(progress), 0.0), 1.0)
    if kind == "constant":
        g = 1.0
    elif kind == "cosine":
        g = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    elif kind == "linear":
        g = min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - p)
    else:
        raise ValueError(f"unknown learning-rate schedule {kind!r}; choose one of {LR_SCHEDULES}")
    warm = min(1.0, (step + 1) / (warmup_steps + 1)) if warmup_steps > 0 else 1.0
    return g * warm


def apply_lr_factor(optimizers: Mapping[str, torch.optim.Optimizer], factor: float) -> None:
    """Set every group's ``lr`` to ``initial_lr · factor`` (``initial_lr`` stored on first use)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            initial = group.setdefault("initial_lr", group["lr"])
            group["lr"] = initial * factor
