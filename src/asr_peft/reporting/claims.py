"""The SSVD papers' claims, checked against the collected runs: evidence, effect with its uncertainty, verdict.

Statistics. Every test is the hierarchical paired bootstrap of `reporting.significance` (seeds, then
utterances within them; the same seeds drawn jointly). The claims table is one family: Holm's correction
runs over every test behind it (each row's test, and each SSVD configuration's comparison that a `front`
row weighs), and a verdict rests on its Holm-adjusted p-value (`p_adjusted`) at α = 0.05
(`reporting.verdicts`, which also refines a test whose adjusted p lies within Monte-Carlo error of α). A
configuration's target test set is the one its data config is named after (`synth_child` → `child`; with a
single test set, that one); forgetting is read on the `source` test set.

Verdicts: `reproduced` (the test ran and found the claim's effect, adjusted p < α), `refuted` (it ran
and found the opposite, adjusted p < α), `inconclusive` (it ran and found neither: the reason gives the
effect and its interval) and `not tested` (its fair test could not run: the runs it needs are missing,
or a run has no per-utterance decodes or no validation before adaptation; the reason says which). A row
resting on fewer than `MIN_SEEDS` seeds of a configuration says so.

Claims (Wang, Watanabe, Van hamme: SSVD, ASRU 2025; SSVD-O, ICASSP 2026):

1. `front`: SSVD lies on the WER-per-parameter Pareto front of the target domain: reproduced when an
   SSVD configuration is significantly better than the best other configuration with no more trainable
   parameters, refuted when every SSVD configuration is significantly worse than such a configuration
   (dominated). Every SSVD configuration's comparison is one test of the family (the claim takes
   whichever is significant).
2. `strict_vs_approx`: the exact (Cayley) and first-order rotations give the same WER at the same budget:
   an equivalence test against the margin ±`EQUIVALENCE_MARGIN`, fixed before the new sweeps from the seed
   spread of an earlier, separate set of runs (`MARGIN_DERIVATION`). The test is the one the estimate
   points to: inside the margin, two one-sided tests (TOST; p the larger of the shares of replicates at or
   beyond each edge): reproduced; outside, the one-sided test of lying beyond that edge: refuted.
3. `unconstrained_worse`: the unconstrained rotation (`rotation=free`) is worse than the first-order one,
   each free configuration in two rows: against the approx configuration of the nearest trainable count
   (within `BUDGET_TOLERANCE`; `matched_by` = trainable count) and against the one of the same p (the same
   rank; matched_by = rank).
4. `both_sides`: rotating both singular subspaces (`side=both`) narrows the gap to full fine-tuning: a
   lower target WER than the paper's side alone (`side=smaller`) at a matched budget (full fine-tuning's WER is the same for
   both), one row per side=both configuration.
5. `both_sides_forgetting`: rotating both subspaces forgets less, judged on trade-off curves: for the
   side=both configurations with p = p_out and the side=smaller ones (first-order rotation), the source WER
   against the target WER across budgets; the statistic is the mean gap of the both-sides curve below the
   side=smaller one over the target WERs both curves cover (`reporting.curves`), so forgetting is compared
   at a matched target WER, not at one budget or learning rate. Reproduced when it is significantly
   negative (both-sided forgets less).
6. `converges_faster`: SSVD (first-order, side=smaller) reaches 90% of its run's final dev gain (dev WER
   before adaptation minus the best dev WER; `reporting.convergence`) in fewer updates than PiSSA and than
   LoRA at a matched budget (`matched_rival`): a row per SSVD configuration and rival, the statistic the
   mean over seeds of the updates, SSVD minus the rival, bootstrapped over the seeds (jointly where both
   ran the same seeds).
7. `scale`: per model, the best SSVD configuration (lowest mean target WER) against the best rival at a
   matched budget (lowest mean target WER among the configurations of other methods within
   `BUDGET_TOLERANCE` of its trainable count, or, if none is, the next-larger one): reproduced when SSVD
   is significantly better.
8. `model_size`: SSVD's advantage grows with model size: the slope of the `scale` gaps against log10 of
   the model's parameters (its runs' smallest total; least squares over the models, every model's gap on
   the same bootstrap replicate), reproduced when significantly negative (the gap, SSVD minus rival, falls
   as the model grows), refuted when significantly positive; needs two model sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from asr_peft.adapters.ssvd import PAPER_SIDE
from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import SOURCE_TEST_SET, target_test_set
from asr_peft.reporting.convergence import GAIN_FRACTION
from asr_peft.reporting.curves import GRID, common_range, mean_gap
from asr_peft.reporting.replicates import Bootstrap, prefetch, resampled_seed_mean, seed_draws
from asr_peft.reporting.significance import Comparison, Estimate, compare_runs, format_p, one_sided_p, runs_replicates
from asr_peft.reporting.verdicts import (
    COLUMNS,
    INCONCLUSIVE,
    NOT_TESTED,
    REFUTED,
    REPRODUCED,
    SIDES,
    Pending,
    Test,
    caveats,
    decide_family,
    difference,
    directional,
    effect_columns,
    make_test,
    not_tested,
)

# ±1.18 WER points: "the same WER" for the strict-vs-approximate claim; see MARGIN_DERIVATION.
EQUIVALENCE_MARGIN = 0.0118
MARGIN_SOURCE = "results/comparison_v1"
MARGIN_DERIVATION = (
    "1.96·√2 × the pooled seed standard deviation (0.43 WER points) of the first-order and Cayley SSVD "
    "configurations (side=smaller, p = 0.1 to 0.8, both target domains, 3 seeds each) of the earlier comparison "
    f"({MARGIN_SOURCE}, 186 runs, 2026-12-03), fixed before the new sweeps: 95% of the differences between two "
    "seeds of one configuration lie within it, so a rotation swap inside it changes WER no more than a new seed does"
)
BUDGET_TOLERANCE = 0.10  # trainable counts within 10% are a matched budget
CONVERGENCE_RIVALS = ("pissa", "lora")
SEPARATOR = "; "  # between the items of the `comparisons` and `runs` columns
STATEMENTS = {
    "front": "SSVD is on the WER-per-parameter front",
    "strict_vs_approx": (
        f"strict (Cayley) and first-order rotations give the same WER (within ±{100 * EQUIVALENCE_MARGIN:.2f} points)"
    ),
    "unconstrained_worse": "an unconstrained rotation is worse than the first-order one",
    "both_sides": "rotating both subspaces narrows the gap to full fine-tuning (lower target WER at a matched budget)",
    "both_sides_forgetting": "rotating both subspaces forgets less (lower source WER at a matched target WER)",
    "converges_faster": (
        f"SSVD reaches {100 * GAIN_FRACTION:g}% of its dev gain in fewer updates than PiSSA and LoRA at a matched budget"
    ),
    "scale": "SSVD's best beats the best rival at a matched budget on this model",
    "model_size": "SSVD's advantage grows with model size",
}
NEEDS = {  # why a claim has no row at all: the runs it needs
    "front": "no SSVD runs with a WER on a target test set",
    "strict_vs_approx": "no SSVD rotation=cayley run with a rotation=approx run of the same budget and side",
    "unconstrained_worse": "no SSVD rotation=free run",
    "both_sides": "no SSVD side=both run",
    "both_sides_forgetting": "no first-order SSVD side=both or side=smaller runs",
    "converges_faster": "no first-order side=smaller SSVD runs beside PiSSA or LoRA runs",
    "scale": "no model with SSVD runs and runs of another method on its target test set",
    "model_size": "no model with SSVD runs and runs of another method on its target test set",
}


class NotTestable(Exception):
    """A test's own data cannot carry it (e.g. two curves that share no target WER): the row is not tested."""


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
        """SSVD's rotation, side and budgets (None where the runs do not set them; side defaults to the paper's)."""
        first = self.rows.iloc[0]
        value = lambda key: None if key not in first or pd.isna(first[key]) else first[key]  # noqa: E731
        return {
            "rotation": value("method.rotation"),
            "side": value("method.side") or PAPER_SIDE,
            "p": value("p"),
            "p_out": value("method.p_out"),
        }

    def runs(self, test_set: str) -> pd.DataFrame:
        return self.rows[self.rows["test_set"] == test_set].sort_values("seed")

    def wer(self, test_set: str) -> float:
        return float(self.runs(test_set)["wer"].mean())

    def seeds(self, test_set: str) -> list:
        return self.runs(test_set)["seed"].tolist()


