"""A sweep's results as data: every run below a directory as two Parquet tables, which `report.py` reads
exactly as it reads the run directories (same records, same per-utterance errors, so the same report).

    python -m asr_peft.reporting.tables <sweep dir> [--out <dir>]

- `runs.parquet`, a row per run: `run` (its directory relative to the sweep), `status`, `method`, `data`,
  `model`, `seed` (to read at a glance), `record` (results.json as written: metrics, configuration,
  validation history, parameters, times) and `subspace` (subspace.json, or null).
- `decodes.parquet`, a row per run, test set and utterance, in trn order: `run`, `test_set`, `utterance`
  (the trn id), `reference` and `hypothesis` (normalised, as `decode/<test set>/{ref,hyp}.trn` hold them),
  `errors` (substitutions + deletions + insertions) and `reference_words`.

`report.py <dir>` on a directory holding these tables reads its runs from them; a run directory below it
that the tables do not hold (or that is there again) is read from the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from asr_peft.errors import AsrPeftError, ConfigError
from asr_peft.reporting.aggregate import Run, collect
from asr_peft.reporting.utterance_errors import UtteranceErrors, read_trn_pair, score_utterances

RUNS_TABLE = "runs.parquet"
DECODES_TABLE = "decodes.parquet"
RUN_COLUMNS = ["run", "status", "method", "data", "model", "seed", "record", "subspace"]
DECODE_COLUMNS = ["run", "test_set", "utterance", "reference", "hypothesis", "errors", "reference_words"]


def _name(record: dict, group: str) -> str | None:
    value = record.get(group)
    return value.get("name") if isinstance(value, dict) else None


def _decode_rows(run_name: str, run_dir: Path) -> list[dict]:
    rows = []
    decode = run_dir / "decode"
    for set_dir in sorted(p for p in decode.iterdir() if p.is_dir()) if decode.is_dir() else ():
        ref_trn = set_dir / "ref.trn"
        refs, hyps = read_trn_pair(ref_trn, set_dir / "hyp.trn")
        scored = score_utterances(refs, hyps, str(ref_trn))
        rows += [
            {
                "run": run_name,
                "test_set": set_dir.name,
                "utterance": utt,
                "reference": refs[utt],
                "hypothesis": hyps[utt],
                "errors": int(errors),
                "reference_words": int(words),
            }
            for utt, errors, words in zip(scored.ids, scored.errors, scored.ref_words)
        ]
    return rows


def _run_rows(run: Run, name: str) -> tuple[dict[str, Any], list[dict]]:
    subspace = run.directory / "subspace.json"
    row = {
        "run": name,
        "status": run.record.get("status"),
        "method": _name(run.record, "method"),
        "data": _name(run.record, "data"),
        "model": _name(run.record, "model"),
        "seed": run.record.get("seed"),
        "record": (run.directory / "results.json").read_text(encoding="utf-8"),
        "subspace": subspace.read_text(encoding="utf-8") if run.subspace is not None else None,
    }
    return row, _decode_rows(name, run.directory)


def _write(out_dir: Path, runs: list[dict], decodes: list[dict]) -> None:
    """Both tables, each written to a temporary file and renamed over the old one: never a torn table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = {
        RUNS_TABLE: pd.DataFrame(runs, columns=RUN_COLUMNS).astype({"seed": "Int64"}),
        DECODES_TABLE: pd.DataFrame(decodes, columns=DECODE_COLUMNS).astype({"errors": "int64", "reference_words": "int64"}),
    }
    for name, frame in frames.items():
        partial = out_dir / f".{name}.tmp"
        frame.to_parquet(partial, index=False, compression="zstd")
        partial.replace(out_dir / name)


