"""What the Hydra entry points (train.py, evaluate.py) share: resolvers, environment, error reporting."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, cast

from omegaconf import DictConfig, OmegaConf, open_dict

from asr_peft.errors import AsrPeftError, report_error

ROOT = Path(__file__).resolve().parents[2]


# The run directories of a sweep's jobs that failed (train.py and the sweeper add to it): a sweep goes
# on past a failed job, and its exit status then says that one failed.
FAILED_JOBS: list[str] = []


def exit_if_jobs_failed() -> None:
    if FAILED_JOBS:
        print(
            f"error: {len(FAILED_JOBS)} job(s) of the sweep failed (their results.json say why): "
            f"{', '.join(FAILED_JOBS[:3])}{', ...' if len(FAILED_JOBS) > 3 else ''}",
            file=sys.stderr,
        )
        sys.exit(1)


MAX_OVERRIDES_NAME = 120  # evaluation directories sit inside run directories: leave room


def overrides_name(override_dirname: str) -> str:
    """A directory name from a command line's overrides (evaluate.py's output); `defaults` when there are none.

    Long override lists keep a readable prefix and a hash of the whole list, so the name stays unique,
    stable and a legal file name.
    """
    name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", override_dirname or "")
    if len(name) > MAX_OVERRIDES_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{name[: MAX_OVERRIDES_NAME - 13]}-{digest}"
    return name or "defaults"


@functools.lru_cache(maxsize=64)
def _compose(config_name: str, overrides: tuple[str, ...]) -> tuple[DictConfig, dict[str, str | None]]:
    """A config and its group choices, composed as Hydra would (inside a running app, with its search path)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    else:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    choices = group_choices(cfg.hydra)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def group_choices(hydra_node: Any) -> dict[str, str | None]:
    """Hydra's `runtime.choices`: each config group's chosen option (None where none is chosen)."""
    return cast(dict[str, str | None], OmegaConf.to_container(hydra_node.runtime.choices))


def run_name(*, _root_: DictConfig) -> str:
    """The `run_name` resolver: the run directory's name, from the composed config (training.naming)."""
    from hydra.core.hydra_config import HydraConfig

    from asr_peft.training.naming import GROUPS_SHOWN_BY_NAME, reference_overrides
    from asr_peft.training.naming import run_name as name_of

    hydra_node = _root_.get("hydra") if "hydra" in _root_ else None
    if hydra_node is None:  # a job's own config, whose hydra node Hydra has taken out
        hydra_node = HydraConfig.get()
    choices = group_choices(hydra_node)
    config_name = hydra_node.job.config_name
    # The defaults of the groups the name shows by itself (method, data, model): a model family's config
    # chooses its own defaults for other groups (Whisper: adapt=whisper_all), which are then no override.
    _, default_choices = _compose(
        config_name,
        tuple(f"{group}={choices[group]}" for group in sorted(GROUPS_SHOWN_BY_NAME) if choices.get(group) is not None),
    )
    reference, _ = _compose(config_name, tuple(reference_overrides(choices, default_choices)))
    return name_of(_root_, reference, choices, default_choices)


def tuned_lr(*, _root_: DictConfig) -> float:
    """The `tuned_lr` resolver (`optimizer.lr: ${tuned_lr:}`): the learning rate the LR search chose for
    this run's model, data set and configuration (`training/tuned_lr.py`)."""
    from asr_peft.training.tuned_lr import tuned_lr as chosen

    def part(key: str) -> Any:
        node = OmegaConf.select(_root_, key)
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node

    return chosen(
        {
            "model": {"name": part("model.name")},
            "data": {"name": part("data.name")},
            "method": part("method"),
            "adapt": part("adapt"),
        }
    )


def group_options(group: str) -> str:
    """The `group_options` resolver: `<group>: option, option, ...` for `train.py --help`, found on the
    config search path (sweeps/ is on it), which Hydra's own group listing leaves out."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    loader = GlobalHydra.instance().config_loader()
    options = loader.get_group_options(group, config_name=HydraConfig.get().job.config_name)
    return f"{group}: {', '.join(sorted(options))}"


def quote_path_overrides(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """Quote the values of path overrides (`run_dir=...`) for Hydra's override grammar.

    Run directories are named after their overrides (`method=ssvd,seed=0`), and the grammar reads a bare
    `=` or `,` in a value as syntax; a value the user quoted already is left alone.
    """
    quoted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and value and value[0] not in "'\"":
            arg = f"{key}='{value.replace(chr(39), chr(92) + chr(39))}'"
        quoted.append(arg)
    return quoted


def setup_environment() -> None:
    """Resolvers and defaults that must exist before Hydra composes the config."""
    os.environ.setdefault("ASR_PEFT_ROOT", str(ROOT))
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach for the network unless the user asks
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    for name, resolver in (
        ("run_name", run_name),
        ("overrides_name", overrides_name),
        ("group_options", group_options),
        ("tuned_lr", tuned_lr),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def one_line_errors(main: Callable) -> Callable:
    """Turn the project's errors into `error: <message>` lines and exit status 2, instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except AsrPeftError as err:
            logging.getLogger("asr_peft").debug("error details", exc_info=True)
            report_error(err)

    return wrapper
