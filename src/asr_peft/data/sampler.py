"""How utterances are grouped into batches, and the order the batches come in.

Two ways to form batches (`loader` config):

- `max_batch_seconds` (with an optional `max_batch_size`): utterances sorted by duration and cut into
  batches whose padded cost (longest utterance x batch size) stays under the limit. The durations are
  what the model sees: for a model that pads every input to 30 s each utterance costs 30 s.
- `batch_size`: fixed-size batches in corpus order, as ESPnet's `batch_type: unsorted`
  (`UnsortedBatchSampler`): floor(n / batch_size) batches of consecutive utterances, the remainder
  spread over them so that none is smaller than `batch_size`. For scoring, `spread_remainder=False`
  keeps every batch at most `batch_size` (a memory bound rather than a training recipe).

Batches keep their members; their order is shuffled every epoch with a seed. Under data parallelism
every rank takes every `world_size`-th batch of the same shuffled list.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from asr_peft.errors import ConfigError


def duration_buckets(
    durations: Sequence[float], max_batch_seconds: float, max_batch_size: int | None = None, *, config_key: str = "loader"
) -> list[list[int]]:
    """Greedy cut of the duration-sorted indices into batches under the seconds and size limits."""
    if max_batch_seconds <= 0:
        raise ConfigError(f"{config_key}.max_batch_seconds must be positive, got {max_batch_seconds}")
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


def unsorted_batches(
    count: int, batch_size: int, *, spread_remainder: bool = True, config_key: str = "loader"
) -> list[list[int]]:
    """Consecutive indices in batches of `batch_size`: ESPnet's unsorted rule (the remainder spread, so
    sizes are batch_size or a little more), or plain chunks of at most `batch_size`."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"{config_key}.batch_size must be a positive integer, got {batch_size!r}")
    if not spread_remainder:
        return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
    n_batches = max(count // batch_size, 1)
    return [list(range(i * count // n_batches, (i + 1) * count // n_batches)) for i in range(n_batches)]


class DurationBucketSampler(Sampler[list[int]]):
    """Batches by padded duration (`max_batch_seconds`) or of a fixed size (`batch_size`, which wins)."""

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_batch_seconds: float | None = None,
        max_batch_size: int | None = None,
        batch_size: int | None = None,
        spread_remainder: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        config_key: str = "loader",
    ):
        if batch_size is not None:
            self.batches = unsorted_batches(len(durations), batch_size, spread_remainder=spread_remainder, config_key=config_key)
        elif max_batch_seconds is not None:
            self.batches = duration_buckets(durations, max_batch_seconds, max_batch_size, config_key=config_key)
        else:
            raise ConfigError(f"set {config_key}.batch_size (utterances per batch) or {config_key}.max_batch_seconds")
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
