"""A deterministic, resumable, shardable infinite sampler for training patches.

The sample stream is an endless concatenation of permutations of the dataset, permutation
``e`` ("epoch") drawn from ``seed + e``. Global batch ``k`` is stream positions
``[k * B, (k + 1) * B)``; under DDP rank ``r`` takes its contiguous share of each global batch,
so the union over ranks of one iteration's samples is exactly what one process with the whole
batch would see. Resuming at iteration ``k`` just starts at position ``k * B``.

Each yielded item is ``(epoch, index)``. :class:`EpochIndexed` wraps a dataset with
``set_epoch`` (``esrgan.data.PairedPatchDataset``) so that a worker process sets the epoch of
*its* copy before reading, keeping random crops and flips a function of (seed, epoch, index)
regardless of which worker loads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class InfiniteSampler(Sampler[tuple[int, int]]):
    """Endless ``(epoch, index)`` stream; see the module docstring.

    Args:
        size: dataset length.
        global_batch: samples per iteration over all ranks.
        seed: permutation seed.
        rank, world_size: DDP shard of each global batch (``global_batch % world_size == 0``).
        start_iteration: first iteration to produce (for resume).
    """

    def __init__(
        self,
        size: int,
        global_batch: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.start_iteration = start_iteration

    def position(self, iteration: int) -> int:
        """Stream position of the first sample of ``iteration``."""
        return iteration * self.global_batch

    def _permutation(self, epoch: int) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=gen).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cached_epoch, perm = -1, []
        pos = self.position(self.start_iteration)
        offset = self.rank * self.local_batch
        while True:
            for p in range(pos + offset, pos + offset + self.local_batch):
                epoch, i = divmod(p, self.size)
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self._permutation(epoch)
                yield epoch, perm[i]
            pos += self.global_batch


class EpochIndexed(Dataset[Any]):
    """Dataset view indexed by ``(epoch, index)`` that calls ``set_epoch`` when the epoch changes."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


def training_loader(
    dataset: Dataset[Any], sampler: InfiniteSampler, workers: int, prefetch_factor: int, seed: int, pin_memory: bool
) -> DataLoader[Any]:
    """The training stages' DataLoader over ``sampler`` (also what ``bench/data_scale.py`` measures).

    Workers persist across the endless epochs; their seeds come from a generator seeded with
    ``seed``, so the global RNG is not touched.
    """
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=sampler.local_batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
