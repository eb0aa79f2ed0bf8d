"""The hierarchical bootstrap's replicates: each system's WER under every replicate's draw of seeds and utterances.

The draws are functions of what they resample, never of the comparison that asks: the utterance draw of a
replicate is a function of the test set (its name and size; utterances in sorted id order), the seed draw of
the seed numbers. So every comparison, curve and trend of a report that involves the same test set and the
same seeds uses the same draw (the pairing, and common random numbers across seeds), and the first B
replicates of a larger bootstrap are those of the smaller one (refining a p-value adds replicates).

A run's error total under each replicate (the matrix product of the utterance draws with its per-utterance
errors) is computed once per bootstrap and kept (`Bank`), for many runs in one pass over the draws
(`prefetch`): a report resamples a few hundred runs on a few test sets, and one wide product is far cheaper
than one narrow product per comparison.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.utterance_errors import UtteranceErrors, run_errors

REPLICATES = 100_000
CONFIDENCE = 0.95
CHUNK = 8192  # replicates per block of utterance draws (bounds the memory of one product)
KEPT_BOOTSTRAPS = 2  # the banks of this many bootstrap settings are kept (a report's, and a refinement's)


@dataclass(frozen=True)
class Bootstrap:
    """How many replicates, which random seed and which confidence level the tests of a report use."""

    replicates: int = REPLICATES
    seed: int = 0
    confidence: float = CONFIDENCE

    @property
    def alpha(self) -> float:
        return 1 - self.confidence


def utterance_draw_blocks(test_set: str, count: int, bootstrap: Bootstrap) -> Iterator[tuple[int, np.ndarray]]:
    """(first replicate, (rows, count) float32 block): how often each of `count` utterances (sorted id order) is
    drawn in each replicate of `count` draws with replacement, block by block of `CHUNK` replicates."""
    rng = np.random.default_rng([bootstrap.seed, 0, zlib.crc32(test_set.encode("utf-8")), count])
    offsets = (count * np.arange(CHUNK, dtype=np.int32))[:, None]  # row r's picks count in bins r·count ...
    for start in range(0, bootstrap.replicates, CHUNK):
        rows = min(CHUNK, bootstrap.replicates - start)
        picks = rng.integers(0, count, (rows, count), dtype=np.int32)
        picks += offsets[:rows]
        yield start, np.bincount(picks.ravel(), minlength=rows * count).reshape(rows, count).astype(np.float32)


@functools.lru_cache(maxsize=256)
def seed_draws(seeds: tuple, replicates: int, seed: int) -> np.ndarray:
    """(replicates, S) positions into `seeds` drawn with replacement: a function of the seed numbers, so
    systems (and comparisons) that ran the same seeds share the draw (common random numbers)."""
    rng = np.random.default_rng([seed, 1, zlib.crc32(repr(seeds).encode("utf-8"))])
    draws = rng.integers(0, len(seeds), (replicates, len(seeds)), dtype=np.int32)
    draws.flags.writeable = False
    return draws


def resampled_seed_mean(per_seed: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(R,) the mean over a resampling of the seeds (columns of `per_seed`, one draw per row), the resampled
    seeds' deviations from the row's mean over all seeds scaled by √(S/(S−1)), so that the seed mean's
    bootstrap variance is s²/S (plain resampling gives (S−1)/S of it: a third too little at 3 seeds)."""
    count = per_seed.shape[1]
    if count == 1:
        return np.array(per_seed[:, 0], dtype=np.float64)
    centre = per_seed.mean(axis=1)
    resampled = np.take_along_axis(per_seed, draws, axis=1).mean(axis=1)
    return centre + math.sqrt(count / (count - 1)) * (resampled - centre)


def _in_sorted_order(values: np.ndarray, ids: tuple[str, ...]) -> np.ndarray:
    return values[np.argsort(np.asarray(ids), kind="stable")]


