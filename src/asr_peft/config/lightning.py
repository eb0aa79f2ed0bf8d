"""The `trainer` and `callbacks` groups: Lightning's Trainer and callbacks, typed where the project sets
them; other keys must be arguments of the class they go to (`fields.Instantiated`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from asr_peft.config.fields import (
    Instantiated,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    bool_or,
    choice,
    count_or_fraction,
    problem,
)

# What SpeechLitModule logs during validation: the metrics a checkpoint or early stopping may monitor.
MONITORED_METRICS = ("val_wer", "val_cer", "val_loss")


class Trainer(Instantiated):
    # Checked against the machine by the hardware check, not here.
    accelerator: Any = None
    devices: Any = None
    strategy: Any = None
    precision: Any = None
    num_nodes: PositiveInt = 1
    max_steps: int = -1
    max_epochs: int | None = None
    max_time: str | dict[str, int] | None = None
    val_check_interval: Annotated[Any, count_or_fraction("training steps")] | None = None
    check_val_every_n_epoch: PositiveInt | None = None
    limit_val_batches: Annotated[Any, count_or_fraction("batches")] = 1.0
    num_sanity_val_steps: Annotated[int, Field(ge=-1)] = 0
    accumulate_grad_batches: PositiveInt = 1
    gradient_clip_val: NonNegativeFloat | None = None
    log_every_n_steps: PositiveInt = 50
    enable_progress_bar: bool = True
    deterministic: Annotated[Any, bool_or("warn")] = False
    use_distributed_sampler: bool = False
    # Lightning's profilers by name
    profiler: Annotated[str, choice("simple", "advanced", "pytorch", "xla")] | None = None

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise problem("must be a positive number of optimizer steps (or -1: limited by trainer.max_epochs)")
        return value

    @field_validator("max_epochs")
    @classmethod
    def _epochs(cls, value: int | None) -> int | None:
        if value is not None and (value == 0 or value < -1):
            raise problem("must be a positive number of epochs, or -1 / null for no limit")
        return value


class ModelCheckpoint(Instantiated):
    dirpath: Any = None
    filename: str | None = None
    monitor: Annotated[str, choice(*MONITORED_METRICS)] | None = None
    mode: Annotated[str, choice("min", "max")] = "min"
    save_top_k: Annotated[int, Field(ge=-1)] = 1
    save_last: Annotated[Any, bool_or("link")] = None
    auto_insert_metric_name: bool = True


class EarlyStopping(Instantiated):
    monitor: Annotated[str, choice(*MONITORED_METRICS)]
    mode: Annotated[str, choice("min", "max")] = "min"
    patience: NonNegativeInt = 3
    min_delta: NonNegativeFloat = 0.0


class LearningRateMonitor(Instantiated):
    logging_interval: Annotated[str, choice("step", "epoch")] | None = None


class ProgressBar(Instantiated):
    refresh_rate: NonNegativeInt = 1


class Callbacks(BaseModel):
    """The shipped callbacks by name (each may be removed with `~` or set to null), plus any others."""

    model_config = ConfigDict(strict=True, extra="allow")
    model_checkpoint: ModelCheckpoint | None = None
    early_stopping: EarlyStopping | None = None
    lr_monitor: LearningRateMonitor | None = None
    progress_bar: ProgressBar | None = None

    @model_validator(mode="after")
    def _others_are_instantiable(self):
        for value in (self.model_extra or {}).values():
            if value is not None:
                Instantiated.model_validate(value)
        return self
