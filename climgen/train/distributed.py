"""Multi-process data-parallel training under ``torchrun``: process group, gradient averaging.

``torchrun --nproc_per_node N -m climgen train RECIPE`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; the trainer then

- joins the process group (NCCL on CUDA, gloo on CPU; :func:`init_from_env`), one GPU per
  process (``cuda:LOCAL_RANK``);
- broadcasts rank 0's weights and buffers so every replica starts identical
  (:func:`broadcast_module`);
- splits each global batch of ``batch_size`` fields into ``world_size`` contiguous shards
  (:class:`climgen.train.ResumableBatchSampler` with ``num_replicas``/``rank``);
- averages gradients over the ranks inside ``ctx.step`` after backward and before AMP
  unscale, clipping and the optimiser step (:func:`all_reduce_gradients`):
  g = (1/W) Σ_r g_r, which for mean-reduced losses equals the gradient of the loss over the
  global batch (the same arithmetic as ``torch.nn.parallel.DistributedDataParallel``, Li et
  al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training");
- reduces logged losses to their mean over the ranks; logs, progress bars and checkpoints are
  written by rank 0 only while the others wait at a barrier.

Why gradient all-reduce in ``ctx.step`` rather than ``DistributedDataParallel`` wrappers: the
family contract lets a family run any number of forward/backward passes per step through any
of its sub-networks (a GAN's critic runs on real and fake batches, its generator's backward
passes through the critic, ``n_critic`` updates per generator update). DDP hooks fire on
every backward of a wrapped module, so they would all-reduce critic gradients during the
generator update (wasted traffic, and ``find_unused_parameters`` bookkeeping), and the
family would have to call the wrappers instead of its own sub-modules. Averaging the
gradients of exactly the parameters an optimiser group is about to update, at the one place
every update goes through, needs no change to any family and yields the same update.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from climgen.errors import ClimgenInputError

__all__ = [
    "DistInfo",
    "env_info",
    "is_main_process",
    "init_from_env",
    "broadcast_module",
    "all_reduce_gradients",
    "all_reduce_mean",
    "max_over_ranks",
    "gather_to_main",
    "barrier",
]


@dataclass(frozen=True)
class DistInfo:
    """Rank of this process, number of processes and rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ClimgenInputError(
            f"environment variable {name}={text!r} is not an integer (set by torchrun)"
        ) from None


def env_info() -> DistInfo:
    """Rank and world size: from the live process group if any, else torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", dist.get_rank())
        )
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ClimgenInputError(f"invalid torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def is_main_process() -> bool:
    """True on rank 0 (and in any single-process run): the process that writes files."""
    return env_info().is_main


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (idempotent; a no-op for one process).

    Backend: NCCL when ``device`` is CUDA, gloo otherwise. A process group the caller
    initialised already is used as it is.
    """
    info = env_info()
    if not info.enabled or dist.is_initialized():
        return info
    if not dist.is_available():  # pragma: no cover - builds without torch.distributed
        raise ClimgenInputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ClimgenInputError(
                f"WORLD_SIZE={info.world_size} but {name} is not set: launch with torchrun"
            )
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)
    atexit.register(_destroy)
    return info


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every replica (in place)."""
    with torch.no_grad():
        for tensor in module.state_dict(keep_vars=False).values():
            dist.broadcast(tensor, src)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Replace each ``p.grad`` by its mean over the ranks (one flattened all-reduce).

    Parameters without a gradient are skipped; every rank runs the same code, so the same
    parameters have gradients on every rank.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world_size)
        offset = 0
        for g in group:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def all_reduce_mean(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean of ``tensor`` over the ranks (a new tensor)."""
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size


def max_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """The element-wise largest of ``values`` over all ranks, on every rank (one collective;
    a flag 0/1 in the list becomes "true on any rank")."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def gather_to_main(obj, world_size: int) -> list | None:
    """``[obj of rank 0, obj of rank 1, …]`` on rank 0, ``None`` elsewhere."""
    out = [None] * world_size if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
