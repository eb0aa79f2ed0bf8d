"""The SSVD papers' claims, checked against the collected runs: evidence, effect with its uncertainty, verdict.

Every comparison is a paired bootstrap over the test utterances and the seeds of both systems
(`reporting.significance`; seed s of one system is paired with seed s of the other when both ran the
same seeds); a difference is called one only when its 95% interval excludes zero.
A configuration's target test set is the one its data config is named after (`synth_child` → `child`;
with a single test set, that one); forgetting is read on the `source` test set.

Claims (Wang, Watanabe, Van hamme: SSVD, ASRU 2025; SSVD-O, ICASSP 2026):

1. `front`: SSVD lies on the WER-per-parameter Pareto front of the target domain, and beats the best
   other configuration with no more trainable parameters (reproduced), or is on the front only by a
   difference within noise (not significant), or is off the front (refuted).
2. `strict_vs_approx`: the exact (Cayley) and first-order rotations give the same WER at the same
   budget: an equivalence test, reproduced when the interval of the difference lies within
   ±`EQUIVALENCE_MARGIN`, refuted when it lies wholly outside, inconclusive otherwise.
3. `unconstrained_worse`: the unconstrained rotation (`rotation=free`) is worse than the first-order one
   at a matched trainable-parameter count (within `BUDGET_TOLERANCE`).
4. `both_sides`: rotating both singular subspaces (`side=both`) narrows the gap to full fine-tuning on
   the target domain and forgets less on the source domain than the input side alone, at a matched
   total budget: reproduced when both differences are significant in SSVD-both's favour.
5. `model_size`: SSVD's advantage over the LoRA family grows with model size: testable only when the
   runs cover several model sizes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from asr_peft.reporting.pareto import pareto_frontier
from asr_peft.reporting.significance import Comparison, UtteranceErrors, paired_bootstrap, utterance_errors

EQUIVALENCE_MARGIN = 0.01      # ±1 WER point: "the same WER" for the strict-vs-approximate claim
BUDGET_TOLERANCE = 0.10        # trainable counts within 10% are a matched budget
LORA_FAMILY = ("lora", "dora", "pissa")
COLUMNS = ["claim", "statement", "model", "data", "test_set", "system", "reference", "seeds", "utterances",
           "delta_wer_points", "ci_low_points", "ci_high_points", "p_value", "verdict", "evidence"]
STATEMENTS = {
    "front": "SSVD is on the WER-per-parameter front",
    "strict_vs_approx": "strict (Cayley) and first-order rotations give the same WER",
    "unconstrained_worse": "an unconstrained rotation is worse at a matched budget",
    "both_sides": "rotating both subspaces narrows the gap to full fine-tuning and forgets less",
    "model_size": "SSVD's advantage grows with model size",
}


@dataclass
class System:
    """One configuration on one (model, data): its seeds' runs."""

    model: str
    data: str
    configuration: str
    method: str
    trainable: float
    rows: pd.DataFrame  # completed rows of its runs (all test sets)

    @property
    def setting(self) -> dict:
        """SSVD's rotation, side and budgets (None where the runs do not set them; side defaults to input)."""
        first = self.rows.iloc[0]
        value = lambda key: None if key not in first or pd.isna(first[key]) else first[key]  # noqa: E731
        return {"rotation": value("method.rotation"), "side": value("method.side") or "input", "p": value("p"),
                "p_out": value("method.p_out")}

    def wer(self, test_set: str) -> float:
        return float(self.rows.loc[self.rows["test_set"] == test_set, "wer"].mean())

    def seeds(self, test_set: str) -> list:
        return sorted(self.rows.loc[self.rows["test_set"] == test_set, "seed"].tolist())

    def errors(self, test_set: str) -> list[UtteranceErrors]:
        """Per-utterance errors of each run on `test_set`, in seed order."""
        runs = self.rows[self.rows["test_set"] == test_set].sort_values("seed")["run_dir"]
        return [_run_errors(str(run_dir), test_set) for run_dir in runs]


@functools.lru_cache(maxsize=None)
def _run_errors(run_dir: str, test_set: str) -> UtteranceErrors:
    """A run's per-utterance errors from its trn files (read once: several claims compare the same run)."""
    decoded = Path(run_dir) / "decode" / test_set
    return utterance_errors(decoded / "ref.trn", decoded / "hyp.trn")


def target_test_set(data: str, test_sets: Iterable[str]) -> str | None:
    """The test set a data config adapts to: the one its name contains, or the only one."""
    test_sets = list(test_sets)
    named = [t for t in test_sets if t in data]
    if len(named) == 1:
        return named[0]
    return test_sets[0] if len(test_sets) == 1 else None


def systems(frame: pd.DataFrame) -> list[System]:
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    found = []
    for (model, data, configuration), rows in done.groupby(["model", "data", "configuration"], sort=False):
        found.append(System(model, data, configuration, rows["method"].iloc[0], float(rows["trainable"].mean()), rows))
    return found


