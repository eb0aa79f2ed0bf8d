"""Train (adapt) a speech model: `python train.py [group=option ...] [key=value ...]`.

Examples:
    python train.py                                              # SSVD p=0.4 on the synthetic child task
    python train.py method=ssvd model=owsm_1b adapt.p=0.4 data=myst trainer=gpu
    python train.py model=whisper_tiny_en data=synth_child method=ssvd adapt.p=0.4
    python train.py -m method=lora,dora,pissa,svft,ssvd adapt.p=0.1,0.2,0.4
    python train.py method=ssvd model=owsm_1b adapt.p=0.4 dry_run=true   # parameter plan, no weights

The job itself is `asr_peft.training.job.train_job`; this file is Hydra's entry point, the check of the
command line before Hydra starts (`preflight`) and the sweep's exit status.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from asr_peft.cli import exit_if_jobs_failed, one_line_errors, setup_environment
from asr_peft.config.preflight import preflight


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    from asr_peft.training.job import train_job

    return train_job(cfg)


if __name__ == "__main__":
    setup_environment()
    sys.argv[1:] = preflight("train", sys.argv[1:])
    main()
    exit_if_jobs_failed()
