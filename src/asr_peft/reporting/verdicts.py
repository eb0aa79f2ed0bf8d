"""From tests to verdicts: one family of tests behind the claims table, Holm's correction over all of it, and
each row's verdict from its adjusted p-values.

A `Test` is one bootstrap test: its estimate, the p-value it contributes to the family and how to run it
again with more replicates. A `Pending` row holds its tests and how its verdict follows from their
adjusted p-values. `decide_family` corrects the whole family at once (Holm 1979: the i-th smallest of m
p-values becomes max over j ≤ i of min(1, (m − j + 1) p_(j))); a test whose adjusted p lies within
`FRAGILE_ERRORS` Monte-Carlo standard errors of α is run again with `REFINEMENT` times the replicates
(the first replicates are the same, so this adds replicates; once, up to `MAX_REPLICATES`), so that its
verdict does not hang on the bootstrap's random seed; a test still that close says so in its row.

Verdicts: `reproduced` (the test ran and found the claim's effect, adjusted p < α), `refuted` (it ran and
found the opposite), `inconclusive` (it ran and found neither) and `not tested` (its fair test could not run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import pandas as pd

from asr_peft.reporting.replicates import Bootstrap, prefetch
from asr_peft.reporting.significance import MIN_SEEDS, NO_DIFFERENCE, format_p, holm_adjusted, p_value_error

REPRODUCED, REFUTED, INCONCLUSIVE, NOT_TESTED = "reproduced", "refuted", "inconclusive", "not tested"
FRAGILE_ERRORS = 3  # an adjusted p this many Monte-Carlo standard errors from α: the verdict could move
REFINEMENT = 10
MAX_REPLICATES = 1_000_000
SIDES = " vs "  # between the system's and the reference's seeds (and runs) in a row
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
    "matched_by",
    "seeds",
    "paired_seeds",
    "utterances",
    "unit",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "p_mc_error",
    "ci_mc_error",
    "replicates",
    "tests",
    "difference",
    "comparisons",
    "runs",
]


@dataclass
class Test:
    """One test of the family: `estimate` (a `significance.Comparison` or `Estimate`), the p-value it contributes,
    the runs it resamples (`run_dir`, `test_set`, `status` rows) and how to run it with another bootstrap."""

    estimate: Any
    p_value: float
    runs: pd.DataFrame
    rerun: Callable[[Bootstrap], Test]

    @property
    def replicates(self) -> int:
        return len(self.estimate.replicates) if self.estimate.replicates is not None else 0

    @property
    def p_error(self) -> float:
        return p_value_error(self.p_value, self.replicates) if self.replicates else 0.0


def make_test(
    compute: Callable[[Bootstrap], Any],
    bootstrap: Bootstrap,
    runs: pd.DataFrame,
    p_of: Callable[[Any], float] = lambda estimate: estimate.p_value,
) -> Test:
    """The test `compute(bootstrap)` estimates, its p-value `p_of(estimate)` (two-sided against 0 by default)."""
    estimate = compute(bootstrap)
    return Test(estimate, p_of(estimate), runs, lambda finer: make_test(compute, finer, runs, p_of))


@dataclass
class Pending:
    """A claims row before the family's correction: its columns so far, its tests, and how its remaining
    columns (verdict, reason, ...) follow from them and their adjusted p-values: `decide(tests, adjusted)`."""

    row: dict
    tests: list[Test] = field(default_factory=list)
    decide: Callable[[list[Test], list[float]], dict] | None = None


def not_tested(row: dict, reason: str) -> Pending:
    return Pending({**row, "verdict": NOT_TESTED, "reason": reason})


def adjusted_error(test: Test, adjusted: float) -> float:
    """The Monte-Carlo error of a Holm-adjusted p: the raw p's, times the factor Holm multiplied it by."""
    return test.p_error * (adjusted / test.p_value) if test.p_value > 0 else test.p_error


def fragile(test: Test, adjusted: float, alpha: float) -> bool:
    return abs(adjusted - alpha) < FRAGILE_ERRORS * adjusted_error(test, adjusted)


