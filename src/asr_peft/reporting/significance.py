"""Is one system better than another? A hierarchical paired bootstrap over training seeds and test utterances.

The field compares two recognisers with a matched-pairs test on the same test utterances (NIST's
MAPSSWE in `sc_stats`, or the paired bootstrap of Bisani and Ney, "Bootstrap estimates for confidence
intervals in ASR performance evaluation", ICASSP 2004). Here a system is a configuration trained with
several seeds, and the seed is the unit of inference: a second training run of the same configuration
is the replication a reader would do, so the interval must hold the seed-to-seed spread as well as the
test set's sampling error. Each bootstrap replicate resamples both levels:

1. Data: for every test utterance u and run (seed) s of a system, the word errors e[s, u]
   (substitutions, deletions and insertions of the normalised hypothesis against the normalised
   reference, as the run's `ref.trn`/`hyp.trn` hold them) and the reference length n[u]. A system's
   WER is the mean over its seeds of Σ_u e[s, u] / Σ_u n[u]; the statistic is ΔWER = WER_A − WER_B
   (negative: A makes fewer errors).
2. Seeds (the upper level): each system's S seeds are drawn again with replacement. When both systems
   ran the same seeds (the same data order and initial draws: common random numbers), seed s of A
   goes with seed s of B and the seeds are drawn jointly; otherwise each system's on its own. The draw
   is a function of the seed numbers, so every comparison, curve and trend in a report that involves
   the same seeds uses the same draw. The resampled seeds' deviations from their mean are scaled by
   √(S/(S−1)): drawing S of S values with replacement gives the seed mean a variance of (S−1)/S · s²/S
   (s² the seeds' sample variance), a third too small at 3 seeds; scaled, it is s²/S.
3. Utterances (the lower level, within the seeds): the test utterances are drawn again with
   replacement, one draw per replicate for every seed of both systems: the pairing. The design is
   crossed, not nested: every seed decodes the same test utterances, so the test set's sampling error
   is shared by all seeds; a separate draw per seed would let it average away over the seeds, which
   it does not. The draw is a function of the test set (its name and size, utterances in id order).
4. The 95% interval is the 2.5th to 97.5th percentile of the replicates; the two-sided p-value is
   2 · (1 + k) / (B + 1), k the replicates on the far side of zero (at most 1; never 0, Davison and
   Hinkley 1997, §4.2). A difference is called one only when its interval excludes zero; an interval
   that holds zero is "no significant difference", never one system being better.

Why a bootstrap rather than a mixed-effects model: one procedure serves every statistic of the claims
table, including those with no closed-form test (forgetting interpolated at a matched target WER, the
updates a run takes to reach 90% of its dev gain, a trend across model sizes); and per-utterance error
counts (bounded, skewed, mostly 0 to 3) need no distributional assumption. Its limit: with few seeds the
percentile interval lacks the extra width a t-distribution gives an estimated seed variance (at 3 seeds
t's 97.5% point is 4.30 against the normal's 1.96), hence `MIN_SEEDS` seeds on every configuration a
claim rests on, and a caveat on rows with fewer.

Monte-Carlo error: with B replicates a p-value's standard error is √(p(1−p)/B) and an interval end's is
half the spread between the percentiles q ± √(q(1−q)/B) (the order statistic's rank error, turned into
WER by the local spacing of the replicates). `REPLICATES` is chosen so that no verdict on the committed
comparison changes with the bootstrap's random seed (tests/test_reporting_significance.py).

With one seed per system this is Bisani and Ney's paired bootstrap. Utterances are matched by their trn
id; both systems must have scored exactly the same utterances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.replicates import CONFIDENCE, REPLICATES, Bootstrap, SystemReplicates, system_replicates
from asr_peft.reporting.utterance_errors import UtteranceErrors, run_errors

ALPHA = 1 - CONFIDENCE
MIN_SEEDS = 5  # seeds per configuration a claim rests on: with fewer the seed spread is barely estimated
NO_DIFFERENCE = "no significant difference"
PROCEDURE = (
    "Hierarchical paired bootstrap with the seed as the unit of inference (Bisani and Ney's paired bootstrap over the "
    f"test utterances, ICASSP 2004, extended to training seeds): each of {REPLICATES:,} replicates draws each system's "
    "seeds with replacement, jointly (seed s of one system with seed s of the other: common random numbers) when both "
    "ran the same seeds, with the resampled seeds' deviations from their mean scaled by √(S/(S−1)) so that the seed "
    "mean's variance is s²/S; then the test utterances with replacement, one draw for every seed of both systems (the "
    "pairing: every seed decodes the same utterances), and recomputes ΔWER = WER_A − WER_B from the summed "
    "per-utterance word errors (mean over seeds) of the runs' decode/<test set>/ref.trn and hyp.trn. "
    f"{100 * CONFIDENCE:g}% confidence interval: the {100 * ALPHA / 2:g}th to {100 * (1 - ALPHA / 2):g}th percentile "
    "of the replicates; p-value: two-sided, 2(1 + k)/(B + 1) with k the replicates on the far side of zero. One "
    "system is called better or worse than another only when the interval excludes zero; otherwise the pair is "
    f'reported as "{NO_DIFFERENCE}". Monte-Carlo standard errors: √(p(1−p)/B) for a p-value; for an interval end, half '
    "the spread of the percentiles q ± √(q(1−q)/B). The claims table's verdicts use Holm-adjusted p-values over its "
    "whole family of tests (see the claims section)."
)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statist. 1979), in the order given: rejecting every
    hypothesis whose adjusted p is below α keeps the family-wise error rate of the m tests at α. The i-th
    smallest p becomes max over j ≤ i of min(1, (m − j + 1) · p_(j))."""
    m = len(p_values)
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def two_sided_p(replicates: np.ndarray, null: float = 0.0) -> float:
    """2 (1 + k) / (B + 1), k the replicates on the far side of `null` (the smaller tail), at most 1."""
    below, above = int((replicates <= null).sum()), int((replicates >= null).sum())
    return min(1.0, 2 * (1 + min(below, above)) / (len(replicates) + 1))


