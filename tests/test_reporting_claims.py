"""The claims table on runs whose per-utterance errors are made to order (trn files written as scoring does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asr_peft.evaluation.trn import write_trn
from asr_peft.reporting.aggregate import collect, to_frame
from asr_peft.reporting import claims as claims_module
from asr_peft.reporting.claims import check_claims
from asr_peft.reporting.significance import Comparison

WORDS = 10
UTTERANCES = 400


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
) -> Path:
    """A completed run whose decode/<set>/ trn files hold exactly `errors[set][u]` substitutions per utterance
    (each utterance `WORDS` words long)."""
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
        "parameters": {"trainable": trainable, "total": 4_000_000},
        "config": {"optimizer": {"lr": 1e-3}, "trainer": {"max_steps": 100}},
    }
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def test_claims_reproduced_refuted_and_untestable_are_told_apart(tmp_path):
    ssvd = lambda **kw: {"name": "ssvd", "rotation": "approx", "side": "input", **kw}  # noqa: E731
    for seed in range(3):
        approx = _errors(0.40, 100 + seed)
        # Cayley: the same errors as approx but on a few utterances: the same WER within noise.
        cayley = approx.copy()
        cayley[::97] = np.clip(cayley[::97] + 1, 0, WORDS)
        child_runs = {
            ("frozen", None): ({"name": "frozen"}, 0, 0.60, 0.15),
            ("lora_r4", None): ({"name": "lora", "r": 4, "alpha": 8}, 100_000, 0.45, 0.20),
            ("ssvd_p0.4", 0.4): (ssvd(), 50_000, approx, 0.22),
            ("ssvd_cayley_p0.4", 0.4): (ssvd(rotation="cayley"), 50_000, cayley, 0.22),
            ("ssvd_free_p0.28", 0.28): (ssvd(rotation="free"), 51_000, 0.48, 0.22),
            ("ssvd_both", 0.28): (ssvd(side="both", p_out=0.28), 49_000, 0.34, 0.16),
            ("full", None): ({"name": "full"}, 4_000_000, 0.30, 0.30),
        }
        for (name, p), (method, trainable, child, source) in child_runs.items():
            child_errors = child if isinstance(child, np.ndarray) else _errors(child, 1000 * seed + sum(map(ord, name)))
            write_run(
                tmp_path,
                name,
                method=method,
                p=p,
                trainable=trainable,
                seed=seed,
                errors={"source": _errors(source, 7 + seed), "child": child_errors},
            )
        # Dialect: a LoRA configuration with fewer parameters than SSVD is better: SSVD is off the front.
        write_run(
            tmp_path,
            "lora_r1",
            method={"name": "lora", "r": 1, "alpha": 2},
            p=None,
            trainable=40_000,
            seed=seed,
            data="synth_dialect",
            errors={"source": _errors(0.2, seed), "dialect": _errors(0.40, 50 + seed)},
        )
        write_run(
            tmp_path,
            "ssvd_p0.4",
            method=ssvd(),
            p=0.4,
            trainable=50_000,
            seed=seed,
            data="synth_dialect",
            errors={"source": _errors(0.2, seed), "dialect": _errors(0.50, 60 + seed)},
        )

    claims = check_claims(to_frame(collect([tmp_path]).runs))
    verdict = {(row.claim, row.data): row.verdict for row in claims.itertuples()}
    assert verdict[("front", "synth_child")] == "reproduced"  # SSVD both (49k) beats frozen, the only cheaper one
    assert verdict[("front", "synth_dialect")] == "refuted"
    assert verdict[("strict_vs_approx", "synth_child")] == "reproduced"
    assert verdict[("unconstrained_worse", "synth_child")] == "reproduced"
    assert verdict[("both_sides", "synth_child")] == "reproduced"
    assert claims.loc[claims["claim"] == "model_size", "verdict"].tolist() == ["not testable here"]
    strict = claims[claims["claim"] == "strict_vs_approx"].iloc[0]
    assert strict["seeds"] == "0,1,2 vs 0,1,2" and strict["paired_seeds"] and strict["utterances"] == UTTERANCES
    assert -1.0 <= strict["ci_low_points"] <= strict["delta_wer_points"] <= strict["ci_high_points"] <= 1.0
    both = claims[claims["claim"] == "both_sides"].iloc[0]
    assert both["delta_wer_points"] < -3 and "source domain (forgetting): better" in both["reason"]


def test_the_model_size_trend_is_read_across_models(tmp_path):
    for model, (ssvd_rate, lora_rate) in {"owsm_small": (0.40, 0.41), "owsm_large": (0.30, 0.36)}.items():
        for seed in range(2):
            write_run(
                tmp_path,
                "ssvd",
                method={"name": "ssvd", "rotation": "approx"},
                p=0.4,
                trainable=10,
                seed=seed,
                model=model,
                errors={"child": _errors(ssvd_rate, seed)},
            )
            write_run(
                tmp_path,
                "lora",
                method={"name": "lora", "r": 4},
                p=None,
                trainable=20,
                seed=seed,
                model=model,
                errors={"child": _errors(lora_rate, 10 + seed)},
            )
    frame = to_frame(collect([tmp_path]).runs)
    frame.loc[frame["model"] == "owsm_large", "total"] = 1e9  # model size orders the trend
    claims = check_claims(frame)
    row = claims[claims["claim"] == "model_size"].iloc[0]
    assert row["verdict"] == "reproduced" and "owsm_small" in row["reason"] and row["model"] == "owsm_large"


@pytest.mark.parametrize("ssvd_points, verdict", [(1, "reproduced"), (2, "not testable here")])
def test_the_front_claim_corrects_for_picking_one_of_several_ssvd_budgets(tmp_path, monkeypatch, ssvd_points, verdict):
    """One SSVD budget beats its cheaper rival at p=0.03: that decides the claim alone, but not when it is one of
    two budgets tried (Holm: 2 × 0.03 = 0.06 > 0.05)."""
    write_run(tmp_path, "lora_r1", method={"name": "lora", "r": 1}, p=None, trainable=10, seed=0, errors={"child": [1] * 4})
    for i, p in enumerate([0.2, 0.4][:ssvd_points]):
        write_run(
            tmp_path,
            f"ssvd_p{p}",
            method={"name": "ssvd", "rotation": "approx"},
            p=p,
            trainable=20 + i,
            seed=0,
            errors={"child": [1] * 4},
        )
    significant = Comparison(delta_wer=-0.02, low=-0.035, high=-0.001, p_value=0.03, utterances=4, seeds=(1, 1))
    noise = Comparison(delta_wer=0.0, low=-0.01, high=0.01, p_value=0.9, utterances=4, seeds=(1, 1))
    monkeypatch.setattr(
        claims_module, "_compare", lambda a, b, test_set: significant if a.configuration.startswith("ssvd p=0.2") else noise
    )
    (row,) = [r for r in check_claims(to_frame(collect([tmp_path]).runs)).itertuples() if r.claim == "front"]
    assert row.verdict == verdict
    assert f"Holm-adjusted over the {ssvd_points} SSVD configuration" in row.reason
    assert ("p=0.0300 Holm" in row.reason) if ssvd_points == 1 else ("Holm-adjusted p=0.0600" in row.reason)


def test_an_undecided_front_claim_shows_the_comparison_nearest_to_reproducing_it(tmp_path, monkeypatch):
    """Of two SSVD budgets, the cheaper significantly worse than its rival and the dearer better but not
    significantly, the row names the dearer: the one nearest to reproducing the claim, not the first compared
    nor the one with the lowest p."""
    write_run(tmp_path, "lora_r1", method={"name": "lora", "r": 1}, p=None, trainable=10, seed=0, errors={"child": [1] * 4})
    for i, p in enumerate([0.2, 0.4]):
        write_run(
            tmp_path,
            f"ssvd_p{p}",
            method={"name": "ssvd", "rotation": "approx"},
            p=p,
            trainable=20 + i,
            seed=0,
            errors={"child": [1] * 4},
        )
    nearly = Comparison(delta_wer=-0.02, low=-0.04, high=0.001, p_value=0.06, utterances=4, seeds=(1, 1))
    worse = Comparison(delta_wer=0.05, low=0.02, high=0.08, p_value=0.001, utterances=4, seeds=(1, 1))
    monkeypatch.setattr(
        claims_module, "_compare", lambda a, b, test_set: nearly if a.configuration.startswith("ssvd p=0.4") else worse
    )
    (row,) = [r for r in check_claims(to_frame(collect([tmp_path]).runs)).itertuples() if r.claim == "front"]
    assert row.verdict == "not testable here"
    assert row.system.startswith("ssvd p=0.4") and row.p_value == pytest.approx(0.06)
