"""Learning rates chosen on dev data: collected from an LR search's trials, read back by comparison sweeps.

    python train.py -m +sweep=lr_search +point=lora_r16 data=synth_child      # Optuna trials, dev WER only
    python -m asr_peft.training.tuned_lr outputs/lr_search                   # -> sweeps/tuned_lr.yaml
    python train.py -m +sweep=comparison                                       # optimizer.lr: ${tuned_lr:...}

For each method and target data set, the chosen rate is that of the completed trial whose tested
checkpoint has the lowest validation WER (`training.objective`, the value the Optuna sweeper minimised);
test sets are never read, so test numbers at the chosen rate stay unbiased. A method's rate is tuned
once (at one budget) and serves all of its budgets. The file records, per choice, the trials it was
chosen from, so that a reader sees how well the search covered the range, and `edge` when the chosen
rate is the lowest or highest one tried: the optimum may lie outside, so the study should be extended.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from asr_peft.errors import ConfigError
from asr_peft.training.objective import validation_objective

TUNED_LR_FILE = "sweeps/tuned_lr.yaml"


def tuned_lr_path() -> Path:
    return Path(os.environ.get("ASR_PEFT_ROOT", Path(__file__).resolve().parents[3])) / TUNED_LR_FILE


def choose_learning_rates(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{data name: {method name: {lr, val_wer, configuration, edge, trials: [[lr, val_wer], ...]}}} from trial records."""
    trials: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    for record in records:
        if record.get("status") != "completed":
            continue
        objective = validation_objective(record)
        config = record.get("config") or {}
        lr = (config.get("optimizer") or {}).get("lr")
        if objective is None or lr is None or not math.isfinite(objective):
            continue
        key = ((config.get("data") or {}).get("name"), (config.get("method") or {}).get("name"))
        trials.setdefault(key, []).append((float(lr), float(objective), record.get("configuration") or key[1]))
    chosen: dict[str, dict[str, dict[str, Any]]] = {}
    for (data, method), runs in sorted(trials.items()):
        runs.sort()
        lr, val_wer, configuration = min(runs, key=lambda run: (run[1], run[0]))
        chosen.setdefault(data, {})[method] = {
            "lr": lr,
            "val_wer": round(val_wer, 4),
            "configuration": configuration,
            "edge": _edge(lr, runs),
            "trials": [[rate, round(wer, 4)] for rate, wer, _ in runs],
        }
    return chosen


def _edge(lr: float, runs: list[tuple[float, float, str]]) -> str | None:
    """`lowest`/`highest` when `lr` is the lowest/highest of several distinct rates tried, else None."""
    rates = sorted({rate for rate, _, _ in runs})
    if len(rates) < 2:
        return None
    return "lowest" if lr == rates[0] else "highest" if lr == rates[-1] else None


def read_trial_records(sweep_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    records = []
    for sweep_dir in sweep_dirs:
        for path in sorted(Path(sweep_dir).glob("*/results.json")):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                raise ConfigError(f"cannot read trial record {path}: {err}") from None
    return records


def write_tuned_lr(chosen: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Merge `chosen` into the file (other methods and data sets are kept), atomically."""
    current = read_tuned_lr(path) if path.is_file() else {}
    for data, methods in chosen.items():
        current.setdefault(data, {}).update(methods)
    header = (
        "# Learning rates chosen on dev data (python -m asr_peft.training.tuned_lr <lr-search dirs>): per data set\n"
        "# and method, the trial with the lowest validation WER of its tested checkpoint; `trials` lists [lr, val WER].\n"
    )
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(current, sort_keys=True, default_flow_style=None), encoding="utf-8")
    tmp.replace(path)


def read_tuned_lr(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path}: {' '.join(str(err).split())}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} is not a mapping of data set -> method -> learning rate")
    return content


def tuned_lr(method: str, data: str) -> float:
    """The `tuned_lr` resolver: the learning rate chosen for `method` on `data`, or a one-line error."""
    path = tuned_lr_path()
    entry = (read_tuned_lr(path).get(data) or {}).get(method) if path.is_file() else None
    if not isinstance(entry, dict) or not isinstance(entry.get("lr"), (int, float)):
        raise ConfigError(
            f"optimizer.lr: no learning rate tuned for method={method} on data={data} in {path}; run the "
            f"LR search first (python train.py -m +sweep=lr_search +point=<{method} point> data={data})"
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
    for data, methods in chosen.items():
        for method, entry in methods.items():
            edge = f"; the {entry['edge']} rate tried: the best may lie beyond, extend the search" if entry["edge"] else ""
            print(
                f"{data:<14} {method:<6} lr {entry['lr']:.3g}  (val WER {100 * entry['val_wer']:.1f}%, "
                f"{len(entry['trials'])} trials{edge})"
            )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
