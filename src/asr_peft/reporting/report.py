"""Building a report directory from run records: results.csv, pareto.png, convergence.png, report.html."""

from __future__ import annotations

import os
from pathlib import Path

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import collect, summarise, to_frame
from asr_peft.reporting.dashboard import write_dashboard
from asr_peft.reporting.figures import convergence_figure, pareto_figure

OUTPUTS = ("results.csv", "summary.csv", "pareto.png", "convergence.png", "report.html")


def build_report(directories: list[str | Path], out_dir: str | Path, *, overwrite: bool = False,
                 wandb: bool = False) -> dict:
    out_dir = Path(out_dir)
    if out_dir.exists() and any((out_dir / name).exists() for name in OUTPUTS) and not overwrite:
        raise ConfigError(f"{out_dir} already holds a report; pass --overwrite or choose another --out")
    collection = collect(directories)
    if not collection.records and not collection.unreadable:
        raise ConfigError(f"no results.json below {', '.join(str(d) for d in directories)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = to_frame(collection.records)
    summary = summarise(frame) if not frame.empty else summarise(frame.assign(status=[], wer=[]))
    frame.to_csv(out_dir / "results.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    pareto_figure(summary, out_dir / "pareto.png")
    convergence_figure(collection.records, out_dir / "convergence.png")
    write_dashboard(frame, summary, out_dir / "report.html", unreadable=collection.unreadable)
    if wandb:
        log_to_wandb(frame, out_dir)
    statuses = frame.drop_duplicates("run_dir")["status"].value_counts().to_dict() if not frame.empty else {}
    return {"runs": statuses, "unreadable": collection.unreadable, "out_dir": str(out_dir)}


def log_to_wandb(frame, out_dir: Path) -> None:
    """The aggregated table and the Pareto figure as one W&B run (offline unless WANDB_MODE says otherwise)."""
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    run = wandb.init(project="asr-peft", job_type="report", dir=str(out_dir), name=f"report-{out_dir.name}")
    run.log({"results": wandb.Table(dataframe=frame.astype(str)), "pareto": wandb.Image(str(out_dir / "pareto.png"))})
    run.finish()
