"""Stopping a run cleanly: SIGTERM/SIGINT after the current step, and the time budget."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from climgen.train import distributed
from climgen.train.runlog import ClimgenTrainingError

__all__ = ["TrainingInterrupted", "StopSignals", "agree"]


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


class StopSignals:
    """While entered, SIGTERM/SIGINT only set :attr:`received` (main thread only): the loop
    stops after the current step. A second SIGINT while stopping raises KeyboardInterrupt."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            return self

        def request_stop(signum, frame):
            if self.received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.received = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, request_stop)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def agree(
    elapsed: float, finish: bool, stop: bool, dist, device: torch.device
) -> tuple[float, bool, bool]:
    """The slowest rank's elapsed time and whether any rank finishes / stops (identity in a
    one-process run). Under DDP one small all-reduce, made on every rank whatever its flags
    (a rank-dependent collective would hang the others)."""
    if not dist.enabled:
        return elapsed, finish, stop
    elapsed, f, s = distributed.max_over_ranks([elapsed, finish, stop], device)
    return elapsed, f > 0, s > 0