def _row(claim: str, system: System, reference: System | None, test_set: str, comparison: Comparison | None,
         verdict: str, evidence: str) -> dict:
    points = (lambda value: round(100 * value, 2)) if comparison else (lambda value: None)
    return {"claim": claim, "statement": STATEMENTS[claim], "model": system.model, "data": system.data,
            "test_set": test_set, "system": system.configuration,
            "reference": reference.configuration if reference else None,
            "seeds": f"{comparison.seeds[0]} vs {comparison.seeds[1]}" if comparison else None,
            "utterances": comparison.utterances if comparison else None,
            "delta_wer_points": points(comparison.delta_wer) if comparison else None,
            "ci_low_points": points(comparison.low) if comparison else None,
            "ci_high_points": points(comparison.high) if comparison else None,
            "p_value": round(comparison.p_value, 4) if comparison else None, "verdict": verdict, "evidence": evidence}


def _compare(a: System, b: System, test_set: str) -> Comparison:
    """A against B; runs of the two with the same seeds are paired seed by seed (see significance)."""
    return paired_bootstrap(a.errors(test_set), b.errors(test_set), paired_seeds=a.seeds(test_set) == b.seeds(test_set))


def _matched(a: System, b: System) -> bool:
    return abs(a.trainable - b.trainable) <= BUDGET_TOLERANCE * max(a.trainable, b.trainable)


def _front_claims(domain: list[System], test_set: str) -> list[dict]:
    ranked = [s for s in domain if not pd.isna(s.wer(test_set))]
    frontier = [ranked[i] for i in pareto_frontier([s.trainable for s in ranked], [s.wer(test_set) for s in ranked])]
    on_front = [s for s in frontier if s.method == "ssvd"]
    ssvd = [s for s in ranked if s.method == "ssvd"]
    if not ssvd:
        return []
    if not on_front:
        best = min(ssvd, key=lambda s: s.wer(test_set))
        front = ", ".join(f"{s.configuration} ({100 * s.wer(test_set):.1f}%)" for s in frontier)
        return [_row("front", best, None, test_set, None, "refuted", f"no SSVD configuration on the front: {front}")]
    rows = []
    for point in on_front:
        rivals = [s for s in ranked if s.method != "ssvd" and s.trainable <= point.trainable]
        if not rivals:
            rows.append(_row("front", point, None, test_set, None, "not testable",
                             "no other configuration with as few trainable parameters"))
            continue
        rival = min(rivals, key=lambda s: s.wer(test_set))
        comparison = _compare(point, rival, test_set)
        verdict = {"better": "reproduced", "worse": "refuted"}.get(comparison.verdict, "not significant")
        rows.append(_row("front", point, rival, test_set, comparison, verdict,
                         f"on the front with {point.trainable:,.0f} trainable; the best other configuration with no more "
                         f"parameters is {rival.configuration} ({rival.trainable:,.0f})"))
    return rows


def _ssvd(domain: list[System], **setting) -> list[System]:
    return [s for s in domain if s.method == "ssvd" and all(s.setting.get(k) == v for k, v in setting.items())]


def _strict_claims(domain: list[System], test_set: str) -> list[dict]:
    rows = []
    for strict in _ssvd(domain, rotation="cayley"):
        twin = [s for s in _ssvd(domain, rotation="approx", side=strict.setting["side"], p=strict.setting["p"])
                if s.setting["p_out"] == strict.setting["p_out"]]
        if not twin:
            continue
        comparison = _compare(strict, twin[0], test_set)
        # An equivalence test (two one-sided tests at the interval's level): the same WER when the whole
        # interval lies within the margin, different when it lies wholly outside; a significant but tiny
        # difference is still "the same" in the claim's sense.
        if -EQUIVALENCE_MARGIN <= comparison.low and comparison.high <= EQUIVALENCE_MARGIN:
            verdict = "reproduced"
        elif comparison.low > EQUIVALENCE_MARGIN or comparison.high < -EQUIVALENCE_MARGIN:
            verdict = "refuted"
        else:
            verdict = "inconclusive"
        rows.append(_row("strict_vs_approx", strict, twin[0], test_set, comparison, verdict,
                         f"same p={strict.setting['p']}; equivalence margin ±{100 * EQUIVALENCE_MARGIN:g} WER points"))
    return rows


def _unconstrained_claims(domain: list[System], test_set: str) -> list[dict]:
    rows = []
    for free in _ssvd(domain, rotation="free"):
        twins = [s for s in _ssvd(domain, rotation="approx", side=free.setting["side"]) if _matched(free, s)]
        if not twins:
            continue
        twin = min(twins, key=lambda s: abs(s.trainable - free.trainable))
        comparison = _compare(free, twin, test_set)
        verdict = {"worse": "reproduced", "better": "refuted"}.get(comparison.verdict, "not significant")
        rows.append(_row("unconstrained_worse", free, twin, test_set, comparison, verdict,
                         f"trainable {free.trainable:,.0f} vs {twin.trainable:,.0f}"))
    return rows