def write_tables(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, int]:
    """The tables of every run below `sweep_dir`, written into `out_dir` (default: `sweep_dir`); never over
    existing tables. Returns {"runs": n, "decodes": n}."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    for name in (RUNS_TABLE, DECODES_TABLE):
        if (out_dir / name).exists():
            raise ConfigError(f"{out_dir / name} exists; remove it first or choose another --out")
    collection = collect([sweep_dir])
    if collection.unreadable:  # the tables hold records only: a report from them could not list these
        raise ConfigError(
            f"{collection.unreadable[0]} (and {len(collection.unreadable) - 1} more): not a run record; fix or move it first"
        )
    if not collection.runs:
        raise ConfigError(f"no results.json below {sweep_dir}")
    runs, decodes = [], []
    for run in collection.runs:
        row, rows = _run_rows(run, run.directory.relative_to(sweep_dir).as_posix())
        runs.append(row)
        decodes += rows
    _write(out_dir, runs, decodes)
    return {"runs": len(runs), "decodes": len(decodes)}


def table_runs(directory: str | Path) -> set[str]:
    """The names of the runs a directory's tables hold (none without tables)."""
    directory = Path(directory)
    return set(pd.read_parquet(directory / RUNS_TABLE, columns=["run"])["run"]) if holds_tables(directory) else set()


def append_run(directory: str | Path, run_dir: str | Path, name: str) -> None:
    """Add one finished run (its directory read as `collect` reads it) to a directory's tables as `name`, which
    the tables must not hold yet: a sweep that spans machines accumulates its runs there."""
    directory = Path(directory)
    collection = collect([run_dir])
    if len(collection.runs) != 1:
        raise ConfigError(f"{run_dir}: not one readable run record")
    row, rows = _run_rows(collection.runs[0], name)
    with appending(directory):
        if name in table_runs(directory):
            raise ConfigError(f"{directory / RUNS_TABLE} holds a run named {name} already")
        runs, decodes = [row], rows
        if holds_tables(directory):
            runs = pd.read_parquet(directory / RUNS_TABLE).to_dict("records") + runs
            decodes = pd.read_parquet(directory / DECODES_TABLE).to_dict("records") + decodes
        _write(directory, runs, decodes)
    _decodes.cache_clear()


@contextlib.contextmanager
def appending(directory: Path):
    """An exclusive lock (fcntl) on the tables' directory while one run is read, added and written back:
    workers of one stage (`scripts/comparison.py --worker`) append to the same tables without losing a run."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def holds_tables(directory: Path) -> bool:
    return (directory / RUNS_TABLE).is_file()


def read_runs(directory: Path) -> list[Run]:
    """The runs of a directory's runs.parquet, each as if read from `<directory>/<run>`."""
    try:
        table = pd.read_parquet(directory / RUNS_TABLE, columns=["run", "record", "subspace"])
    except (OSError, ValueError) as err:
        raise ConfigError(f"{directory / RUNS_TABLE} is not a runs table: {' '.join(str(err).split())}") from err
    return [
        Run(directory / name, json.loads(record), json.loads(subspace) if isinstance(subspace, str) else None)
        for name, record, subspace in table.itertuples(index=False)
    ]


@functools.lru_cache(maxsize=4)
def _decodes(table: Path) -> dict[tuple[str, str], UtteranceErrors]:
    frame = pd.read_parquet(table, columns=["run", "test_set", "utterance", "errors", "reference_words"])
    return {
        (str(run), str(test_set)): UtteranceErrors(
            tuple(rows["utterance"]), rows["errors"].to_numpy(np.int64), rows["reference_words"].to_numpy(np.int64)
        )
        for (run, test_set), rows in frame.groupby(["run", "test_set"], sort=False)
    }


def stored_errors(run_dir: str | Path, test_set: str) -> UtteranceErrors | None:
    """A run's per-utterance errors from the decodes table of the nearest directory above it that holds one."""
    run_dir = Path(run_dir)
    for parent in run_dir.parents:
        if (parent / DECODES_TABLE).is_file():
            return _decodes(parent / DECODES_TABLE).get((run_dir.relative_to(parent).as_posix(), test_set))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the directory whose runs (every results.json below it) go into the tables")
    parser.add_argument("--out", help="where the tables go (default: the sweep directory)")
    args = parser.parse_args()
    try:
        counts = write_tables(args.sweep_dir, args.out)
    except AsrPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    out = args.out or args.sweep_dir
    print(f"{out}/{RUNS_TABLE}: {counts['runs']} runs; {out}/{DECODES_TABLE}: {counts['decodes']} utterance decodes")


if __name__ == "__main__":
    main()
