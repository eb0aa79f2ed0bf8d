"""The config as plain values: resolved key by key so that one bad key does not hide the others (the
schema's pass), or at once (`plain`, for the code a checked config is handed to)."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, InterpolationToMissingValueError, MissingMandatoryValue


class _Unresolved:
    """A value that only Hydra's runtime can resolve (`${hydra:...}` outside a Hydra app): not checked."""

    def __repr__(self) -> str:
        return "<resolved by Hydra at run time>"


UNRESOLVED = _Unresolved()


def resolve(
    node: DictConfig | ListConfig, prefix: str, problems: list[str], missing: set[str], skip: tuple[str, ...] = ()
) -> Any:
    """`node` as plain values (dicts, lists, scalars).

    A `???` value becomes None (a required key then fails as such) and its key goes to `missing`; a
    value that refers to a `???` names the missing key in `problems`, as does one that cannot be resolved.
    """
    keys: list[Any] = [k for k in node.keys() if k not in skip] if isinstance(node, DictConfig) else list(range(len(node)))
    out: dict | list = {} if isinstance(node, DictConfig) else []
    for key in keys:
        name = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix[:-1]}[{key}]"
        try:
            value = node[key]
        except MissingMandatoryValue:
            missing.add(name)
            value = None
        except InterpolationToMissingValueError as err:
            found = re.search(r"Missing mandatory value: (\S+)", str(err))
            source = found.group(1) if found else name
            if not any(line.startswith(f"{source} is required") for line in problems):
                problems.append(f"{source} is required (??? in the config; {name} uses it): set {source}=<value>")
            value = UNRESOLVED
        except InterpolationResolutionError as err:
            if "HydraConfig was not set" not in str(err):
                problems.append(f"{name} cannot be resolved: {' '.join(str(err).split()[:30])}")
            value = UNRESOLVED
        if isinstance(value, (DictConfig, ListConfig)):
            value = None if value._is_none() else resolve(value, f"{name}.", problems, missing)
        if isinstance(out, dict):
            out[str(key)] = value
        else:
            out.append(value)
    return out


def plain(node: Any) -> Any:
    """A config node as plain values (dicts, lists, scalars), interpolations resolved; anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
