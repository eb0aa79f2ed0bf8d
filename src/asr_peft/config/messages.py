"""One line per schema error, `<key>=<value> <what it allows>`: pydantic's errors in the words of the config."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from asr_peft.adapters.registry import METHODS
from asr_peft.config.fields import one_of
from asr_peft.config.resolve import UNRESOLVED

TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping of settings",
    "model_attributes_type": "must be a mapping of settings",
    "missing": "is required",
}
BOUNDS = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}", "less_than_equal": "<= {le}"}


MAX_SHOWN = 80  # a value echoed in an error line: longer ones are cut (a 5,000-character value filled a screen)


def show(value: Any) -> str:
    """A value as the user would write it in an override, cut to `MAX_SHOWN` characters."""
    shown = _shown(value)
    return shown if len(shown) <= MAX_SHOWN else f"{shown[: MAX_SHOWN - 25]}... ({len(shown)} characters)"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe(error: Any, schema: type[BaseModel], missing: set[str]) -> str | None:
    """One line for one pydantic error (`ValidationError.errors()`'s item); None for a value reported already."""
    value = error.get("input")
    if value is UNRESOLVED or (isinstance(value, dict) and UNRESOLVED in value.values()):
        return None  # reported (or resolved by Hydra) already
    loc = list(error["loc"])
    if len(loc) > 1 and loc[0] == "method" and error["type"] != "union_tag_invalid":
        loc.pop(1)  # the discriminated union's tag
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"method.name={show(error['ctx']['tag'])} must be one of: {one_of(METHODS)}"
    if kind == "union_tag_not_found":
        return f"method.name is required (one of: {one_of(METHODS)})"
    key = _dotted(loc)
    if key in missing:
        return f"{key} is required (??? in the config): set {key}=<value>"
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, [str(part) for part in loc[:-1]])
        group = _dotted(loc[:-1]) or "the config"
        return f"{key} is not a setting of {group}" + (f" (it has: {one_of(allowed)})" if allowed else "")
    if kind == "config":
        message = error["msg"]
        sub_key = (error.get("ctx") or {}).get("key")
        if sub_key:  # a dotted key below the validated node (the root's: a cross-group check)
            key = f"{key}.{sub_key}".lstrip(".")
            for part in sub_key.split("."):
                value = value.get(part) if isinstance(value, dict) else value
    elif kind in BOUNDS:
        message = "must be " + BOUNDS[kind].format(**{k: f"{v:g}" for k, v in error["ctx"].items()})
    elif kind == "too_short":
        message = f"must have at least {error['ctx']['min_length']} item(s)"
    elif kind == "too_long":
        message = f"must have at most {error['ctx']['max_length']} item(s)"
    else:
        message = TYPE_MESSAGES.get(kind, error["msg"][:1].lower() + error["msg"][1:])
    if kind == "missing":
        return f"{key} {message}"
    return f"{key}={show(value)} {message}"


def _dotted(loc: list) -> str:
    """`optimizer.betas[1]`: keys joined by dots, list positions in brackets."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys the schema defines at `loc` (for an unknown key's message)."""
    model: Any = schema
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        annotation = fields[part].annotation
        candidates = [
            a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        model = candidates[0]
    return [field.alias or name for name, field in model.model_fields.items()]
