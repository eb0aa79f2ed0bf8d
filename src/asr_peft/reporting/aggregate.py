"""Collecting run records (`results.json`) into one table: a row per run and test set.

Failed runs stay in the table (status `failed`, their error, no metrics); files that are not valid
records are reported by path and never stop the aggregation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from asr_peft.training.results import RESULTS_FILE

# Method keys that do not distinguish one configuration from another in a comparison.
NON_DISTINGUISHING = {"name", "embedding_targets", "formulation", "seed", "projection_seed"}
METHODS_USING_P = {"ssvd"}


@dataclass
class Collection:
    records: list[dict] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def collect(directories: list[str | Path]) -> Collection:
    collection = Collection()
    for directory in directories:
        directory = Path(directory)
        paths = [directory] if directory.name == RESULTS_FILE else sorted(directory.rglob(RESULTS_FILE))
        for path in paths:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict) or "status" not in record:
                    raise ValueError("not a run record")
            except (OSError, ValueError) as err:
                collection.unreadable.append(f"{path}: {err}")
                continue
            record.setdefault("run_dir", str(path.parent))
            collection.records.append(record)
    return collection


def configuration_label(method: dict, adapt: dict | None) -> str:
    """e.g. `ssvd p=0.4`, `lora r=32 alpha=64`, `svft pattern=banded off_diag=2`."""
    method = method or {}
    parts = [str(method.get("name", "?"))]
    parts += [f"{k}={v}" for k, v in sorted(method.items()) if k not in NON_DISTINGUISHING and not isinstance(v, (list, dict))]
    if method.get("name") in METHODS_USING_P and adapt and adapt.get("p") is not None:
        parts.append(f"p={adapt['p']}")
    return " ".join(parts)


def to_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for record in records:
        method, adapt = record.get("method") or {}, record.get("adapt") or {}
        parameters = record.get("parameters") or {}
        base = {
            "method": method.get("name"), "configuration": configuration_label(method, adapt),
            "p": adapt.get("p") if method.get("name") in METHODS_USING_P else None,
            "model": (record.get("model") or {}).get("name"), "data": (record.get("data") or {}).get("name"),
            "seed": record.get("seed"), "trainable": parameters.get("trainable"), "total": parameters.get("total"),
            "train_time_s": record.get("train_time_s"), "peak_memory_mb": record.get("peak_memory_mb"),
            "status": record.get("status"), "error": record.get("error"), "run_dir": record.get("run_dir"),
            **{f"method.{k}": v for k, v in method.items() if k != "name" and not isinstance(v, (list, dict))},
        }
        metrics = record.get("metrics") or {}
        baseline = record.get("baseline_metrics") or {}
        if not metrics:
            rows.append({**base, "test_set": None, "wer": None, "cer": None, "baseline_wer": None})
        for test_set, values in metrics.items():
            rows.append({**base, "test_set": test_set, "wer": values.get("wer"), "cer": values.get("cer"),
                         "baseline_wer": (baseline.get(test_set) or {}).get("wer")})
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of WER over seeds per (model, data, test set, configuration), completed runs only."""
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    if done.empty:
        return pd.DataFrame(columns=["model", "data", "test_set", "method", "configuration", "trainable",
                                     "wer_mean", "wer_std", "seeds"])
    grouped = done.groupby(["model", "data", "test_set", "method", "configuration"], dropna=False)
    summary = grouped.agg(trainable=("trainable", "mean"), wer_mean=("wer", "mean"), wer_std=("wer", "std"),
                          seeds=("seed", "nunique")).reset_index()
    summary["wer_std"] = summary["wer_std"].fillna(0.0)
    return summary
