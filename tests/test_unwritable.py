"""Full disks and read-only places (issue 28, cases 3 and 9): each is one line naming the file or the key,
no traceback, and nothing outside the run directory changes.

A full disk is made real with a file-size limit in a child process (RLIMIT_FSIZE: a write past it fails in
the kernel, with EFBIG where a full disk gives ENOSPC), or by a writer that fails with ENOSPC half-way.
Read-only places are made with chmod; those tests are skipped where permission bits do not stop this
process (root; `setpriv --bounding-set=-dac_override,-dac_read_search,-fowner` runs them as root).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from asr_peft.files import UnwritableError, write_atomically, write_json_atomically
from conftest import ROOT, compose_config
from test_train_e2e import FAST, PYTHON, run_in_process


def read_only_holds() -> bool:
    """Whether a read-only directory refuses this process's writes (root's, with its usual capabilities, it does not)."""
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o555)
        try:
            with tempfile.TemporaryFile(dir=directory):
                return False
        except OSError:
            return True
        finally:
            os.chmod(directory, 0o755)


needs_permissions = pytest.mark.skipif(not read_only_holds(), reason="this user (root) writes into read-only directories")


def snapshot(root: Path, *, outside: Path | None = None) -> dict[str, tuple]:
    """Every path below `root` (but not below `outside`) with its kind, size, mode and modification time."""
    entries = {}
    for path in sorted(root.rglob("*")):
        if outside is not None and (path == outside or outside in path.parents):
            continue
        info = path.lstat()
        entries[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mode, info.st_mtime_ns)
    return entries


def read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def writable_again(tmp_path):
    """Gives write permission back after the test, so that pytest can remove its temporary directory."""
    yield
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def limited_file_size(limit: int):
    """A child process's `preexec_fn`: files cannot grow past `limit` bytes (the write fails, no signal)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: the write returns EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_write_the_disk_refuses_leaves_the_file_as_it_was(tmp_path):
    """A record (JSON) and a checkpoint (torch's zip writer, which reports the failed write as a RuntimeError
    of its own) that do not fit: one line each, the earlier files whole, no temporary file left."""
    target = write_json_atomically(tmp_path / "results.json", {"status": "completed"})
    checkpoint = write_json_atomically(tmp_path / "last.ckpt", {"an earlier": "checkpoint"})
    before = snapshot(tmp_path)
    script = (
        "import torch\n"
        "from asr_peft.files import UnwritableError, write_atomically, write_json_atomically\n"
        "for write in (\n"
        f"    lambda: write_json_atomically({str(target)!r}, {{'decodes': ['x' * 100] * 1000}}),\n"
        f"    lambda: write_atomically({str(checkpoint)!r}, lambda file: torch.save({{'w': torch.zeros(10_000)}}, file)),\n"
        "):\n"
        "    try:\n"
        "        write()\n"
        "    except UnwritableError as err:\n"
        "        print(err)\n"
    )
    child = subprocess.run(
        [PYTHON, "-c", script], capture_output=True, text=True, preexec_fn=limited_file_size(4096), timeout=120
    )
    assert child.stdout.splitlines() == [f"cannot write {target}: File too large", f"cannot write {checkpoint}: File too large"]
    assert "Traceback" not in child.stderr, child.stderr
    assert snapshot(tmp_path) == before

    def half_then_full(file):
        file.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(UnwritableError) as full:
        write_atomically(target, half_then_full)
    assert str(full.value) == f"cannot write {target}: No space left on device"
    assert snapshot(tmp_path) == before


@needs_permissions
def test_a_read_only_log_directory_is_one_line_and_nothing_is_created(tmp_path, capsys, writable_again):
    """Hydra created the run directory below `paths.log_dir` itself: a PermissionError traceback."""
    from asr_peft.cli import setup_environment
    from asr_peft.config.preflight import preflight

    setup_environment()  # as train.py does first: the run directory's name is a resolver's
    logs = tmp_path / "logs"
    logs.mkdir()
    read_only(logs)
    with pytest.raises(SystemExit) as exit_:
        preflight("train", [f"paths.log_dir={logs}", "trainer.max_steps=2"])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: hydra.run.dir={logs / 'train'}/ssvd_p=0.4,") and line.endswith(
        f" is not writable ({logs} is read-only for this user)"
    )
    assert list(logs.iterdir()) == []


