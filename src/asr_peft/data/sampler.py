"""Batches of similar duration, so that padding wastes little compute.

Utterances are sorted by duration and cut into batches holding at most `max_batch_seconds` of audio
(and at most `max_batch_size` utterances); the batch order is shuffled every epoch with a seed.
Under data parallelism every rank takes every `world_size`-th batch of the same shuffled list.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from asr_peft.errors import ConfigError


def duration_buckets(durations: Sequence[float], max_batch_seconds: float, max_batch_size: int | None = None) -> list[list[int]]:
    """Greedy cut of the duration-sorted indices into batches under the seconds and size limits."""
    if max_batch_seconds <= 0:
        raise ConfigError(f"data.max_batch_seconds must be positive, got {max_batch_seconds}")
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # A padded batch costs (longest utterance) x (batch size); the longest is the newest, as sorted.
        cost = durations[index] * (len(current) + 1)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (cost > max_batch_seconds or full):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class DurationBucketSampler(Sampler[list[int]]):
    def __init__(self, durations: Sequence[float], *, max_batch_seconds: float, max_batch_size: int | None = None,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.batches = duration_buckets(durations, max_batch_seconds, max_batch_size)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches of it already trained)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue a checkpointed run: the first pass over `epoch` starts after its first `batches_done`
        batches (this rank's), the very batches an uninterrupted run draws next."""
        self.epoch = epoch
        self._resume_at = (epoch, batches_done)

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=generator).tolist()
        # Every rank must see the same number of batches, or collective ops hang: wrap around.
        total = len(self) * self.world_size
        order = (order * math.ceil(total / max(1, len(order))))[:total]
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            skip = self._resume_at[1]
        self._resume_at = None
        for position in range(self.rank + skip * self.world_size, total, self.world_size):
            yield self.batches[order[position]]
