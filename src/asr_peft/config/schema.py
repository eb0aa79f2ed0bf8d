"""The whole config of `train.py` and of `evaluate.py` (one model per config group), with the rules that
span groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from asr_peft.config.data import Data, Loader
from asr_peft.config.evaluation import DECODE_METHODS, TESTED_CHECKPOINTS, Evaluation
from asr_peft.config.fields import Group, Instantiated, choice, one_of, problem
from asr_peft.config.lightning import Callbacks, Trainer
from asr_peft.config.method import Adapt, MethodConfig
from asr_peft.config.model import Model
from asr_peft.config.optimizer import Optimizer
from asr_peft.errors import ConfigError
from asr_peft.training.nonfinite import NONFINITE_LOSS_CHOICES

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


class Paths(Group):
    root_dir: str
    data_dir: str
    log_dir: str
    output_dir: Any = None  # Hydra's run directory
    cache_dir: str
    model_cache_dir: str | None = None


class TrainConfig(Group):
    task_name: str
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    dry_run: bool = False
    activation_checkpointing: bool = False
    on_nonfinite_loss: Annotated[str, choice(*NONFINITE_LOSS_CHOICES)] = "stop"
    sweep_group: str | None = None  # the W&B group of a multirun's jobs
    loader: Loader
    paths: Paths
    model: Model
    method: MethodConfig
    adapt: Adapt
    data: Data
    trainer: Trainer
    logger: dict[str, Instantiated | None] | None = None
    callbacks: Callbacks | None = None
    optimizer: Optimizer
    evaluation: Evaluation

    @model_validator(mode="after")
    def _decode_is_the_familys(self):
        methods, family = DECODE_METHODS[self.model.family], self.model.family
        for key in ("decode", "validation_decode"):
            method = getattr(self.evaluation, key)
            if method is not None and method not in methods:
                raise problem(f"must be one of: {one_of(methods)} for model family {family}", key=f"evaluation.{key}")
        for method in self.evaluation.secondary_decodes:
            if method not in methods:
                message = f"may hold only: {one_of(methods)} for model family {family} (not {method})"
                raise problem(message, key="evaluation.secondary_decodes")
        return self


class EvaluateConfig(Group):
    task_name: str
    run_dir: str
    checkpoint: str = "best"
    paths: Paths
    data: Data | None = None
    evaluation: Evaluation

    @field_validator("run_dir")
    @classmethod
    def _run_dir(cls, value: str) -> str:
        if not Path(value).expanduser().is_dir():
            raise problem("is not a directory (a training run's directory, e.g. outputs/train/<run>)")
        return value

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, value: str) -> str:
        if value not in TESTED_CHECKPOINTS and not Path(value).expanduser().is_file():
            raise problem(f"must be one of: {one_of(TESTED_CHECKPOINTS)}, or the path of a .ckpt file")
        return value


SCHEMAS: dict[str, type[BaseModel]] = {"train": TrainConfig, "evaluate": EvaluateConfig}


def cross_checks(cfg: TrainConfig) -> list[str]:
    """Rules that span keys, one line each."""
    problems = []
    trainer = cfg.trainer
    if trainer.max_steps == -1 and trainer.max_epochs in (None, -1):
        problems.append("trainer.max_steps=-1 needs trainer.max_epochs (a positive number): otherwise training never ends")
    if cfg.data.train is None or cfg.data.valid is None:
        missing = "data.train" if cfg.data.train is None else "data.valid"
        problems.append(f"{missing} is not set (a JSONL manifest or a Kaldi data directory)")
    if cfg.optimizer.scheduler:  # checked here, not after the data, the model and the baseline
        from asr_peft.training.module import espnet_scheduler_class

        try:
            espnet_scheduler_class(cfg.optimizer.scheduler)
        except ConfigError as err:
            problems.append(str(err))
        else:
            problems += [
                f"optimizer.{key} applies only without optimizer.scheduler; set the schedule in optimizer.scheduler_conf"
                for key in ("warmup_steps", "schedule")
                if getattr(cfg.optimizer, key)
            ]
    return problems
