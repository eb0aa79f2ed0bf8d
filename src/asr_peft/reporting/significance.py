"""Is one system better than another on the same test set? A paired bootstrap over utterances and seeds.

The field compares two recognisers with a matched-pairs test on the same test utterances (NIST's
MAPSSWE in `sc_stats`, or the paired bootstrap of Bisani and Ney, "Bootstrap estimates for confidence
intervals in ASR performance evaluation", ICASSP 2004). Here a system is a configuration trained with
several seeds, so the bootstrap resamples both sources of chance:

1. For every test utterance u and run (seed) s of a system, the word errors e[s, u] (substitutions,
   deletions and insertions of the normalised hypothesis against the normalised reference, as the
   run's `ref.trn`/`hyp.trn` hold them) and the reference length n[u].
2. A system's WER is the mean over its seeds of Σ_u e[s, u] / Σ_u n[u]; the statistic is
   ΔWER = WER_A − WER_B (negative: A makes fewer errors).
3. Each of `replicates` bootstrap replicates draws the test set again (U utterances with replacement,
   the same draw for both systems: the pairing) and, for each system, its seeds again (with
   replacement), and recomputes ΔWER. When both systems were trained with the same seeds (the same
   data order and initial draws: common random numbers), seed s of A is paired with seed s of B and
   the seeds are drawn jointly (`paired_seeds=True`); otherwise each system's seeds are drawn on
   their own, which counts their spread in full.
4. The 95% interval is the 2.5th to 97.5th percentile of the replicates; the two-sided p-value is twice
   the smaller share of replicates on either side of zero (at most 1). A is called better than B only
   when the whole interval lies below zero; an interval that holds zero is reported as "no significant
   difference", never as one system being better.

With one seed per system step 3 reduces to Bisani and Ney's paired bootstrap. Utterances are matched
by their trn id; both systems must have scored exactly the same utterances.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jiwer
import numpy as np
import pandas as pd

from asr_peft.errors import ConfigError

REPLICATES = 10_000
CONFIDENCE = 0.95
NO_DIFFERENCE = "no significant difference"
PROCEDURE = (
    "Paired bootstrap over the test utterances (Bisani and Ney, ICASSP 2004), extended to training seeds: each of "
    f"{REPLICATES:,} replicates draws the test utterances with replacement (the same draw for both systems) and each "
    "system's seeds with replacement, jointly (seed s of one system with seed s of the other) when both systems ran "
    "the same seeds, each system on its own otherwise, and recomputes ΔWER = WER_A − WER_B from the summed "
    "per-utterance word errors (mean over seeds) of the runs' decode/<test set>/ref.trn and hyp.trn. "
    f"{100 * CONFIDENCE:g}% confidence interval: the {100 * (1 - CONFIDENCE) / 2:g}th to "
    f"{100 * (1 + CONFIDENCE) / 2:g}th percentile of the replicates; p-value: two-sided, twice the smaller share of "
    "replicates on either side of zero. One system is called better or worse than another only when the interval "
    f'excludes zero; otherwise the pair is reported as "{NO_DIFFERENCE}". Where a claim is decided by whichever '
    "of several comparisons is significant (SSVD on the front: any SSVD configuration against its best cheaper rival), "
    "that comparison's p-value is also Holm-adjusted over all of them (Holm, 1979) and must stay below "
    f"{1 - CONFIDENCE:.2g}."
)


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statist. 1979), in the order given: a claim decided
    by whichever of m comparisons is significant keeps its family-wise error rate at the nominal level when
    it uses these. The i-th smallest p becomes max over j ≤ i of min(1, (m − j + 1) · p_(j))."""
    m = len(p_values)
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors of one run on one test set, per utterance (ids in trn order)."""

    ids: tuple[str, ...]
    errors: np.ndarray  # (U,) substitutions + deletions + insertions
    ref_words: np.ndarray  # (U,) reference length in words


@dataclass(frozen=True)
class Comparison:
    delta_wer: float  # WER_A − WER_B (fractions; negative: A is better)
    low: float  # the confidence interval of delta_wer
    high: float
    p_value: float
    utterances: int
    seeds: tuple[int, int]  # runs behind A and behind B

    paired_seeds: bool = False

    @property
    def verdict(self) -> str:
        """`better` / `worse` (A against B) when the interval excludes zero, else `no significant difference`."""
        if self.high < 0:
            return "better"
        if self.low > 0:
            return "worse"
        return NO_DIFFERENCE

    def describe(self) -> str:
        """ΔWER in points with its interval and p-value, e.g. `-2.10 points [-3.05, -1.20], p=0.0001`."""
        return (
            f"{100 * self.delta_wer:+.2f} points [{100 * self.low:+.2f}, {100 * self.high:+.2f}] "
            f"({100 * CONFIDENCE:g}% CI), p={self.p_value:.4f}"
        )


def read_trn(path: Path) -> dict[str, str]:
    """A trn file's texts by trn id, in file order."""
    texts = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text, _, tail = line.rpartition(" (")
        if not tail.endswith(")"):
            raise ConfigError(f"{path}: line without a trn id: {line[:80]!r}")
        texts[tail[:-1]] = text.strip()
    return texts


