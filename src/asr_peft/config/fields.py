"""Value types of the config schema (strict, each with a message naming what its key allows) and the base
models of a config group and of a `_target_` node."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


def problem(message: str, key: str | None = None) -> PydanticCustomError:
    """A schema error with its own message; `key`: the sub-key it is about (a model-level check)."""
    return PydanticCustomError("config", message, {"key": key} if key else None)


def one_of(choices) -> str:
    return ", ".join(str(c) for c in choices)


def choice(*choices: str) -> BeforeValidator:
    """`Annotated[str, choice(...)]`: a string restricted to `choices`, with a message listing them."""

    def check(value: Any) -> Any:
        if value not in choices:
            raise problem(f"must be one of: {one_of(choices)}")
        return value

    return BeforeValidator(check)


def count_or_fraction(what: str) -> BeforeValidator:
    """`Annotated[Any, count_or_fraction(...)]`: Lightning's `int | float` knobs, a positive count or a fraction in (0, 1]."""

    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if isinstance(value, float) and 0.0 < value <= 1.0:
            return value
        raise problem(f"must be a positive whole number of {what} or a fraction in (0, 1]")

    return BeforeValidator(check)


def bool_or(*words: str) -> BeforeValidator:
    """`Annotated[Any, bool_or(...)]`: Lightning's `bool | str` knobs (`deterministic: warn`, `save_last: link`)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value is None or value in words:
            return value
        raise problem(f"must be true, false or {one_of(words)}")

    return BeforeValidator(check)


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]  # a share of a layer's rank: (0, 1]
Target = Annotated[str, Field(alias="_target_")]


class Group(BaseModel):
    """A config group: strict types, no keys the group does not define."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, protected_namespaces=())


class Instantiated(BaseModel):
    """A `_target_` node: the keys listed are typed; other keys must be arguments of the target class."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)
    target: Target

    @model_validator(mode="after")
    def _extras_are_arguments(self):
        extra = sorted(self.model_extra or {})
        if extra:
            from hydra.utils import get_class

            try:
                parameters = inspect.signature(get_class(self.target)).parameters
            except Exception:  # noqa: BLE001 - the target itself is reported by whoever instantiates it
                return self
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                unknown = [key for key in extra if key not in parameters]
                if unknown:
                    raise problem(f"is not an argument of {self.target}", key=unknown[0])
        return self
