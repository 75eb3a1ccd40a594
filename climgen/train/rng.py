"""Random-number state: seeding, a seeded scope for building models, and checkpointable state.

The trainer seeds torch, numpy and Python from ``TrainConfig.seed`` at the start of a fresh
run and stores their states in every checkpoint (as plain tensors, numbers and lists, so
``torch.load(weights_only=True)`` reads them); a resume restores them, which makes it bit
identical on CPU. Tasks build their networks inside :func:`seeded` so the same seed also
fixes the initial weights, whatever the caller's global RNG state.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "seeded",
    "rng_state",
    "set_rng_state",
    "restore_rng",
    "rank_seed",
    "epoch_seed",
    "deterministic_algorithms",
]


def epoch_seed(seed: int, epoch: int) -> int:
    """One generator seed per (seed, epoch) pair; distinct for all epochs < 2**20."""
    return (int(seed) * 1_048_583 + int(epoch)) % (2**63 - 1)


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps the configured seed (so it matches a one-process run); the others get
    distinct streams for their noise."""
    return int(seed) if rank == 0 else (int(seed) + 1_000_003 * int(rank)) % 2**63


def seed_everything(seed: int) -> None:
    """Seed torch (CPU, CUDA, MPS), numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch/numpy/Python RNGs seeded by ``seed``; restore them after.

    ``with seeded(config.seed): family = build_family(...)`` makes the initial weights a
    function of the seed alone (issue 24: two runs with the same recipe seed start from the
    same weights) without changing the caller's random streams.
    """
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        seed_everything(int(seed))
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def rng_state(device: torch.device) -> dict:
    """Torch/numpy/Python (and CUDA/MPS) RNG states as weights_only-loadable values."""
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


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` recorded."""
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


def restore_rng(
    state: dict, device: torch.device, *, rank: int, world_size: int, reseed: int, where
) -> None:
    """Restore a checkpoint's RNG states on this process.

    Rank 0 restores ``state["rng"]``; rank r > 0 its own entry of ``state["rng_ranks"]``
    when the checkpoint was written by as many processes, else (with a warning) it reseeds
    its noise from ``reseed`` after restoring the CUDA/MPS entries.
    """
    rng = state["rng"]
    if rank > 0:
        per_rank = state.get("rng_ranks") or []
        if len(per_rank) == world_size:
            rng = per_rank[rank]
        else:
            warnings.warn(
                f"{where} holds RNG states of {max(len(per_rank), 1)} process(es), this run "
                f"has {world_size}: rank {rank} reseeds its noise",
                stacklevel=3,
            )
            set_rng_state(rng, device)  # CUDA/MPS entries, then a fresh stream
            seed_everything(rank_seed(reseed, rank))
            return
    set_rng_state(rng, device)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device):
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` in the block when
    ``enabled``, with ``fill_uninitialized_memory`` off (not needed for reproducibility, and
    ~13 % of a small DCGAN's CPU throughput); the previous flags are restored after."""
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    if enabled:
        torch.utils.deterministic.fill_uninitialized_memory = False
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill
