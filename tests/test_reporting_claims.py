"""The claims table on runs whose per-utterance errors are made to order (trn files written as scoring does):
each claim's verdicts, the one Holm family across the table, the equivalence margin and its derivation,
fair ablations, the forgetting trade-off curves, convergence and the scale rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asr_peft.evaluation.trn import write_trn
from asr_peft.reporting import claims as claims_module
from asr_peft.reporting.aggregate import collect, to_frame
from asr_peft.reporting.claims import EQUIVALENCE_MARGIN, check_claims, family_size, margin_from_seed_spread
from asr_peft.reporting.convergence import run_convergence
from asr_peft.reporting.replicates import Bootstrap
from asr_peft.reporting.significance import Comparison
from conftest import ROOT

WORDS = 10
UTTERANCES = 400
SSVD = {"name": "ssvd", "rotation": "approx", "side": "smaller"}


def _errors(rate: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).binomial(WORDS, rate, UTTERANCES)


def write_run(
    root: Path,
    name: str,
    *,
    method: dict,
    p: float | None,
    trainable: int,
    seed: int,
    errors: dict[str, np.ndarray],
    data: str = "synth_child",
    model: str = "owsm_tiny",
    baseline: dict[str, float] | None = None,
    total: int = 4_000_000,
    history: list[tuple[int, float]] | None = None,
    steps: tuple[int, int] = (100, 100),
) -> Path:
    """A completed run whose decode/<set>/ trn files hold exactly `errors[set][u]` substitutions per utterance
    (each utterance `WORDS` words long); `history`: its validation (step, dev WER) points; `steps`: the update
    it stopped at and its cap (trainer.max_steps)."""
    run_dir = root / f"{model}-{data}-{name}-seed{seed}"
    metrics = {}
    for test_set, per_utterance in errors.items():
        per_utterance = np.asarray(per_utterance)
        ids = [f"spk-u{i}" for i in range(len(per_utterance))]
        refs = [" ".join(f"w{j}" for j in range(WORDS))] * len(per_utterance)
        hyps = [" ".join(["x"] * k + [f"w{j}" for j in range(k, WORDS)]) for k in per_utterance]
        (run_dir / "decode" / test_set).mkdir(parents=True)
        write_trn(run_dir / "decode" / test_set / "ref.trn", ids, refs)
        write_trn(run_dir / "decode" / test_set / "hyp.trn", ids, hyps)
        metrics[test_set] = {"wer": float(per_utterance.sum() / (WORDS * len(per_utterance))), "cer": 0.0}
    record = {
        "status": "completed",
        "method": method,
        "adapt": {"p": p, "targets": ["x"]},
        "seed": seed,
        "model": {"name": model},
        "data": {"name": data},
        "metrics": metrics,
        "baseline_metrics": {k: {"wer": v, "cer": 0.0} for k, v in (baseline or {}).items()},
        "parameters": {"trainable": trainable, "total": total},
        "global_step": steps[0],
        "validation_history": [{"step": s, "val_wer": w} for s, w in history or []],
        "config": {"optimizer": {"lr": 1e-3}, "trainer": {"max_steps": steps[1]}},
    }
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def _claims(root: Path, **options) -> pd.DataFrame:
    runs = collect([root]).runs
    frame = to_frame(runs)
    return check_claims(frame, run_convergence(runs, frame), **options)


def _constant(errors_per_utterance: int) -> np.ndarray:
    """Every utterance with the same errors: the utterance draw changes nothing, so the statistics are exact."""
    return np.full(UTTERANCES, errors_per_utterance)


def test_front_strict_and_unconstrained_verdicts_with_their_rows(tmp_path):
    for seed in range(5):
        approx = _errors(0.40, 100 + seed)
        cayley = approx.copy()  # the same errors as approx but on a few utterances: the same WER within noise
        cayley[::97] = np.clip(cayley[::97] + 1, 0, WORDS)
        runs = {
            ("frozen", None): ({"name": "frozen"}, 0, 0.60),
            ("lora_r4", None): ({"name": "lora", "r": 4, "alpha": 8}, 100_000, 0.45),
            ("ssvd_p0.4", 0.4): (SSVD, 50_000, approx),
            ("ssvd_cayley_p0.4", 0.4): ({**SSVD, "rotation": "cayley"}, 50_000, cayley),
            ("ssvd_free_p0.28", 0.28): ({**SSVD, "rotation": "free"}, 51_000, 0.48),
            ("ssvd_free_p0.4", 0.4): ({**SSVD, "rotation": "free"}, 90_000, 0.49),
        }
        for (name, p), (method, trainable, child) in runs.items():
            child_errors = child if isinstance(child, np.ndarray) else _errors(child, 1000 * seed + sum(map(ord, name)))
            write_run(tmp_path, name, method=method, p=p, trainable=trainable, seed=seed, errors={"child": child_errors})
        # Dialect: a LoRA configuration with fewer parameters than SSVD is better: SSVD is off the front.
        write_run(
            tmp_path, "lora_r1", method={"name": "lora", "r": 1}, p=None, trainable=40_000, seed=seed, data="synth_dialect",
            errors={"dialect": _errors(0.40, 50 + seed)},
        )  # fmt: skip
        write_run(
            tmp_path, "ssvd_p0.4", method=SSVD, p=0.4, trainable=50_000, seed=seed, data="synth_dialect",
            errors={"dialect": _errors(0.50, 60 + seed)},
        )  # fmt: skip

    claims = _claims(tmp_path)
    rows = {(r.claim, r.data, r.system, r.matched_by): r for r in claims.itertuples()}
    verdict = {(r.claim, r.data): r.verdict for r in claims.itertuples() if r.claim != "unconstrained_worse"}
    assert verdict[("front", "synth_child")] == "reproduced"  # SSVD p=0.4 (50k) beats frozen, the only cheaper one
    assert verdict[("front", "synth_dialect")] == "refuted"
    assert verdict[("strict_vs_approx", "synth_child")] == "reproduced"
    strict = claims[claims["claim"] == "strict_vs_approx"].iloc[0]
    assert strict["seeds"] == "0,1,2,3,4 vs 0,1,2,3,4" and strict["paired_seeds"] and strict["utterances"] == UTTERANCES
    assert -100 * EQUIVALENCE_MARGIN <= strict["ci_low"] <= strict["effect"] <= strict["ci_high"] <= 100 * EQUIVALENCE_MARGIN
    assert "equivalence (TOST)" in strict["reason"] and "pooled seed standard deviation" in strict["reason"]
    # The free rotation in two rows each: at a matched trainable count (approx p=0.4, 50k against 51k) and at a
    # matched rank (the same p); free p=0.28 has no approx run at its p, free p=0.4 none within 10% of 90k.
    free = "ssvd p=0.28 rotation=free"
    assert rows[("unconstrained_worse", "synth_child", free, "trainable count")].verdict == "reproduced"
    assert rows[("unconstrained_worse", "synth_child", free, "rank (same p)")].verdict == "not tested"
    assert "at its p=0.28" in rows[("unconstrained_worse", "synth_child", free, "rank (same p)")].reason
    at_rank = rows[("unconstrained_worse", "synth_child", "ssvd p=0.4 rotation=free", "rank (same p)")]
    assert at_rank.verdict == "reproduced" and at_rank.reference == "ssvd p=0.4 rotation=approx"
    assert rows[("unconstrained_worse", "synth_child", "ssvd p=0.4 rotation=free", "trainable count")].verdict == "not tested"
    # Five seeds: no caveat about too few; the family's size is every tested row's tests (front rows: one per SSVD
    # configuration compared).
    assert not claims["reason"].str.contains("seeds of a configuration, fewer than").any()
    assert (
        family_size(claims) == int(claims["tests"].sum()) and (claims["p_adjusted"].dropna() >= claims["p_value"].dropna()).all()
    )


@pytest.mark.parametrize("rival, family, verdict", [(False, 1, "reproduced"), (True, 3, "inconclusive")])
def test_one_holm_family_spans_the_whole_table(tmp_path, monkeypatch, rival, family, verdict):
    """The free rotation is worse than approx at p=0.03: alone in the table that decides its claim; with a LoRA
    run beside them the front claim adds two tests (each SSVD configuration against it), and the same comparison
    is adjusted to 3 × 0.03 = 0.09: inconclusive."""
    significant = Comparison(delta_wer=0.02, low=0.001, high=0.035, p_value=0.03, utterances=4, seeds=(1, 1))
    noise = Comparison(delta_wer=0.0, low=-0.01, high=0.01, p_value=0.9, utterances=4, seeds=(1, 1))
    monkeypatch.setattr(
        claims_module,
        "compare_runs",
        lambda a, b, test_set, bootstrap: significant if "free" in a["configuration"].iloc[0] else noise,
    )
    runs = [("free", {**SSVD, "rotation": "free"}, 0.2, 20), ("approx", SSVD, 0.3, 21)]
    for name, method, p, trainable in runs + [("lora", {"name": "lora", "r": 1}, None, 10)] * rival:
        write_run(tmp_path, name, method=method, p=p, trainable=trainable, seed=0, errors={"child": [1] * 4})
    claims = _claims(tmp_path)
    assert family_size(claims) == family
    (free,) = [r for r in claims.itertuples() if r.claim == "unconstrained_worse" and r.matched_by == "trainable count"]
    assert free.p_adjusted == pytest.approx(family * 0.03) and free.verdict == verdict
    assert f"Holm-adjusted p={family * 0.03:.4f}" in free.reason


@pytest.mark.parametrize("ssvd_points, verdict", [(1, "reproduced"), (2, "inconclusive")])
def test_the_front_claim_corrects_for_picking_one_of_several_ssvd_budgets(tmp_path, monkeypatch, ssvd_points, verdict):
    """One SSVD budget beats its cheaper rival at p=0.03: that decides the claim alone, but not when it is one of
    two budgets tried (Holm: 2 × 0.03 = 0.06 > 0.05)."""
    write_run(tmp_path, "lora_r1", method={"name": "lora", "r": 1}, p=None, trainable=10, seed=0, errors={"child": [1] * 4})
    for i, p in enumerate([0.2, 0.4][:ssvd_points]):
        write_run(tmp_path, f"ssvd_p{p}", method=SSVD, p=p, trainable=20 + i, seed=0, errors={"child": [1] * 4})
    significant = Comparison(delta_wer=-0.02, low=-0.035, high=-0.001, p_value=0.03, utterances=4, seeds=(1, 1))
    noise = Comparison(delta_wer=0.0, low=-0.01, high=0.01, p_value=0.9, utterances=4, seeds=(1, 1))
    monkeypatch.setattr(
        claims_module,
        "compare_runs",
        lambda a, b, test_set, bootstrap: significant if a["configuration"].iloc[0].startswith("ssvd p=0.2") else noise,
    )
    (row,) = [r for r in _claims(tmp_path).itertuples() if r.claim == "front"]
    assert row.verdict == verdict and row.tests == ssvd_points
    assert f"{ssvd_points} SSVD configuration" in row.reason
    assert row.p_adjusted == pytest.approx(0.03 * ssvd_points)


def test_an_undecided_front_claim_shows_the_comparison_nearest_to_reproducing_it(tmp_path, monkeypatch):
    """Of two SSVD budgets, the cheaper significantly worse than its rival and the dearer better but not
    significantly, the row names the dearer: the one nearest to reproducing the claim, not the first compared
    nor the one with the lowest p."""
    write_run(tmp_path, "lora_r1", method={"name": "lora", "r": 1}, p=None, trainable=10, seed=0, errors={"child": [1] * 4})
    for i, p in enumerate([0.2, 0.4]):
        write_run(tmp_path, f"ssvd_p{p}", method=SSVD, p=p, trainable=20 + i, seed=0, errors={"child": [1] * 4})
    nearly = Comparison(delta_wer=-0.02, low=-0.04, high=0.001, p_value=0.06, utterances=4, seeds=(1, 1))
    worse = Comparison(delta_wer=0.05, low=0.02, high=0.08, p_value=0.001, utterances=4, seeds=(1, 1))
    monkeypatch.setattr(
        claims_module,
        "compare_runs",
        lambda a, b, test_set, bootstrap: nearly if a["configuration"].iloc[0].startswith("ssvd p=0.4") else worse,
    )
    (row,) = [r for r in _claims(tmp_path).itertuples() if r.claim == "front"]
    assert row.verdict == "inconclusive"
    assert row.system.startswith("ssvd p=0.4") and row.p_value == pytest.approx(0.06)


@pytest.mark.parametrize(
    "centre, spread, verdict",
    [(0.002, 0.002, "reproduced"), (0.03, 0.004, "refuted"), (0.01, 0.01, "inconclusive")],
)
def test_the_equivalence_test_against_the_margin(tmp_path, monkeypatch, centre, spread, verdict):
    """Replicates around 0.2 points (well inside ±1.18): TOST says equivalent; around 3 points: beyond the margin;
    around 1 point with a 1-point spread: neither. The p-value is the test's, not the two-sided one."""
    replicates = np.random.default_rng(0).normal(centre, spread, 100_000)
    low, high = np.quantile(replicates, [0.025, 0.975])
    comparison = Comparison(centre, low, high, 0.5, 4, (5, 5), True, replicates)
    monkeypatch.setattr(claims_module, "compare_runs", lambda a, b, test_set, bootstrap: comparison)
    for name, rotation in (("approx", "approx"), ("cayley", "cayley")):
        write_run(tmp_path, name, method={**SSVD, "rotation": rotation}, p=0.4, trainable=20, seed=0, errors={"child": [1] * 4})
    (row,) = [r for r in _claims(tmp_path).itertuples() if r.claim == "strict_vs_approx"]
    assert row.verdict == verdict
    margin = EQUIVALENCE_MARGIN
    if abs(centre) < margin:  # TOST: the larger of the two one-sided p-values, replicates at or beyond ±margin
        expected = max((replicates >= margin).sum(), (replicates <= -margin).sum())
    else:  # the one-sided p of lying beyond the margin: the replicates on its near side
        expected = (replicates <= margin).sum()
    assert row.p_value == pytest.approx((1 + expected) / (len(replicates) + 1), rel=1e-3)