def _both_sides_claims(domain: list[System], test_set: str, source: str | None) -> list[dict]:
    rows = []
    full = [s for s in domain if s.method == "full"]
    for both in _ssvd(domain, side="both", rotation="approx"):
        twins = [s for s in _ssvd(domain, side="input", rotation="approx") if _matched(both, s)]
        if not twins:
            continue
        twin = min(twins, key=lambda s: abs(s.trainable - both.trainable))
        target = _compare(both, twin, test_set)
        gap = (f"gap to full fine-tuning {100 * (both.wer(test_set) - full[0].wer(test_set)):.1f} vs "
               f"{100 * (twin.wer(test_set) - full[0].wer(test_set)):.1f} points; " if full else "")
        if source is None:
            verdict = {"better": "partly reproduced (no source test set for forgetting)"}.get(target.verdict, "not significant")
            rows.append(_row("both_sides", both, twin, test_set, target, verdict, gap + "trainable "
                             f"{both.trainable:,.0f} vs {twin.trainable:,.0f}"))
            continue
        forgetting = _compare(both, twin, source)
        outcomes = (target.verdict, forgetting.verdict)
        if outcomes == ("better", "better"):
            verdict = "reproduced"
        elif "worse" in outcomes:
            verdict = "refuted"
        elif "better" in outcomes:
            verdict = "partly reproduced"
        else:
            verdict = "not significant"
        rows.append(_row("both_sides", both, twin, test_set, target, verdict,
                         gap + f"source-domain (forgetting) ΔWER {100 * forgetting.delta_wer:+.2f} points "
                         f"[{100 * forgetting.low:+.2f}, {100 * forgetting.high:+.2f}], p={forgetting.p_value:.3f}; "
                         f"trainable {both.trainable:,.0f} vs {twin.trainable:,.0f}"))
    return rows


def _model_size_claims(found: list[System], targets: dict[tuple[str, str], str]) -> list[dict]:
    """Per data config: SSVD's best against the LoRA family's best on each model, ordered by model size."""
    models = sorted({s.model for s in found})
    if len(models) < 2:
        where = f"all runs use one model ({models[0]})" if models else "no runs"
        return [{**dict.fromkeys(COLUMNS), "claim": "model_size", "statement": STATEMENTS["model_size"],
                 "model": models[0] if models else None, "verdict": "not testable here",
                 "evidence": f"{where}; the claim needs runs on several model sizes"}]
    rows = []
    for data in dict.fromkeys(s.data for s in found):
        advantages = []
        for model in sorted(models, key=lambda m: max(s.rows["total"].max() for s in found if s.model == m)):
            test_set = targets.get((model, data))
            domain = [s for s in found if (s.model, s.data) == (model, data)]
            ssvd = [s for s in domain if s.method == "ssvd"]
            lora = [s for s in domain if s.method in LORA_FAMILY]
            if test_set is None or not ssvd or not lora:
                continue
            best_ssvd = min(ssvd, key=lambda s: s.wer(test_set))
            best_lora = min(lora, key=lambda s: s.wer(test_set))
            comparison = _compare(best_ssvd, best_lora, test_set)
            advantages.append((model, -comparison.delta_wer, comparison, best_ssvd, best_lora, test_set))
        if len(advantages) < 2:
            continue
        gains = [gain for _, gain, *_ in advantages]
        largest = advantages[-1][2]
        if all(b > a for a, b in zip(gains, gains[1:])):
            verdict = "reproduced" if largest.verdict == "better" else "not significant"
        elif all(b < a for a, b in zip(gains, gains[1:])):
            verdict = "refuted"
        else:
            verdict = "inconclusive"
        trend = "; ".join(f"{model}: {100 * gain:+.2f} points" for model, gain, *_ in advantages)
        model, _, comparison, best_ssvd, best_lora, test_set = advantages[-1]
        rows.append(_row("model_size", best_ssvd, best_lora, test_set, comparison, verdict,
                         f"SSVD's best minus the LoRA family's best, by model size: {trend}"))
    return rows


def check_claims(frame: pd.DataFrame) -> pd.DataFrame:
    """A row per claim and domain (and per compared pair), as described in the module docstring."""
    found = systems(frame)
    rows: list[dict] = []
    targets: dict[tuple[str, str], str] = {}
    for (model, data), _ in frame.groupby(["model", "data"], sort=False):
        domain = [s for s in found if (s.model, s.data) == (model, data)]
        test_sets = list(dict.fromkeys(frame.loc[(frame["model"] == model) & (frame["data"] == data), "test_set"].dropna()))
        target = target_test_set(str(data), test_sets)
        if target is None or not domain:
            continue
        targets[(model, data)] = target
        source = "source" if "source" in test_sets and target != "source" else None
        rows += _front_claims(domain, target)
        rows += _strict_claims(domain, target)
        rows += _unconstrained_claims(domain, target)
        rows += _both_sides_claims(domain, target, source)
    rows += _model_size_claims(found, targets)
    return pd.DataFrame(rows, columns=COLUMNS)