def effect_columns(test: Test) -> dict:
    """The effect columns of a tested row: value, interval, p and their Monte-Carlo errors in the estimate's unit."""
    estimate, scale = test.estimate, test.estimate.scale
    return {
        "unit": estimate.unit,
        "effect": round(scale * estimate.value, 2),
        "ci_low": round(scale * estimate.low, 2),
        "ci_high": round(scale * estimate.high, 2),
        "p_value": float(f"{test.p_value:.4g}"),
        "p_mc_error": float(f"{test.p_error:.2g}"),
        "ci_mc_error": round(scale * estimate.interval_error, 3),
        "replicates": test.replicates,
        **{key: getattr(estimate, key) for key in ("paired_seeds", "utterances") if hasattr(estimate, key)},
    }


def caveats(row: dict, test: Test, adjusted: float, bootstrap: Bootstrap) -> str:
    """`; caveat: ...` for a row resting on fewer than `MIN_SEEDS` seeds of a configuration, one refined with
    more replicates, and one whose adjusted p is still within Monte-Carlo error of α."""
    notes = []
    seeds = [len(side.split(",")) for side in str(row.get("seeds") or "").split(SIDES) if side]
    if seeds and min(seeds) < MIN_SEEDS:
        notes.append(
            f"{min(seeds)} seeds of a configuration, fewer than the {MIN_SEEDS} the protocol asks for (the seed spread is barely estimated)"
        )
    if fragile(test, adjusted, bootstrap.alpha):
        notes.append(
            f"the adjusted p lies within {FRAGILE_ERRORS} Monte-Carlo errors of α even with {test.replicates:,} "
            "replicates: its verdict could change with the bootstrap's random seed"
        )
    refined = f" (p from {test.replicates:,} replicates: refined near α)" if test.replicates > bootstrap.replicates else ""
    return refined + "".join(f"; caveat: {note}" for note in notes)


def difference(test: Test, adjusted: float, alpha: float) -> str:
    """better / worse (the system against the reference, after the correction) or no significant difference."""
    if adjusted >= alpha:
        return NO_DIFFERENCE
    return "better" if test.estimate.value < 0 else "worse"


def directional(row: dict, test: Test, what: str, bootstrap: Bootstrap, *, predicted_negative: bool = True) -> Pending:
    """A row whose claim predicts the sign of the estimate (negative unless `predicted_negative` is False):
    reproduced when the adjusted two-sided p is below α with that sign, refuted with the other, else inconclusive."""

    alpha = bootstrap.alpha

    def decide(tests: list[Test], adjusted: list[float]) -> dict:
        ((test,), (p_adjusted,)) = tests, adjusted
        significant = p_adjusted < alpha
        agrees = (test.estimate.value < 0) == predicted_negative
        verdict = INCONCLUSIVE if not significant else REPRODUCED if agrees else REFUTED
        reason = f"{what}: {test.estimate.describe()}, Holm-adjusted p={format_p(p_adjusted)}"
        if not significant:
            reason += f" (not below α={alpha:g}: these runs cannot decide it)"
        return {
            **effect_columns(test),
            "verdict": verdict,
            "reason": reason + caveats(row, test, p_adjusted, bootstrap),
            "p_adjusted": float(f"{p_adjusted:.4g}"),
            "difference": difference(test, p_adjusted, alpha),
        }

    return Pending({**row, "tests": 1}, [test], decide)


def decide_family(pending: list[Pending], bootstrap: Bootstrap) -> list[dict]:
    """Every row with its verdict: Holm's correction over all the rows' tests, fragile tests refined once."""
    tests = [test for item in pending for test in item.tests]
    adjusted = holm_adjusted([test.p_value for test in tests])
    shaky = [i for i, (test, p) in enumerate(zip(tests, adjusted)) if fragile(test, p, bootstrap.alpha)]
    if shaky and bootstrap.replicates * REFINEMENT <= MAX_REPLICATES:
        finer = replace(bootstrap, replicates=bootstrap.replicates * REFINEMENT)
        prefetch(pd.concat([tests[i].runs for i in shaky]), finer)
        for i in shaky:
            tests[i] = tests[i].rerun(finer)
        adjusted = holm_adjusted([test.p_value for test in tests])
    rows, start = [], 0
    for item in pending:
        count = len(item.tests)
        rows.append(
            {**item.row, **(item.decide(tests[start : start + count], adjusted[start : start + count]) if item.decide else {})}
        )
        start += count
    return rows