def one_sided_p(replicates: np.ndarray, bound: float, *, above: bool) -> float:
    """(1 + k) / (B + 1), k the replicates at or beyond `bound` on that side: the p-value of the null
    hypothesis that the statistic lies at `bound` or beyond it (`above`: at or above)."""
    count = int((replicates >= bound).sum() if above else (replicates <= bound).sum())
    return (1 + count) / (len(replicates) + 1)


def p_value_error(p_value: float, replicates: int) -> float:
    """The Monte-Carlo standard error of a bootstrap p-value from `replicates` replicates."""
    return math.sqrt(max(p_value * (1 - p_value), 0.0) / replicates)


def quantile_error(replicates: np.ndarray, q: float) -> float:
    """The Monte-Carlo standard error of the q-th percentile of the replicates: the sample quantile's rank
    varies by √(B q (1 − q)), turned into the statistic's units by the spacing of the replicates there."""
    step = math.sqrt(q * (1 - q) / len(replicates))
    low, high = np.quantile(replicates, [max(0.0, q - step), min(1.0, q + step)])
    return float(high - low) / 2


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap replicates: `value` in `unit`s (`scale` turns it into them, e.g. 100 for
    WER fractions in points), its percentile interval, two-sided p-value against 0 and Monte-Carlo errors."""

    value: float
    replicates: np.ndarray = field(repr=False, compare=False)
    unit: str = "WER points"
    scale: float = 100.0
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float:
        return float(np.quantile(self.replicates, (1 - self.confidence) / 2))

    @property
    def high(self) -> float:
        return float(np.quantile(self.replicates, (1 + self.confidence) / 2))

    @property
    def p_value(self) -> float:
        return two_sided_p(self.replicates)

    @property
    def p_error(self) -> float:
        return p_value_error(self.p_value, len(self.replicates))

    @property
    def interval_error(self) -> float:
        """The larger Monte-Carlo standard error of the interval's two ends (in the statistic's own units)."""
        tail = (1 - self.confidence) / 2
        return max(quantile_error(self.replicates, tail), quantile_error(self.replicates, 1 - tail))

    def describe(self) -> str:
        """The value with its interval and p-value, e.g. `-2.10 WER points [-3.05, -1.20] (95% CI), p=0.0001`."""
        s = self.scale
        return (
            f"{s * self.value:+.2f} {self.unit} [{s * self.low:+.2f}, {s * self.high:+.2f}] "
            f"({100 * self.confidence:g}% CI), p={format_p(self.p_value)}"
        )


def format_p(p_value: float) -> str:
    return f"{p_value:.4f}" if p_value >= 1e-4 else f"{p_value:.1e}"


@dataclass(frozen=True)
class Comparison:
    """ΔWER = WER_A − WER_B with its interval and p-value; `replicates` (when kept) its bootstrap distribution."""

    delta_wer: float  # fractions; negative: A is better
    low: float  # the confidence interval of delta_wer
    high: float
    p_value: float
    utterances: int
    seeds: tuple[int, int]  # runs behind A and behind B
    paired_seeds: bool = False
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)
    unit = "WER points"
    scale = 100.0

    @property
    def value(self) -> float:
        return self.delta_wer

    @property
    def verdict(self) -> str:
        """`better` / `worse` (A against B) when the interval excludes zero, else `no significant difference`."""
        if self.high < 0:
            return "better"
        if self.low > 0:
            return "worse"
        return NO_DIFFERENCE

    @property
    def p_error(self) -> float:
        return p_value_error(self.p_value, len(self.replicates) if self.replicates is not None else REPLICATES)

    @property
    def interval_error(self) -> float:
        if self.replicates is None:
            return 0.0
        return Estimate(self.delta_wer, self.replicates).interval_error

    def describe(self) -> str:
        """ΔWER in points with its interval and p-value, e.g. `-2.10 points [-3.05, -1.20] (95% CI), p=0.0001`."""
        return (
            f"{100 * self.delta_wer:+.2f} points [{100 * self.low:+.2f}, {100 * self.high:+.2f}] "
            f"({100 * CONFIDENCE:g}% CI), p={format_p(self.p_value)}"
        )


def paired_bootstrap(
    system_a: Sequence[UtteranceErrors],
    system_b: Sequence[UtteranceErrors],
    *,
    seeds_a: Sequence | None = None,
    seeds_b: Sequence | None = None,
    test_set: str = "",
    bootstrap: Bootstrap = Bootstrap(),
) -> Comparison:
    """ΔWER of A against B with its bootstrap interval and p-value (see the module docstring).

    `seeds_a`, `seeds_b`: the training seeds of the runs, in run order; the same seeds are drawn jointly.
    Without them each system's runs count as seeds of their own (drawn independently of the other's).
    """
    if system_a and system_b and set(system_a[0].ids) != set(system_b[0].ids):
        raise ConfigError("system B's runs scored other utterances than the system it is compared with")
    seeds_a = list(seeds_a) if seeds_a is not None else [f"A{i}" for i in range(len(system_a))]
    seeds_b = list(seeds_b) if seeds_b is not None else [f"B{i}" for i in range(len(system_b))]
    a = system_replicates(system_a, seeds_a, test_set, bootstrap, "A")
    b = system_replicates(system_b, seeds_b, test_set, bootstrap, "B")
    replicated = a.replicated_wer - b.replicated_wer
    tail = (1 - bootstrap.confidence) / 2
    low, high = np.quantile(replicated, [tail, 1 - tail])
    return Comparison(
        a.wer - b.wer,
        float(low),
        float(high),
        two_sided_p(replicated),
        a.utterances,
        (a.seeds, b.seeds),
        sorted(map(str, seeds_a)) == sorted(map(str, seeds_b)),
        replicated,
    )


def _seeds_and_errors(runs: pd.DataFrame, test_set: str) -> tuple[list, list[UtteranceErrors]]:
    runs = runs.drop_duplicates("run_dir").sort_values("seed")
    return runs["seed"].tolist(), [run_errors(str(d), test_set) for d in runs["run_dir"]]


def compare_runs(runs_a: pd.DataFrame, runs_b: pd.DataFrame, test_set: str, bootstrap: Bootstrap = Bootstrap()) -> Comparison:
    """System A (its runs: rows with `run_dir` and `seed`) against system B on `test_set`; the seeds are
    drawn jointly when both systems ran the same seeds."""
    seeds_a, errors_a = _seeds_and_errors(runs_a, test_set)
    seeds_b, errors_b = _seeds_and_errors(runs_b, test_set)
    return paired_bootstrap(errors_a, errors_b, seeds_a=seeds_a, seeds_b=seeds_b, test_set=test_set, bootstrap=bootstrap)


def runs_replicates(runs: pd.DataFrame, test_set: str, bootstrap: Bootstrap = Bootstrap()) -> SystemReplicates:
    """One system's WER replicates on `test_set` (its runs: rows with `run_dir` and `seed`)."""
    seeds, errors = _seeds_and_errors(runs, test_set)
    return system_replicates(errors, seeds, test_set, bootstrap)
