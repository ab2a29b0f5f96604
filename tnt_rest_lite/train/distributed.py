"""DistributedDataParallel bookkeeping: which process this is, and summing over processes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "distributed_info"]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def distributed_info(device: str | None = None) -> DistInfo:
    """Rank, world size and device; joins the process group when launched by ``torchrun``.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` the
    process group is initialised once (nccl on CUDA, gloo on CPU). Without them: one process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if world_size > 1:
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    else:
        dev = torch.device(device) if device is not None else torch.device("cuda" if use_cuda else "cpu")
    return DistInfo(rank, world_size, local_rank, dev)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum ``values`` over the processes (float64, so counts stay exact)."""
    if not info.distributed:
        return values
    device = info.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
