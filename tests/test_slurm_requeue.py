"""SLURM jobs that reach their time limit are requeued and resume: the path, on submitit's local executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, compose_config
from test_train_e2e import FAST


def test_the_slurm_launcher_requeues_jobs_that_time_out():
    launcher = compose_config("train", ["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.max_num_timeout >= 1
    assert 0 < launcher.signal_delay_s < 60 * launcher.timeout_min


def job_processes(folder: Path) -> list[int]:
    """Processes running a submitit job from `folder` (the job itself, not its controller)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"submitit.core._submit" in command and any(str(folder).encode() in part for part in command):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_job_signalled_at_its_time_limit_is_requeued_and_resumes_from_last_ckpt(tiny_corpus, tmp_path):
    max_num_timeout = compose_config("train", ["hydra/launcher=slurm"]).hydra.launcher.max_num_timeout
    sweep_dir = tmp_path / "sweep"
    # A short time limit (8 minutes) makes submitit count the signal as a timeout, not a preemption:
    # the case max_num_timeout governs. The test sends the signal itself, as SLURM would before the limit.
    args = [
        "-m",
        *FAST,
        "method=ssvd",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        "trainer.max_steps=40",
        "trainer.val_check_interval=2",
        "evaluation.baseline=false",
        "evaluation.subspace=false",
        "~callbacks.early_stopping",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=8",
        f"+hydra.launcher.max_num_timeout={max_num_timeout}",
    ]
    sweep = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "ASR_PEFT_ROOT": str(ROOT)},
    )
    deadline = time.time() + 600
    while not list(sweep_dir.glob("*/checkpoints/last.ckpt")) and time.time() < deadline and sweep.poll() is None:
        time.sleep(0.1)
    (last,) = sweep_dir.glob("*/checkpoints/last.ckpt")
    run_dir = last.parents[1]
    (job,) = job_processes(sweep_dir / ".submitit")
    os.kill(job, signal.SIGUSR2)  # what SLURM sends signal_delay_s before the time limit
    output, _ = sweep.communicate(timeout=900)
    assert sweep.returncode == 0, output[-3000:]

    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 40
    assert record["resumed_from"] == str(last)
    interrupted = [json.loads(p.read_text()) for p in run_dir.glob("results.failed-*.json")]
    assert len(interrupted) == 1 and "SystemExit" in interrupted[0]["error"]  # the first attempt, kept aside
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "this job is timed-out" in logs and "Requeued job" in logs
