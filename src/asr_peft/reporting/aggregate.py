"""Collecting run records (`results.json`) into tables: a row per run and test set, and mean ± std over seeds.

Failed runs stay in the table (their status and error, whatever metrics they have); files that are not
valid records are reported by path and never stop the aggregation.

Runs are seeds of one *configuration* when they agree on the method and its hyperparameters, its
budget, and every other setting that varies among the collected runs (e.g. `optimizer.lr` in a
learning-rate search, `adapt.targets`, `trainer.max_steps`). A configuration's label always names the
method and its budget (`ssvd p=0.4`, `lora r=16`, `svft banded d=2`: training/naming.py), then the
method's other settings that differ among its runs, then other settings that differ among all runs
(`lora r=16 alpha=8`, `ssvd p=0.4 optimizer.lr=0.001`); an object's settings count by its class
(`trainer.strategy=DDPStrategy`), not by each of its arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from asr_peft.adapters.registry import METHODS
from asr_peft.adapters.ssvd import current_method
from asr_peft.errors import ConfigError
from asr_peft.adapters.subspace import SUBSPACE_FILE
from asr_peft.reporting.records import record_problem
from asr_peft.training.naming import BUDGET_KEYS, METHODS_USING_P, configuration_label, has_no_effect, method_reads
from asr_peft.training.results import RESULTS_FILE

# Method keys that do not tell one configuration from another: listed targets and random draws.
NON_DISTINGUISHING = {"name", "embedding_targets", "seed", "projection_seed"}
# Config groups whose differences between runs make different configurations (besides method/adapt).
SETTING_GROUPS = ("optimizer", "trainer", "loader", "evaluation")
SETTINGS_ONLY_SOME_METHODS_READ = {"adapt.targets"}  # full and frozen train without targets
GROUP_KEYS = ["model", "data", "test_set", "method", "configuration"]


@dataclass
class Run:
    directory: Path
    record: dict[str, Any]
    subspace: dict[str, Any] | None = None


@dataclass
class Collection:
    runs: list[Run] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "path: why", one per file that is not a record


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    return data


def collect(paths: Iterable[str | Path]) -> Collection:
    """Every results.json below the given run/sweep directories (or given directly), with its subspace.json;
    a directory holding a sweep's tables (reporting.tables) gives their runs too, in the order its run
    directories would (a run directory that is there as well is read from the directory)."""
    from asr_peft.reporting.tables import holds_tables, read_runs  # the tables module builds on this one

    collection = Collection()
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise ConfigError(f"{given} does not exist")
        found = [given] if given.is_file() else sorted(given.rglob(RESULTS_FILE))
        stored: dict[Path, Run] = {}
        if given.is_dir() and holds_tables(given):
            present = {path.parent for path in found}
            stored = {run.directory / RESULTS_FILE: run for run in read_runs(given) if run.directory not in present}
            found = sorted([*found, *stored])
        for path in found:
            if path in stored:
                collection.runs.append(stored[path])
                continue
            try:
                record = _read_json(path)
                if not isinstance(record.get("status"), str):
                    raise ValueError("no status: not a run record")
                problem = record_problem(record, path.parent)  # reporting/records.py
                if problem:
                    raise ValueError(problem)
            except (OSError, UnicodeDecodeError, ValueError) as err:
                collection.unreadable.append(f"{path}: {' '.join(str(err).split())}")
                continue
            run = Run(path.parent, record)
            subspace_path = path.parent / SUBSPACE_FILE
            if subspace_path.is_file():
                try:
                    run.subspace = _read_json(subspace_path)
                except (OSError, UnicodeDecodeError, ValueError) as err:
                    collection.unreadable.append(f"{subspace_path}: {' '.join(str(err).split())}")
            collection.runs.append(run)
    return collection


def method_rank(name: str | None) -> int:
    """Registry order (ssvd, svft, lora, ...) for tables and legends; unknown names after."""
    return list(METHODS).index(name) if name in METHODS else len(METHODS)


def method_order(methods: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(methods), key=lambda m: (method_rank(m), str(m)))


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists become their JSON text."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _scalar(value)
    return flat


def _short_class(value: Any) -> Any:
    return value.rsplit(".", 1)[-1] if isinstance(value, str) else value


def run_settings(record: dict) -> dict[str, Any]:
    """The settings that can make two runs of one method different configurations.

    An object built from `_target_` counts as its class (`trainer.strategy=DDPStrategy`), and its
    arguments as `trainer.strategy.<argument>`.
    """
    config = _mapping(record.get("config"))
    settings = {}
    for key, value in ((k, v) for group in SETTING_GROUPS for k, v in flatten(_mapping(config.get(group)), f"{group}.").items()):
        if has_no_effect(key):
            continue
        settings[key.removesuffix("._target_")] = _short_class(value) if key.endswith("._target_") else value
    if method_reads(_mapping(record.get("method")).get("name"), "adapt.targets"):
        settings["adapt.targets"] = _scalar(_mapping(record.get("adapt")).get("targets"))
    return settings


def method_settings(record: dict) -> dict[str, Any]:
    """What configures the method besides its budget: its hyperparameters, target lists and random draws aside."""
    method = _mapping(record.get("method"))
    return {
        k: v
        for k, v in method.items()
        if k not in NON_DISTINGUISHING and f"method.{k}" not in BUDGET_KEYS and not isinstance(v, (list, dict))
    }


def varying_keys(settings: list[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every dict (a missing key counts as a value, except for settings
    only some methods read: `adapt.targets` varies only among the runs that have it)."""
    keys = sorted({k for s in settings for k in s})
    return [
        k
        for k in keys
        if len(
            {
                json.dumps(s.get(k), sort_keys=True, default=str)
                for s in settings
                if k not in SETTINGS_ONLY_SOME_METHODS_READ or k in s
            }
        )
        > 1
    ]