def systems(frame: pd.DataFrame) -> list[System]:
    if frame.empty:
        return []
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    found = []
    for (model, data, configuration), rows in done.groupby(["model", "data", "configuration"], sort=False):
        found.append(System(model, data, configuration, rows["method"].iloc[0], float(rows["trainable"].mean()), rows))
    return found


def _matched(a: System, b: System) -> bool:
    return abs(a.trainable - b.trainable) <= BUDGET_TOLERANCE * max(a.trainable, b.trainable)


def matched_rivals(point: System, rivals: list[System]) -> list[System]:
    """The rivals at `point`'s budget: those within `BUDGET_TOLERANCE` of its trainable count, or, when none
    is, the one with the next-larger count (a rival is never held to fewer parameters than `point` has)."""
    within = [r for r in rivals if _matched(point, r)]
    if within:
        return within
    larger = [r for r in rivals if r.trainable > point.trainable]
    return [min(larger, key=lambda r: r.trainable)] if larger else []


def _matched_by(a: System, b: System) -> str:
    return "trainable count" if _matched(a, b) else "next-larger trainable count"


def _seeds_text(system: System, test_set: str) -> str:
    return ",".join(str(s) for s in system.seeds(test_set))


def _evidence(claim: str, system: System, reference: System | None, test_set: str | None, **columns) -> dict:
    """The columns that say what a row compares: the claim, the systems with their budgets, seeds and runs."""
    row = {
        **dict.fromkeys(COLUMNS),
        "claim": claim,
        "statement": STATEMENTS[claim],
        "model": system.model,
        "data": system.data,
        "test_set": test_set,
        "system": system.configuration,
        "system_trainable": system.trainable,
        "tests": 0,
    }
    if reference is not None and test_set is not None:
        row.update(
            reference=reference.configuration,
            reference_trainable=reference.trainable,
            seeds=f"{_seeds_text(system, test_set)}{SIDES}{_seeds_text(reference, test_set)}",
            runs=SIDES.join(SEPARATOR.join(s.runs(test_set)["run"]) for s in (system, reference)),
        )
    return {**row, **columns}


