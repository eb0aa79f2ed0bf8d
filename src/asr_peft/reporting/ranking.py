"""The ranking of configurations per test set, tested: each configuration against the one with the lowest
mean WER of its (model, data, test set) and against the model before adaptation (the `frozen`
configuration's runs), by the paired bootstrap of `reporting.significance`.

A configuration is called better or worse than another only when the interval of their difference
excludes zero; otherwise the pair is "no significant difference" (so several configurations can share
the lowest WER). The ranking is descriptive: its p-values are not corrected for the many pairs it tests
(the claims table's are, `reporting.verdicts`). A comparison needs both systems' per-utterance decodes (`decode/<test set>/*.trn`);
without them it is "not tested" and says why.
"""

from __future__ import annotations

import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.replicates import Bootstrap, prefetch
from asr_peft.reporting.significance import compare_runs

LOWEST, BEFORE = "lowest WER", "before adaptation"
NOT_TESTED = "not tested"
COLUMNS = [
    "model",
    "data",
    "test_set",
    "configuration",
    "wer_mean",
    "against",
    "reference",
    "difference",
    "delta_wer_points",
    "ci_low_points",
    "ci_high_points",
    "p_value",
    "paired_seeds",
    "utterances",
    "note",
]


def _compare(runs: pd.DataFrame, configuration: str, reference: str, test_set: str, base: dict, against: str) -> dict:
    row = {**dict.fromkeys(COLUMNS), **base, "against": against, "reference": reference}
    if configuration == reference:
        return {**row, "difference": LOWEST}
    try:
        comparison = compare_runs(
            runs[runs["configuration"] == configuration], runs[runs["configuration"] == reference], test_set
        )
    except ConfigError as err:
        return {**row, "difference": NOT_TESTED, "note": str(err)}
    points = lambda value: round(100 * value, 2)  # noqa: E731
    return {
        **row,
        "difference": comparison.verdict,
        "delta_wer_points": points(comparison.delta_wer),
        "ci_low_points": points(comparison.low),
        "ci_high_points": points(comparison.high),
        "p_value": round(comparison.p_value, 4),
        "paired_seeds": comparison.paired_seeds,
        "utterances": comparison.utterances,
        "note": comparison.describe(),
    }


def rank_configurations(frame: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Rows per (model, data, test set, configuration) in order of mean WER: the comparison with the
    lowest-WER configuration (`against` = "lowest WER") and with the frozen model (`against` = "before
    adaptation", when the runs include frozen ones); `difference` is better / worse / no significant
    difference (this configuration against the reference) / lowest WER / not tested (`note` says why)."""
    rows = []
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()] if not frame.empty else frame
    prefetch(done, Bootstrap())  # every run resampled in one pass per test set
    for (model, data, test_set), panel in summary.groupby(["model", "data", "test_set"], sort=False):
        runs = done[(done["model"] == model) & (done["data"] == data) & (done["test_set"] == test_set)]
        panel = panel.sort_values("wer_mean", kind="stable")
        lowest = panel.iloc[0]["configuration"]
        frozen = panel.loc[panel["method"] == "frozen", "configuration"]
        for _, entry in panel.iterrows():
            base = {
                "model": model,
                "data": data,
                "test_set": test_set,
                "configuration": entry["configuration"],
                "wer_mean": entry["wer_mean"],
            }
            rows.append(_compare(runs, entry["configuration"], lowest, test_set, base, LOWEST))
            if not frozen.empty and entry["method"] != "frozen":
                rows.append(_compare(runs, entry["configuration"], frozen.iloc[0], test_set, base, BEFORE))
    return pd.DataFrame(rows, columns=COLUMNS)
