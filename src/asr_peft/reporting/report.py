"""Building a report directory from run records.

Outputs: results.csv (a row per run and test set), summary.csv (mean ± std over seeds), significance.csv
(each configuration against the lowest-WER one and the model before adaptation, paired bootstrap),
claims.csv (the papers' claims: evidence, effect with its interval, Holm-adjusted p, verdict),
convergence.csv (per configuration: the update its runs stopped at, how many hit the cap, updates to 90%
of the dev gain), subspace.csv (a row per run and layer type, when runs left subspace.json), pareto.png,
forgetting.png, tradeoff.png, convergence.png, subspace.png, report.html and report.md (the results and claims tables in
Markdown); with `wandb=True` also a W&B run
under `wandb/`, in the group of the sweep its runs came from (offline unless WANDB_MODE says otherwise; upload later with
`wandb sync <out>/wandb/offline-run-*`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pandas as pd

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import (
    collect,
    convergence_frame,
    ordered_test_sets,
    subspace_frame,
    subspace_summary,
    summarise,
    to_frame,
)
from asr_peft.reporting.claims import check_claims
from asr_peft.reporting.convergence import convergence_summary, run_convergence
from asr_peft.reporting.dashboard import write_dashboard
from asr_peft.reporting.digest import write_digest
from asr_peft.reporting.figures import (
    convergence_figure,
    forgetting_figure,
    method_colours,
    pareto_figure,
    subspace_figure,
    tradeoff_figure,
)
from asr_peft.reporting.ranking import rank_configurations
from asr_peft.reporting.selection import selection_frame

OUTPUTS = (
    "results.csv",
    "summary.csv",
    "significance.csv",
    "claims.csv",
    "convergence.csv",
    "subspace.csv",
    "pareto.png",
    "forgetting.png",
    "tradeoff.png",
    "convergence.png",
    "subspace.png",
    "report.html",
    "report.md",
)


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty directory unless `overwrite`; then only this report's own files are replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"--out {out_dir} is not empty; pass --overwrite to replace its report, or choose another directory"
            )
        for name in OUTPUTS:  # a stale figure from an earlier report must not pass for this one
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def build_report(
    paths: list[str | Path],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    wandb: bool = False,
    test_sets: list[str] | None = None,
    wandb_group: str | None = None,
) -> dict[str, Any]:
    """Aggregate every results.json below `paths` into `out_dir`; `test_sets` limits the Pareto panels.

    With `wandb`, the report's W&B run joins `wandb_group`, or else the runs' own group when they share one.
    Returns {"runs": {status: count}, "unreadable": ["path: why", ...], "out_dir": str, "wandb_dir": str | None,
    "wandb_group": str | None, "sweep_groups": [the runs' groups, most runs first]}.
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
            raise ConfigError(
                f"--test-set {unknown[0]} is not among the runs' test sets: {', '.join(ordered_test_sets(frame)) or 'none'}"
            )
        pareto_summary = summary[summary["test_set"].isin(test_sets)]
    prepare_out_dir(out_dir, overwrite)

    colours = method_colours(frame["method"].dropna()) if not frame.empty else {}
    subspace = subspace_frame(collection.runs, frame)
    subspace_means = subspace_summary(subspace)
    convergence = run_convergence(collection.runs, frame)
    stops = convergence_summary(convergence)
    figures = {
        "pareto": pareto_figure(summary, frame, out_dir / "pareto.png", colours, test_sets),
        "forgetting": forgetting_figure(summary, frame, out_dir / "forgetting.png", colours),
        "tradeoff": tradeoff_figure(frame, summary, out_dir / "tradeoff.png"),
        "convergence": convergence_figure(convergence_frame(collection.runs, frame), stops, out_dir / "convergence.png", colours),
    }
    ranking, claims = rank_configurations(frame, summary), check_claims(frame, convergence)
    selection = selection_frame(frame)
    frame.to_csv(out_dir / "results.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    ranking.to_csv(out_dir / "significance.csv", index=False)
    claims.to_csv(out_dir / "claims.csv", index=False)
    stops.to_csv(out_dir / "convergence.csv", index=False)
    if not selection.empty:
        selection.to_csv(out_dir / "selection.csv", index=False)
    write_digest(out_dir / "report.md", summary, claims, test_sets, convergence=convergence, selection=selection)
    if not subspace.empty:
        subspace.to_csv(out_dir / "subspace.csv", index=False)
        figures["subspace"] = subspace_figure(subspace_means, out_dir / "subspace.png", colours)
    write_dashboard(
        out_dir / "report.html",
        frame=frame,
        summary=summary,
        pareto_summary=pareto_summary,
        subspace=subspace_means,
        colours=colours,
        figures=figures,
        unreadable=collection.unreadable,
        ranking=ranking,
        claims=claims,
        convergence=convergence,
    )
    groups = sweep_groups(collection.runs)
    group = wandb_group or (groups[0] if len(groups) == 1 else None)
    wandb_dir = (
        log_to_wandb({"results": frame, "summary": summary, "significance": ranking, "claims": claims}, figures, out_dir, group)
        if wandb
        else None
    )
    statuses = frame.drop_duplicates("run_dir")["status"].value_counts().to_dict() if not frame.empty else {}
    return {
        "runs": statuses,
        "unreadable": collection.unreadable,
        "out_dir": str(out_dir),
        "wandb_dir": wandb_dir,
        "wandb_group": group if wandb else None,
        "sweep_groups": groups,
    }


def sweep_groups(runs: list) -> list[str]:
    """The W&B groups (`sweep_group`: one per sweep) the collected runs were trained in, most runs first."""
    counts: dict[str, int] = {}
    for run in runs:
        group = (run.record.get("config") or {}).get("sweep_group")
        if isinstance(group, str):
            counts[group] = counts.get(group, 0) + 1
    return sorted(counts, key=lambda g: -counts[g])


def log_to_wandb(tables: dict[str, pd.DataFrame], figures: dict[str, Path], out_dir: Path, group: str | None) -> str:
    """The tables (numeric columns stay numbers, so W&B sorts and plots them) and figures as one W&B run
    in `out_dir/wandb`, in the runs' group (offline unless WANDB_MODE is set)."""
    import wandb

    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "asr-peft"),
        job_type="report",
        dir=str(out_dir),
        group=group,
        name=f"report-{out_dir.resolve().name}",
        mode=cast(Any, os.environ.get("WANDB_MODE", "offline")),
    )  # wandb checks its own variable's value
    run.log(
        {
            **{name: wandb.Table(dataframe=_loggable(table)) for name, table in tables.items()},
            **{name: wandb.Image(str(path)) for name, path in figures.items()},
        }
    )
    run.finish()
    return str(Path(run.dir).parent)


def _loggable(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers (a missing one as NaN), also in columns that pandas holds as objects because
    of missing values; text as text, a missing value as an empty cell."""
    columns = {}
    for name, column in frame.items():
        numbers = pd.to_numeric(column, errors="coerce") if column.dtype != bool else column
        is_number = column.dtype != bool and numbers.notna().sum() == column.notna().sum()
        columns[name] = numbers if is_number else column.astype("string").fillna("")
    return pd.DataFrame(columns, index=frame.index)