def _outermost(keys: list[str]) -> list[str]:
    """Keys without those below another of them (`trainer.strategy` covers `trainer.strategy.find_unused_parameters`)."""
    return [k for k in keys if not any(k.startswith(other + ".") for other in keys)]


def configuration_labels(records: list[dict]) -> list[str]:
    """Each record's label: its method and budget, then what tells it apart from the other collected runs.

    Method settings are named when they differ among that method's runs, other settings when they
    differ among all runs; everything else is shared and left out (results.csv has it all).
    """
    names = [_mapping(r.get("method")).get("name", "?") for r in records]
    own = [method_settings(r) for r in records]
    varying_own = {name: varying_keys([s for n, s in zip(names, own) if n == name]) for name in set(names)}
    other = [run_settings(r) for r in records]
    varying_other = _outermost(varying_keys(other))
    return [
        configuration_label(
            _mapping(record.get("method")),
            _mapping(record.get("adapt")),
            {**{f"method.{k}": mine[k] for k in varying_own[name] if k in mine}, **{k: theirs.get(k) for k in varying_other}},
        )
        for record, name, mine, theirs in zip(records, names, own, other)
    ]


SECONDARY = "secondary"  # metrics[<set>]["secondary"][<decode>] = {"wer", "cer"}: a second decode of the same model


def secondary_scores(values: dict) -> dict[str, float | None]:
    """`secondary.<decode>.wer` / `.cer` columns of a test set's metrics (e.g. OWSM's greedy CTC beside its
    attention decode); none when the run scored one decode."""
    return {
        f"{SECONDARY}.{decode}.{rate}": _number(_mapping(scores).get(rate))
        for decode, scores in _mapping(values.get(SECONDARY)).items()
        for rate in ("wer", "cer")
    }


def secondary_decodes(frame: pd.DataFrame) -> list[str]:
    """The second decodes some run scored (`secondary.<decode>.wer` columns), in column order."""
    prefix = f"{SECONDARY}."
    return [c[len(prefix) : -len(".wer")] for c in frame.columns if c.startswith(prefix) and c.endswith(".wer")]


def current_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its method in today's keys (`current_method`: a record stays as written on disk)."""
    config = _mapping(record.get("config"))
    if "method" not in record and "method" not in config:
        return record
    current = {**record, "method": current_method(_mapping(record.get("method")))}
    if "method" in config:
        current["config"] = {**config, "method": current_method(_mapping(config["method"]))}
    return current


