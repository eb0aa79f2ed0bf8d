"""Building a report directory from run records.

Outputs: results.csv (a row per run and test set), summary.csv (mean ± std over seeds), subspace.csv
(a row per run and layer type, when runs left subspace.json), pareto.png, convergence.png,
subspace.png and report.html; with `wandb=True` also a W&B run under `wandb/` (offline unless
WANDB_MODE says otherwise; upload later with `wandb sync <out>/wandb/offline-run-*`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import (collect, convergence_frame, ordered_test_sets, subspace_frame, subspace_summary,
                                          summarise, to_frame)
from asr_peft.reporting.dashboard import write_dashboard
from asr_peft.reporting.figures import convergence_figure, method_colours, pareto_figure, subspace_figure

OUTPUTS = ("results.csv", "summary.csv", "subspace.csv", "pareto.png", "convergence.png", "subspace.png", "report.html")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty directory unless `overwrite`; then only this report's own files are replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {out_dir} is not empty; pass --overwrite to replace its report, or choose another directory")
        for name in OUTPUTS:  # a stale figure from an earlier report must not pass for this one
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def build_report(paths: list[str | Path], out_dir: str | Path, *, overwrite: bool = False, wandb: bool = False,
                 test_sets: list[str] | None = None) -> dict[str, Any]:
    """Aggregate every results.json below `paths` into `out_dir`; `test_sets` limits the Pareto panels.

    Returns {"runs": {status: count}, "unreadable": ["path: why", ...], "out_dir": str, "wandb_dir": str | None}.
    """
    out_dir = Path(out_dir)
    collection = collect(paths)
    if not collection.runs and not collection.unreadable:
        raise ConfigError(f"no results.json below {', '.join(str(p) for p in paths)}")
    frame = to_frame(collection.runs)
    summary = summarise(frame)
    pareto_summary = summary
    if test_sets:
        unknown = sorted(set(test_sets) - set(ordered_test_sets(frame)))
        if unknown:
            raise ConfigError(f"--test-set {unknown[0]} is not among the runs' test sets: {', '.join(ordered_test_sets(frame)) or 'none'}")
        pareto_summary = summary[summary["test_set"].isin(test_sets)]
    prepare_out_dir(out_dir, overwrite)

    colours = method_colours(frame["method"].dropna()) if not frame.empty else {}
    subspace = subspace_frame(collection.runs, frame)
    subspace_means = subspace_summary(subspace)
    figures = {"pareto": pareto_figure(pareto_summary, out_dir / "pareto.png", colours),
               "convergence": convergence_figure(convergence_frame(collection.runs, frame), out_dir / "convergence.png", colours)}
    frame.to_csv(out_dir / "results.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    if not subspace.empty:
        subspace.to_csv(out_dir / "subspace.csv", index=False)
        figures["subspace"] = subspace_figure(subspace_means, out_dir / "subspace.png", colours)
    write_dashboard(out_dir / "report.html", frame=frame, summary=summary, pareto_summary=pareto_summary,
                    subspace=subspace_means, colours=colours, figures=figures, unreadable=collection.unreadable)
    wandb_dir = log_to_wandb(frame, summary, figures, out_dir) if wandb else None
    statuses = frame.drop_duplicates("run_dir")["status"].value_counts().to_dict() if not frame.empty else {}
    return {"runs": statuses, "unreadable": collection.unreadable, "out_dir": str(out_dir), "wandb_dir": wandb_dir}


def log_to_wandb(frame: pd.DataFrame, summary: pd.DataFrame, figures: dict[str, Path], out_dir: Path) -> str:
    """The tables and figures as one W&B run in `out_dir/wandb` (offline unless WANDB_MODE is set)."""
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "asr-peft"), job_type="report", dir=str(out_dir),
                     name=f"report-{out_dir.resolve().name}", mode=os.environ.get("WANDB_MODE", "offline"))
    run.log({"results": wandb.Table(dataframe=frame.astype(str)), "summary": wandb.Table(dataframe=summary.astype(str)),
             **{name: wandb.Image(str(path)) for name, path in figures.items()}})
    run.finish()
    return str(Path(run.dir).parent)
