"""Learning rates chosen on dev data: collected from an LR search's trials, read back by comparison sweeps.

    python train.py -m +sweep=lr_search +point=lora_r16 data=synth_child      # seeds x rates, dev WER only
    python -m asr_peft.training.tuned_lr outputs/lr_search                   # -> sweeps/tuned_lr.yaml
    python train.py -m +sweep=comparison                                       # optimizer.lr: ${tuned_lr:}

A rate is tuned for each configuration (`tuning_key`: the method, its budget and every method setting
that differs from the method's config file, e.g. `ssvd p=0.1 rotation=free`, `lora r=16 alpha=32`), on
each model and target data set: a small and a large budget of a method, and each ablation variant, get
their own. The chosen rate is the one whose trials have the lowest mean validation WER over their seeds
(each trial's value: the validation WER of its tested checkpoint, `training.objective`); test sets are
never read, so test numbers at the chosen rate stay unbiased. The file records, per choice, the trials
it was chosen from (rate, mean, per-seed values), so that a reader can audit how well the search covered
the range, and `edge` when the chosen rate is the lowest or highest one tried: the optimum may lie
outside, and `scripts/comparison.py` extends that search by a half decade until it does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from functools import lru_cache
from pathlib import Path
from statistics import fmean
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import OmegaConf

from asr_peft.errors import ConfigError
from asr_peft.training.naming import BUDGET_KEYS, configuration_label
from asr_peft.training.objective import validation_objective

TUNED_LR_FILE = "sweeps/tuned_lr.yaml"


def root() -> Path:
    return Path(os.environ.get("ASR_PEFT_ROOT", Path(__file__).resolve().parents[3]))


def tuned_lr_path() -> Path:
    return root() / TUNED_LR_FILE


@lru_cache(maxsize=None)
def method_file_defaults(name: str) -> dict[str, Any]:
    path = root() / "configs" / "method" / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}  # type: ignore[return-value]


def tuning_key(method: Mapping[str, Any], adapt: Mapping[str, Any]) -> str:
    """What a rate is tuned for: the configuration label of the method, its budget and its settings that
    differ from configs/method/<name>.yaml (targets, seeds and lists aside); a record written before today's
    keys is read in them (`current_method`)."""
    from asr_peft.adapters.ssvd import current_method

    method = current_method(method)
    defaults = method_file_defaults(str(method.get("name")))
    extra = {
        f"method.{key}": value
        for key, value in method.items()
        if key not in ("name", "seed", "projection_seed")
        and f"method.{key}" not in BUDGET_KEYS
        and not isinstance(value, (list, dict))
        and defaults.get(key) != value
    }
    return configuration_label(method, adapt, extra)


def _mean(values: Iterable[float]) -> float:
    return round(fmean(values), 4)


def choose_learning_rates(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """{model: {data: {tuning key: {lr, val_wer, seeds, edge, trials: [[lr, mean val WER, [per seed]], ...]}}}}
    from trial records: per rate, the mean over the seeds that completed."""
    trials: dict[tuple[str, str, str], dict[float, dict[int, float]]] = {}
    for record in records:
        if record.get("status") != "completed":
            continue
        objective = validation_objective(record)
        config = record.get("config") or {}
        lr = (config.get("optimizer") or {}).get("lr")
        if objective is None or lr is None or not math.isfinite(objective):
            continue
        key = (
            str((config.get("model") or {}).get("name")),
            str((config.get("data") or {}).get("name")),
            tuning_key(config.get("method") or {}, config.get("adapt") or {}),
        )
        trials.setdefault(key, {}).setdefault(float(lr), {})[int(config.get("seed", 0))] = float(objective)
    chosen: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (model, data, configuration), by_rate in sorted(trials.items()):
        means = {lr: _mean(seeds.values()) for lr, seeds in by_rate.items()}
        lr = min(means, key=lambda rate: (means[rate], rate))
        chosen.setdefault(model, {}).setdefault(data, {})[configuration] = {
            "lr": lr,
            "val_wer": means[lr],
            "seeds": sorted(by_rate[lr]),
            "edge": _edge(lr, list(means)),
            "trials": [
                [rate, means[rate], [round(by_rate[rate][s], 4) for s in sorted(by_rate[rate])]] for rate in sorted(means)
            ],
        }
    return chosen


def _edge(lr: float, tried: list[float]) -> str | None:
    """`lowest`/`highest` when `lr` is the lowest/highest of several distinct rates tried, else None."""
    rates = sorted(set(tried))
    if len(rates) < 2:
        return None
    return "lowest" if lr == rates[0] else "highest" if lr == rates[-1] else None


def search_table(chosen: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """A Markdown table of an LR search as it stands: per configuration, each rate's mean dev WER over
    its seeds (per seed in brackets), its trials, the best rate and whether it sits at an edge of those tried."""
    lines = [
        "| model · data | configuration | runs | dev WER by rate: mean [per seed] | best so far | at an edge |",
        "|---|---|---:|---|---:|---|",
    ]
    for model, datasets in chosen.items():
        for data, configurations in datasets.items():
            for configuration, entry in configurations.items():
                trials = "; ".join(
                    f"{rate:g}: {100 * mean:.1f}% [{', '.join(f'{100 * v:.1f}' for v in seeds)}]"
                    for rate, mean, seeds in entry["trials"]
                )
                runs = sum(len(seeds) for _, _, seeds in entry["trials"])
                lines.append(
                    f"| {model} · {data} | {configuration} | {runs} | {trials} | {entry['lr']:g} | {entry['edge'] or 'no'} |"
                )
    return "\n".join(lines) + "\n"


def read_trial_records(sweep_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    records = []
    for sweep_dir in sweep_dirs:
        for path in sorted(Path(sweep_dir).glob("*/results.json")):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                raise ConfigError(f"cannot read trial record {path}: {err}") from None
    return records


def write_tuned_lr(chosen: dict[str, dict[str, dict[str, dict[str, Any]]]], path: Path) -> None:
    """Merge `chosen` into the file (other models, data sets and configurations are kept), atomically."""
    current = read_tuned_lr(path) if path.is_file() else {}
    for model, datasets in chosen.items():
        for data, configurations in datasets.items():
            current.setdefault(model, {}).setdefault(data, {}).update(configurations)
    header = (
        "# Learning rates chosen on dev data (python -m asr_peft.training.tuned_lr <lr-search dirs>): per model, data\n"
        "# set and configuration, the rate with the lowest mean validation WER of its trials' tested checkpoints over\n"
        "# their seeds; `trials` lists [lr, mean val WER, [val WER per seed]], `edge` a choice at the end of the range.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(current, sort_keys=True, default_flow_style=None, width=120), encoding="utf-8")
    tmp.replace(path)


def read_tuned_lr(path: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path}: {' '.join(str(err).split())}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} is not a mapping of model -> data set -> configuration -> learning rate")
    return content


def tuned_entry(model: str, data: str, configuration: str) -> dict[str, Any] | None:
    path = tuned_lr_path()
    entry = ((read_tuned_lr(path).get(model) or {}).get(data) or {}).get(configuration) if path.is_file() else None
    return entry if isinstance(entry, dict) and isinstance(entry.get("lr"), (int, float)) else None


def tuned_lr(config: Mapping[str, Any]) -> float:
    """The `tuned_lr` resolver's value for a run's config: the rate chosen for its model, data set and
    configuration, or a one-line error saying which search to run."""
    model, data = (config.get("model") or {}).get("name"), (config.get("data") or {}).get("name")
    configuration = tuning_key(config.get("method") or {}, config.get("adapt") or {})
    entry = tuned_entry(str(model), str(data), configuration)
    if entry is None:
        raise ConfigError(
            f"optimizer.lr: no learning rate tuned for '{configuration}' with model={model} on data={data} in "
            f"{tuned_lr_path()}; run its LR search first (python scripts/comparison.py lr_search, or "
            f"python train.py -m +sweep=lr_search +point=<point> data={data} model={model})"
        )
    return float(entry["lr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", type=Path, nargs="+", help="LR-search sweep directories (outputs/lr_search)")
    parser.add_argument("--out", type=Path, default=tuned_lr_path())
    args = parser.parse_args()
    chosen = choose_learning_rates(read_trial_records(args.sweep_dirs))
    if not chosen:
        raise SystemExit(f"error: no completed trial with a validation WER under {', '.join(map(str, args.sweep_dirs))}")
    write_tuned_lr(chosen, args.out)
    for model, datasets in chosen.items():
        for data, configurations in datasets.items():
            for configuration, entry in configurations.items():
                edge = f"; the {entry['edge']} rate tried: the best may lie beyond, extend the search" if entry["edge"] else ""
                print(
                    f"{model} {data} {configuration}: lr {entry['lr']:.3g} (mean val WER {100 * entry['val_wer']:.1f}% "
                    f"over seeds {entry['seeds']}, {len(entry['trials'])} rates{edge})"
                )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
