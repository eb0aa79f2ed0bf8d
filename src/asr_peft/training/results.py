"""The run record, `results.json`, and who may write it: what ran, on what, with which outcome.

A record is written for every run: `running` when it starts, then `completed` or `failed`; a run
whose process was killed is noticed (`killed`) by the next start in its directory. A completed record
is never overwritten; a failed or killed one is kept under a timestamped name when the run is tried
again. A run directory belongs to one configuration and one process at a time (`claim_run_dir`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr_peft.errors import ConfigError
from asr_peft.files import UnwritableError, check_writable_directory, open_own_file, write_json_atomically, write_text_atomically

RESULTS_FILE = "results.json"
LOCK_FILE = ".run.lock"
RECORDED_PACKAGES = (
    "torch",
    "torchaudio",
    "espnet",
    "lightning",
    "hydra-core",
    "omegaconf",
    "peft",
    "jiwer",
    "wandb",
    "numpy",
    "asr-peft",
)


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


# What a run's outcome cannot depend on: the committed records (a sweep's driver appends each finished run to
# results/ while the next trains) and the prose. Changes there leave a run's commit clean.
NOT_CODE = ("results", "docs", "*.md")


def git_commit(directory: Path) -> str | None:
    """HEAD of the repository holding the code, with `-dirty` when tracked files other than NOT_CODE have
    uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){path}" for path in NOT_CODE)],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def peak_memory_mb() -> float:
    """Peak accelerator memory when training ran on CUDA, else the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """The run directory's record; a `running` record whose process is gone reads as `killed`."""
    record = _read_record(Path(run_dir))
    if record is not None and record.get("status") == "running" and not _locked_by_another_process(Path(run_dir)):
        record = {**record, "status": "killed", "error": KILLED}
    return record


def _read_record(run_dir: Path, name: str = RESULTS_FILE) -> dict[str, Any] | None:
    path = run_dir / name
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {"status": "unreadable"}
    return record if isinstance(record, dict) else {"status": "unreadable"}


KILLED = (
    "the process ended without writing its record (killed: SIGKILL, out of memory, or the machine went "
    "down); re-running the command resumes from checkpoints/last.ckpt"
)


class RunDirInUse(ConfigError):
    """Another live process holds the run directory: in a sweep, another worker is training that run."""

    def __init__(self, run_dir: Path, owner: str):
        self.owner = owner
        super().__init__(f"{run_dir} is in use by {owner}; wait for it to finish or pick another hydra.run.dir")