@needs_permissions
def test_a_read_only_cache_directory_stops_the_run_before_anything_is_scored(tiny_corpus, tmp_path, monkeypatch, writable_again):
    import asr_peft.training.run as run_module

    def never(*args, **kwargs):
        raise AssertionError("reached")

    monkeypatch.setattr(run_module, "validate_data", never)
    cache = tmp_path / "cache"
    (cache / "baselines").mkdir(parents=True)
    (cache / "baselines" / "earlier.json").write_text("{}")
    read_only(cache)
    before = snapshot(tmp_path, outside=tmp_path / "run")
    with pytest.raises(UnwritableError) as refused:
        run_in_process(["data=manifest", f"data.corpus_dir={tiny_corpus}", f"paths.cache_dir={cache}"], tmp_path / "run")
    assert str(refused.value) == f"paths.cache_dir={cache} is not a writable directory (Permission denied)"
    assert snapshot(tmp_path, outside=tmp_path / "run") == before
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"


def completed_run(run_dir: Path, overrides: list[str]) -> dict:
    """A run directory holding a completed run of `python train.py <overrides> hydra.run.dir=<run_dir>`."""
    from asr_peft.training.results import claim_run_dir, new_record, write_results

    cfg = compose_config("train", [*overrides, f"hydra.run.dir={run_dir}"])
    with open_dict(cfg):
        del cfg["hydra"]
    claim = claim_run_dir(run_dir, cfg)
    plain = OmegaConf.to_container(OmegaConf.merge(cfg, {"paths": {"output_dir": str(run_dir)}}), resolve=True)
    record = {**new_record(plain, run_dir), "status": "completed", "metrics": {"test": {"wer": 0.25, "cer": 0.125}}}
    write_results(run_dir, record)
    claim.release()
    return record


@needs_permissions
def test_a_completed_run_on_a_read_only_archive_shows_its_results(tmp_path, writable_again):
    """Issue 28, case 9: it could not even print its results (and the preflight then refused the directory)."""
    overrides = [*FAST, "trainer.max_steps=2"]
    run_dir = tmp_path / "archive" / "run"
    completed_run(run_dir, overrides)
    read_only(tmp_path / "archive")
    before = snapshot(tmp_path)
    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT), "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    shown = subprocess.run(
        [PYTHON, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert f"{run_dir} already holds this completed run" in shown.stdout
    assert "test" in shown.stdout and "25.0" in shown.stdout  # the recorded WER
    assert snapshot(tmp_path) == before


@needs_permissions
def test_an_unfinished_run_on_a_read_only_archive_is_one_line(tmp_path, writable_again):
    from asr_peft.training.results import claim_run_dir, read_results, write_results

    config = OmegaConf.create({"method": {"name": "ssvd"}, "adapt": {"p": 0.4}})
    claim_run_dir(tmp_path / "run", config).release()
    write_results(tmp_path / "run", {"status": "failed"})
    read_only(tmp_path / "run")
    before = snapshot(tmp_path)
    with pytest.raises(UnwritableError) as refused:
        claim_run_dir(tmp_path / "run", config)
    assert str(refused.value) == f"hydra.run.dir={tmp_path / 'run'} is not a writable directory (Permission denied)"
    assert snapshot(tmp_path) == before and read_results(tmp_path / "run")["status"] == "failed"


@pytest.mark.slow
def test_a_disk_that_fills_while_checkpointing_is_one_line_and_the_rerun_trains(tiny_corpus, tmp_path):
    """Lightning's first checkpoint does not fit (a tiny model's is ~1.5 MB; the files are limited to 500 kB):
    the run stops in one line naming the file, with its record `failed` and no partial file; with space
    again, the same command trains the run to the end."""
    run_dir = tmp_path / "run"
    args = [*FAST, "method=lora", "data=manifest", f"data.corpus_dir={tiny_corpus}", "trainer.max_steps=4"]
    args += ["evaluation.baseline=false", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT), "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    corpus_before = snapshot(tiny_corpus)
    full = subprocess.run(
        [PYTHON, str(ROOT / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        preexec_fn=limited_file_size(500_000),
    )
    checkpoints = run_dir / "checkpoints"
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    [line] = [line for line in full.stderr.splitlines() if line.startswith("error:")]  # and Lightning's start-up lines
    assert line.startswith(f"error: cannot write {checkpoints}/") and line.endswith(".ckpt: File too large")
    assert not any(path.name.endswith(".tmp") for path in run_dir.rglob("*"))
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    rerun = subprocess.run([PYTHON, str(ROOT / "train.py"), *args], capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 4
    assert snapshot(tiny_corpus) == corpus_before
