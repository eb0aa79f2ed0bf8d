"""The `method` and `adapt` groups: a method's hyperparameters (by method name) and what it adapts."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from asr_peft.adapters.ssvd import FORMULATIONS, PAPER_SIDE, ROTATIONS, SIDES
from asr_peft.adapters.svft import PATTERNS
from asr_peft.config.fields import Fraction, Group, NonNegativeInt, PositiveFloat, PositiveInt, choice


class Method(BaseModel):
    """Type rules of a method's hyperparameters; which keys a method takes is the registry's rule."""

    model_config = ConfigDict(strict=True, extra="allow")


class SSVD(Method):
    name: Literal["ssvd"]
    rotation: Annotated[str, choice(*ROTATIONS)] = ROTATIONS[0]
    formulation: Annotated[str, choice(*FORMULATIONS)] = FORMULATIONS[0]
    side: Annotated[str, choice(*SIDES)] = PAPER_SIDE
    # the fraction of the rotation of U (side=output|both; side=larger: of the larger dimension's vectors); null: adapt.p
    p_out: Fraction | None = None
    # module-name group -> its own p_out, replacing `p_out` for the targets in it (adapters/budget.py)
    p_out_groups: dict[str, Fraction] | None = None


class SVFT(Method):
    name: Literal["svft"]
    pattern: Annotated[str, choice(*PATTERNS)] = PATTERNS[0]
    off_diag: NonNegativeInt = 0
    seed: NonNegativeInt = 0


class LowRank(Method):
    name: Literal["lora", "dora", "pissa"]
    r: PositiveInt
    alpha: PositiveFloat
    embedding_targets: list[str] = []


class VeRA(Method):
    name: Literal["vera"]
    r: PositiveInt
    d_initial: PositiveFloat = 0.1
    projection_seed: NonNegativeInt = 0


class PEFT(Method):
    name: Literal["peft"]
    peft_config: dict[str, Any]


class NoAdapters(Method):
    name: Literal["full", "frozen"]


MethodConfig = Annotated[Union[SSVD, SVFT, LowRank, VeRA, PEFT, NoAdapters], Field(discriminator="name")]


class Adapt(Group):
    p: Fraction
    targets: Annotated[list[str], Field(min_length=1)]
    # module-name group -> its own p, replacing `p` for the targets in it (adapters/budget.py)
    p_groups: dict[str, Fraction] | None = None
