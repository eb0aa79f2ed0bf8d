"""Per-group budgets: which fraction (`adapt.p`, or a group's own) sizes each adapted module.

`adapt.p_groups` maps a module-name group to a fraction that replaces `adapt.p` for the target modules
in that group, e.g. `{encoder: 0.2, decoder: 0.4}` or `{self_attn: 0.3, feed_forward: 0.5}`. SSVD's
rotation of U has its own fraction, `method.p_out`, and so its own groups, `method.p_out_groups`, read by
the same rule.

The rule (one place, used by every method that reads `adapt.p`): a group key, itself one or more
dot-separated components, matches a module whose dotted name contains those components as a run of
whole components. So `encoder` matches `encoder.encoders.0.attn.linear_q` and `attn` matches that
module too, but `attn` does not match `decoder.decoders.0.self_attn.linear_q` (`self_attn` is another
component), and `feed_forward` does not match `feed_forward_macaron.w_1`. Modules no group matches
keep `adapt.p`. A module matched by two groups is an error (which one would win is not obvious), and so
is a group that matches no target module (a typo must not silently train at `adapt.p`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from asr_peft.adapters.ssvd import PAPER_SIDE, ROTATES_OUTPUT_SIDE
from asr_peft.errors import ConfigError


def group_matches(name: str, group: str) -> bool:
    """Whether `group`'s dot-separated components occur as a run of whole components of module `name`."""
    parts, wanted = name.split("."), group.split(".")
    return any(parts[i : i + len(wanted)] == wanted for i in range(len(parts) - len(wanted) + 1))


def fractions(
    names: Sequence[str], default: float | None, groups: Mapping[str, Any] | None, key: str = "adapt.p_groups"
) -> list[float | None]:
    """The fraction for each module in `names`: its group's from `groups`, or `default` (None: a later default)."""
    groups = dict(groups or {})
    for group, value in groups.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ConfigError(f"{key}.{group}={value!r} must be a fraction in (0, 1]")
    used: set[str] = set()
    result: list[float | None] = []
    for name in names:
        matching = [group for group in groups if group_matches(name, str(group))]
        if len(matching) > 1:
            raise ConfigError(
                f"{key}: module {name} matches groups {matching[0]!r} and {matching[1]!r}; give each module at most one group"
            )
        used.update(matching)
        result.append(groups[matching[0]] if matching else default)
    unused = [str(group) for group in groups if group not in used]
    if unused:
        raise ConfigError(
            f"{key}: group(s) {', '.join(unused)} match no target module (a group is a whole "
            "dot-separated part of a module name, e.g. encoder, self_attn)"
        )
    return result


def layer_settings(
    names: Sequence[str], method: Mapping[str, Any], adapt: Mapping[str, Any]
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(method, adapt) for each target module, with `adapt.p` and `method.p_out` replaced by the module's
    group fractions (`adapt.p_groups`, `method.p_out_groups`)."""
    p_groups, p_out_groups = adapt.get("p_groups"), method.get("p_out_groups")
    if not p_groups and not p_out_groups:
        return [(method, adapt)] * len(names)
    side = method.get("side", PAPER_SIDE)
    if p_out_groups and side not in ROTATES_OUTPUT_SIDE:
        raise ConfigError(
            f"method.p_out_groups sizes the rotation of U (of the larger dimension's vectors under side=larger), "
            f"which method.side={side} leaves alone; set method.side to one of {', '.join(ROTATES_OUTPUT_SIDE)}, "
            "or drop method.p_out_groups"
        )
    ps = fractions(names, adapt.get("p"), p_groups)
    p_outs = fractions(names, method.get("p_out"), p_out_groups, key="method.p_out_groups")
    return [({**method, "p_out": p_out} if p_out_groups else method, {**adapt, "p": p}) for p, p_out in zip(ps, p_outs)]
