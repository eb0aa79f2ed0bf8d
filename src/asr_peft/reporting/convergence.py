"""How each run converged: the update it stopped at, whether that was the update cap, and how fast it got there.

- `stopped_step`: the run's last update (`global_step` of its record): where early stopping ended it, or
  the cap. `max_steps`: the cap (`trainer.max_steps` of the run's config); `hit_cap`: stopped at it.
- `updates_to_gain`: the updates a run takes to reach `GAIN_FRACTION` (90%) of its final dev gain, the
  gain being the dev WER before adaptation (its validation history's step-0 point) minus the best dev
  WER of the history; linear between validations, the first crossing. A run without a step-0 point, or
  whose dev WER never fell below it, has none (None): its gain is unknown or nil.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from asr_peft.reporting.aggregate import Run, runs_in_order

GAIN_FRACTION = 0.9
COLUMNS = [
    "model",
    "data",
    "method",
    "configuration",
    "trainable",
    "seed",
    "run",
    "run_dir",
    "stopped_step",
    "max_steps",
    "hit_cap",
    "updates_to_gain",
]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def validation_points(history: Any) -> list[tuple[float, float]]:
    """(step, val_wer) of a validation history, by step; entries without both numbers are left out."""
    points = []
    for point in history if isinstance(history, list) else []:
        if isinstance(point, dict):
            step, wer = _number(point.get("step")), _number(point.get("val_wer"))
            if step is not None and wer is not None:
                points.append((step, wer))
    return sorted(points)


def updates_to_gain(history: Any, fraction: float = GAIN_FRACTION) -> float | None:
    """Updates until the dev WER first reaches `fraction` of the run's final gain (module docstring), or None."""
    points = validation_points(history)
    if not points or points[0][0] != 0:
        return None
    before = points[0][1]
    gain = before - min(wer for _, wer in points)
    if gain <= 0:
        return None
    goal = before - fraction * gain
    for (step_0, wer_0), (step_1, wer_1) in zip(points, points[1:]):
        if wer_1 <= goal:
            return step_0 + (wer_0 - goal) / (wer_0 - wer_1) * (step_1 - step_0)
    return None  # unreachable: the best point reaches the goal


def run_convergence(runs: list[Run], frame: pd.DataFrame) -> pd.DataFrame:
    """A row per completed run (columns `COLUMNS`), in the table's order."""
    rows = []
    for run, info in runs_in_order(runs, frame):
        if info["status"] != "completed":
            continue
        record = run.record
        trainer = ((record.get("config") or {}).get("trainer") or {}) if isinstance(record.get("config"), dict) else {}
        stopped, cap = (
            _number(record.get("global_step")),
            _number(trainer.get("max_steps") if isinstance(trainer, dict) else None),
        )
        rows.append(
            {
                **{key: info[key] for key in ("model", "data", "method", "configuration", "trainable", "seed", "run")},
                "run_dir": str(run.directory),
                "stopped_step": stopped,
                "max_steps": cap if cap is not None and cap > 0 else None,
                "hit_cap": bool(stopped is not None and cap is not None and cap > 0 and stopped >= cap),
                "updates_to_gain": updates_to_gain(record.get("validation_history")),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def convergence_summary(convergence: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (trained runs only: frozen runs take no update): seeds, the median update the runs
    stopped at, the cap, how many runs hit it, and the median updates to `GAIN_FRACTION` of the dev gain."""
    columns = [
        "model",
        "data",
        "method",
        "configuration",
        "trainable",
        "seeds",
        "stopped_median",
        "max_steps",
        "at_cap",
        "to_gain_median",
    ]
    trained = convergence[convergence["trainable"] > 0] if not convergence.empty else convergence
    if trained.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        trained.groupby(["model", "data", "method", "configuration"], sort=False, dropna=False)
        .agg(
            trainable=("trainable", "mean"),
            seeds=("seed", "nunique"),
            stopped_median=("stopped_step", "median"),
            max_steps=("max_steps", "max"),
            at_cap=("hit_cap", "sum"),
            to_gain_median=("updates_to_gain", "median"),
        )
        .reset_index()
    )
    return summary[columns]


def cap_line(convergence: pd.DataFrame) -> str:
    """`N of M runs hit the cap (trainer.max_steps)`, over the trained runs."""
    trained = convergence[convergence["trainable"] > 0] if not convergence.empty else convergence
    return f"{int(trained['hit_cap'].sum()) if not trained.empty else 0} of {len(trained)} runs hit the update cap (trainer.max_steps)"
