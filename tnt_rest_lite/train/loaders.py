"""Data loaders of the engine: seeded, sharded over processes, the same batches on every resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .config import TrainConfig
from .distributed import DistInfo


def _seed_worker(worker_id: int) -> None:
    # each DataLoader worker gets torch's per-worker seed; give numpy and random the same one
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


def build_train_loader(
    dataset: Dataset, config: TrainConfig, epoch: int, info: DistInfo, collate: Any = None
) -> DataLoader:
    """The epoch's loader: the order depends only on ``(seed, epoch)``, whatever ran before.

    A ``DistributedSampler`` (one replica when not distributed) shuffles with ``seed + epoch``;
    the union of the N processes' batches at step t is the same global batch as with one process.
    """
    if config.batch_size % info.world_size:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {info.world_size} processes")
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    per_process = config.batch_size // info.world_size
    if len(sampler) < per_process:
        raise ValueError(f"the training set ({len(dataset)} samples) is smaller than one batch ({config.batch_size})")
    if config.num_workers == 0 and hasattr(dataset, "batch"):
        # fast path (SyntheticShapes in one process): whole batches, in the sampler's order, so the
        # batches are exactly the DataLoader's below
        return _Batches(dataset, list(sampler), per_process, drop_last=True)
    return DataLoader(
        dataset,
        batch_size=per_process,
        sampler=sampler,
        drop_last=True,  # equal batches: mixup needs pairs, and every step has the same weight
        num_workers=config.num_workers,
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),
        pin_memory=info.device.type == "cuda",
    )


class _Batches:
    """Batches of ``dataset.batch(indices)`` over ``order``: a DataLoader without per-sample work."""

    def __init__(self, dataset: Any, order: list[int], batch_size: int, drop_last: bool) -> None:
        self.dataset, self.order, self.batch_size, self.drop_last = dataset, order, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Any:
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.dataset.batch(self.order[start : start + self.batch_size])


def build_val_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, num_workers: int = 0, collate: Any = None
) -> DataLoader:
    """Every process evaluates every N-th sample (no padding: each sample is counted once)."""
    indices = list(range(info.rank, len(dataset), info.world_size)) if info.distributed else list(range(len(dataset)))
    if num_workers == 0 and hasattr(dataset, "batch"):
        return _Batches(dataset, indices, batch_size, drop_last=False)  # type: ignore[return-value]
    if info.distributed:
        dataset = Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