def to_frame(runs: list[Run]) -> pd.DataFrame:
    """A row per run and test set (a run without metrics keeps one row with an empty test set)."""
    records = [current_record(run.record) for run in runs]
    varying = varying_keys([run_settings(r) for r in records])
    rows = []
    for run, record, label in zip(runs, records, configuration_labels(records)):
        method, adapt = _mapping(record.get("method")), _mapping(record.get("adapt"))
        parameters = _mapping(record.get("parameters"))
        settings = run_settings(record)
        distinguishing = {k: settings.get(k) for k in varying}
        base = {
            "run": run.directory.name,
            "status": record.get("status"),
            "error": record.get("error"),
            "method": method.get("name"),
            "configuration": label,
            "p": _number(adapt.get("p")) if method.get("name") in METHODS_USING_P else None,
            "model": _mapping(record.get("model")).get("name"),
            "data": _mapping(record.get("data")).get("name"),
            "seed": record.get("seed"),
            "trainable": _number(parameters.get("trainable")),
            "total": _number(parameters.get("total")),
            "train_time_s": _number(record.get("train_time_s")),
            "peak_memory_mb": _number(record.get("peak_memory_mb")),
            "global_step": _number(record.get("global_step")),
            "trained_in": record.get("trained_in"),  # another run's checkpoints were scored (its LR search's)
            **{f"method.{k}": _scalar(v) for k, v in method.items() if k != "name"},
            **distinguishing,
            "run_dir": str(run.directory),
        }
        metrics, baseline = _mapping(record.get("metrics")), _mapping(record.get("baseline_metrics"))
        if not metrics:
            rows.append({**base, "test_set": None, "wer": None, "cer": None, "baseline_wer": None, "baseline_cer": None})
        for test_set, values in metrics.items():
            values, before = _mapping(values), _mapping(baseline.get(test_set))
            rows.append(
                {
                    **base,
                    "test_set": test_set,
                    "wer": _number(values.get("wer")),
                    "cer": _number(values.get("cer")),
                    "baseline_wer": _number(before.get("wer")),
                    "baseline_cer": _number(before.get("cer")),
                    **secondary_scores(values),
                }
            )
    frame = pd.DataFrame(rows)
    if rows:  # methods in registry order, cheapest configuration first, then seeds; test sets keep their order
        frame = (
            frame.assign(_rank=frame["method"].map(method_rank))
            .sort_values(["model", "data", "_rank", "trainable", "configuration", "seed"], kind="stable", na_position="last")
            .drop(columns="_rank")
        )
    leading = [
        "run",
        "status",
        "error",
        "method",
        "configuration",
        "p",
        "model",
        "data",
        "seed",
        "test_set",
        "wer",
        "cer",
        "baseline_wer",
        "baseline_cer",
        "trainable",
        "total",
        "train_time_s",
        "peak_memory_mb",
        "global_step",
    ]
    return frame[[c for c in leading if c in frame] + [c for c in frame if c not in leading]] if rows else frame


def ordered_test_sets(frame: pd.DataFrame) -> list[str]:
    """Test sets in the order the runs list them (source, child, dialect), not alphabetically."""
    return list(dict.fromkeys(frame["test_set"].dropna())) if "test_set" in frame else []


SOURCE_TEST_SET = "source"  # the pretraining domain: where forgetting is read


