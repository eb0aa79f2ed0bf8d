"""A sweep's results as tables (reporting.tables): the report built from the tables is the report built from
the run directories, file for file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import collect
from asr_peft.reporting.report import OUTPUTS, build_report
from asr_peft.reporting.utterance_errors import run_errors
from asr_peft.reporting.tables import DECODES_TABLE, RUNS_TABLE, write_tables
from test_reporting_claims import _errors, write_run
from test_reporting_dashboard import fake_sweep

ROOT = Path(__file__).resolve().parents[1]


def _sweep(root: Path) -> Path:
    """The dashboard's 80 records with validation histories and subspace diagnostics (its cut-off record
    left out: tables hold records only), and, one directory down, runs with per-utterance decodes."""
    fake_sweep(root / "grid")
    shutil.rmtree(root / "grid" / "data=synth_child,+point=ssvd_cayley_p0.2,seed=0")
    ssvd = {"name": "ssvd", "rotation": "approx", "side": "input"}
    for seed in range(3):
        write_run(
            root / "decoded",
            "frozen",
            method={"name": "frozen"},
            p=None,
            trainable=0,
            seed=seed,
            errors={"source": _errors(0.15, seed), "child": _errors(0.6, 10 + seed)},
            baseline={"child": 0.6},
        )
        write_run(
            root / "decoded",
            "ssvd_p0.4",
            method=ssvd,
            p=0.4,
            trainable=50_000,
            seed=seed,
            errors={"source": _errors(0.2, 20 + seed), "child": _errors(0.4, 30 + seed)},
            baseline={"child": 0.6},
        )
        write_run(
            root / "decoded",
            "ssvd_cayley_p0.4",
            method={**ssvd, "rotation": "cayley"},
            p=0.4,
            trainable=50_000,
            seed=seed,
            errors={"source": _errors(0.2, 40 + seed), "child": _errors(0.41, 50 + seed)},
            baseline={"child": 0.6},
        )
    return root


def _outputs(report: Path) -> dict[str, bytes]:
    files = {name: (report / name).read_bytes() for name in OUTPUTS if (report / name).is_file()}
    # what two builds of one dashboard never share: when it was generated and plotly's random element ids
    page = re.sub(rb"generated \d{4}-\d\d-\d\d \d\d:\d\d", b"generated", files["report.html"])
    files["report.html"] = re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"id", page)
    return files


def test_the_report_from_the_tables_is_the_report_from_the_run_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, as a user gives them: the report records each run's path
    sweep = _sweep(Path("sweep"))
    from_directories = build_report([sweep], "from_directories")
    counts = write_tables(sweep)
    runs = pd.read_parquet(sweep / RUNS_TABLE)
    assert counts == {"runs": 89, "decodes": 9 * 2 * 400} and len(runs) == 89
    assert set(runs["run"].str.split("/").str[0]) == {"grid", "decoded"} and runs["subspace"].notna().sum() > 40

    for directory in ("grid", "decoded"):
        shutil.rmtree(sweep / directory)
    run_errors.cache_clear()  # the errors must come from the table, not from the first report's reading
    from_tables = build_report([sweep], "from_tables")

    assert from_tables["runs"] == from_directories["runs"] == {"completed": 88, "failed": 1}
    expected, actual = _outputs(Path("from_directories")), _outputs(Path("from_tables"))
    assert "claims.csv" in expected and "subspace.csv" in expected and "convergence.png" in expected
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name] == expected[name], name
    claims = pd.read_csv("from_tables/claims.csv")
    assert claims.loc[claims["claim"] == "strict_vs_approx", "utterances"].tolist() == [400]  # tested from the table


def test_a_run_directory_beside_the_tables_is_read_once_from_the_directory(tmp_path):
    sweep = _sweep(tmp_path)
    before = collect([sweep]).runs
    write_tables(sweep)
    after = collect([sweep]).runs
    assert [run.directory for run in after] == [run.directory for run in before]  # no run twice, same order
    shutil.rmtree(sweep / "decoded")
    assert [run.record for run in collect([sweep]).runs] == [run.record for run in before]


def test_tables_are_never_overwritten_and_bad_tables_are_named(tmp_path):
    sweep = _sweep(tmp_path / "s")
    write_tables(sweep)
    table = (sweep / DECODES_TABLE).read_bytes()
    with pytest.raises(ConfigError, match=f"{RUNS_TABLE} exists"):
        write_tables(sweep)
    assert (sweep / DECODES_TABLE).read_bytes() == table
    (sweep / RUNS_TABLE).write_text("not parquet")
    result = subprocess.run(
        [sys.executable, str(ROOT / "report.py"), str(sweep), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stderr.startswith(f"error: {sweep / RUNS_TABLE} is not a runs table")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_committed_comparison_tables_give_the_committed_report(tmp_path):
    """report.md from results/comparison_v1's tables is the committed report.md, which the docs' results page
    includes and which was written from the 186 run directories before they left git."""
    build_report([ROOT / "results" / "comparison_v1"], tmp_path / "report")
    committed = (ROOT / "results" / "comparison_v1" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8") == committed
    assert pd.read_csv(tmp_path / "report" / "results.csv")["run"].nunique() == 186
