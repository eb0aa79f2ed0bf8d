"""The comparison protocol, stage by stage, one run at a time, resumable across sessions and machines.

    python scripts/comparison.py plan                      # every stage, model and data set: runs, done, hours left
    python scripts/comparison.py rates                     # the LR searches so far: dev WER by rate, best rate
    python scripts/comparison.py lr_search [--hours 3]     # rates per configuration -> sweeps/tuned_lr.yaml
    python scripts/comparison.py lr_search_scale           # the same for the scale rows' Whisper models
    python scripts/comparison.py comparison [--hours 3]    # the comparison at the tuned rates, 5 seeds
    python scripts/comparison.py scale [--hours 3]         # the scale rows on Whisper tiny.en and base
    python scripts/comparison.py comparison -- trainer=gpu # extra overrides for every run (a GPU machine)
    OMP_NUM_THREADS=1 python scripts/comparison.py lr_search --worker 0/2 &   # two workers, a core each,
    OMP_NUM_THREADS=1 python scripts/comparison.py lr_search --worker 1/2 &   # on the same tables

A stage is a sweep file, `sweeps/sweep/<stage>.yaml`, whose `hydra.sweeper.params` is its grid (also a
plain Hydra multirun: `python train.py -m +sweep=<stage>`). Here every run of the grid is trained as a
single `python train.py +sweep=<stage> <its choices>` into `outputs/<stage>/<run>`, and once it has
completed it is appended to `results/<stage>/{runs,decodes}.parquet`, the committed record that
`report.py results/<stage>` reads. A run those tables hold is never trained again, so a stage stopped
anywhere (the end of a session, `--hours`) resumes where its tables end, on any machine; a run stopped
part-way resumes from its `last.ckpt` when the same machine still has it. Extra overrides after `--`
must not change what is trained (a device, a batch size that keeps the same updates): the run names
do not show them.

The LR search goes one model and data set at a time. It trains each configuration's grid (seeds x the sweep
file's rates, or the point's own in `sweeps/point_rates.yaml`), then, while the rate with the lowest mean dev
WER is the lowest or highest one tried, the next half-decade rate beyond it (both seeds), at most `--extend`
times; then it writes `sweeps/tuned_lr.yaml` (`asr_peft.training.tuned_lr`) for every model and data set
whose search is final: the tables hold every run of its grid, and every configuration's best rate sits
inside the rates tried or 3 half decades past its own grid. Workers split a stage by configuration (all
seeds and rates of one go to one worker) and append to its tables, and write the rates file, under a lock.
A stage at tuned rates (`comparison`, `scale`) trains the runs of each model and data set whose rates are
final and written, and leaves the others waiting, saying why: the toy comparison on the
child domain can start before the dialect search ends, tiny.en's scale rows before base's search. Its runs
of the seeds the search trained at the chosen rate are not trained again: the search run's checkpoints
are copied into the run's directory and `train.py` scores them (`trained_by_search`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"  # the sweep files' configs; ROOT also holds outputs/ and results/
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("ASR_PEFT_ROOT", str(ROOT))

from asr_peft.errors import AsrPeftError, ConfigError, report_error  # noqa: E402
from asr_peft.reporting.tables import RUNS_TABLE, append_run, appending, table_runs  # noqa: E402
from asr_peft.training.naming import training_differences  # noqa: E402
from asr_peft.training.tuned_lr import (  # noqa: E402
    choose_learning_rates,
    read_tuned_lr,
    search_table,
    tuned_lr_path,
    tuning_key,
    write_tuned_lr,
)

STAGES = ("lr_search", "lr_search_scale", "comparison", "scale")
LR = "optimizer.lr"
EXTEND = 3  # --extend's default: the half decades an LR search goes past its grid's edge, at most


def grid(stage: str) -> list[dict[str, str]]:
    """The runs of a stage's sweep file, as override dicts in the sweeper's order (outermost first)."""
    return [dict(overrides) for overrides in stage_grid(stage)[0]]  # copies: the composed grid is cached


def slices(stage: str) -> list[tuple[str, str]]:
    """The model and data set each run of `grid(stage)` trains (its choices, else the sweep file's): the
    scope of a tuned rate."""
    model, data = stage_defaults(stage)
    return [(overrides.get("model", model), overrides.get("data", data)) for overrides in grid(stage)]


def stage_defaults(stage: str) -> tuple[str, str]:
    """The model and data set the sweep file composes to where its grid does not choose them."""
    return stage_grid(stage)[1:]


@functools.lru_cache(maxsize=None)
def stage_grid(stage: str) -> tuple[list[dict[str, str]], str, str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from asr_peft.cli import setup_environment

    setup_environment()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose("train", overrides=[f"+sweep={stage}"], return_hydra_config=True)
    params = dict(config.hydra.sweeper.params or {})
    if not params:
        raise ConfigError(f"sweeps/sweep/{stage}.yaml: hydra.sweeper.params holds no grid")
    parser = OverridesParser.create()

    def values(key: str, value: Any) -> list[str]:
        override = parser.parse_override(f"{key}={value}")
        return [str(v) for v in override.sweep_string_iterator()] if override.is_sweep_override() else [str(value)]

    # The rate axis is expanded per point: a point that sweeps/point_rates.yaml names gets its own rates.
    axes = [[(key, v) for v in ([""] if key == LR else values(key, value))] for key, value in params.items()]
    shared = values(LR, params[LR]) if LR in params else []
    rates = {point: values(LR, value) for point, value in point_rates(stage).items()}
    points = set(values("+point", params["+point"])) if "+point" in params else set()
    for point, axis in rates.items():
        if point not in points or not shared or not all(is_rate(rate) for rate in axis):
            raise ConfigError(
                f"{POINT_RATES}: {stage}.{point} must be a point of sweeps/sweep/{stage}.yaml's grid "
                f"with positive rates, e.g. 0.01,0.03,0.1 (got {','.join(axis)})"
            )
    runs = []
    for combination in itertools.product(*axes):
        overrides = dict(combination)
        if LR not in overrides:
            runs.append(overrides)
            continue
        for rate in rates.get(overrides.get("+point", ""), shared):
            runs.append({**overrides, LR: rate})
    return runs, str(config.model.name), str(config.data.name)


POINT_RATES = ROOT / "sweeps" / "point_rates.yaml"


def point_rates(stage: str) -> dict[str, str]:
    """The rates a stage's search starts from for the points `sweeps/point_rates.yaml` names, in place of
    its sweep file's `optimizer.lr` axis."""
    from omegaconf import OmegaConf

    table = OmegaConf.to_container(OmegaConf.load(POINT_RATES)) if POINT_RATES.is_file() else {}
    by_point = (table or {}).get(stage) or {}
    if not isinstance(by_point, dict):
        raise ConfigError(f"{POINT_RATES}: {stage} must map points to rates (vera_r256: 0.01,0.03,0.1)")
    return {str(point): str(rates) for point, rates in by_point.items()}


def is_rate(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and float(text) > 0
    except ValueError:
        return False


def run_name(overrides: dict[str, str]) -> str:
    return ",".join(f"{key.lstrip('+')}={value}" for key, value in overrides.items()).replace("/", "_")


def read_records(stage: str) -> dict[str, dict[str, Any]]:
    """The records a stage's committed tables hold, by run name."""
    import pandas as pd

    table = ROOT / "results" / stage / RUNS_TABLE
    if not table.is_file():
        return {}
    rows = pd.read_parquet(table, columns=["run", "record"])
    return {name: json.loads(record) for name, record in zip(rows["run"], rows["record"])}


def train(stage: str, overrides: dict[str, str], extra: list[str]) -> tuple[str, float]:
    """Train one run unless the stage's tables hold it; returns its status and minutes taken."""
    name = run_name(overrides)
    results = ROOT / "results" / stage
    if name in table_runs(results):
        return "done", 0.0
    run_dir = ROOT / "outputs" / stage / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if stage in TUNED_BY and not (run_dir / "checkpoints").exists():
        trained = trained_by_search(stage, overrides, extra, run_dir)
        if trained is not None:
            (run_dir / "checkpoints").mkdir(parents=True)
            for checkpoint in sorted((trained / "checkpoints").glob("*.ckpt")):
                shutil.copy2(checkpoint, run_dir / "checkpoints" / checkpoint.name)
            print(f"{name}: trained by {TUNED_BY[stage]}'s run {trained.name}; its checkpoints are scored", flush=True)
    command = [sys.executable, "train.py", f"+sweep={stage}", *(f"{k}={v}" for k, v in overrides.items()), *extra]
    command.append(f"hydra.run.dir='{run_dir}'")  # quoted: the name holds '=' and ','
    start = time.monotonic()
    with open(run_dir.parent / f"{name}.log", "a", encoding="utf-8") as log:
        exit_code = run_child(command, log)
    minutes = (time.monotonic() - start) / 60
    record_path = run_dir / "results.json"
    status = json.loads(record_path.read_text(encoding="utf-8")).get("status") if record_path.is_file() else None
    if exit_code == 0 and status == "completed":
        append_run(results, run_dir, name)
        return "completed", minutes
    return f"failed (exit {exit_code}, log {run_dir.parent / f'{name}.log'})", minutes


def trained_by_search(stage: str, overrides: dict[str, str], extra: list[str], run_dir: Path) -> Path | None:
    """The run directory of the LR search's completed run that trained what this run trains (the same
    configuration, seed and rate, and nothing else that changes training: `training_differences`), when
    this machine still has its checkpoints. The search trains every seed of its grid at the rate it
    chooses, so the stage's runs of those seeds would train it again, bit for bit on the same machine."""
    search = TUNED_BY[stage]
    config = resolved_config(stage, {**overrides, "hydra.run.dir": f"'{run_dir}'"}, extra)
    for name, record in read_records(search).items():
        trained = ROOT / "outputs" / search / name
        if (
            record.get("status") == "completed"
            and record.get("seed") == config.get("seed")
            and not training_differences(config, record.get("config") or {})
            and all((trained / "checkpoints" / f"{which}.ckpt").is_file() for which in ("best", "last"))
        ):
            return trained
    return None


def resolved_config(stage: str, overrides: dict[str, str], extra: list[str]) -> dict[str, Any]:
    """The config `train.py +sweep=<stage>` runs with these overrides, resolved (its rate read from the rates file)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from asr_peft.cli import setup_environment

    setup_environment()
    GlobalHydra.instance().clear()
    command = [f"+sweep={stage}", *(f"{key}={value}" for key, value in overrides.items()), *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = compose("train", overrides=command, return_hydra_config=True)
        HydraConfig.instance().set_config(config)  # paths.output_dir reads the run directory from it
        with open_dict(config):
            del config["hydra"]
        resolved = OmegaConf.to_container(config, resolve=True)
    return dict(resolved)  # type: ignore[arg-type]


def run_child(command: list[str], log) -> int:
    """Run a training command to its end; a driver stopped by SIGTERM or Ctrl-C stops it first (the run
    writes its `interrupted` record and resumes from its last checkpoint next time) instead of orphaning it."""
    child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        return child.wait()
    except BaseException:
        child.terminate()
        child.wait()
        raise


def stop_on_sigterm() -> None:
    """SIGTERM unwinds the driver as Ctrl-C does, through `run_child`'s clean-up."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)


def half_decade(lr: float, direction: int) -> float:
    """The next rate of the 1, 3, 10, 30... ladder above (+1) or below (-1) `lr`."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    ladder = [m * 10.0**e for e in range(exponent - 2, exponent + 3) for m in (1, 3)]
    neighbours = [rate for rate in ladder if (rate > lr * 1.01 if direction > 0 else rate < lr / 1.01)]
    return float(f"{(min(neighbours) if direction > 0 else max(neighbours)):.1g}")


class Budget:
    """Stop launching runs after `hours` (a session's share); None: no limit."""

    def __init__(self, hours: float | None):
        self.deadline = None if hours is None else time.monotonic() + hours * 3600

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def configuration(overrides: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """What a run trains apart from its seed and learning rate: the unit a worker takes whole."""
    return tuple((key, value) for key, value in overrides.items() if key not in ("seed", LR))


def share(runs: list[dict[str, str]], worker: tuple[int, int]) -> list[dict[str, str]]:
    """Worker k of n (`--worker k/n`): every n-th configuration from the k-th, with all its seeds and rates,
    so that each worker's LR search extends the edges of configurations it alone trains."""
    index, count = worker
    configurations = list(dict.fromkeys(configuration(overrides) for overrides in runs))
    mine = set(configurations[index::count])
    return [overrides for overrides in runs if configuration(overrides) in mine]


# The search whose rates a stage reads (optimizer.lr: ${tuned_lr:}): a model and data set of the stage trains once
# that search's rates for them are final and written, so that no run reads a rate of an unfinished search (or
# one that sweeps/tuned_lr.yaml kept from v1).
TUNED_BY = {"comparison": "lr_search", "scale": "lr_search_scale"}


def search_state(search: str, extend: int = EXTEND) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], str]]:
    """An LR search's final rates and what the rest wait for, per (model, data set): final once its tables hold
    every run of its grid for them and each configuration's best rate is inside the rates tried or `extend`
    half decades past its own grid."""
    runs, held, records = grid(search), table_runs(ROOT / "results" / search), read_records(search)
    counts: dict[tuple[str, str], list[int]] = {}
    grid_rates: dict[tuple, list[float]] = {}  # (scope, configuration) -> its own grid's rates (sweeps/point_rates.yaml)
    trained_as: dict[tuple, str] = {}  # (scope, configuration) -> its tuning key, from a record of one of its runs
    for overrides, scope in zip(runs, slices(search)):
        unit, record = (scope, configuration(overrides)), records.get(run_name(overrides))
        counts.setdefault(scope, [0, 0])
        counts[scope][0] += 1
        counts[scope][1] += run_name(overrides) in held
        if LR in overrides:
            grid_rates.setdefault(unit, []).append(float(overrides[LR]))
        if record is not None:
            trained_as[unit] = record_key(record)[2]
    chosen = choose_learning_rates(records.values())
    final, waiting = {}, {}
    for (model, data), (total, done) in counts.items():
        where = f"model={model} data={data}"
        if done < total:
            waiting[model, data] = f"results/{search} holds {done} of the {total} runs of its grid for {where}"
            continue
        entries = (chosen.get(model) or {}).get(data) or {}
        open_edges = [
            f"{key} (best at the {entries[key]['edge']} rate)"
            for (scope, trained), key in trained_as.items()
            if scope == (model, data)
            and key in entries
            and entries[key]["edge"]
            and not past_the_grid(entries[key], grid_rates[scope, trained], extend)
        ]
        if open_edges:
            waiting[model, data] = f"{search} goes on past an edge for {where}: {', '.join(open_edges)}"
        else:
            final[model, data] = entries
    return final, waiting


def past_the_grid(entry: dict, grid_rates: list[float], extend: int) -> bool:
    """Whether a configuration's rates went `extend` half decades past the grid on the side its best sits."""
    tried = [trial[0] for trial in entry["trials"]]
    beyond = [r for r in tried if r < min(grid_rates)] if entry["edge"] == "lowest" else [r for r in tried if r > max(grid_rates)]
    return len(beyond) >= extend


def waiting_for_rates(stage: str) -> dict[tuple[str, str], str]:
    """The (model, data set) pairs of a stage whose rates are not final and written yet, and why."""
    search = TUNED_BY.get(stage)
    if search is None:
        return {}
    final, waiting = search_state(search)
    path = tuned_lr_path()
    written = read_tuned_lr(path) if path.is_file() else {}
    for (model, data), entries in final.items():
        held = (written.get(model) or {}).get(data) or {}
        if any((held.get(configuration) or {}).get("lr") != entry["lr"] for configuration, entry in entries.items()):
            waiting[model, data] = (
                f"{path.name} does not hold the rates results/{search} chose for model={model} data={data} "
                f"(python scripts/comparison.py {search} writes them)"
            )
    scopes = set(slices(stage))
    return {scope: why for scope, why in waiting.items() if scope in scopes}


def run_stage(stage: str, extra: list[str], budget: Budget, extend: int, worker: tuple[int, int] = (0, 1)) -> int:
    everything = grid(stage)
    scope_of = dict(zip(map(run_name, everything), slices(stage)))
    runs = share(everything, worker)
    waiting = waiting_for_rates(stage)
    if waiting:
        runs = [overrides for overrides in runs if scope_of[run_name(overrides)] not in waiting]
        if not runs:
            raise ConfigError(f"{stage}: every run waits for its rates: {'; '.join(waiting.values())}")
        for why in waiting.values():
            print(f"{stage}: waiting: {why}", flush=True)
    by_scope: dict[tuple[str, str], list[dict[str, str]]] = {}
    for overrides in runs:
        by_scope.setdefault(scope_of[run_name(overrides)], []).append(overrides)
    failures, count, not_final = 0, 0, {}
    # A search finishes one model and data set (edges included) before the next, so that the stage at its
    # rates can start there while the search goes on elsewhere.
    for scoped in by_scope.values():
        for overrides in scoped:
            count += 1
            if budget.spent():
                print(f"{stage}: --hours spent; {len(runs) - count + 1} runs left for the next session", flush=True)
                return failures
            status, minutes = train(stage, overrides, extra)
            failures += status.startswith("failed")
            if status != "done":
                print(f"[{count}/{len(runs)}] {run_name(overrides)}: {status} in {minutes:.1f} min", flush=True)
        if stage.startswith("lr_search"):
            failures += extend_edges(stage, scoped, extra, budget, extend)
            not_final = write_final_rates(stage, extend)
    for why in not_final.values():  # another worker's runs, a failed run's, or left by --hours
        print(f"not written: {why}", flush=True)
    return failures


def write_final_rates(stage: str, extend: int) -> dict[tuple[str, str], str]:
    """Write the rates of every model and data set whose search is final into sweeps/tuned_lr.yaml, under the
    tables' lock (another worker's append or write cannot interleave); returns what the others wait for."""
    with appending(ROOT / "results" / stage):
        final, waiting = search_state(stage, extend)
        if final:
            chosen: dict[str, dict[str, dict]] = {}
            for (model, data), entries in final.items():
                chosen.setdefault(model, {})[data] = entries
            write_tuned_lr(chosen, tuned_lr_path())
    if final:
        print(f"written: {tuned_lr_path()} for " + ", ".join(f"model={m} data={d}" for m, d in final), flush=True)
    return waiting


def extend_edges(stage: str, runs: list[dict[str, str]], extra: list[str], budget: Budget, extend: int) -> int:
    """Rates beyond the edge a configuration's best rate sits at, with the seeds of its grid."""
    failures = 0
    for _ in range(extend):
        records = read_records(stage)
        chosen = choose_learning_rates(records.values())
        added = []
        for overrides in runs:
            if LR not in overrides:
                raise ConfigError(f"sweeps/sweep/{stage}.yaml: its grid has no {LR}")
            record = records.get(run_name(overrides))
            entry = chosen_entry(chosen, record) if record else None
            if entry is None or entry["edge"] is None:
                continue
            rate = half_decade(entry["lr"], -1 if entry["edge"] == "lowest" else +1)
            candidate = {**overrides, LR: f"{rate:g}"}
            if candidate not in added and candidate not in runs:
                added.append(candidate)
        if not added:
            return failures
        for overrides in added:
            if budget.spent():
                return failures
            status, minutes = train(stage, overrides, extra)
            failures += status.startswith("failed")
            print(f"[edge] {run_name(overrides)}: {status} in {minutes:.1f} min", flush=True)
        runs = runs + added
    return failures


def record_key(record: dict[str, Any]) -> tuple[str, str, str]:
    """The model, data set and tuning key of a trial record: where `choose_learning_rates` files it."""
    config = record.get("config") or {}
    key = tuning_key(config.get("method") or {}, config.get("adapt") or {})
    return str((config.get("model") or {}).get("name")), str((config.get("data") or {}).get("name")), key


def chosen_entry(chosen: dict, record: dict[str, Any]) -> dict | None:
    """The tuned entry of the configuration a trial record belongs to."""
    model, data, key = record_key(record)
    return ((chosen.get(model) or {}).get(data) or {}).get(key)


# Minutes per run where the tables hold fewer than MEASURED_AT_LEAST fresh runs of a model: tiny.en's first
# run took about 7.6 s per update with its validations (one thread beside a second worker) and Whisper runs
# go on for several hundred updates; base costs about 2.5 times tiny.en (docs/protocol.md, Cost).
GUESSED_MINUTES = {"owsm_tiny_pretrained": 13.0, "whisper_tiny_en": 80.0, "whisper_base": 200.0}
MEASURED_AT_LEAST = 3


def run_minutes(records) -> dict[str, list[float]]:
    """Wall minutes of each completed run the records hold that ran in one go (a resumed run's clock
    includes its pause), by model."""
    minutes: dict[str, list[float]] = {}
    for record in records:
        if record.get("status") != "completed" or record.get("resumed_from") or not record.get("finished_at"):
            continue
        elapsed = dt.datetime.fromisoformat(record["finished_at"]) - dt.datetime.fromisoformat(record["started_at"])
        model = str(((record.get("config") or {}).get("model") or {}).get("name"))
        minutes.setdefault(model, []).append(elapsed.total_seconds() / 60)
    return minutes


def minutes_per_run(records, guessed: dict[str, float]) -> dict[str, tuple[float, str]]:
    """Per model: the median measured minutes when enough runs measure it, else the guess; and which."""
    measured = run_minutes(records)
    estimate = {model: (minutes, "guessed") for model, minutes in guessed.items()}
    for model, values in measured.items():
        if len(values) >= MEASURED_AT_LEAST:
            estimate[model] = (statistics.median(values), f"median of {len(values)} runs")
    return estimate


def plan(guessed: dict[str, float]) -> None:
    """Runs per stage, model and data set, how many the committed tables hold, and the hours the rest take on
    this machine, one run at a time (the LR searches without their edge extensions). A stage's runs of the
    seeds its LR search trained are scored from the search's checkpoints (`trained_by_search`), so they
    count as no training: where this machine no longer has those checkpoints, they train, and take longer."""
    records = [record for stage in STAGES for record in read_records(stage).values()]
    estimate = minutes_per_run(records, guessed)
    total = 0.0
    for stage in STAGES:
        recorded = table_runs(ROOT / "results" / stage)
        searched_seeds = {overrides.get("seed") for overrides in grid(TUNED_BY[stage])} if stage in TUNED_BY else set()
        by_scope: dict[tuple[str, str], list[int]] = {}
        for overrides, scope in zip(grid(stage), slices(stage)):
            counts = by_scope.setdefault(scope, [0, 0, 0])
            counts[0] += 1
            done = run_name(overrides) in recorded
            counts[1] += done
            counts[2] += not done and overrides.get("seed") in searched_seeds
        for (model, data), (runs, done, scored) in by_scope.items():
            minutes, source = estimate.get(model, (float("nan"), "no estimate"))
            hours = (runs - done - scored) * minutes / 60
            total += hours
            from_search = f" ({scored} scored from {TUNED_BY[stage]})" if scored else ""
            print(
                f"{stage:<15} {model:<21} {data:<13} {runs:>4} runs, {done:>4} done, {runs - done:>4} left{from_search} x "
                f"{minutes:5.1f} min ({source}) = {hours:6.1f} h"
            )
    print(f"{'total':<51} {total:.1f} h of one worker on this machine")


def minutes_spec(text: str) -> tuple[str, float]:
    model, _, minutes = text.partition("=")
    try:
        return model, float(minutes)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--minutes {text}: expected MODEL=MINUTES, e.g. whisper_base=200") from None


def worker_spec(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"--worker {text}: expected K/N with 0 <= K < N, e.g. 0/2")
    return int(index), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["plan", "rates", *STAGES])
    parser.add_argument("--hours", type=float, default=None, help="launch no new run after this many hours")
    parser.add_argument("--extend", type=int, default=3, help="LR search: half decades beyond an edge, at most")
    parser.add_argument(
        "--minutes",
        type=minutes_spec,
        nargs="*",
        default=[],
        metavar="MODEL=MINUTES",
        help="plan: minutes per run of a model where the tables measure fewer than 3 of its runs "
        f"(default: {', '.join(f'{k}={v:g}' for k, v in GUESSED_MINUTES.items())})",
    )
    parser.add_argument(
        "--worker",
        type=worker_spec,
        default=(0, 1),
        metavar="K/N",
        help="train only worker K's share (0 <= K < N) of the stage's configurations, "
        "beside N-1 others on the same tables (one core each on a small model)",
    )
    parser.add_argument("extra", nargs="*", help="after --: overrides for every run (e.g. trainer=gpu)")
    args = parser.parse_args()
    stop_on_sigterm()
    try:
        if args.stage == "plan":
            plan({**GUESSED_MINUTES, **dict(args.minutes)})
            return
        if args.stage == "rates":
            for stage in ("lr_search", "lr_search_scale"):
                chosen = choose_learning_rates(read_records(stage).values())
                held = len(read_records(stage))
                print(f"## {stage}: {held} run{'' if held == 1 else 's'} in results/{stage}\n")
                print(search_table(chosen) if chosen else "(none yet)\n")
            return
        failures = run_stage(args.stage, args.extra, Budget(args.hours), args.extend, args.worker)
    except AsrPeftError as err:
        report_error(err)
    print(f"{args.stage}: {failures} failed run(s)" if failures else f"{args.stage}: every run launched completed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
