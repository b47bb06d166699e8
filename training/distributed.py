"""torchrun-aware process setup: one code path for a single process and for DDP.

Under ``torchrun`` the environment carries RANK, WORLD_SIZE and LOCAL_RANK; we then join
the process group (NCCL on CUDA, gloo on CPU) and each rank drives ``cuda:LOCAL_RANK``.
Without them we run as a single process and nothing distributed is touched.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from viewseg_core.cli import resolve_device


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


def setup(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun; choose the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device_name).type == "cuda"  # ValueError for a GPU this machine lacks
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ResumableDistributedSampler(Sampler[int]):
    """Epoch-seeded shuffling split across ranks, able to start mid-epoch.

    The permutation of epoch ``e`` depends only on ``(seed, e)``, like
    ``DistributedSampler``; ``start_batch`` skips the batches an interrupted run already
    consumed, so a resumed run sees exactly the examples the uninterrupted one would.
    Each rank takes every ``world_size``-th index of the padded permutation.
    """

    def __init__(self, dataset_len: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 batch_size: int = 1, shuffle: bool = True) -> None:
        if dataset_len <= 0:
            raise ValueError("the dataset is empty: no examples to train on")
        self.dataset_len, self.world_size, self.rank = dataset_len, world_size, rank
        self.seed, self.batch_size, self.shuffle = seed, batch_size, shuffle
        self.num_samples = math.ceil(dataset_len / world_size)
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        total = self.num_samples * self.world_size
        order += order[: total - len(order)] if total > len(order) else []
        while len(order) < total:  # tiny datasets smaller than the world size
            order += order[: total - len(order)]
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start_batch * self.batch_size:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_batch * self.batch_size)