def read_trn_pair(ref_trn: str | Path, hyp_trn: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """References and hypotheses by trn id; both files must hold the same utterances."""
    refs, hyps = read_trn(Path(ref_trn)), read_trn(Path(hyp_trn))
    if set(refs) != set(hyps):
        raise ConfigError(f"{hyp_trn} and {ref_trn} hold different utterances")
    return refs, hyps


def utterance_errors(ref_trn: str | Path, hyp_trn: str | Path) -> UtteranceErrors:
    """Per-utterance word errors of `hyp_trn` against `ref_trn` (both normalised, as scoring writes them)."""
    return score_utterances(*read_trn_pair(ref_trn, hyp_trn), str(ref_trn))


def score_utterances(refs: dict[str, str], hyps: dict[str, str], source: str) -> UtteranceErrors:
    """Word errors of each hypothesis against its reference, in the order of `refs` (`source` names them in errors)."""
    ids = tuple(refs)
    errors, lengths = [], []
    for utt in ids:
        words = jiwer.process_words(refs[utt], hyps[utt]) if refs[utt] else None
        if words is None:  # an empty reference is not scored (see evaluation.wer)
            raise ConfigError(f"{source}: utterance {utt} has an empty reference")
        errors.append(words.substitutions + words.deletions + words.insertions)
        lengths.append(words.substitutions + words.deletions + words.hits)
    return UtteranceErrors(ids, np.asarray(errors, dtype=np.int64), np.asarray(lengths, dtype=np.int64))


@functools.lru_cache(maxsize=None)
def run_errors(run_dir: str, test_set: str) -> UtteranceErrors:
    """A run's per-utterance errors on `test_set`, from its `decode/<test_set>/ref.trn` and `hyp.trn` (read once),
    or, when the run directory is not there, from the decodes table of the sweep that holds it (reporting.tables)."""
    decoded = Path(run_dir) / "decode" / test_set
    if not Path(run_dir).is_dir():
        from asr_peft.reporting.tables import stored_errors  # the tables module builds on this one

        stored = stored_errors(run_dir, test_set)
        if stored is not None:
            return stored
    for name in ("ref.trn", "hyp.trn"):
        if not (decoded / name).is_file():
            raise ConfigError(f"{decoded / name} does not exist: the run's per-utterance errors are unknown")
    return utterance_errors(decoded / "ref.trn", decoded / "hyp.trn")


def compare_runs(runs_a: pd.DataFrame, runs_b: pd.DataFrame, test_set: str, **options) -> Comparison:
    """System A (its runs: rows with `run_dir` and `seed`) against system B on `test_set`; the seeds are
    paired when both systems ran the same seeds. `options` go to `paired_bootstrap`."""
    runs_a, runs_b = (runs.drop_duplicates("run_dir").sort_values("seed") for runs in (runs_a, runs_b))
    paired = runs_a["seed"].tolist() == runs_b["seed"].tolist()
    return paired_bootstrap(
        [run_errors(str(d), test_set) for d in runs_a["run_dir"]],
        [run_errors(str(d), test_set) for d in runs_b["run_dir"]],
        paired_seeds=paired,
        **options,
    )


@functools.lru_cache(maxsize=4)
def _utterance_draws(count: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, count): how often each utterance is drawn in each replicate of U draws with replacement.
    The same for every comparison on a test set of that size (cached: the draws dominate the cost)."""
    rng = np.random.default_rng([seed, 0])
    picks = rng.integers(0, count, (replicates, count)) + count * np.arange(replicates)[:, None]
    draws = np.bincount(picks.ravel(), minlength=replicates * count).reshape(replicates, count).astype(np.float64)
    draws.flags.writeable = False
    return draws


def _stack(runs: Sequence[UtteranceErrors], ids: tuple[str, ...], name: str) -> np.ndarray:
    """(seeds, U) errors in the order of `ids`."""
    if not runs:
        raise ConfigError(f"system {name} has no runs to compare")
    rows = []
    for run in runs:
        if set(run.ids) != set(ids):
            raise ConfigError(f"system {name}'s runs scored other utterances than the system it is compared with")
        position = {utt: i for i, utt in enumerate(run.ids)}
        rows.append(run.errors[[position[utt] for utt in ids]])
    return np.stack(rows).astype(np.float64)


def paired_bootstrap(
    system_a: Sequence[UtteranceErrors],
    system_b: Sequence[UtteranceErrors],
    *,
    paired_seeds: bool = False,
    replicates: int = REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """ΔWER of A against B with its bootstrap interval and p-value (see the module docstring).

    `paired_seeds`: the i-th run of A and of B share a training seed (both lists in seed order).
    """
    if paired_seeds and len(system_a) != len(system_b):
        raise ConfigError(f"paired seeds need as many runs in both systems ({len(system_a)} vs {len(system_b)})")
    ids = system_a[0].ids if system_a else ()
    errors_a, errors_b = _stack(system_a, ids, "A"), _stack(system_b, ids, "B")
    position = {utt: i for i, utt in enumerate(system_a[0].ids)}
    lengths = system_a[0].ref_words[[position[utt] for utt in ids]].astype(np.float64)
    total = lengths.sum()
    if total == 0:
        raise ConfigError("the compared test set has no reference words")
    delta = errors_a.sum(axis=1).mean() / total - errors_b.sum(axis=1).mean() / total

    rng = np.random.default_rng([seed, 1])
    count = len(ids)
    draws = _utterance_draws(count, replicates, seed)
    words = draws @ lengths  # (R,)
    per_seed_a, per_seed_b = draws @ errors_a.T, draws @ errors_b.T  # (R, seeds)
    seeds_a = rng.integers(0, errors_a.shape[0], (replicates, errors_a.shape[0]))
    seeds_b = seeds_a if paired_seeds else rng.integers(0, errors_b.shape[0], (replicates, errors_b.shape[0]))
    rows = np.arange(replicates)[:, None]
    replicated = (per_seed_a[rows, seeds_a].mean(axis=1) - per_seed_b[rows, seeds_b].mean(axis=1)) / words
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicated, [tail, 1 - tail])
    p_value = min(1.0, 2 * min((replicated <= 0).mean(), (replicated >= 0).mean()))
    return Comparison(
        float(delta), float(low), float(high), float(p_value), count, (errors_a.shape[0], errors_b.shape[0]), paired_seeds
    )
