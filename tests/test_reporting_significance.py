"""The paired bootstrap: per-utterance errors from trn files, and intervals checked against independent truths."""

from __future__ import annotations

import numpy as np
import pytest

from asr_peft.errors import ConfigError
from asr_peft.evaluation.trn import write_trn
from asr_peft.evaluation.wer import error_rates
from asr_peft.reporting.significance import UtteranceErrors, holm_adjusted, paired_bootstrap, utterance_errors


def _system(errors, lengths, ids=None):
    ids = ids or tuple(f"u{i}" for i in range(len(errors)))
    return UtteranceErrors(tuple(ids), np.asarray(errors), np.asarray(lengths))


def test_per_utterance_errors_add_up_to_the_corpus_counts_of_the_scorer(tmp_path):
    refs = ["the cat sat on the mat", "a dog ran", "she reads a good book", "we like green apples"]
    hyps = ["the cat sat on mat", "a dog ran far away", "he reads good book", "we like green apples"]
    ids = [f"spk-u{i}" for i in range(len(refs))]
    write_trn(tmp_path / "ref.trn", ids, refs)
    write_trn(tmp_path / "hyp.trn", ids, hyps)
    per_utterance = utterance_errors(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    corpus = error_rates(refs, hyps, lambda text: text)
    assert per_utterance.errors.tolist() == [1, 2, 2, 0]  # by hand: deletion; 2 insertions; sub + deletion
    assert per_utterance.errors.sum() == corpus["substitutions"] + corpus["deletions"] + corpus["insertions"]
    assert per_utterance.ref_words.sum() == corpus["num_words"]


def test_identical_systems_differ_by_nothing():
    rng = np.random.default_rng(1)
    errors, lengths = rng.integers(0, 4, 200), rng.integers(3, 12, 200)
    comparison = paired_bootstrap([_system(errors, lengths)], [_system(errors, lengths)], replicates=500)
    assert comparison.delta_wer == 0 and comparison.low == comparison.high == 0
    assert comparison.p_value == 1.0 and comparison.verdict == "no significant difference"


def test_one_seed_interval_matches_the_delta_method_standard_error():
    # Independent truth: the linearised (delta-method) standard error of a ratio of paired sums,
    # SE² = U/(U−1) · Σ_u (d_u − Δ·n_u)² / (Σ n)², with d_u the per-utterance error difference.
    rng = np.random.default_rng(2)
    count = 3000
    lengths = rng.integers(3, 15, count)
    errors_a = rng.binomial(lengths, 0.10)
    errors_b = rng.binomial(lengths, 0.12)
    comparison = paired_bootstrap([_system(errors_a, lengths)], [_system(errors_b, lengths)], replicates=4000, seed=3)
    d = errors_a - errors_b
    delta = d.sum() / lengths.sum()
    se = np.sqrt(count / (count - 1) * ((d - delta * lengths) ** 2).sum()) / lengths.sum()
    assert comparison.delta_wer == pytest.approx(delta)
    width = comparison.high - comparison.low
    assert width == pytest.approx(2 * 1.959964 * se, rel=0.06)
    assert comparison.verdict == "better" and comparison.p_value < 0.01


def test_seed_spread_widens_the_interval():
    # Two systems with the same utterance-level behaviour, but B's seeds disagree with each other:
    # resampling seeds must make B's comparison less certain than with one seed.
    rng = np.random.default_rng(4)
    lengths = rng.integers(5, 10, 400)
    base = rng.binomial(lengths, 0.2)
    a = [_system(base, lengths)]
    b_steady = [_system(base + 1, lengths)] * 3
    b_spread = [_system(base, lengths), _system(base + 1, lengths), _system(base + 2, lengths)]
    steady = paired_bootstrap(a, b_steady, replicates=2000)
    spread = paired_bootstrap(a, b_spread, replicates=2000)
    assert steady.delta_wer == pytest.approx(spread.delta_wer)
    assert (spread.high - spread.low) > 3 * (steady.high - steady.low)


def test_systems_must_have_scored_the_same_utterances():
    one = _system([1, 2], [5, 5], ids=("a", "b"))
    other = _system([1, 2], [5, 5], ids=("a", "c"))
    with pytest.raises(ConfigError, match="other utterances"):
        paired_bootstrap([one], [other])


def test_holm_adjusted_p_values_by_hand():
    # sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04, raised to the running 0.06)
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, 0.8]) == pytest.approx([1.0, 1.0]) and holm_adjusted([0.02]) == [0.02]
