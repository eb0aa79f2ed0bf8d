"""Aggregation, the Pareto frontier, mean ± std over seeds, failed and malformed records, the dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import collect, configuration_label, summarise, to_frame
from asr_peft.reporting.pareto import pareto_frontier
from asr_peft.reporting.report import build_report
from conftest import ROOT


def record(run_dir, method, seed, wers, trainable, status="completed", p=0.4, history=None):
    return {"status": status, "error": None if status == "completed" else "RuntimeError: boom", "run_dir": str(run_dir),
            "method": method, "adapt": {"p": p, "targets": ["x"]}, "model": {"name": "owsm_tiny"},
            "data": {"name": "synth_child"}, "seed": seed,
            "metrics": {k: {"wer": v, "cer": v / 2} for k, v in wers.items()} if status == "completed" else {},
            "parameters": {"trainable": trainable, "total": 10**6}, "train_time_s": 1.0, "peak_memory_mb": 10.0,
            "validation_history": history or [{"step": 10, "val_wer": 0.5}, {"step": 20, "val_wer": 0.4}]}


@pytest.fixture
def sweep(tmp_path):
    runs = [
        (dict(name="ssvd", rotation="approx"), 0, {"child": 0.30, "source": 0.10}, 5000),
        (dict(name="ssvd", rotation="approx"), 1, {"child": 0.34, "source": 0.12}, 5000),
        (dict(name="lora", r=4, alpha=8), 0, {"child": 0.40, "source": 0.15}, 20000),
        (dict(name="lora", r=4, alpha=8), 1, {"child": 0.38, "source": 0.15}, 20000),
        (dict(name="full"), 0, {"child": 0.20, "source": 0.30}, 10**6),
    ]
    for i, (method, seed, wers, trainable) in enumerate(runs):
        directory = tmp_path / "sweep" / str(i)
        directory.mkdir(parents=True)
        (directory / "results.json").write_text(json.dumps(record(directory, method, seed, wers, trainable)))
    failed = tmp_path / "sweep" / "failed"
    failed.mkdir()
    (failed / "results.json").write_text(json.dumps(record(failed, dict(name="dora", r=4, alpha=8), 0, {}, 21000, status="failed")))
    broken = tmp_path / "sweep" / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    return tmp_path / "sweep"


def test_pareto_frontier_on_hand_made_points():
    parameters = [10, 20, 20, 5, 100, 50, 5]
    errors = [0.5, 0.3, 0.4, 0.6, 0.1, 0.3, 0.6]
    # (5, .6) twice is the cheapest; (10, .5), (20, .3), (100, .1) each improve; (20, .4), (50, .3) are dominated.
    assert pareto_frontier(parameters, errors) == [3, 6, 0, 1, 4]
    assert pareto_frontier([], []) == []


def test_aggregation_mean_and_std_over_seeds(sweep):
    collection = collect([sweep])
    assert len(collection.records) == 6 and len(collection.unreadable) == 1 and "broken" in collection.unreadable[0]
    frame = to_frame(collection.records)
    assert len(frame) == 5 * 2 + 1  # a row per run and test set; the failed run keeps one row
    summary = summarise(frame).set_index(["configuration", "test_set"])
    ssvd = summary.loc[("ssvd rotation=approx p=0.4", "child")]
    assert ssvd["wer_mean"] == pytest.approx(0.32) and ssvd["wer_std"] == pytest.approx(0.028284, rel=1e-4)
    assert ssvd["seeds"] == 2 and ("dora alpha=8 r=4", "child") not in summary.index
    failed = frame[frame["status"] == "failed"].iloc[0]
    assert failed["error"] == "RuntimeError: boom" and failed["method"] == "dora"


def test_configuration_labels():
    assert configuration_label({"name": "ssvd", "rotation": "cayley", "formulation": "efficient"}, {"p": 0.2}) == "ssvd rotation=cayley p=0.2"
    assert configuration_label({"name": "lora", "r": 32, "alpha": 64, "embedding_targets": ["x"]}, {"p": 0.4}) == "lora alpha=64 r=32"


def test_report_files_and_self_contained_dashboard(sweep, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, str(ROOT / "report.py"), str(sweep), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("results.csv", "summary.csv", "pareto.png", "convergence.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?://", page)  # nothing fetched at view time
    assert page.count("<tr") == 1 + 6 and 'class="failed"' in page and "RuntimeError: boom" in page
    assert "Pareto frontier" in page and "unreadable" in result.stdout
    with pytest.raises(ConfigError, match="already holds a report"):
        build_report([sweep], out)
