"""The hierarchical paired bootstrap: per-utterance errors from trn files, intervals checked against independent
truths (the delta method, the seeds' sample variance), the pairing of seeds and utterances, Monte-Carlo errors,
and verdicts on the committed comparison that do not depend on the bootstrap's random seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asr_peft.errors import ConfigError
from asr_peft.evaluation.trn import write_trn
from asr_peft.evaluation.wer import error_rates
from asr_peft.reporting.replicates import Bootstrap, system_replicates, utterance_draw_blocks
from asr_peft.reporting.significance import (
    holm_adjusted,
    one_sided_p,
    p_value_error,
    paired_bootstrap,
    quantile_error,
    two_sided_p,
)
from asr_peft.reporting.utterance_errors import UtteranceErrors, utterance_errors
from conftest import ROOT


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
    comparison = paired_bootstrap([_system(errors, lengths)], [_system(errors, lengths)], bootstrap=Bootstrap(500))
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
    comparison = paired_bootstrap([_system(errors_a, lengths)], [_system(errors_b, lengths)], bootstrap=Bootstrap(4000, seed=3))
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
    steady = paired_bootstrap(a, b_steady, bootstrap=Bootstrap(2000))
    spread = paired_bootstrap(a, b_spread, bootstrap=Bootstrap(2000))
    assert steady.delta_wer == pytest.approx(spread.delta_wer)
    assert (spread.high - spread.low) > 3 * (steady.high - steady.low)


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_seed_means_bootstrap_variance_is_the_seeds_sample_variance_over_s(seeds):
    """Every utterance makes the same errors within a seed, so the utterance draw changes nothing and only the
    seed level varies. Independent truth: the variance of a mean of S seeds, s²/S with s² the sample variance
    (ddof=1). Plain resampling of S of S gives (S−1)/S of it: 2/3 at 3 seeds, which this test would catch."""
    count, words = 50, 10
    wers = np.array([0.2, 0.3, 0.5, 0.4, 0.1][:seeds])
    runs = [_system(np.full(count, round(w * words)), np.full(count, words)) for w in wers]
    replicated = system_replicates(runs, list(range(seeds)), "child", Bootstrap(100_000)).replicated_wer
    assert replicated.mean() == pytest.approx(wers.mean(), abs=2e-3)
    assert replicated.var() == pytest.approx(wers.var(ddof=1) / seeds, rel=0.03)


def test_the_same_seeds_are_drawn_jointly_and_other_seeds_independently():
    """A's seed s makes exactly one error more than B's seed s on every utterance, while the seeds differ a lot
    from each other. With the same seeds (common random numbers) the seed spread cancels: the interval holds
    only the utterance level, which is nil here (every utterance +1), so it is exactly +1 error per 10 words.
    Labelled as different seeds, the seed spread of both systems enters."""
    count, words = 100, 10
    base = [np.full(count, k) for k in (1, 4, 7)]
    system_b = [_system(errors, np.full(count, words)) for errors in base]
    system_a = [_system(errors + 1, np.full(count, words)) for errors in base]
    paired = paired_bootstrap(system_a, system_b, seeds_a=[0, 1, 2], seeds_b=[0, 1, 2], bootstrap=Bootstrap(5000))
    assert paired.paired_seeds and (paired.delta_wer, paired.low, paired.high) == pytest.approx((0.1, 0.1, 0.1))
    unpaired = paired_bootstrap(system_a, system_b, seeds_a=[0, 1, 2], seeds_b=[3, 4, 5], bootstrap=Bootstrap(5000))
    assert not unpaired.paired_seeds and unpaired.high - unpaired.low > 0.2


def test_one_utterance_draw_serves_every_seed_of_both_systems():
    """The design is crossed: every seed decodes the same utterances, so the test set's sampling error is shared.
    A run making twice another's errors on every utterance has, in every replicate, twice its resampled total
    (one draw for both); two identical seeds give exactly the one-seed replicates. A draw per seed would average
    the utterance error over the seeds and shrink the interval by √2."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(3, 15, 500)
    errors_a, errors_b = rng.binomial(lengths, 0.1), rng.binomial(lengths, 0.2)
    single = system_replicates([_system(errors_a, lengths)], [0], "child", Bootstrap(5000))
    double = system_replicates([_system(2 * errors_a, lengths)], [1], "child", Bootstrap(5000))
    assert np.array_equal(double.errors, 2 * single.errors) and np.array_equal(double.words, single.words)
    one = paired_bootstrap([_system(errors_a, lengths)], [_system(errors_b, lengths)], seeds_a=[0], seeds_b=[0])
    two = paired_bootstrap([_system(errors_a, lengths)] * 2, [_system(errors_b, lengths)] * 2, seeds_a=[0, 1], seeds_b=[0, 1])
    assert np.array_equal(one.replicates, two.replicates)


def test_more_replicates_extend_the_same_draws():
    """Refining a p-value adds replicates to those it had: the first B of a larger bootstrap are the smaller one's."""
    small = np.concatenate([block for _, block in utterance_draw_blocks("child", 30, Bootstrap(1000))])
    large = np.concatenate([block for _, block in utterance_draw_blocks("child", 30, Bootstrap(20_000))])
    assert np.array_equal(small, large[:1000]) and (small.sum(axis=1) == 30).all()


def test_systems_must_have_scored_the_same_utterances():
    one = _system([1, 2], [5, 5], ids=("a", "b"))
    other = _system([1, 2], [5, 5], ids=("a", "c"))
    with pytest.raises(ConfigError, match="other utterances"):
        paired_bootstrap([one], [other])


def test_p_values_are_never_zero_and_their_monte_carlo_errors_follow_the_binomial():
    replicates = -np.arange(1, 1000, dtype=float)  # every replicate below zero
    assert two_sided_p(replicates) == pytest.approx(2 / 1000)  # 2 (1 + 0) / (999 + 1)
    assert one_sided_p(replicates, -500.0, above=True) == pytest.approx((1 + 500) / 1000)
    assert p_value_error(0.04, 10_000) == pytest.approx(math.sqrt(0.04 * 0.96 / 10_000))


def test_the_monte_carlo_error_of_an_interval_end_matches_the_normal_theory():
    # Independent truth: the standard error of the q-th sample quantile of B normal draws, √(q(1−q)/B) / φ(z_q).
    replicates = np.random.default_rng(6).standard_normal(200_000)
    z = 1.959964
    expected = math.sqrt(0.975 * 0.025 / len(replicates)) / (math.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    assert quantile_error(replicates, 0.975) == pytest.approx(expected, rel=0.15)


def test_holm_adjusted_p_values_by_hand():
    # sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04, raised to the running 0.06)
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, 0.8]) == pytest.approx([1.0, 1.0]) and holm_adjusted([0.02]) == [0.02]


@pytest.mark.slow
def test_no_verdict_on_the_committed_comparison_depends_on_the_bootstraps_random_seed():
    """The claims table of results/comparison_v1 under four bootstrap seeds: the same verdict in every row."""
    from asr_peft.reporting.aggregate import collect, to_frame
    from asr_peft.reporting.claims import check_claims
    from asr_peft.reporting.convergence import run_convergence

    runs = collect([ROOT / "results" / "comparison_v1"]).runs
    frame = to_frame(runs)
    convergence = run_convergence(runs, frame)
    verdicts = [list(check_claims(frame, convergence, Bootstrap(seed=seed))["verdict"]) for seed in range(4)]
    assert all(v == verdicts[0] for v in verdicts[1:])
    assert {"reproduced", "refuted", "inconclusive"} <= set(verdicts[0])  # not a table of untested rows