class RunClaim:
    """This process's hold on a run directory: an exclusive lock (fcntl) on `.run.lock` for the run's life.

    `completed` is the directory's completed record when the same configuration already finished there.
    """

    def __init__(self, run_dir: Path, handle, completed: dict[str, Any] | None):
        self.run_dir, self._handle, self.completed = run_dir, handle, completed

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def claim_run_dir(run_dir: Path, config: DictConfig) -> RunClaim:
    """Take `run_dir` for the run `config` describes, or refuse in one line.

    A run directory belongs to one configuration (its `.hydra/config.yaml`, compared unresolved and key
    by key, except the keys that change neither what is trained nor how it is scored: the rule that names
    run directories, `training/naming.py`) and to one process at a time (the lock). A completed record of the same configuration is
    returned in the claim, never overwritten; a failed one is kept aside under a timestamped name, and
    so is a `running` one whose process died (marked `killed`). The composed config is written to
    `.hydra/` (Hydra's own copy is switched off in train.yaml so that it cannot overwrite another
    configuration's) and the record starts as `running`.
    """
    run_dir = Path(run_dir)
    try:
        check_writable_directory(run_dir, "hydra.run.dir")
    except UnwritableError:
        existing = _read_record(run_dir)  # a completed run on a read-only archive can still show its results
        if existing is None or existing.get("status") != "completed":
            raise
        _check_same_configuration(run_dir, config)
        return RunClaim(run_dir, None, existing)
    handle = os.fdopen(open_own_file(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunDirInUse(run_dir, owner) from None
    claim = RunClaim(run_dir, handle, None)
    try:
        _check_same_configuration(run_dir, config)
        existing = _read_record(run_dir)
        if existing is not None and existing.get("status") == "running":  # we hold the lock: its process is gone
            existing = {**existing, "status": "killed", "error": KILLED, "killed_noticed_at": now_iso()}
        if existing is not None and existing.get("status") == "completed":
            claim.completed = existing
            return claim
        if existing is not None:
            _keep_aside(run_dir, existing)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}\n")
        handle.flush()
        config_dir = run_dir / ".hydra"
        config_dir.mkdir(exist_ok=True)
        write_text_atomically(config_dir / "config.yaml", OmegaConf.to_yaml(config))
        if HydraConfig.initialized():
            hydra_config = OmegaConf.create({"hydra": HydraConfig.get()})
            write_text_atomically(config_dir / "hydra.yaml", OmegaConf.to_yaml(hydra_config))
            write_text_atomically(config_dir / "overrides.yaml", OmegaConf.to_yaml(HydraConfig.get().overrides.task))
    except BaseException:
        claim.release()
        raise
    return claim


def aside_path(path: Path, label: str) -> Path:
    """Where an earlier attempt's `path` is kept: `<stem>.<label>-<time><suffix>` beside it."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return path.with_name(f"{path.stem}.{label}-{stamp}{path.suffix}")


def _keep_aside(run_dir: Path, record: dict[str, Any]) -> None:
    """A failed or killed record moves to `results.<status>-<time>.json`; the directory's history stays."""
    aside = aside_path(run_dir / RESULTS_FILE, record.get("status", "old"))
    if record.get("status") == "killed":  # the record as it was left, with what is now known
        write_json_atomically(aside, record, indent=2)
        (run_dir / RESULTS_FILE).unlink()
    else:
        (run_dir / RESULTS_FILE).rename(aside)


def _check_same_configuration(run_dir: Path, config: DictConfig) -> None:
    """Refuse `config` in a run directory of another configuration: the one in `.hydra/config.yaml`
    (unresolved), or, where `.hydra/` is gone (`cp run/*`, `rsync --exclude='.*'`), the one the run's
    record holds (`config`, resolved)."""
    from asr_peft.training.naming import has_no_effect, method_reads

    recorded = _recorded_configuration(run_dir)
    if recorded is None:
        return
    before, source, resolved = recorded
    now = _flat(resolved_or_raw(config) if resolved else OmegaConf.to_container(config, resolve=False))
    method = now.get("method.name")
    for key in sorted(before.keys() & now.keys()):
        if before[key] != now[key] and not has_no_effect(key) and method_reads(method, key):
            if not resolved and _resolve_alike(run_dir / ".hydra" / "config.yaml", config, key):
                continue  # written differently, the same value (a sweep's `${tuned_lr:}` giving the default rate)
            raise ConfigError(
                f"{run_dir} holds a run of another configuration ({key}={before[key]} there, "
                f"{now[key]} here{'' if source is None else f', as its {source} records'}); pick another "
                "hydra.run.dir or delete that directory"
            )


def _resolve_alike(saved: Path, config: DictConfig, key: str) -> bool:
    """Whether `key` resolves to the same value in the saved config as in `config` (False where either fails
    to resolve): the rule that names runs (`training/naming.py`) counts such a key as no difference."""
    try:
        before = OmegaConf.create(
            _in_current_keys(OmegaConf.to_container(OmegaConf.load(saved), resolve=False), saved.parents[1])
        )
        values = [OmegaConf.select(node, key, throw_on_missing=True) for node in (before, config)]
        plain = [OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for v in values]
    except Exception:  # noqa: BLE001 - a value that does not resolve cannot prove sameness
        return False
    return plain[0] == plain[1]


def _recorded_configuration(run_dir: Path) -> tuple[dict[str, Any], str | None, bool] | None:
    """(the flat configuration a run directory belongs to, the record it came from when not .hydra/,
    whether it is resolved); None for a directory without either."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        try:
            config = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
        except Exception:  # noqa: BLE001 - an unreadable config cannot prove ownership either way
            raise ConfigError(
                f"{saved} is unreadable; this run directory's configuration is unknown, pick another hydra.run.dir"
            ) from None
        return _flat(_in_current_keys(config, run_dir)), None, False
    records = sorted(run_dir.glob("results.*.json"), key=lambda path: path.stat().st_mtime)
    for path in [run_dir / RESULTS_FILE, *reversed(records)]:
        record = _read_record(run_dir, path.name) if path.is_file() else None
        if record is not None and isinstance(record.get("config"), dict):
            return _flat(_in_current_keys(record["config"], run_dir)), path.name, True
    return None


def _in_current_keys(config: Any, run_dir: Path) -> Any:
    """A saved configuration with its method in today's keys (`current_method`; the run's checkpoints may be resumed)."""
    from asr_peft.adapters.ssvd import current_method

    if isinstance(config, dict) and isinstance(config.get("method"), dict):
        return {**config, "method": current_method(config["method"], trained_in=str(run_dir))}
    return config


def resolved_or_raw(config: DictConfig) -> dict[str, Any]:
    """The config resolved where it resolves; an invalid one as it is (validate_config names the problem,
    and the record must still be written)."""
    try:
        return cast(dict[str, Any], OmegaConf.to_container(config, resolve=True))
    except Exception:  # noqa: BLE001
        return cast(dict[str, Any], OmegaConf.to_container(config, resolve=False))


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flat(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _locked_by_another_process(run_dir: Path) -> bool:
    lock = run_dir / LOCK_FILE
    if lock.is_symlink() or not lock.is_file():
        return False
    with os.fdopen(os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def write_results(run_dir: Path, record: dict[str, Any]) -> Path:
    """Write the record atomically (a crash or a full disk mid-write must not leave a half file)."""
    return write_json_atomically(Path(run_dir) / RESULTS_FILE, record, indent=2)


def command_line_overrides() -> list[str]:
    """The overrides of the command (or sweep job) that runs, as Hydra parsed them; [] outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def new_record(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run's record as it starts: what runs, on what; outcomes are filled in as they come."""
    from asr_peft.training.naming import configuration_label

    def name(group: str) -> Any:
        node = cfg.get(group)
        return node.get("name") if isinstance(node, dict) else node

    method, adapt = cfg.get("method"), cfg.get("adapt")
    root = (cfg.get("paths") or {}).get("root_dir")
    return {
        "status": "running",
        "error": None,
        "run_dir": str(run_dir),
        "started_at": now_iso(),
        "finished_at": None,
        "configuration": configuration_label(method, adapt) if isinstance(method, dict) and isinstance(adapt, dict) else None,
        "overrides": command_line_overrides(),
        "method": method,
        "adapt": adapt,
        "model": {"name": name("model")},
        "data": {"name": name("data")},
        "seed": cfg.get("seed"),
        "metrics": {},
        "baseline_metrics": None,
        "parameters": None,
        "train_time_s": None,
        "fit_time_s": None,
        "peak_memory_mb": None,
        "global_step": None,
        "tested_checkpoint": None,
        "tested_step": None,
        "validation_history": [],
        "skipped": {},
        "packages": package_versions(),
        "git_commit": git_commit(Path(root)) if isinstance(root, str) and Path(root).is_dir() else None,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "config": cfg,
    }