def test_the_margin_is_derived_from_the_seed_spread_of_the_earlier_comparison():
    """Independent truth: the pooled sample variance (equal seed counts: the mean of the variances) of the
    first-order and Cayley side=smaller SSVD configurations' target WER in results/comparison_v1, from its summary."""
    frame = to_frame(collect([ROOT / "results" / "comparison_v1"]).runs)
    target = frame[frame["test_set"] == frame["data"].str.removeprefix("synth_")]
    chosen = target[
        (target["method"] == "ssvd")
        & target["method.rotation"].isin(["approx", "cayley"])
        & target["method.side"].fillna("smaller").eq("smaller")
    ]
    pooled = math.sqrt(chosen.groupby(["data", "configuration"])["wer"].var(ddof=1).mean())
    assert round(1.959964 * math.sqrt(2) * pooled, 4) == EQUIVALENCE_MARGIN == round(margin_from_seed_spread(frame), 4)


def test_forgetting_is_compared_on_the_trade_off_curves_at_matched_target_wer(tmp_path):
    """Every utterance makes the same errors, so each configuration's (target, source) WER is exact and so is the
    statistic. Smaller side: (0.6, 0.1), (0.2, 0.5): source = 0.7 − target. Both sides: (0.5, 0.1), (0.3, 0.1). They
    share target WER 0.3 to 0.5, where both sides forget 0.1 and the smaller side 0.7 − x: 0.3 on average. The
    gap: −0.2, −20 source WER points, with no spread: reproduced. A budget comparison would have seen nothing:
    p=0.4 of both sides and of the smaller side lie on different target WERs."""
    curves = {
        "smaller": [(0.2, 6, 1), (0.4, 2, 5)],
        "both": [(0.14, 5, 1), (0.28, 3, 1)],
    }
    for side, points in curves.items():
        for p, target, source in points:
            method = {**SSVD, "side": side, **({"p_out": p} if side == "both" else {})}
            for seed in (0, 1):
                errors = {"source": _constant(source), "child": _constant(target)}
                write_run(tmp_path, f"{side}_{p}", method=method, p=p, trainable=int(p * 1000), seed=seed, errors=errors)
    (row,) = [r for r in _claims(tmp_path).itertuples() if r.claim == "both_sides_forgetting"]
    assert row.verdict == "reproduced" and (row.effect, row.ci_low, row.ci_high) == (-20.0, -20.0, -20.0)
    assert row.unit == "source WER points" and "30.0 to 50.0%" in row.reason and row.matched_by == "target WER"


