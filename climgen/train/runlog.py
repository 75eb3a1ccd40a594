"""Training logs: ``metrics.csv``, ``eval.csv``, optional TensorBoard, and the loss window.

Losses stay on the device until a log, evaluation or checkpoint step: :class:`LossWindow`
then checks them for NaN/inf with one device sync (averaged over the ranks in multi-process
training) and returns their means over the window, which :class:`RunLogs` writes.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.train import distributed

__all__ = ["CSVLog", "RunLogs", "LossWindow", "ClimgenTrainingError"]


class ClimgenTrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step and loss."""


class CSVLog:
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


def logged_time_s(run_dir: str | Path, step: int | None = None) -> tuple[int, float] | None:
    """(step, time_s) of the last ``metrics.csv`` row at or before ``step`` (None: the last
    row): wall seconds of training summed over resumes. None without a log or such a row."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if step is None or int(r["step"]) <= step]
    return (int(rows[-1]["step"]), float(rows[-1]["time_s"])) if rows else None


class RunLogs:
    """The log files of a run (rank 0 writes them; on other ranks every method is a no-op).

    keep_until : on resume, the step up to which existing rows are kept (None: start afresh).
    """

    def __init__(self, run_dir: Path, *, keep_until: int | None, tensorboard: bool, main: bool):
        self.metrics = self.eval = self.tb = None
        if not main:
            return
        self.metrics = CSVLog(run_dir / "metrics.csv", keep_until)
        self.eval = CSVLog(run_dir / "eval.csv", keep_until)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "tensorboard=True but the tensorboard package is not installed; "
                    "logging to CSV only",
                    stacklevel=3,
                )
            else:
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def losses(self, step: int, elapsed_s: float, means: dict[str, float], lrs: dict) -> None:
        """One ``metrics.csv`` row: step, time, window-mean losses, ``lr_<group>`` columns."""
        if self.metrics is None:
            return
        row = {"step": step, "time_s": f"{elapsed_s:.3f}"}
        row.update({k: repr(v) for k, v in means.items()})
        row.update({f"lr_{name}": repr(float(lr)) for name, lr in lrs.items()})
        self.metrics.write(row)
        if self.tb is not None:
            for k, v in means.items():
                self.tb.add_scalar(f"loss/{k}", v, step)

    def evaluation(self, step: int, elapsed_s: float, metrics: Mapping[str, float]) -> None:
        """One ``eval.csv`` row (and TensorBoard ``eval/`` scalars)."""
        if self.eval is None:
            return
        row = {"step": step, "time_s": f"{elapsed_s:.3f}"}
        row.update({k: repr(float(v)) for k, v in metrics.items()})
        self.eval.write(row)
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"eval/{k}", float(v), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class LossWindow:
    """Losses of the steps since the last flush, kept on the device until :meth:`flush`.

    last_good : returns the last good checkpoint, named in the non-finite-loss error.
    """

    def __init__(self, device: torch.device, last_good: Callable[[], Path | None]):
        self.device, self.last_good = device, last_good
        self._pending: list[tuple[int, list[str], torch.Tensor]] = []

    def record(self, step: int, losses, family_name: str) -> None:
        if not isinstance(losses, Mapping) or not losses:
            raise ClimgenInputError(
                f"{family_name}.training_step must return a non-empty dict of "
                f"scalar losses, got {type(losses).__name__}"
            )
        values = torch.stack(
            [
                torch.as_tensor(v).detach().reshape(()).float().to(self.device)
                for v in losses.values()
            ]
        )
        self._pending.append((step, list(losses), values))

    def clear(self) -> None:
        self._pending.clear()

    def flush(self, world_size: int = 1) -> dict[str, float]:
        """Check pending losses for NaN/inf (one device sync); returns their window means.

        With ``world_size`` > 1 the losses are first averaged over the ranks (a collective:
        every rank flushes at the same steps), so all ranks log, and stop on, the same values.
        """
        if not self._pending:
            return {}
        flat = torch.cat([v for _, _, v in self._pending])
        if world_size > 1:
            flat = distributed.all_reduce_mean(flat, world_size)
        flat = flat.tolist()
        sums: dict[str, list[float]] = {}
        i = 0
        for step, names, _ in self._pending:
            for name in names:
                value = flat[i]
                i += 1
                if not np.isfinite(value):
                    self._pending.clear()
                    last = self.last_good()
                    raise ClimgenTrainingError(
                        f"non-finite loss at step {step}: {name} = {value}. Training stopped "
                        "without checkpointing this state; last good checkpoint: "
                        f"{last if last else 'none written yet'}. Try a lower learning rate, "
                        "grad_clip, or amp='off'."
                    )
                sums.setdefault(name, []).append(value)
        self._pending.clear()
        return {k: float(np.mean(v)) for k, v in sums.items()}


def format_value(v: float) -> str:
    return f"{v:.4g}"
