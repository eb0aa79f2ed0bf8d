"""The `evaluation` group: how test sets are decoded and scored, and which checkpoint is tested."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from asr_peft.config.fields import Group, PositiveFloat, PositiveInt, Probability, choice
from asr_peft.models import FAMILIES, bundle_class

TESTED_CHECKPOINTS = ("best", "last")  # evaluation.checkpoint
DECODE_METHODS = {family: bundle_class({"family": family}).decode_methods for family in FAMILIES}


class Beam(Group):
    beam_size: PositiveInt = 5
    ctc_weight: Probability = 0.3
    penalty: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    maxlenratio: Annotated[float, Field(allow_inf_nan=False)] = 0.0


ANY_DECODE_METHOD = Annotated[str, choice(*sorted({m for methods in DECODE_METHODS.values() for m in methods}))]


class Evaluation(Group):
    decode: ANY_DECODE_METHOD | None = None
    validation_decode: ANY_DECODE_METHOD | None = None
    secondary_decodes: list[ANY_DECODE_METHOD] = []
    validate_before_training: bool = False
    beam: Beam = Beam()
    checkpoint: Annotated[str, choice(*TESTED_CHECKPOINTS)] = "best"
    baseline: bool = True
    subspace: bool = True
    sclite: bool = False
    max_utterances: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    max_batch_seconds: PositiveFloat = 200.0
    progress: bool = True
    device: str | None = None  # checked against the machine by the hardware check
    precision: Any = None
