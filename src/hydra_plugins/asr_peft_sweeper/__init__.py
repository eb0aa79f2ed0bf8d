"""Hydra's grid sweeper with two changes (`hydra/sweeper: grid`, train.py's default for `-m`).

- Each distinct run is launched once. A grid often holds jobs that train the same thing:
  `method=lora,ssvd adapt.p=0.1,0.4` crosses LoRA with SSVD's budget, which LoRA does not read. Each
  job's run directory is named after what it trains (asr_peft/training/naming.py), so two jobs with one
  directory are one run: the later one is not launched, and a log line names the job it duplicates.
- A job whose config does not compose does not stop the sweep. Hydra composes every job before it
  launches any, and one failure (`-m method=nope,vera`: no `method/nope`) would abort them all with a
  multi-line error. Here such a job is recorded as failed (`results.json` with the one-line error and
  its overrides, in `<sweep dir>/<its overrides>`, since it has no config to name a run after), the
  error is logged in one line, and the other jobs run.

The sweep's jobs also share a W&B group (`sweep_group`, from the environment variable ASR_PEFT_SWEEP),
named after the sweep's command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)
SWEEP_VARIABLE = "ASR_PEFT_SWEEP"
MAX_GROUP = 128  # W&B's limit on a group name


def sweep_group(task_overrides: list[str]) -> str:
    """The sweep's name from its command line: a sweep file by its name, then the swept keys with their
    values, then the other overrides (`demo`, `method=lora,dora seed=0,1 data=synth_dialect`)."""
    parsed = OverridesParser.create().parse_overrides(task_overrides)
    files = [o.value() for o in parsed if o.get_key_element().lstrip("+~") == "sweep" and not o.is_sweep_override()]
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.get_key_element().lstrip("+~") != "sweep"]
    group = " ".join([*map(str, files), *swept, *fixed]) or "multirun"
    if len(group) > MAX_GROUP:
        group = f"{group[: MAX_GROUP - 13]}-{hashlib.sha1(group.encode()).hexdigest()[:12]}"
    return group


class GridSweeper(BasicSweeper):
    def split_arguments(self, overrides: Any, max_batch_size: int | None) -> list[list[list[str]]]:
        from asr_peft.errors import AsrPeftError

        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        os.environ[SWEEP_VARIABLE] = sweep_group(list(self.config.hydra.overrides.task))
        distinct, first_of, composed = [], {}, 0
        for job in jobs:
            try:
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
                run_dir = (
                    f"{OmegaConf.select(sweep_config, 'hydra.sweep.dir')}/{OmegaConf.select(sweep_config, 'hydra.sweep.subdir')}"
                )
            except (HydraException, OmegaConfBaseException, AsrPeftError) as err:
                self._record_failure(list(job), err)
                continue
            composed += 1
            if run_dir in first_of:
                log.info("not launching %s: it trains what %s trains (%s)", " ".join(job), " ".join(first_of[run_dir]), run_dir)
                continue
            first_of[run_dir] = job
            distinct.append(job)
        if len(distinct) < composed:
            log.info("%d of %d jobs are distinct runs", len(distinct), composed)
        return list(self.split_overrides_to_chunks(distinct, max_batch_size))

    def _record_failure(self, overrides: list[str], err: BaseException) -> None:
        from asr_peft.cli import FAILED_JOBS
        from asr_peft.config.preflight import hydra_error_line
        from asr_peft.training.results import now_iso, write_results

        error = hydra_error_line(err)
        run_dir = self._failure_dir(overrides)
        run_dir.mkdir(parents=True, exist_ok=True)
        now = now_iso()
        # What the report can tell about the job: the options it asked for by group.
        choices = {
            group: {"name": value}
            for group, _, value in (o.partition("=") for o in overrides)
            if group in ("method", "model", "data") and value
        }
        write_results(
            run_dir,
            {
                "status": "failed",
                "error": f"ConfigCompositionError: {error}",
                "run_dir": str(run_dir),
                "overrides": overrides,
                "started_at": now,
                "finished_at": now,
                "metrics": {},
                **choices,
            },
        )
        log.error("job %s failed: %s; the sweep goes on", " ".join(overrides), error)
        FAILED_JOBS.append(str(run_dir))

    def _failure_dir(self, overrides: list[str]) -> Path:
        """`<sweep dir>/<the job's overrides>` (a legal, bounded file name): a job that does not compose has
        no config to name its run after."""
        from asr_peft.cli import overrides_name

        naming = self.config.hydra.job.config.override_dirname
        parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
        name = get_overrides_dirname(parsed, list(naming.exclude_keys), naming.item_sep, naming.kv_sep)
        return Path(str(self.config.hydra.sweep.dir)) / overrides_name(name)
