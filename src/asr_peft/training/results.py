"""The run record, `results.json`: what ran, on what, with which outcome.

A record is written for every run, completed or failed. A completed record is never overwritten;
a failed one is kept under a timestamped name when the run is tried again.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from asr_peft.errors import ConfigError

RESULTS_FILE = "results.json"
RECORDED_PACKAGES = ("torch", "torchaudio", "espnet", "lightning", "hydra-core", "omegaconf", "peft", "jiwer",
                     "wandb", "numpy", "asr-peft")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(directory: Path) -> str | None:
    """HEAD of the repository holding the code, with `-dirty` when there are uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def peak_memory_mb() -> float:
    """Peak accelerator memory when training ran on CUDA, else the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def read_results(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"status": "unreadable"}


def claim_run_dir(run_dir: Path) -> None:
    """Make sure a run may write its record here: refuse a completed run, keep a failed one aside."""
    existing = read_results(run_dir)
    if existing is None:
        return
    path = Path(run_dir) / RESULTS_FILE
    if existing.get("status") == "completed":
        raise ConfigError(
            f"{path} already records a completed run; pick another hydra.run.dir (or delete it) to train again")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path.rename(path.with_name(f"results.{existing.get('status', 'old')}-{stamp}.json"))


def write_results(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write the record atomically (a crash mid-write must not leave a half file)."""
    path = Path(run_dir) / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def command_line_overrides() -> list[str]:
    """The overrides of the command (or sweep job) that runs, as Hydra parsed them; [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def new_record(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run's record as it starts: what runs, on what; outcomes are filled in as they come."""
    from asr_peft.training.naming import configuration_label

    return {
        "status": "running", "error": None, "run_dir": str(run_dir), "started_at": now_iso(), "finished_at": None,
        "configuration": configuration_label(cfg["method"], cfg["adapt"]), "overrides": command_line_overrides(),
        "method": cfg["method"], "adapt": cfg["adapt"], "model": {"name": cfg["model"]["name"]},
        "data": {"name": cfg["data"]["name"]}, "seed": cfg["seed"], "metrics": {}, "baseline_metrics": None,
        "parameters": None, "train_time_s": None, "fit_time_s": None, "peak_memory_mb": None, "global_step": None,
        "tested_checkpoint": None, "tested_step": None,
        "validation_history": [], "skipped": {}, "packages": package_versions(),
        "git_commit": git_commit(Path(cfg["paths"]["root_dir"])), "config": cfg,
    }
