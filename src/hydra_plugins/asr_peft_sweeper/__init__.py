"""Hydra's grid sweeper, launching each distinct run once (`hydra/sweeper: distinct`, train.py's default).

A grid often holds jobs that train the same thing: `method=lora,ssvd adapt.p=0.1,0.4` crosses LoRA with
SSVD's budget, which LoRA does not read. Each job's run directory is named after what it trains
(asr_peft/training/naming.py), so two jobs with one directory are one run: the later one is not
launched, and a log line names the job it duplicates. The sweep's jobs also share a W&B group
(`sweep_group`, from the environment variable ASR_PEFT_SWEEP), named after the sweep's command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

from hydra._internal.core_plugins import basic_sweeper
from omegaconf import OmegaConf

log = logging.getLogger(__name__)
SWEEP_VARIABLE = "ASR_PEFT_SWEEP"
MAX_GROUP = 128  # W&B's limit on a group name


def sweep_group(task_overrides: list[str]) -> str:
    """The sweep's name from its command line: a sweep file by its name, then the swept keys with their
    values, then the other overrides (`demo`, `method=lora,dora seed=0,1 data=synth_dialect`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(task_overrides)
    files = [o.value() for o in parsed if o.get_key_element().lstrip("+~") == "sweep" and not o.is_sweep_override()]
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.get_key_element().lstrip("+~") != "sweep"]
    group = " ".join([*map(str, files), *swept, *fixed]) or "multirun"
    if len(group) > MAX_GROUP:
        group = f"{group[:MAX_GROUP - 13]}-{hashlib.sha1(group.encode()).hexdigest()[:12]}"
    return group


class DistinctSweeper(basic_sweeper.BasicSweeper):
    def split_arguments(self, overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:
        (jobs,) = basic_sweeper.BasicSweeper.split_arguments(overrides, None)
        os.environ[SWEEP_VARIABLE] = sweep_group(list(self.config.hydra.overrides.task))
        distinct, first_of = [], {}
        for job in jobs:
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
            run_dir = f"{OmegaConf.select(sweep_config, 'hydra.sweep.dir')}/{OmegaConf.select(sweep_config, 'hydra.sweep.subdir')}"
            if run_dir in first_of:
                log.info("not launching %s: it trains what %s trains (%s)", " ".join(job), " ".join(first_of[run_dir]), run_dir)
                continue
            first_of[run_dir] = job
            distinct.append(job)
        if len(distinct) < len(jobs):
            log.info("%d of %d jobs are distinct runs", len(distinct), len(jobs))
        return list(self.split_overrides_to_chunks(distinct, max_batch_size))
