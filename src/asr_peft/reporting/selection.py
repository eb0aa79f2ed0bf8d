"""What choosing the learning rate on a run's own seeds is worth: test WER of the seeds that chose it
against fresh seeds at the same rate.

A comparison run of a seed its LR search trained at the chosen rate is that search run, scored (its
record's `trained_in` names the search run; scripts/comparison.py). Those seeds' dev WER picked the rate,
so their test WER may be optimistic; the comparison's other seeds did not pick it. Per configuration on
its target test set: the mean test WER of the choosing seeds minus that of the fresh ones. Configurations
are the units of the summary (a t interval over their differences), since each one's rate was chosen
once. Configurations without both kinds of seeds are left out: a configuration whose search runs were
trained again (their checkpoints gone) has no run that says it chose its rate.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from asr_peft.reporting.aggregate import target_test_set

COLUMNS = [
    "model",
    "data",
    "test_set",
    "configuration",
    "choosing_seeds",
    "fresh_seeds",
    "choosing_wer",
    "fresh_wer",
    "difference",
]


def selection_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A row per configuration with both kinds of seeds (module docstring): WERs as fractions."""
    if frame.empty or "trained_in" not in frame:
        return pd.DataFrame(columns=COLUMNS)
    completed = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    rows = []
    for (model, data, configuration), runs in completed.groupby(["model", "data", "configuration"], sort=False, dropna=False):
        test_set = target_test_set(str(data), runs["test_set"].dropna().unique())
        scored = runs[runs["test_set"] == test_set]
        choosing = scored[scored["trained_in"].notna()]
        fresh = scored[scored["trained_in"].isna()]
        if choosing.empty or fresh.empty:
            continue
        choosing_wer, fresh_wer = float(choosing["wer"].mean()), float(fresh["wer"].mean())
        rows.append(
            {
                "model": model,
                "data": data,
                "test_set": test_set,
                "configuration": configuration,
                "choosing_seeds": int(choosing["seed"].nunique()),
                "fresh_seeds": int(fresh["seed"].nunique()),
                "choosing_wer": choosing_wer,
                "fresh_wer": fresh_wer,
                "difference": choosing_wer - fresh_wer,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def selection_line(selection: pd.DataFrame, level: float = 0.95) -> str | None:
    """The mean difference in points with its t interval over configurations; None without any configuration."""
    if selection.empty:
        return None
    differences = 100 * selection["difference"].astype(float)
    count, mean = len(differences), float(differences.mean())
    if count > 1:
        half = float(stats.t.ppf(0.5 + level / 2, count - 1) * differences.std(ddof=1) / math.sqrt(count))
        interval = f" ({100 * level:g}% interval {mean - half:+.2f} to {mean + half:+.2f})"
    else:
        interval = " (one configuration: no interval)"
    return (
        f"Seeds that chose their configuration's learning rate score {mean:+.2f} points of test WER against fresh "
        f"seeds at that rate{interval}, over {count} configuration{'s' if count != 1 else ''}; negative: the "
        "choosing seeds score better, the optimism of choosing the rate on them."
    )