def test_forgetting_curves_that_share_no_target_wer_are_not_tested(tmp_path):
    for side, targets in (("smaller", (6, 5)), ("both", (3, 2))):
        for i, target in enumerate(targets):
            p = 0.1 * (i + 1)
            method = {**SSVD, "side": side, **({"p_out": p} if side == "both" else {})}
            errors = {"source": _constant(1), "child": _constant(target)}
            write_run(
                tmp_path, f"{side}_{p}", method=method, p=p, trainable=int(p * 1000) + (side == "both"), seed=0, errors=errors
            )
    (row,) = [r for r in _claims(tmp_path).itertuples() if r.claim == "both_sides_forgetting"]
    assert row.verdict == "not tested" and "no common target WER" in row.reason


def _history(to_goal: int) -> list[tuple[int, float]]:
    """Dev WER 0.60 before adaptation falling to 0.40 (gain 0.20): 90% of it (0.42) is reached at `to_goal`."""
    return [(0, 0.60), (to_goal, 0.42), (to_goal + 25, 0.41), (to_goal + 50, 0.40)]


def test_convergence_is_a_seed_level_test_of_updates_to_90_percent_of_the_gain(tmp_path):
    """SSVD's five seeds reach 90% of their gain at 25, 30, 25, 35, 25 updates, LoRA's at the same budget at 50, 60,
    55, 50, 65: SSVD − LoRA = 28 − 56 = −28 updates, paired by seed; PiSSA has no step-0 validation: not tested."""
    for seed, (ssvd_at, lora_at) in enumerate(zip((25, 30, 25, 35, 25), (50, 60, 55, 50, 65))):
        errors = {"child": _errors(0.4, seed)}
        write_run(tmp_path, "ssvd", method=SSVD, p=0.4, trainable=100, seed=seed, errors=errors, history=_history(ssvd_at))
        write_run(
            tmp_path,
            "lora",
            method={"name": "lora", "r": 4},
            p=None,
            trainable=105,
            seed=seed,
            errors=errors,
            history=_history(lora_at),
        )
        no_start = _history(40)[1:]
        write_run(
            tmp_path, "pissa", method={"name": "pissa", "r": 4}, p=None, trainable=106, seed=seed, errors=errors, history=no_start
        )
    rows = {r.reference.split()[0]: r for r in _claims(tmp_path).itertuples() if r.claim == "converges_faster"}
    lora = rows["lora"]
    assert lora.verdict == "reproduced" and lora.unit == "updates" and lora.effect == pytest.approx(-28.0)
    assert lora.ci_low < -28 < lora.ci_high < 0 and lora.matched_by == "trainable count" and lora.paired_seeds
    assert rows["pissa"].verdict == "not tested" and "step 0" in rows["pissa"].reason