def _ssvd(domain: list[System], **setting) -> list[System]:
    return sorted(
        (s for s in domain if s.method == "ssvd" and all(s.setting.get(k) == v for k, v in setting.items())),
        key=lambda s: s.trainable,
    )


def tradeoff_curves(domain: list[System]) -> tuple[list[System], list[System]]:
    """The configurations of the two forgetting trade-off curves (claim 5), fewest parameters first: first-order
    SSVD rotating both sides with p = p_out, and rotating the paper's side (side=smaller) alone."""
    both = [s for s in _ssvd(domain, side="both", rotation="approx") if s.setting["p"] == s.setting["p_out"]]
    return both, _ssvd(domain, side=PAPER_SIDE, rotation="approx")


def _runs(systems_and_sets: list[tuple[System, str]]) -> pd.DataFrame:
    """The runs (`run_dir`, `test_set`, `status`) a test resamples."""
    return pd.concat([s.runs(t)[["run_dir", "test_set", "status"]] for s, t in systems_and_sets], ignore_index=True)


class Claims:
    """The claims of one collection of runs as pending rows (`check_claims` corrects and decides them)."""

    def __init__(self, frame: pd.DataFrame, convergence: pd.DataFrame | None, bootstrap: Bootstrap):
        self.frame, self.bootstrap = frame, bootstrap
        self.found = systems(frame)
        self.convergence = convergence if convergence is not None else pd.DataFrame(columns=["run_dir", "updates_to_gain"])

    def comparison(self, a: System, b: System, test_set: str) -> Test:
        """A against B on `test_set` (significance.compare_runs); ConfigError when a run has no per-utterance decodes."""
        return make_test(
            lambda bootstrap: compare_runs(a.runs(test_set), b.runs(test_set), test_set, bootstrap),
            self.bootstrap,
            _runs([(a, test_set), (b, test_set)]),
        )

    def tested(self, row: dict, a: System, b: System, test_set: str, what: str, **options) -> Pending:
        try:
            test = self.comparison(a, b, test_set)
        except ConfigError as err:
            return not_tested(row, str(err))
        return directional(row, test, what, self.bootstrap, **options)

    # -- 1. front ------------------------------------------------------------------------------------------
    def front(self, domain: list[System], test_set: str) -> list[Pending]:
        ranked = [s for s in domain if not pd.isna(s.wer(test_set))]
        ssvd = sorted((s for s in ranked if s.method == "ssvd"), key=lambda s: s.trainable)
        if not ssvd:
            return []
        outcomes = []  # (ssvd configuration, its best rival with no more parameters, test or None, problem)
        for point in ssvd:
            rivals = [s for s in ranked if s.method != "ssvd" and s.trainable <= point.trainable]
            if not rivals:
                outcomes.append((point, None, None, "no other configuration has as few trainable parameters"))
                continue
            rival = min(rivals, key=lambda s: s.wer(test_set))
            try:
                outcomes.append((point, rival, self.comparison(point, rival, test_set), None))
            except ConfigError as err:
                outcomes.append((point, rival, None, str(err)))
        tested = [o for o in outcomes if o[2] is not None]
        if not tested:  # nothing could be compared: say why once (missing decodes, or SSVD is the cheapest)
            point, rival, _, problem = outcomes[0]
            return [not_tested(_evidence("front", point, rival, test_set), f"{point.configuration}: {problem}")]
        bootstrap = self.bootstrap
        alpha = bootstrap.alpha

        def decide(tests: list[Test], adjusted: list[float]) -> dict:
            final = {id(o): (t, p) for o, t, p in zip(tested, tests, adjusted)}
            weighed = [
                f"{o[0].configuration}: {o[3]}"
                if o[2] is None
                else f"{o[0].configuration} vs {o[1].configuration}: {difference(*final[id(o)], alpha)}, "
                f"{final[id(o)][0].estimate.describe()}, Holm-adjusted p={format_p(final[id(o)][1])}"
                for o in outcomes
            ]
            better = [o for o in tested if final[id(o)][0].estimate.value < 0 and final[id(o)][1] < alpha]
            if better:
                shown, verdict = min(better, key=lambda o: final[id(o)][1]), REPRODUCED
                why = "is significantly better than {rival}, the best other configuration with no more trainable parameters"
            elif len(tested) == len(outcomes) and all(
                final[id(o)][0].estimate.value > 0 and final[id(o)][1] < alpha for o in tested
            ):
                shown, verdict = min(tested, key=lambda o: final[id(o)][0].estimate.value), REFUTED
                why = "and every other SSVD configuration are significantly worse than one with no more parameters; the closest: against {rival}"
            else:  # the comparison nearest to reproducing the claim: its interval's upper end lowest
                shown, verdict = min(tested, key=lambda o: final[id(o)][0].estimate.high), INCONCLUSIVE
                why = "against {rival} is the nearest to it: no SSVD configuration is significantly better or dominated at its budget"
            point, rival, _, _ = shown
            test, p_adjusted = final[id(shown)]
            row = _evidence("front", point, rival, test_set, tests=len(tested), matched_by="no more trainable parameters")
            reason = (
                f"{point.configuration} {why.format(rival=rival.configuration)}: {test.estimate.describe()}, "
                f"Holm-adjusted p={format_p(p_adjusted)} ({len(tested)} SSVD configuration{'s' * (len(tested) != 1)} "
                "compared, each a test of the family)"
            )
            return {
                **row,
                **effect_columns(test),
                "verdict": verdict,
                "reason": reason + caveats(row, test, p_adjusted, bootstrap),
                "p_adjusted": float(f"{p_adjusted:.4g}"),
                "difference": difference(test, p_adjusted, alpha),
                "comparisons": SEPARATOR.join(weighed),
            }

        return [Pending(_evidence("front", ssvd[0], None, test_set, tests=len(tested)), [o[2] for o in tested], decide)]

    # -- 2. strict vs approx: equivalence ------------------------------------------------------------------
    def strict(self, domain: list[System], test_set: str) -> list[Pending]:
        rows = []
        for strict in _ssvd(domain, rotation="cayley"):
            setting = strict.setting
            twins = [
                s
                for s in _ssvd(domain, rotation="approx", side=setting["side"], p=setting["p"])
                if s.setting["p_out"] == setting["p_out"]
            ]
            if not twins:
                continue
            row = _evidence("strict_vs_approx", strict, twins[0], test_set, matched_by="same p and side")
            rows.append(self._equivalence(row, strict, twins[0], test_set))
        return rows

    def _equivalence(self, row: dict, a: System, b: System, test_set: str) -> Pending:
        """Equivalence within ±`EQUIVALENCE_MARGIN`, by the test the estimate points to (module docstring)."""
        margin, bootstrap = EQUIVALENCE_MARGIN, self.bootstrap

        def p_of(comparison: Comparison) -> float:
            replicates = comparison.replicates
            if abs(comparison.delta_wer) < margin:  # TOST: the larger of the two one-sided p-values
                return max(one_sided_p(replicates, margin, above=True), one_sided_p(replicates, -margin, above=False))
            if comparison.delta_wer > 0:
                return one_sided_p(replicates, margin, above=False)
            return one_sided_p(replicates, -margin, above=True)

        try:
            test = make_test(
                lambda bs: compare_runs(a.runs(test_set), b.runs(test_set), test_set, bs),
                bootstrap,
                _runs([(a, test_set), (b, test_set)]),
                p_of,
            )
        except ConfigError as err:
            return not_tested(row, str(err))
        band = f"±{100 * margin:.2f} WER points ({MARGIN_DERIVATION})"

        def decide(tests: list[Test], adjusted: list[float]) -> dict:
            ((test,), (p_adjusted,)) = tests, adjusted
            inside = abs(test.estimate.delta_wer) < margin
            name = "equivalence (TOST)" if inside else "difference beyond the margin (one-sided)"
            evidence = (
                f"{test.estimate.describe()}; {name} p={format_p(test.p_value)}, Holm-adjusted p={format_p(p_adjusted)}; "
                f"margin {band}"
            )
            if p_adjusted < bootstrap.alpha:
                verdict = REPRODUCED if inside else REFUTED
                lead = "the same WER within the margin" if inside else "the difference exceeds the margin"
            else:
                verdict, lead = INCONCLUSIVE, "neither within nor beyond the margin at α after the correction"
            return {
                **effect_columns(test),
                "verdict": verdict,
                "reason": f"{lead}: {evidence}" + caveats(row, test, p_adjusted, bootstrap),
                "p_adjusted": float(f"{p_adjusted:.4g}"),
                "difference": "equivalent" if verdict == REPRODUCED else difference(test, p_adjusted, bootstrap.alpha),
            }

        return Pending({**row, "tests": 1}, [test], decide)

    # -- 3. unconstrained rotation: at a matched count and at a matched rank ---------------------------------
    def unconstrained(self, domain: list[System], test_set: str) -> list[Pending]:
        rows = []
        for free in _ssvd(domain, rotation="free"):
            side, p = free.setting["side"], free.setting["p"]
            approx = _ssvd(domain, rotation="approx", side=side)
            by_count = [s for s in approx if _matched(free, s)]
            by_rank = [s for s in approx if s.setting["p"] == p and s.setting["p_out"] == free.setting["p_out"]]
            for matched_by, twins, missing in (
                ("trainable count", by_count, f"within {100 * BUDGET_TOLERANCE:g}% of its trainable count"),
                ("rank (same p)", by_rank, f"at its p={p}"),
            ):
                if not twins:
                    row = _evidence("unconstrained_worse", free, None, test_set, matched_by=matched_by)
                    rows.append(not_tested(row, f"no rotation=approx {side}-side run {missing}"))
                    continue
                twin = min(twins, key=lambda s: abs(s.trainable - free.trainable))
                row = _evidence("unconstrained_worse", free, twin, test_set, matched_by=matched_by)
                what = f"free against approx at a matched {matched_by}"
                rows.append(self.tested(row, free, twin, test_set, what, predicted_negative=False))
        return rows

    # -- 4. both sides: target WER at a matched budget ------------------------------------------------------
    def both_sides(self, domain: list[System], test_set: str) -> list[Pending]:
        rows = []
        full = [s for s in domain if s.method == "full"]
        for both in _ssvd(domain, side="both", rotation="approx"):
            twins = [s for s in _ssvd(domain, side=PAPER_SIDE, rotation="approx") if _matched(both, s)]
            if not twins:
                row = _evidence("both_sides", both, None, test_set, matched_by="trainable count")
                missing = f"no rotation=approx side=smaller run within {100 * BUDGET_TOLERANCE:g}% of its trainable count"
                rows.append(not_tested(row, missing))
                continue
            twin = min(twins, key=lambda s: abs(s.trainable - both.trainable))
            gap = (
                f"gap to full fine-tuning {100 * (both.wer(test_set) - full[0].wer(test_set)):.1f} vs "
                f"{100 * (twin.wer(test_set) - full[0].wer(test_set)):.1f} points; "
                if full
                else ""
            )
            row = _evidence("both_sides", both, twin, test_set, matched_by="trainable count")
            rows.append(self.tested(row, both, twin, test_set, f"{gap}target WER, both sides against side=smaller"))
        return rows

    # -- 5. both sides: forgetting at a matched target WER (trade-off curves) --------------------------------
    def forgetting(self, domain: list[System], test_set: str, source: str | None) -> list[Pending]:
        both, single = tradeoff_curves(domain)
        if not both and not single:
            return []
        row = _evidence("both_sides_forgetting", (both or single)[0], None, test_set, matched_by="target WER")
        row.update(
            system="side=both: " + ", ".join(s.configuration for s in both),
            reference="side=smaller: " + ", ".join(s.configuration for s in single),
            test_set=f"{test_set} (target), {source} (forgetting)" if source else test_set,
        )
        if source is None:
            return [not_tested(row, "forgetting needs a source test set")]
        if len(both) < 2 or len(single) < 2:
            count = f"side=both {len(both)}, side=smaller {len(single)}"
            return [not_tested(row, f"a trade-off curve needs 2 or more budgets per side: {count}")]
        covered: list[tuple[float, float]] = []

        def compute(bootstrap: Bootstrap) -> Estimate:
            curves = [
                [
                    (runs_replicates(s.runs(test_set), test_set, bootstrap), runs_replicates(s.runs(source), source, bootstrap))
                    for s in side
                ]
                for side in (both, single)
            ]
            means = [(np.array([[t.wer for t, _ in side]]), np.array([[f.wer for _, f in side]])) for side in curves]
            common = common_range(means[0][0][0], means[1][0][0])
            if common is None:
                raise NotTestable(
                    "the two curves cover no common target WER: forgetting cannot be compared at a matched target WER"
                )
            covered[:] = [common]
            grid = np.linspace(*common, GRID)
            replicated = [
                (np.stack([t.replicated_wer for t, _ in side], axis=1), np.stack([f.replicated_wer for _, f in side], axis=1))
                for side in curves
            ]
            value = float(mean_gap(grid, *means)[0])
            return Estimate(value, mean_gap(grid, *replicated), "source WER points", 100.0, bootstrap.confidence)

        everything = [(s, t) for s in both + single for t in (test_set, source)]
        try:
            test = make_test(compute, self.bootstrap, _runs(everything))
        except (ConfigError, NotTestable) as err:
            return [not_tested(row, str(err))]
        row.update(
            seeds=SIDES.join(
                ",".join(str(x) for x in sorted({seed for s in side for seed in s.seeds(test_set)})) for side in (both, single)
            ),
            runs=SIDES.join(SEPARATOR.join(r for s in side for r in s.runs(test_set)["run"]) for side in (both, single)),
        )
        low, high = covered[0]
        what = (
            "source WER of the both-sides curve minus the side=smaller curve's, averaged over the target WERs both "
            f"cover ({100 * low:.1f} to {100 * high:.1f}%)"
        )
        return [directional(row, test, what, self.bootstrap)]

    # -- 6. convergence -----------------------------------------------------------------------------------
    def converges(self, domain: list[System], test_set: str) -> list[Pending]:
        rows: list[Pending] = []
        points = _ssvd(domain, rotation="approx", side=PAPER_SIDE)
        if points and all(self._updates(s, test_set) is None for s in domain if s.trainable > 0):
            row = {**_evidence("converges_faster", points[0], None, test_set), "system": None}
            reason = (
                "no run's validation history has a dev WER before adaptation (step 0), so no run's updates to "
                f"{100 * GAIN_FRACTION:g}% of its dev gain are known"
            )
            return [not_tested(row, reason)]
        for point in points:
            for method in CONVERGENCE_RIVALS:
                rivals = matched_rivals(point, [s for s in domain if s.method == method])
                if not rivals:
                    continue
                rival = min(rivals, key=lambda s: abs(s.trainable - point.trainable))
                row = _evidence("converges_faster", point, rival, test_set, matched_by=_matched_by(point, rival))
                updates = [self._updates(s, test_set) for s in (point, rival)]
                missing = [s.configuration for s, u in zip((point, rival), updates) if u is None]
                if missing:
                    reason = (
                        f"{', '.join(missing)}: a run's validation history has no dev WER before adaptation (step 0) or "
                        f"no gain, so its updates to {100 * GAIN_FRACTION:g}% of the gain are unknown"
                    )
                    rows.append(not_tested(row, reason))
                    continue
                (seeds_a, values_a), (seeds_b, values_b) = updates  # type: ignore[misc]
                test = make_test(
                    lambda bootstrap, a=(seeds_a, values_a), b=(seeds_b, values_b): _seed_difference(a, b, bootstrap),
                    self.bootstrap,
                    pd.DataFrame(columns=["run_dir", "test_set", "status"]),
                )
                what = f"updates to {100 * GAIN_FRACTION:g}% of the dev gain, mean over seeds, SSVD minus {method}"
                rows.append(directional({**row, "paired_seeds": seeds_a == seeds_b}, test, what, self.bootstrap))
        return rows

    def _updates(self, system: System, test_set: str) -> tuple[list, np.ndarray] | None:
        """(seeds, updates to the gain) of a system's runs, or None when a run's is unknown."""
        runs = system.runs(test_set)
        known = dict(zip(self.convergence["run_dir"], self.convergence["updates_to_gain"]))
        values = [known.get(str(d)) for d in runs["run_dir"]]
        if not values or any(v is None or pd.isna(v) for v in values):
            return None
        return runs["seed"].tolist(), np.asarray(values, dtype=np.float64)

    # -- 7, 8. scale ---------------------------------------------------------------------------------------
    def scale(self, targets: dict[tuple[str, str], str]) -> list[Pending]:
        rows: list[Pending] = []
        models = sorted({s.model for s in self.found}, key=self._model_size)
        for data in dict.fromkeys(s.data for s in self.found):
            gaps = []  # (model, size, test, test set)
            for model in models:
                test_set = targets.get((model, data))
                domain = [s for s in self.found if (s.model, s.data) == (model, data)]
                ssvd = [s for s in domain if s.method == "ssvd" and not pd.isna(s.wer(test_set))] if test_set else []
                others = [s for s in domain if s.method not in ("ssvd", "frozen") and s.trainable > 0]
                if not ssvd or not others or test_set is None:
                    continue
                best = min(ssvd, key=lambda s: s.wer(test_set))
                matched = matched_rivals(best, others)
                if not matched:
                    rows.append(
                        not_tested(_evidence("scale", best, None, test_set), "no other method has as many trainable parameters")
                    )
                    continue
                rival = min(matched, key=lambda s: s.wer(test_set))
                row = _evidence("scale", best, rival, test_set, matched_by=_matched_by(best, rival))
                try:
                    test = self.comparison(best, rival, test_set)
                except ConfigError as err:
                    rows.append(not_tested(row, str(err)))
                    continue
                size = self._model_size(model)
                gaps.append((model, size, test, (best, rival, test_set)))
                what = f"the best SSVD configuration against the best rival at its budget on {model} ({size:,.0f} parameters)"
                rows.append(directional(row, test, what, self.bootstrap))
            rows += self._trend(data, gaps)
        return rows

    def _model_size(self, model: str) -> float:
        """A model's parameters: the smallest total of its runs (the frozen model's, where it ran)."""
        return float(min(s.rows["total"].min() for s in self.found if s.model == model))

    def _trend(self, data: str, gaps: list) -> list[Pending]:
        if not gaps:
            return []
        anchor = next(s for s in self.found if (s.model, s.data) == (gaps[-1][0], data))
        row = {**_evidence("model_size", anchor, None, None), "system": None, "model": ", ".join(g[0] for g in gaps)}
        if len(gaps) < 2:
            return [not_tested(row, f"runs on one model size only ({gaps[0][0]}); the claim needs several")]
        x = np.log10([size for _, size, _, _ in gaps])
        x = x - x.mean()
        pairs = [pair for *_, pair in gaps]

        def compute(bootstrap: Bootstrap) -> Estimate:
            comparisons = [compare_runs(a.runs(t), b.runs(t), t, bootstrap) for a, b, t in pairs]
            value = float(x @ np.array([c.delta_wer for c in comparisons]) / (x @ x))  # least squares on log10(size)
            replicated = x @ np.stack([c.replicates for c in comparisons]) / (x @ x)
            return Estimate(value, replicated, "WER points per tenfold size", 100.0, bootstrap.confidence)

        test = make_test(compute, self.bootstrap, _runs([(s, t) for a, b, t in pairs for s in (a, b)]))
        trend = "; ".join(f"{model} ({size:,.0f}): {100 * t.estimate.delta_wer:+.2f}" for model, size, t, _ in gaps)
        what = f"slope of the gap (best SSVD minus best rival, WER points) against log10 model size, by model: {trend}"
        return [directional(row, test, what, self.bootstrap)]

    def all(self) -> list[Pending]:
        rows: list[Pending] = []
        targets: dict[tuple[str, str], str] = {}
        frame = self.frame
        for (model, data), _ in frame.groupby(["model", "data"], sort=False) if not frame.empty else ():
            domain = [s for s in self.found if (s.model, s.data) == (model, data)]
            where = (frame["model"] == model) & (frame["data"] == data)
            test_sets = list(dict.fromkeys(frame.loc[where, "test_set"].dropna()))
            target = target_test_set(str(data), test_sets)
            if target is None or not domain:
                continue
            targets[(model, data)] = target
            source = SOURCE_TEST_SET if SOURCE_TEST_SET in test_sets and target != SOURCE_TEST_SET else None
            rows += self.front(domain, target)
            rows += self.strict(domain, target)
            rows += self.unconstrained(domain, target)
            rows += self.both_sides(domain, target)
            rows += self.forgetting(domain, target, source)
            rows += self.converges(domain, target)
        return rows + self.scale(targets)


