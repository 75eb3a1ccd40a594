"""Batching: seeded per-epoch permutations, resumable mid-epoch, and the stream of batches.

Epoch e draws ``torch.randperm(n)`` from a generator seeded by (seed, e), so the order of
batches is a function of the seed alone and a resumed run sees exactly the batches an
uninterrupted run would (:class:`BatchStream` records epoch and position in checkpoints).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from climgen.errors import ClimgenInputError
from climgen.train.rng import epoch_seed

__all__ = ["ResumableBatchSampler", "BatchStream", "as_batch", "to_device", "first_fields"]


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
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
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


def as_batch(data) -> dict:
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


def first_fields(data, n: int) -> torch.Tensor | None:
    """Up to ``n`` fields of ``data`` (tensor, array or Dataset) as one (n, C, H, W) tensor."""
    if data is None:
        return None
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(data)[:n]
    return torch.stack([as_batch(data[i])["x"] for i in range(min(n, len(data)))])


def to_device(batch: dict, device: torch.device, *, channels_last: bool = False) -> dict:
    """``batch`` with its tensors on ``device``; ``channels_last``: 4-D tensors in the
    channels-last memory format, converted in the same copy as the transfer."""
    non_blocking = device.type == "cuda"

    def move(v):
        if channels_last and v.ndim == 4:
            return v.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
        return v.to(device, non_blocking=non_blocking)

    return {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class BatchStream:
    """The batches of one training run, in the seeded order, resumable at (epoch, position).

    dataset : a torch ``Dataset`` or an (N, C, H, W) tensor/array (float64 arrays become
        float32). In-memory tensors with ``num_workers == 0`` are indexed directly (no
        per-item collate); everything else goes through a ``DataLoader`` whose batch sampler
        is a :class:`ResumableBatchSampler`.
    """

    def __init__(
        self,
        dataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        num_workers: int = 0,
        channels_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if isinstance(dataset, np.ndarray):  # numpy's float64 default is rarely meant
            dataset = torch.from_numpy(
                dataset.astype(np.float32) if dataset.dtype == np.float64 else dataset
            )
        self.seed, self.device, self.channels_last = seed, device, channels_last
        self._tensor = dataset if isinstance(dataset, torch.Tensor) else None
        if self._tensor is not None:
            dataset = _TensorItems(self._tensor)
        n = len(dataset)
        if n < batch_size:
            raise ClimgenInputError(
                f"the dataset has {n} items, fewer than TrainConfig.batch_size={batch_size}"
            )
        self.sampler = ResumableBatchSampler(
            n, batch_size, seed, num_replicas=num_replicas, rank=rank
        )
        self.epoch, self.position, self._iter = 0, 0, None
        self._loader = None
        if self._tensor is not None and num_workers == 0:
            return
        self._generator = torch.Generator()
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=self._generator,  # keeps the global RNG out of worker seeding
            # Forked workers inherit the parent's open HDF5/netCDF handles and hang on their
            # first read once the parent has read the file (as Normalizer.fit does).
            multiprocessing_context="forkserver" if num_workers > 0 else None,
        )

    @classmethod
    def for_run(cls, dataset, config, device: torch.device, dist) -> BatchStream:
        """The stream a :class:`~climgen.train.config.TrainConfig` asks for on this process."""
        return cls(
            dataset,
            batch_size=config.batch_size,
            seed=config.seed,
            device=device,
            num_workers=config.num_workers,
            channels_last=config.channels_last,
            num_replicas=dist.world_size,
            rank=dist.rank,
        )

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self._iter = int(state["epoch"]), int(state["position"]), None

    def next(self) -> dict:
        """The next batch as ``{"x": ..., ("mask": ...)}`` on the device."""
        while True:
            if self._iter is None:
                self.sampler.set_position(self.epoch, self.position)
                if self._loader is None:
                    self._iter = (self._tensor[idx] for idx in self.sampler)
                else:
                    self._generator.manual_seed(epoch_seed(self.seed, self.epoch))
                    self._iter = iter(self._loader)
            try:
                data = next(self._iter)
            except StopIteration:
                self.epoch, self.position, self._iter = self.epoch + 1, 0, None
                continue
            self.position += 1
            return to_device(as_batch(data), self.device, channels_last=self.channels_last)
