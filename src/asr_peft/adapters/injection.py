"""Finding the modules an adapter goes on, by module-name pattern, and swapping them in place.

The matching rule (one place, used for every method): a pattern matches a module whose dotted name
either equals the pattern or ends with "." + pattern — a dot-boundary suffix match, as HF PEFT's
list form. So `attn.linear_q` matches `encoder.encoders.0.attn.linear_q` but not
`decoder.decoders.0.self_attn.linear_q` (there the character before "attn" is "_", not a dot); the
decoder's attention needs `self_attn.linear_q` / `src_attn.linear_q` in the list. A pattern that
starts with `re:` is a regular expression that must match the whole name instead.

Every pattern must match something, so a typo is an error. A pattern ending in `?` is optional: it
may match nothing, and it only matches `nn.Linear` modules. That lets one preset serve architectures
whose layers differ: E-Branchformer's `attn`, `cgmlp` and `merge_proj` exist in OWSM but not in a
Transformer encoder (OWLS), and the input projection is `encoder.embed.out.0` under conv2d
subsampling (OWSM v3.1) but `encoder.embed.out` under conv2d8 (OWSM v4), where in v3.1 that name is
the Sequential around it. The list as a whole must still match at least one module.
"""

from __future__ import annotations

import re
from typing import Iterable

from torch import nn

from asr_peft.errors import ConfigError


def is_optional(pattern: str) -> bool:
    return pattern.endswith("?")


def name_matches(name: str, pattern: str) -> bool:
    pattern = pattern.removesuffix("?")
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def match_modules(
    model: nn.Module,
    patterns: Iterable[str],
    *,
    key: str = "adapt.targets",
    optional_type: type[nn.Module] = nn.Linear,
    allow_none: bool = False,
) -> list[tuple[str, str, nn.Module]]:
    """(module name, the pattern that matched, module) for every match; every pattern that is not
    optional must match something, and the list must match at least one module (unless `allow_none`).
    Optional patterns match `optional_type` modules only."""
    patterns = list(patterns or [])
    if not patterns:
        raise ConfigError(f"{key} is empty; list the module-name patterns to adapt")
    matches, used = [], set()
    for name, module in model.named_modules():
        for pattern in patterns:
            if name_matches(name, pattern) and (not is_optional(pattern) or isinstance(module, optional_type)):
                matches.append((name, pattern, module))
                used.add(pattern)
                break
    unused = [p for p in patterns if p not in used and not is_optional(p)]
    if unused:
        raise ConfigError(f"{key}: pattern(s) {', '.join(unused)} match no module of the model")
    if not matches and not allow_none:
        raise ConfigError(f"{key}: none of the optional patterns {', '.join(patterns)} matches a Linear module of the model")
    return matches


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def module_type(name: str) -> str:
    """A module's name without block indices: `encoder.encoders.3.attn.linear_q` -> `encoder.attn.linear_q`."""
    kind = ".".join(part for part in name.split(".") if not part.isdigit() and part not in ("encoders", "decoders"))
    return kind or name