def _seed_difference(a: tuple[list, np.ndarray], b: tuple[list, np.ndarray], bootstrap: Bootstrap) -> Estimate:
    """Mean of A's per-seed values minus B's, bootstrapped over the seeds (jointly where both ran the same seeds)."""
    means = []
    for seeds, values in (a, b):
        draws = seed_draws(tuple(seeds), bootstrap.replicates, bootstrap.seed)
        means.append(resampled_seed_mean(np.broadcast_to(values, (bootstrap.replicates, len(values))), draws))
    return Estimate(float(a[1].mean() - b[1].mean()), means[0] - means[1], "updates", 1.0, bootstrap.confidence)


def check_claims(
    frame: pd.DataFrame, convergence: pd.DataFrame | None = None, bootstrap: Bootstrap = Bootstrap()
) -> pd.DataFrame:
    """A row per claim and domain (and per compared pair), as described in the module docstring; a claim the
    runs cannot address at all gets one `not tested` row saying what it needs. `convergence`: the runs'
    `reporting.convergence.run_convergence` table (without it, `converges_faster` is not tested)."""
    prefetch(frame, bootstrap)
    rows = decide_family(Claims(frame, convergence, bootstrap).all(), bootstrap)
    addressed = {row["claim"] for row in rows}
    rows += [
        {
            **dict.fromkeys(COLUMNS),
            "claim": claim,
            "statement": STATEMENTS[claim],
            "verdict": NOT_TESTED,
            "reason": f"{NEEDS[claim]} among the collected runs",
            "tests": 0,
        }
        for claim in STATEMENTS
        if claim not in addressed
    ]
    order = list(STATEMENTS)
    rows.sort(key=lambda row: order.index(row["claim"]))
    return pd.DataFrame(rows, columns=COLUMNS)


