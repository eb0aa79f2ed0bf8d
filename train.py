"""Train (adapt) an OWSM model: `python train.py [group=option ...] [key=value ...]`.

Examples:
    python train.py                                              # SSVD p=0.4 on the synthetic child task
    python train.py method=ssvd model=owsm_1b adapt.p=0.4 data=myst trainer=gpu
    python train.py -m method=lora,dora,pissa,svft,ssvd adapt.p=0.1,0.2,0.4
    python train.py method=ssvd model=owsm_1b adapt.p=0.4 dry_run=true   # parameter plan, no weights
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from asr_peft.cli import one_line_errors, preflight, setup_environment
from asr_peft.errors import ConfigError

log = logging.getLogger("asr_peft.train")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    from asr_peft.training.objective import validation_objective
    from asr_peft.training.results import read_results
    from asr_peft.training.plan import run_dry
    from asr_peft.training.run import run
    from asr_peft.reporting.plan_table import format_plan

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.dry_run:
        plan = run_dry(cfg, run_dir)
        print(format_plan(plan))
        print(f"plan written to {run_dir / 'plan.json'}")
        return None
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    existing = read_results(run_dir)
    if existing and existing.get("status") == "completed":
        # The same command finds its finished run: nothing is retrained or overwritten (a sweep re-run
        # resumes where it stopped; `make demo` twice shows the first result).
        log.info("skipping %s: already completed", run_dir)
        if not multirun:
            print(f"{run_dir} already holds this completed run; its recorded results follow "
                  f"(delete the directory or pick another hydra.run.dir to train again)")
            _print_summary(existing)
        return validation_objective(existing)
    try:
        record = run(cfg, run_dir)
    except Exception as error:
        if not multirun:
            raise
        # One failing job must not stop a sweep: the failure is recorded in its results.json. Bad
        # input is reported in one line; anything else keeps its traceback for debugging.
        if isinstance(error, ConfigError):
            log.error("run %s failed: %s; the sweep goes on", run_dir, error)
        else:
            log.exception("run %s failed; the sweep goes on", run_dir)
        return None
    _print_summary(record)
    return validation_objective(record)


def _print_summary(record: dict) -> None:
    baseline = record.get("baseline_metrics") or {}
    lines = [f"results: {record['run_dir']}/results.json",
             f"trainable parameters: {record['parameters']['trainable']:,} of {record['parameters']['total']:,}"]
    for name, metrics in (record.get("metrics") or {}).items():
        before = baseline.get(name, {}).get("wer")
        prefix = f"frozen {100 * before:5.1f}% -> " if before is not None else ""
        lines.append(f"  {name:<12} WER {prefix}adapted {100 * metrics['wer']:5.1f}%   CER {100 * metrics['cer']:5.1f}%")
    print("\n".join(lines))


if __name__ == "__main__":
    setup_environment()
    preflight("train", sys.argv[1:])
    main()
