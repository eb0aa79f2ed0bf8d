"""One `train.py` job: a dry-run plan, a completed run shown again, or a run trained; in a sweep, a failing
job recorded without stopping the others. `train.py` is the Hydra entry point around `train_job`."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from asr_peft.cli import FAILED_JOBS
from asr_peft.errors import AsrPeftError

log = logging.getLogger("asr_peft.train")


def train_job(cfg: DictConfig) -> float | None:
    """The job of a composed config; returns the validation objective a sweeper optimises."""
    from lightning.pytorch.utilities import rank_zero_only

    from asr_peft.config.validate import validate_config
    from asr_peft.logs import quiet_dependencies
    from asr_peft.reporting.plan_table import format_plan
    from asr_peft.training.objective import validation_objective
    from asr_peft.training.plan import run_dry
    from asr_peft.training.results import RunDirInUse, claim_run_dir, command_line_overrides
    from asr_peft.training.run import run

    quiet_dependencies()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.dry_run:  # a plan needs no hardware: plan a GPU run on a laptop
        validate_config(cfg, check_hardware=False)
        plan = run_dry(cfg, run_dir)
        print(format_plan(plan))
        print(f"plan written to {run_dir / 'plan.json'}")
        return None
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        claim = None
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # set by Lightning at import
            claim = claim_run_dir(run_dir, cfg)
            if claim.completed is not None:
                # The same command finds its finished run: nothing is retrained or overwritten (a sweep
                # re-run resumes where it stopped; `make demo` twice shows the first result).
                claim.release()
                trained_by = claim.completed.get("overrides")
                if trained_by is not None and trained_by != command_line_overrides():
                    # Run directories are named after what is trained, so another command may have trained this.
                    log.info(
                        "skipping %s: already completed, trained by `%s` (the same configuration)",
                        run_dir,
                        " ".join(trained_by) or "python train.py",
                    )
                else:
                    log.info("skipping %s: already completed", run_dir)
                if not multirun:
                    print(
                        f"{run_dir} already holds this completed run; its recorded results follow "
                        f"(delete the directory or pick another hydra.run.dir to train again)"
                    )
                    print_summary(claim.completed)
                return validation_objective(claim.completed)
        record = run(cfg, run_dir, claim=claim)
    except Exception as error:
        if not multirun:
            raise
        # One failing job must not stop a sweep: the failure is recorded in its results.json. Bad
        # input is reported in one line; anything else keeps its traceback for debugging. A run another
        # process holds is another worker's: the same sweep command started twice shares out its runs.
        if isinstance(error, RunDirInUse):
            log.info("skipping %s: another process is training it (%s)", run_dir, error.owner)
            return None
        FAILED_JOBS.append(str(run_dir))
        if isinstance(error, AsrPeftError):
            log.error("run %s failed: %s; the sweep goes on", run_dir, error)
        else:
            log.exception("run %s failed; the sweep goes on", run_dir)
        return None
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # under DDP every rank runs this; only rank 0 has the scores
        print_summary(record)
    return validation_objective(record)


def print_summary(record: dict) -> None:
    """What the run trained, what was tested, how long it took, and the scores."""
    parameters = record.get("parameters") or {}
    trainable, total = parameters.get("trainable", 0), parameters.get("total", 0)
    share = f" ({100 * trainable / total:.2f}% of the model)" if total else ""
    lines = [
        f"configuration: {record.get('configuration') or record['method'].get('name')}  "
        f"({record['data']['name']}, {record['model']['name']}, seed {record['seed']})",
        f"results: {record['run_dir']}/results.json",
        f"trainable parameters: {trainable:,} of {total:,}{share}",
    ]
    tested = record.get("tested_checkpoint")
    if tested:
        validation = {point.get("step"): point.get("val_wer") for point in record.get("validation_history") or []}
        wer = validation.get(record.get("tested_step"))
        lines.append(
            f"tested checkpoint: {tested} (step {record.get('tested_step')} of {record.get('global_step')}"
            + (f", validation WER {100 * wer:.1f}%)" if wer is not None else ")")
        )
    elif record.get("global_step"):
        lines.append(f"tested: the model after step {record['global_step']} (no checkpoint)")
    times = []
    if record.get("fit_time_s") is not None:
        times.append(f"training {duration(record['fit_time_s'])}")
    if record.get("started_at") and record.get("finished_at"):
        from datetime import datetime

        elapsed = datetime.fromisoformat(record["finished_at"]) - datetime.fromisoformat(record["started_at"])
        times.append(f"{duration(elapsed.total_seconds())} in all (data, baseline, training, testing)")
    if times:
        lines.append("time: " + ", ".join(times))
    baseline = record.get("baseline_metrics") or {}
    for name, metrics in (record.get("metrics") or {}).items():
        before = baseline.get(name, {}).get("wer")
        prefix = f"frozen {100 * before:5.1f}% -> " if before is not None else ""
        lines.append(f"  {name:<12} WER {prefix}adapted {100 * metrics['wer']:5.1f}%   CER {100 * metrics['cer']:5.1f}%")
    print("\n".join(lines))


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
