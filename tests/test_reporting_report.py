"""report.py end to end on hand-written records: the files, a self-contained dashboard, failed runs and
unreadable files in it, the output-directory rules, test-set selection and offline W&B logging."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys

import pandas as pd
import pytest

from asr_peft.errors import ConfigError
from asr_peft.reporting.report import build_report
from conftest import ROOT
from test_reporting_aggregate import LORA, SSVD, record, write


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    for seed, (child, source) in enumerate([(0.30, 0.12), (0.34, 0.14)]):
        write(
            root / f"ssvd_{seed}",
            record(SSVD, seed, {"source": source, "child": child}, 5000, baseline={"source": 0.1, "child": 0.6}),
        )
    write(root / "lora_0", record(LORA, 0, {"source": 0.20, "child": 0.40}, 20000))
    write(root / "frozen_0", record({"name": "frozen"}, 0, {"source": 0.10, "child": 0.60}, 0))
    write(root / "dora_0", record({"name": "dora", "r": 4, "alpha": 8}, 0, {}, 21000, status="failed"))
    write(root / "cut", '{"status": "completed", "metrics": {"child"')
    (root / "ssvd_0" / "subspace.json").write_text(
        json.dumps(
            {
                "format": 1,
                "overall": {
                    "layers": 4,
                    "input_angle_mean_deg": 5.0,
                    "output_angle_mean_deg": 0.5,
                    "delta_relative_norm": 0.02,
                    "delta_effective_rank": 9.0,
                },
                "layer_types": {},
            }
        )
    )
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "report.py"), *args], capture_output=True, text=True, timeout=300)


def run_cli_in_process(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """report.py's main() without a new interpreter (the imports dominate a subprocess's time)."""
    monkeypatch.setattr(sys, "argv", ["report.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "report.py"), run_name="__main__")
        sys.exit(0)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_writes_the_report_and_the_dashboard_is_self_contained(sweep, tmp_path):
    out = tmp_path / "report"
    result = run_cli(str(sweep), "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("results.csv", "summary.csv", "subspace.csv", "pareto.png", "convergence.png", "subspace.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    assert "4 completed, 1 failed" in result.stdout and f"{sweep / 'cut' / 'results.json'}: " in result.stdout

    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 * 2 + 1 and set(table["status"]) == {"completed", "failed"}
    assert {
        "method",
        "configuration",
        "p",
        "model",
        "data",
        "seed",
        "test_set",
        "wer",
        "cer",
        "trainable",
        "total",
        "train_time_s",
        "peak_memory_mb",
        "status",
        "error",
        "method.r",
        "method.alpha",
    } <= set(table.columns)

    page = (out / "report.html").read_text()
    # Nothing is fetched at view time: no script, stylesheet or image comes from the network.
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", page, re.IGNORECASE)
    assert page.count("<script") >= 2 and "Plotly" in page and 'src="data:image/png;base64,' in page
    runs = page[page.index('id="runs"') :]
    runs = runs[: runs.index("</table>")]
    assert runs.count("<tr") == 1 + 5 and runs.count('class="failed"') == 1 and "RuntimeError: loss is NaN at step 40" in runs
    assert "1 unreadable file(s)" in page and str(sweep / "cut" / "results.json") in page
    # the cross-domain table: a WER column per test set, in the runs' order; ssvd's mean ± std and change against before
    summary = page[page.index('id="summary"') :]
    summary = summary[: summary.index("</table>")]
    assert summary.index("WER source") < summary.index("WER child")
    assert "32.00 ± 2.83" in summary and "-28.0" in summary  # (30 + 34) / 2; sample std; 32 - 60
    assert "Subspace diagnostics" in page and "5.00" in page


def test_out_dir_is_never_overwritten_without_asking(sweep, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli_in_process(monkeypatch, capsys, str(sweep), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: --out {out} is not empty; pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    (out / "subspace.png").write_text("stale, from an earlier report")
    (sweep / "ssvd_0" / "subspace.json").unlink()
    build_report([sweep], out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and not (out / "subspace.png").exists()  # only its own files go
    assert (out / "report.html").is_file()


def test_bad_paths_and_test_sets_are_one_line_errors(sweep, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli_in_process(monkeypatch, capsys, str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert code == 2 and err == f"error: {tmp_path / 'missing'} does not exist\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no results.json below"):
        build_report([empty], tmp_path / "r")
    with pytest.raises(ConfigError, match="--test-set kids is not among the runs' test sets: source, child"):
        build_report([sweep], tmp_path / "r", test_sets=["kids"])
    assert not (tmp_path / "r").exists()  # nothing is created for a refused command


def test_chosen_test_set_limits_the_pareto_panels(sweep, tmp_path):
    build_report([sweep], tmp_path / "all")
    build_report([sweep], tmp_path / "child", test_sets=["child"])
    panels = lambda name: (tmp_path / name / "report.html").read_text().count('<div class="panel">')  # noqa: E731
    assert panels("all") == 2 and panels("child") == 1
    assert "WER source" in (tmp_path / "child" / "report.html").read_text()  # the table still shows every test set


def test_only_unreadable_records_still_give_a_report(tmp_path):
    write(tmp_path / "runs" / "a", "not json at all")
    summary = build_report([tmp_path / "runs"], tmp_path / "report")
    assert summary["runs"] == {} and len(summary["unreadable"]) == 1
    assert "1 unreadable file(s)" in (tmp_path / "report" / "report.html").read_text()


def test_wandb_logs_offline_into_the_report_dir(sweep, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for path in sweep.rglob("results.json"):  # runs of one sweep record its W&B group
        if path.parent.name != "cut":
            content = json.loads(path.read_text())
            content["config"]["sweep_group"] = "+sweep=demo seed=0,1"
            path.write_text(json.dumps(content))
    init = wandb.init
    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs) or init(**kwargs))
    summary = build_report([sweep], tmp_path / "report", wandb=True)
    run_dir = tmp_path / "report" / "wandb"
    offline = list(run_dir.glob("offline-run-*"))
    assert len(offline) == 1 and summary["wandb_dir"] == str(offline[0])
    assert list(offline[0].glob("*.wandb"))  # the run's data, ready for `wandb sync`
    assert calls[0]["group"] == summary["wandb_group"] == "+sweep=demo seed=0,1" and calls[0]["job_type"] == "report"
    # Tables W&B can sort and plot: numbers stay numbers, also where a column misses values.
    (table_file,) = offline[0].glob("files/media/table/results_*.table.json")
    table = json.loads(table_file.read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    completed = [row for row in rows if row["status"] == "completed"]
    assert all(isinstance(row[key], (int, float)) for row in completed for key in ("wer", "cer", "trainable", "seed"))
    assert {row["configuration"] for row in completed} == {"ssvd p=0.4", "lora r=4", "frozen"}