def target_test_set(data: str, test_sets: Iterable[str]) -> str | None:
    """The test set a data config adapts to: the one its name contains (`synth_child` → `child`), or the only one."""
    test_sets = list(test_sets)
    named = [t for t in test_sets if t in str(data)]
    if len(named) == 1:
        return named[0]
    return test_sets[0] if len(test_sets) == 1 else None


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (sample std, 0 for one seed) over seeds per (model, data, test set, method, configuration).

    Completed runs with a WER only; `seeds` counts the distinct seeds behind each mean. A second decode
    (`secondary.<decode>.wer` of the runs) gets its own mean and std columns.
    """
    second = secondary_decodes(frame)
    spread = [f"{SECONDARY}.{decode}.wer_{kind}" for decode in second for kind in ("mean", "std")]
    columns = GROUP_KEYS + ["trainable", "total", "wer_mean", "wer_std", "cer_mean", "cer_std", "baseline_wer", "seeds", *spread]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    done = frame[(frame["status"] == "completed") & frame["wer"].notna()]
    if done.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        done.groupby(GROUP_KEYS, dropna=False, sort=False)
        .agg(
            trainable=("trainable", "mean"),
            total=("total", "mean"),
            wer_mean=("wer", "mean"),
            wer_std=("wer", "std"),
            cer_mean=("cer", "mean"),
            cer_std=("cer", "std"),
            baseline_wer=("baseline_wer", "mean"),
            seeds=("seed", "nunique"),
            **{
                f"{SECONDARY}.{decode}.wer_{kind}": (f"{SECONDARY}.{decode}.wer", kind)
                for decode in second
                for kind in ("mean", "std")
            },
        )
        .reset_index()
    )
    summary[["wer_std", "cer_std"]] = summary[["wer_std", "cer_std"]].fillna(0.0)
    return summary[columns]


def runs_in_order(runs: list[Run], frame: pd.DataFrame) -> Iterator[tuple[Run, pd.Series]]:
    """Each run with its table row (method, configuration, model, data, seed, ...), in the table's order."""
    by_dir = {str(run.directory): run for run in runs}
    for run_dir, info in frame.drop_duplicates("run_dir").set_index("run_dir").iterrows() if not frame.empty else ():
        yield by_dir[run_dir], info


def _describe(info: pd.Series) -> dict[str, Any]:
    return {key: info[key] for key in ("model", "data", "method", "configuration", "trainable", "seed", "status")}


def convergence_frame(runs: list[Run], frame: pd.DataFrame) -> pd.DataFrame:
    """A row per validation point (step, val_wer) of every completed run's `validation_history`."""
    rows = []
    for run, info in runs_in_order(runs, frame):
        history = run.record.get("validation_history")
        if info["status"] != "completed" or not isinstance(history, list):
            continue
        for point in history:
            point = _mapping(point)
            step, wer = _number(point.get("step")), _number(point.get("val_wer"))
            if step is not None and wer is not None:
                rows.append({**_describe(info), "step": step, "val_wer": wer})
    return pd.DataFrame(
        rows, columns=["model", "data", "method", "configuration", "trainable", "seed", "status", "step", "val_wer"]
    )


def subspace_frame(runs: list[Run], frame: pd.DataFrame) -> pd.DataFrame:
    """A row per run and layer type (plus an `all layers` row) from the runs' subspace.json files."""
    rows = []
    for run, info in runs_in_order(runs, frame):
        if not run.subspace:
            continue
        entries = {"all layers": _mapping(run.subspace.get("overall")), **_mapping(run.subspace.get("layer_types"))}
        for kind, values in entries.items():
            values = _mapping(values)
            rows.append(
                {
                    "run": run.directory.name,
                    **_describe(info),
                    "layer_type": kind,
                    "layers": _number(values.get("layers")),
                    **{
                        key: _number(values.get(key))
                        for key in (
                            "input_angle_mean_deg",
                            "output_angle_mean_deg",
                            "delta_relative_norm",
                            "delta_effective_rank",
                        )
                    },
                }
            )
    return pd.DataFrame(rows)


def subspace_summary(subspace: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each configuration's all-layer angles and ΔW statistics (completed runs)."""
    rows = (
        subspace[(subspace["layer_type"] == "all layers") & (subspace["status"] == "completed")]
        if not subspace.empty
        else subspace
    )
    if rows.empty:
        return pd.DataFrame()
    return (
        rows.groupby(["model", "data", "method", "configuration"], dropna=False, sort=False)
        .agg(
            input_mean=("input_angle_mean_deg", "mean"),
            input_std=("input_angle_mean_deg", "std"),
            output_mean=("output_angle_mean_deg", "mean"),
            output_std=("output_angle_mean_deg", "std"),
            relative_norm=("delta_relative_norm", "mean"),
            effective_rank=("delta_effective_rank", "mean"),
            seeds=("seed", "nunique"),
        )
        .reset_index()
        .fillna({"input_std": 0.0, "output_std": 0.0})
    )
