"""The SSVD papers' claims, checked against the collected runs: evidence, effect with its uncertainty, verdict.

Every comparison is a paired bootstrap over the test utterances and the seeds of both systems
(`reporting.significance`; seed s of one system is paired with seed s of the other when both ran the
same seeds); a difference is called one only when its 95% interval excludes zero, otherwise it is
"no significant difference". A configuration's target test set is the one its data config is named
after (`synth_child` → `child`; with a single test set, that one); forgetting is read on the `source`
test set.

Each claim gets one of three verdicts: `reproduced`, `refuted` or `not testable here`, the last with
the reason (the runs it needs are missing, a run has no per-utterance decodes, or the difference the
claim predicts is within noise: these runs cannot decide it).

Claims (Wang, Watanabe, Van hamme: SSVD, ASRU 2025; SSVD-O, ICASSP 2026):

1. `front`: SSVD lies on the WER-per-parameter Pareto front of the target domain: reproduced when an
   SSVD configuration is significantly better than the best other configuration with no more
   trainable parameters, with its p-value Holm-adjusted over every SSVD configuration so compared
   (the claim picks whichever one is significant), refuted when every SSVD configuration is
   significantly worse than such a configuration (dominated), not testable here otherwise.
2. `strict_vs_approx`: the exact (Cayley) and first-order rotations give the same WER at the same
   budget: an equivalence test, reproduced when the interval of the difference lies within
   ±`EQUIVALENCE_MARGIN`, refuted when it lies wholly outside.
3. `unconstrained_worse`: the unconstrained rotation (`rotation=free`) is significantly worse than the
   first-order one at a matched trainable-parameter count (within `BUDGET_TOLERANCE`).
4. `both_sides`: rotating both singular subspaces (`side=both`) narrows the gap to full fine-tuning on
   the target domain (a lower target WER: full fine-tuning's WER is the same for both) and forgets
   less on the source domain (a lower source WER: the model before adaptation is the same for both)
   than the input side alone at a matched budget: reproduced when both differences are significant in
   SSVD-both's favour, refuted when either is significant against it.
5. `model_size`: SSVD's advantage over the LoRA family grows with model size: testable only when the
   runs cover several model sizes; reproduced when the advantage grows from size to size and is
   significant on the largest model.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import SOURCE_TEST_SET, target_test_set
from asr_peft.reporting.significance import CONFIDENCE, Comparison, compare_runs, holm_adjusted

EQUIVALENCE_MARGIN = 0.01  # ±1 WER point: "the same WER" for the strict-vs-approximate claim
BUDGET_TOLERANCE = 0.10  # trainable counts within 10% are a matched budget
LORA_FAMILY = ("lora", "dora", "pissa")
REPRODUCED, REFUTED, NOT_TESTABLE = "reproduced", "refuted", "not testable here"
COLUMNS = [
    "claim",
    "statement",
    "verdict",
    "reason",
    "model",
    "data",
    "test_set",
    "system",
    "reference",
    "system_trainable",
    "reference_trainable",
    "seeds",
    "paired_seeds",
    "utterances",
    "delta_wer_points",
    "ci_low_points",
    "ci_high_points",
    "p_value",
    "difference",
    "comparisons",
    "runs",
]
SEPARATOR = "; "  # between the items of the `comparisons` and `runs` columns
SIDES = " vs "  # between the system's runs and the reference's in the `runs` column
STATEMENTS = {
    "front": "SSVD is on the WER-per-parameter front",
    "strict_vs_approx": "strict (Cayley) and first-order rotations give the same WER (within ±1 point)",
    "unconstrained_worse": "an unconstrained rotation is worse at a matched budget",
    "both_sides": "rotating both subspaces narrows the gap to full fine-tuning and forgets less",
    "model_size": "SSVD's advantage grows with model size",
}
NEEDS = {  # why a claim has no row at all: the runs it needs
    "front": "no SSVD runs with a WER on a target test set",
    "strict_vs_approx": "no SSVD rotation=cayley run with a rotation=approx run of the same budget and side",
    "unconstrained_worse": "no SSVD rotation=free run with a rotation=approx run of a matched budget and side",
    "both_sides": "no SSVD side=both run with a side=input run of a matched budget",
    "model_size": "no model with both SSVD and LoRA-family runs on its target test set",
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
        return {
            "rotation": value("method.rotation"),
            "side": value("method.side") or "input",
            "p": value("p"),
            "p_out": value("method.p_out"),
        }

    def runs(self, test_set: str) -> pd.DataFrame:
        return self.rows[self.rows["test_set"] == test_set].sort_values("seed")

    def wer(self, test_set: str) -> float:
        return float(self.runs(test_set)["wer"].mean())


def systems(frame: pd.DataFrame) -> list[System]:
    if frame.empty:
        return []
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    found = []
    for (model, data, configuration), rows in done.groupby(["model", "data", "configuration"], sort=False):
        found.append(System(model, data, configuration, rows["method"].iloc[0], float(rows["trainable"].mean()), rows))
    return found


def _seeds(system: System, test_set: str) -> str:
    return ",".join(str(s) for s in system.runs(test_set)["seed"])


def _row(
    claim: str,
    system: System,
    reference: System | None,
    test_set: str,
    comparison: Comparison | None,
    verdict: str,
    reason: str,
    comparisons: list[str] | None = None,
) -> dict:
    """A claims-table row: the verdict and its reason, the evidence (runs, seeds, budgets; `comparisons`: every
    comparison the verdict weighed, where it weighed several) and the effect (ΔWER of system against reference
    in WER points, its interval and p-value) when it was measured."""
    points = lambda value: round(100 * value, 2)  # noqa: E731
    row = {
        **dict.fromkeys(COLUMNS),
        "claim": claim,
        "statement": STATEMENTS[claim],
        "verdict": verdict,
        "reason": reason,
        "comparisons": SEPARATOR.join(comparisons) if comparisons else None,
        "model": system.model,
        "data": system.data,
        "test_set": test_set,
        "system": system.configuration,
        "system_trainable": system.trainable,
    }
    if reference is not None:
        row.update(
            reference=reference.configuration,
            reference_trainable=reference.trainable,
            seeds=f"{_seeds(system, test_set)} vs {_seeds(reference, test_set)}",
            runs=SIDES.join(SEPARATOR.join(s.runs(test_set)["run"]) for s in (system, reference)),
        )
    if comparison is not None:
        row.update(
            paired_seeds=comparison.paired_seeds,
            utterances=comparison.utterances,
            delta_wer_points=points(comparison.delta_wer),
            ci_low_points=points(comparison.low),
            ci_high_points=points(comparison.high),
            p_value=round(comparison.p_value, 4),
            difference=comparison.verdict,
        )
    return row


def _compare(a: System, b: System, test_set: str) -> Comparison:
    """A against B (see significance.compare_runs); ConfigError when a run has no per-utterance decodes."""
    return compare_runs(a.runs(test_set), b.runs(test_set), test_set)


def _matched(a: System, b: System) -> bool:
    return abs(a.trainable - b.trainable) <= BUDGET_TOLERANCE * max(a.trainable, b.trainable)


def _untestable_noise(comparison: Comparison, what: str) -> str:
    return f"no significant difference in {what}: {comparison.describe()}; these runs cannot decide it"


def _front_outcome(outcome: tuple, adjusted_p: float | None) -> str:
    """One SSVD configuration against its best rival with no more trainable parameters, or why it was not compared."""
    point, rival, comparison, problem = outcome
    if comparison is None:
        return f"{point.configuration}: {problem}"
    return (
        f"{point.configuration} vs {rival.configuration}: {comparison.verdict}, {comparison.describe()}, "
        f"Holm-adjusted p={adjusted_p:.4f}"
    )


def _front_claims(domain: list[System], test_set: str) -> list[dict]:
    ranked = [s for s in domain if not pd.isna(s.wer(test_set))]
    ssvd = sorted((s for s in ranked if s.method == "ssvd"), key=lambda s: s.trainable)
    if not ssvd:
        return []
    outcomes = []  # (ssvd configuration, its best rival with no more parameters, comparison or None, problem)
    for point in ssvd:
        rivals = [s for s in ranked if s.method != "ssvd" and s.trainable <= point.trainable]
        if not rivals:
            outcomes.append((point, None, None, "no other configuration has as few trainable parameters"))
            continue
        rival = min(rivals, key=lambda s: s.wer(test_set))
        try:
            outcomes.append((point, rival, _compare(point, rival, test_set), None))
        except ConfigError as err:
            outcomes.append((point, rival, None, str(err)))
    tested = [o for o in outcomes if o[2] is not None]
    adjusted = dict(zip(map(id, tested), holm_adjusted([o[2].p_value for o in tested])))
    family = f"Holm-adjusted over the {len(tested)} SSVD configuration{'s' * (len(tested) != 1)} compared"
    weighed = [_front_outcome(outcome, adjusted.get(id(outcome))) for outcome in outcomes]
    better = [o for o in tested if o[2].verdict == "better" and adjusted[id(o)] < 1 - CONFIDENCE]
    if better:
        strongest = min(better, key=lambda o: adjusted[id(o)])
        point, rival, comparison, _ = strongest
        return [
            _row(
                "front",
                point,
                rival,
                test_set,
                comparison,
                REPRODUCED,
                f"{point.configuration} is significantly better than {rival.configuration}, the best other "
                f"configuration with no more trainable parameters: {comparison.describe()}; "
                f"p={adjusted[id(strongest)]:.4f} {family}",
                weighed,
            )
        ]
    if tested and len(tested) == len(outcomes) and all(o[2].verdict == "worse" for o in tested):
        point, rival, comparison, _ = min(tested, key=lambda o: o[2].delta_wer)
        return [
            _row(
                "front",
                point,
                rival,
                test_set,
                comparison,
                REFUTED,
                f"every SSVD configuration is significantly worse than one with no more trainable parameters; "
                f"the closest: {point.configuration} against {rival.configuration}: {comparison.describe()}",
                weighed,
            )
        ]
    if not tested:  # nothing could be compared: say why once (missing decodes, or SSVD is the cheapest)
        point, rival, _, problem = outcomes[0]
        return [_row("front", point, rival, test_set, None, NOT_TESTABLE, f"{point.configuration}: {problem}", weighed)]
    # the row shows the comparison nearest to reproducing the claim (its interval's upper end lowest, i.e. closest
    # to lying wholly below zero); `comparisons` lists them all
    nearest = min(tested, key=lambda o: o[2].high)
    point, rival, comparison, _ = nearest
    return [
        _row(
            "front",
            point,
            rival,
            test_set,
            comparison,
            NOT_TESTABLE,
            f"no SSVD configuration is significantly better ({family}) or significantly dominated at its "
            f"budget; the nearest to it: {point.configuration} vs {rival.configuration}, {comparison.describe()}, "
            f"Holm-adjusted p={adjusted[id(nearest)]:.4f}",
            weighed,
        )
    ]


def _ssvd(domain: list[System], **setting) -> list[System]:
    return [s for s in domain if s.method == "ssvd" and all(s.setting.get(k) == v for k, v in setting.items())]


def _tested_row(claim: str, system: System, reference: System, test_set: str, judge) -> dict:
    """The row of a claim that compares `system` with `reference`: `judge(comparison)` gives (verdict, reason);
    a run without per-utterance decodes makes the claim not testable here."""
    try:
        comparison = _compare(system, reference, test_set)
    except ConfigError as err:
        return _row(claim, system, reference, test_set, None, NOT_TESTABLE, str(err))
    return _row(claim, system, reference, test_set, comparison, *judge(comparison))


def _strict_claims(domain: list[System], test_set: str) -> list[dict]:
    margin = f"±{100 * EQUIVALENCE_MARGIN:g} WER points"

    def judge(comparison: Comparison) -> tuple[str, str]:
        # An equivalence test (two one-sided tests at the interval's level): the same WER when the whole
        # interval lies within the margin, different when it lies wholly outside; a significant but tiny
        # difference is still "the same" in the claim's sense.
        if -EQUIVALENCE_MARGIN <= comparison.low and comparison.high <= EQUIVALENCE_MARGIN:
            return REPRODUCED, f"the interval lies within {margin}: {comparison.describe()}"
        if comparison.low > EQUIVALENCE_MARGIN or comparison.high < -EQUIVALENCE_MARGIN:
            return REFUTED, f"the interval lies wholly outside {margin}: {comparison.describe()}"
        return NOT_TESTABLE, f"the interval straddles {margin}: {comparison.describe()}; these runs cannot decide it"

    rows = []
    for strict in _ssvd(domain, rotation="cayley"):
        twins = [
            s
            for s in _ssvd(domain, rotation="approx", side=strict.setting["side"], p=strict.setting["p"])
            if s.setting["p_out"] == strict.setting["p_out"]
        ]
        if twins:
            rows.append(_tested_row("strict_vs_approx", strict, twins[0], test_set, judge))
    return rows


def _unconstrained_claims(domain: list[System], test_set: str) -> list[dict]:
    def judge(comparison: Comparison) -> tuple[str, str]:
        if comparison.verdict == "worse":
            return REPRODUCED, f"significantly worse: {comparison.describe()}"
        if comparison.verdict == "better":
            return REFUTED, f"significantly better: {comparison.describe()}"
        return NOT_TESTABLE, _untestable_noise(comparison, "WER")

    rows = []
    for free in _ssvd(domain, rotation="free"):
        twins = [s for s in _ssvd(domain, rotation="approx", side=free.setting["side"]) if _matched(free, s)]
        if twins:
            twin = min(twins, key=lambda s: abs(s.trainable - free.trainable))
            rows.append(_tested_row("unconstrained_worse", free, twin, test_set, judge))
    return rows


def _both_sides_claims(domain: list[System], test_set: str, source: str | None) -> list[dict]:
    rows = []
    full = [s for s in domain if s.method == "full"]
    for both in _ssvd(domain, side="both", rotation="approx"):
        twins = [s for s in _ssvd(domain, side="input", rotation="approx") if _matched(both, s)]
        if not twins:
            continue
        twin = min(twins, key=lambda s: abs(s.trainable - both.trainable))
        gap = (
            f"gap to full fine-tuning {100 * (both.wer(test_set) - full[0].wer(test_set)):.1f} vs "
            f"{100 * (twin.wer(test_set) - full[0].wer(test_set)):.1f} points; "
            if full
            else ""
        )
        try:
            target = _compare(both, twin, test_set)
            forgetting = _compare(both, twin, source) if source else None
        except ConfigError as err:
            rows.append(_row("both_sides", both, twin, test_set, None, NOT_TESTABLE, str(err)))
            continue
        parts = f"{gap}target domain: {target.verdict}, {target.describe()}; source domain (forgetting): " + (
            f"{forgetting.verdict}, {forgetting.describe()}" if forgetting else "no source test set"
        )
        outcomes = (target.verdict, forgetting.verdict if forgetting else None)
        if outcomes == ("better", "better"):
            verdict = REPRODUCED
        elif "worse" in outcomes:
            verdict = REFUTED
        else:
            verdict = NOT_TESTABLE
            parts += "; these runs cannot decide it" if forgetting else "; forgetting needs a source test set"
        rows.append(_row("both_sides", both, twin, test_set, target, verdict, parts))
    return rows


def _model_size_claims(found: list[System], targets: dict[tuple[str, str], str]) -> list[dict]:
    """Per data config: SSVD's best against the LoRA family's best on each model, ordered by model size."""
    models = sorted({s.model for s in found})
    if len(models) < 2:
        where = f"all runs use one model ({models[0]})" if models else "no runs"
        return [
            {
                **dict.fromkeys(COLUMNS),
                "claim": "model_size",
                "statement": STATEMENTS["model_size"],
                "model": models[0] if models else None,
                "verdict": NOT_TESTABLE,
                "reason": f"{where}; the claim needs runs on several model sizes",
            }
        ]
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
            advantages.append((model, best_lora.wer(test_set) - best_ssvd.wer(test_set), best_ssvd, best_lora, test_set))
        if len(advantages) < 2:
            continue
        gains = [gain for _, gain, *_ in advantages]
        trend = "; ".join(f"{model}: {100 * gain:+.2f} points" for model, gain, *_ in advantages)
        model, _, best_ssvd, best_lora, test_set = advantages[-1]

        def judge(comparison: Comparison) -> tuple[str, str]:
            growing = all(b > a for a, b in zip(gains, gains[1:]))
            evidence = f"SSVD's best against the LoRA family's best, by model size: {trend}; on {model}: {comparison.describe()}"
            if growing and comparison.verdict == "better":
                return REPRODUCED, evidence
            if comparison.verdict == "worse":
                return REFUTED, f"SSVD is significantly worse on the largest model. {evidence}"
            why = (
                "the advantage does not grow from size to size"
                if not growing
                else "no significant difference on the largest model"
            )
            return NOT_TESTABLE, f"{why}. {evidence}"

        rows.append(_tested_row("model_size", best_ssvd, best_lora, test_set, judge))
    return rows


def check_claims(frame: pd.DataFrame) -> pd.DataFrame:
    """A row per claim and domain (and per compared pair), as described in the module docstring; a claim
    the runs cannot address at all gets one `not testable here` row saying what it needs."""
    found = systems(frame)
    rows: list[dict] = []
    targets: dict[tuple[str, str], str] = {}
    for (model, data), _ in frame.groupby(["model", "data"], sort=False) if not frame.empty else ():
        domain = [s for s in found if (s.model, s.data) == (model, data)]
        test_sets = list(dict.fromkeys(frame.loc[(frame["model"] == model) & (frame["data"] == data), "test_set"].dropna()))
        target = target_test_set(str(data), test_sets)
        if target is None or not domain:
            continue
        targets[(model, data)] = target
        source = SOURCE_TEST_SET if SOURCE_TEST_SET in test_sets and target != SOURCE_TEST_SET else None
        rows += _front_claims(domain, target)
        rows += _strict_claims(domain, target)
        rows += _unconstrained_claims(domain, target)
        rows += _both_sides_claims(domain, target, source)
    rows += _model_size_claims(found, targets)
    addressed = {row["claim"] for row in rows}
    rows += [
        {
            **dict.fromkeys(COLUMNS),
            "claim": claim,
            "statement": STATEMENTS[claim],
            "verdict": NOT_TESTABLE,
            "reason": f"{NEEDS[claim]} among the collected runs",
        }
        for claim in STATEMENTS
        if claim not in addressed
    ]
    order = list(STATEMENTS)
    rows.sort(key=lambda row: order.index(row["claim"]))
    return pd.DataFrame(rows, columns=COLUMNS)
