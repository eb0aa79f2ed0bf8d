"""The `optimizer` group: AdamW's settings and the learning-rate schedule (the project's, or ESPnet's by name)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from asr_peft.config.fields import Group, NonNegativeFloat, NonNegativeInt, PositiveFloat, choice

SCHEDULES = ("constant", "linear")  # SpeechLitModule's LR multiplier after warm-up


class Optimizer(Group):
    lr: PositiveFloat
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.9, 0.98]
    weight_decay: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-8
    scheduler: str | None = None  # an ESPnet scheduler's name, resolved by ESPnet when it builds
    scheduler_conf: dict[str, Any] | None = None
    warmup_steps: NonNegativeInt | None = None
    schedule: Annotated[str, choice(*SCHEDULES)] | None = None
