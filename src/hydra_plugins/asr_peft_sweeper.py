"""Hydra's basic sweeper, except that one job whose config does not compose does not stop the sweep.

Hydra composes every job of a batch before it launches any, and one failure (`-m method=nope,vera`:
no `method/nope`) aborts them all with a multi-line error. Here a job that does not compose is
recorded as failed in its own run directory (`results.json`, the one-line error, its overrides), the
error is logged in one line, and the other jobs run. Selected in `configs/train.yaml`
(`override hydra/sweeper: asr_peft`); everything else is Hydra's `BasicSweeper`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Sequence

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)


class RecordingSweeper(BasicSweeper):
    def get_job_batch(self) -> Sequence[Sequence[str]]:
        runnable = []
        for overrides in super().get_job_batch():
            try:
                self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            except (HydraException, OmegaConfBaseException) as err:
                self._record_failure(list(overrides), err)
            else:
                runnable.append(overrides)
        return runnable

    def _record_failure(self, overrides: list[str], err: BaseException) -> None:
        from asr_peft.cli import hydra_error_line
        from asr_peft.training.results import now_iso, write_results

        error = hydra_error_line(err)
        run_dir = self._run_dir(overrides)
        run_dir.mkdir(parents=True, exist_ok=True)
        now = now_iso()
        # What the report can tell about the job: the options it asked for by group.
        choices = {group: {"name": value} for group, _, value in (o.partition("=") for o in overrides)
                   if group in ("method", "model", "data") and value}
        write_results(run_dir, {"status": "failed", "error": f"ConfigCompositionError: {error}", "run_dir": str(run_dir),
                                "overrides": overrides, "started_at": now, "finished_at": now, "metrics": {}, **choices})
        log.error("job %s failed: %s; the sweep goes on", " ".join(overrides), error)

    def _run_dir(self, overrides: list[str]) -> Path:
        """Where the job would have run: the configured sweep subdirectory for its overrides."""
        job = self.config.hydra.job
        parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
        config = copy.deepcopy(self.config)
        with open_dict(config):
            config.hydra.job.override_dirname = get_overrides_dirname(
                parsed, list(job.config.override_dirname.exclude_keys), job.config.override_dirname.item_sep,
                job.config.override_dirname.kv_sep)
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(config)
        try:
            return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        finally:
            HydraConfig.instance().cfg = previous


ConfigStore.instance().store(group="hydra/sweeper", name="asr_peft",
                             node=OmegaConf.create({"_target_": f"{__name__}.RecordingSweeper",
                                                    "max_batch_size": None, "params": None}),
                             provider="asr_peft")