def test_scale_rows_and_the_model_size_trend(tmp_path):
    """Three model sizes, 10^6, 10^7 and 10^8 parameters; SSVD's best against the best rival at its budget (LoRA
    within 10% of its count; VeRA is cheaper and better but not at a matched budget) makes 0, 1 and 2 errors fewer
    per 10 words: gaps 0, −10 and −20 points, a slope of −10 points per tenfold size (least squares on log10)."""
    for model, total, fewer in (("small", 10**6, 0), ("medium", 10**7, 1), ("large", 10**8, 2)):
        for seed in range(5):
            write_run(tmp_path, "ssvd", method=SSVD, p=0.4, trainable=1000, seed=seed, model=model, total=total,
                      errors={"child": _constant(4 - fewer)})  # fmt: skip
            write_run(tmp_path, "lora", method={"name": "lora", "r": 4}, p=None, trainable=1050, seed=seed, model=model,
                      total=total, errors={"child": _constant(4)})  # fmt: skip
            write_run(tmp_path, "vera", method={"name": "vera", "r": 4}, p=None, trainable=100, seed=seed, model=model,
                      total=total, errors={"child": _constant(1)})  # fmt: skip
    claims = _claims(tmp_path)
    scale = claims[claims["claim"] == "scale"].set_index("model")
    assert list(scale.index) == ["small", "medium", "large"] and set(scale["reference"]) == {"lora r=4"}
    assert list(scale["effect"]) == [0.0, -10.0, -20.0] and list(scale["verdict"]) == ["inconclusive", "reproduced", "reproduced"]
    (trend,) = claims[claims["claim"] == "model_size"].itertuples()
    assert trend.verdict == "reproduced" and trend.effect == pytest.approx(-10.0) and trend.model == "small, medium, large"