def _key(ids: tuple[str, ...], values: np.ndarray) -> bytes:
    """What a resampled total depends on: the utterances and their values, in sorted id order."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\n".join(sorted(ids)).encode("utf-8"))
    digest.update(np.ascontiguousarray(_in_sorted_order(values, ids), dtype=np.int64).tobytes())
    return digest.digest()


class Bank:
    """Resampled totals (per-utterance errors or reference words summed under each replicate's draw), by
    bootstrap, test set and content; the last `KEPT_BOOTSTRAPS` bootstraps' are kept."""

    def __init__(self) -> None:
        self._totals: OrderedDict[Bootstrap, dict[tuple[str, bytes], np.ndarray]] = OrderedDict()

    def _of(self, bootstrap: Bootstrap) -> dict[tuple[str, bytes], np.ndarray]:
        if bootstrap not in self._totals:
            self._totals[bootstrap] = {}
            while len(self._totals) > KEPT_BOOTSTRAPS:
                self._totals.popitem(last=False)
        self._totals.move_to_end(bootstrap)
        return self._totals[bootstrap]

    def fill(self, runs: Sequence[UtteranceErrors], test_set: str, bootstrap: Bootstrap) -> None:
        """Resample, in one pass over the draws per set of utterances, every run's errors and reference words
        that the bank does not hold yet."""
        held = self._of(bootstrap)
        groups: dict[tuple[str, ...], dict[bytes, np.ndarray]] = {}
        for run in runs:
            for values in (run.errors, run.ref_words):
                key = _key(run.ids, values)
                if (test_set, key) not in held:
                    groups.setdefault(tuple(sorted(run.ids)), {})[key] = _in_sorted_order(values, run.ids)
        for ids, columns in groups.items():
            matrix = np.stack(list(columns.values()), axis=1).astype(np.float32)  # exact: small integers
            totals = np.empty((bootstrap.replicates, matrix.shape[1]), dtype=np.float32)
            for start, block in utterance_draw_blocks(test_set, len(ids), bootstrap):
                totals[start : start + len(block)] = block @ matrix  # float32 sums of integers below 2**24: exact
            for i, key in enumerate(columns):
                held[(test_set, key)] = totals[:, i].copy()

    def get(self, ids: tuple[str, ...], values: np.ndarray, test_set: str, bootstrap: Bootstrap) -> np.ndarray:
        return self._of(bootstrap)[(test_set, _key(ids, values))]

    def clear(self) -> None:
        self._totals.clear()


BANK = Bank()


def prefetch(rows: pd.DataFrame, bootstrap: Bootstrap) -> None:
    """Resample every completed run of `rows` (a runs table: `run_dir`, `test_set`, `status`) on each of its test
    sets in one pass per test set; runs without per-utterance decodes are left for their comparison to name."""
    if rows.empty:
        return
    done = rows[(rows["status"] == "completed") & rows["test_set"].notna()].drop_duplicates(["run_dir", "test_set"])
    for test_set, runs in done.groupby("test_set", sort=False):
        found = []
        for run_dir in runs["run_dir"]:
            try:
                found.append(run_errors(str(run_dir), str(test_set)))
            except ConfigError:
                continue
        BANK.fill(found, str(test_set), bootstrap)


@dataclass(frozen=True)
class SystemReplicates:
    """A system's WER on one test set and under every replicate (errors and words apart: ratios of sums)."""

    wer: float
    errors: np.ndarray  # (R,) the seeds' resampled mean error total
    words: np.ndarray  # (R,) resampled reference words
    utterances: int
    seeds: int

    @property
    def replicated_wer(self) -> np.ndarray:
        return self.errors / self.words


def system_replicates(
    runs: Sequence[UtteranceErrors], seeds: Sequence, test_set: str, bootstrap: Bootstrap = Bootstrap(), name: str = "A"
) -> SystemReplicates:
    """A system (its runs on `test_set`, one per training seed in `seeds`) under every bootstrap replicate."""
    if not runs:
        raise ConfigError(f"system {name} has no runs to compare")
    if len(seeds) != len(runs):
        raise ConfigError(f"system {name}: {len(runs)} runs but {len(seeds)} seeds")
    ids = set(runs[0].ids)
    if any(len(run.ids) != len(ids) or set(run.ids) != ids for run in runs):
        raise ConfigError(f"system {name}'s runs scored other utterances than each other")
    words = runs[0].ref_words
    if words.sum() == 0:
        raise ConfigError(f"the test set {test_set} has no reference words")
    BANK.fill(runs, test_set, bootstrap)
    order = np.argsort(np.asarray(seeds), kind="stable")
    per_seed = np.stack([BANK.get(runs[i].ids, runs[i].errors, test_set, bootstrap) for i in order], axis=1).astype(np.float64)
    draws = seed_draws(tuple(np.asarray(seeds)[order].tolist()), bootstrap.replicates, bootstrap.seed)
    wer = float(np.mean([run.errors.sum() for run in runs]) / words.sum())
    resampled_words = BANK.get(runs[0].ids, words, test_set, bootstrap).astype(np.float64)
    return SystemReplicates(wer, resampled_seed_mean(per_seed, draws), resampled_words, len(ids), len(runs))