def family_size(claims: pd.DataFrame) -> int:
    """How many tests the claims table's Holm correction ran over."""
    return int(pd.to_numeric(claims["tests"], errors="coerce").fillna(0).sum()) if not claims.empty else 0


def pooled_seed_sd(frame: pd.DataFrame) -> float:
    """The pooled sample standard deviation over seeds of the target-domain WER of the first-order and Cayley
    side=smaller SSVD configurations in `frame`: what `EQUIVALENCE_MARGIN` was derived from (`MARGIN_DERIVATION`)."""
    variances, weights = [], []
    for system in systems(frame):
        setting = system.setting
        target = target_test_set(system.data, list(dict.fromkeys(system.rows["test_set"])))
        if (
            system.method != "ssvd"
            or setting["rotation"] not in ("approx", "cayley")
            or setting["side"] != PAPER_SIDE
            or target is None
        ):
            continue
        wers = system.runs(target)["wer"]
        if len(wers) > 1:
            variances.append(float(wers.var(ddof=1)))
            weights.append(len(wers) - 1)
    if not weights:
        raise ConfigError("no first-order or Cayley side=smaller SSVD configuration with two or more seeds")
    return math.sqrt(float(np.dot(variances, weights)) / sum(weights))


def margin_from_seed_spread(frame: pd.DataFrame) -> float:
    """1.96 · √2 · `pooled_seed_sd`: the 95% range of the difference between two seeds of one configuration."""
    return 1.959964 * math.sqrt(2) * pooled_seed_sd(frame)