def test_rows_on_fewer_than_five_seeds_say_so(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "approx", method=SSVD, p=0.4, trainable=50, seed=seed, errors={"child": _errors(0.4, seed)})
        write_run(tmp_path, "cayley", method={**SSVD, "rotation": "cayley"}, p=0.4, trainable=50, seed=seed,
                  errors={"child": _errors(0.4, seed)})  # fmt: skip
    (row,) = [r for r in _claims(tmp_path, bootstrap=Bootstrap(20_000)).itertuples() if r.claim == "strict_vs_approx"]
    assert "3 seeds of a configuration, fewer than the 5 the protocol asks for" in row.reason


def test_a_test_near_alpha_after_the_correction_is_refined_with_more_replicates():
    """Two tests: one at p=0.0499 (Holm: the larger of two p-values keeps its value; within 3 Monte-Carlo errors,
    3 · 0.0022, of α at 10,000 replicates) is run again with 10 times the replicates; one far from α is not."""
    from asr_peft.reporting import verdicts

    runs = pd.DataFrame(columns=["run_dir", "test_set", "status"])
    calls = []

    def near(bootstrap):
        calls.append(bootstrap.replicates)
        replicates = np.zeros(bootstrap.replicates)
        return verdicts.Test(
            claims_module.Estimate(0.01, replicates), 0.0499 if bootstrap.replicates < 100_000 else 0.02, runs, near
        )

    far = verdicts.Test(claims_module.Estimate(0.2, np.zeros(10_000)), 1e-4, runs, lambda b: pytest.fail("refined"))
    tests = [near(Bootstrap(10_000)), far]
    pending = [verdicts.directional({"seeds": None}, test, "effect", Bootstrap(10_000)) for test in tests]
    rows = verdicts.decide_family(pending, Bootstrap(10_000))
    assert calls == [10_000, 100_000]
    assert rows[0]["replicates"] == 100_000 and rows[0]["p_adjusted"] == pytest.approx(0.02)
    assert rows[0]["verdict"] == "refuted" and "(p from 100,000 replicates: refined near α)" in rows[0]["reason"]
    assert rows[1]["replicates"] == 10_000
