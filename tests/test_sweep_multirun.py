"""A Hydra multirun with jobs that fail, at composition (an unknown option) or at run time (a bad value): the
sweep runs the others, and the report shows the failures."""

from __future__ import annotations

import csv
import fcntl
import json
import re
import subprocess
from pathlib import Path

from conftest import ROOT
from test_run_names import name_of
from test_train_e2e import FAST, PYTHON, train_cli


def test_failing_jobs_are_recorded_and_neither_the_sweep_nor_the_report_stops(tiny_corpus, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # method/nope does not exist: those jobs cannot even compose (Hydra would abort the whole sweep before
    # any job ran). r=4096 exceeds every layer's smaller dimension: that job fails when its adapters are
    # built. LoRA does not read SSVD's adapt.p: of the 4 LoRA jobs of the grid, 2 are distinct runs.
    result = train_cli(
        [
            "-m",
            *FAST,
            "method=nope,lora",
            "method.r=4096,2",
            "adapt.p=0.1,0.2",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "evaluation.baseline=false",
            "evaluation.subspace=false",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    assert result.returncode == 1, result.stderr[-3000:]  # issue 28: the sweep goes on, its status says jobs failed
    assert result.stderr.splitlines()[-1].startswith("error: 5 job(s) of the sweep failed (their results.json say why): ")
    console = result.stdout + result.stderr
    assert "2 of 4 jobs are distinct runs" in console and "Launching 2 jobs" in console
    skipped = re.search(r"not launching (.*method\.r=2 adapt\.p=0\.2.*): it trains what (.*) trains \((.*)\)", console)
    assert skipped and "method.r=2 adapt.p=0.1" in skipped.group(2) and "lora_r=2," in skipped.group(3)
    run_dirs = [p.name for p in sweep_dir.iterdir() if p.is_dir()]
    assert sorted(name.split(",")[0] for name in run_dirs if name.startswith("lora_")) == ["lora_r=2", "lora_r=4096"]
    assert len(run_dirs) == 2 + 4  # the jobs that do not compose are recorded under their overrides
    # Both jobs are in one W&B group, named after the sweep's command line.
    groups = {
        record["config"]["sweep_group"]
        for record in map(json.loads, map(Path.read_text, sweep_dir.glob("*/results.json")))
        if "config" in record
    }
    assert len(groups) == 1 and "method.r=4096,2 adapt.p=0.1,0.2" in groups.pop()
    # Bad input is a one-line log entry in a sweep too, not a traceback.
    assert "method.r=4096 must be positive" in console and "Traceback" not in console
    assert (
        console.count(
            "Could not find 'method/nope' (choose from: dora, frozen, full, lora, peft, pissa, ssvd, svft, "
            "vera); the sweep goes on"
        )
        == 4
    )
    records = [json.loads(path.read_text()) for path in sweep_dir.glob("*/results.json")]
    uncomposed = sorted((r for r in records if "method=nope" in r.get("overrides", [])), key=lambda r: r["overrides"])
    assert [r["error"] for r in uncomposed] == 4 * [
        (
            "ConfigCompositionError: In 'train': Could not find 'method/nope' "
            "(choose from: dora, frozen, full, lora, peft, pissa, ssvd, svft, vera)"
        )
    ]
    assert [r["method"] for r in uncomposed] == 4 * [{"name": "nope"}] and "method.r=4096" in uncomposed[3]["overrides"]
    report = subprocess.run(
        [PYTHON, str(ROOT / "report.py"), str(sweep_dir), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    rows = {row["run"]: row for row in csv.DictReader((tmp_path / "report" / "results.csv").open())}
    statuses = sorted((row["status"], row["error"]) for row in rows.values())
    assert [status for status, _ in statuses] == ["completed"] + 5 * ["failed"]
    assert "method.r=4096" in statuses[5][1] and all("\n" not in error for _, error in statuses[1:])
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "failed" in page and "method.r=4096" in page
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0


def test_a_sweep_skips_the_runs_another_process_holds_so_the_same_command_twice_shares_them_out(tiny_corpus, tmp_path):
    """Two workers of one sweep: while this process holds the first job's run directory (as a second `train.py -m`
    of the same command would, training it), the sweep trains the second, leaves the first alone, and finishes
    without a failure."""
    sweep_dir = tmp_path / "sweep"
    job = [
        *FAST,
        "method=lora",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "evaluation.baseline=false",
        "evaluation.subspace=false",
    ]
    held_dir = sweep_dir / name_of([*job, "method.r=2"])
    held_dir.mkdir(parents=True)
    with (held_dir / ".run.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on the-other-worker since now\n")
        held.flush()
        result = train_cli(["-m", *job, "method.r=2,4", f"hydra.sweep.dir={sweep_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert f"skipping {held_dir}: another process is training it (pid 4242 on the-other-worker since now)" in console
    assert "failed" not in console
    # nothing of the run's written there: only Hydra's job log, which notes the skip
    assert sorted(p.name for p in held_dir.iterdir()) == [".run.lock", "train.log"]
    (other,) = [p for p in sweep_dir.iterdir() if p.is_dir() and p != held_dir]
    assert other.name.startswith("lora_r=4") and json.loads((other / "results.json").read_text())["status"] == "completed"
