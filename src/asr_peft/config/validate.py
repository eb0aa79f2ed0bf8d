"""`validate_config(cfg, task)`: every key of a composed config checked in one pass, before any data or
model is loaded.

The config is resolved key by key (a `???` or an interpolation that cannot resolve is an error naming its
key), validated against the schema (`schema.py`; strict types: a value that reaches the code is the value
that was checked), then the rules that span keys, the hardware settings (`training/hardware.py`) and the
method registry's keys; `InvalidConfig` lists every problem, one line each, naming the key and what it
allows:

    optimizer.lr=-1 must be > 0
    data.on_error=ignore must be one of: raise, skip
    data.corpus_dir is required (??? in the config): set data.corpus_dir=<value>

A `???` value is an error only where it is needed: a required key, or one another key's value refers
to (`data=manifest` needs `data.corpus_dir` unless `data.train`, `data.valid` and `data.test` are given).
"""

from __future__ import annotations

from omegaconf import DictConfig
from pydantic import ValidationError

from asr_peft.adapters.registry import get_method
from asr_peft.config.messages import describe
from asr_peft.config.resolve import resolve
from asr_peft.config.schema import SCHEMAS, TrainConfig, cross_checks
from asr_peft.errors import ConfigError
from asr_peft.training.hardware import validate_hardware


class InvalidConfig(ConfigError):
    """Every problem of a config, one line each (`str()` joins them for a one-line record)."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


def validate_config(cfg: DictConfig, task: str = "train", *, check_hardware: bool = True) -> None:
    """Check every key of a composed config (without its `hydra` node); raise `InvalidConfig` listing all problems.

    `check_hardware`: also check the accelerator, strategy, devices and precision against this machine
    (`training/hardware.py`); a dry run plans a GPU run on a laptop, so it leaves them out.
    """
    problems: list[str] = []
    missing: set[str] = set()
    values = resolve(cfg, "", problems, missing, skip=("hydra",))
    try:
        validated = SCHEMAS[task].model_validate(values)
    except ValidationError as err:
        problems += [line for error in err.errors() if (line := describe(error, SCHEMAS[task], missing))]
    else:
        problems += cross_checks(validated) if isinstance(validated, TrainConfig) else []
    if check_hardware and isinstance(values.get("trainer", {}), dict) and isinstance(values.get("evaluation", {}), dict):
        try:
            validate_hardware(values)
        except ConfigError as err:
            problems.append(str(err))
    if task == "train" and isinstance(values.get("method"), dict):
        try:
            get_method(values["method"])  # which keys a method takes: the registry's rule
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise InvalidConfig(list(dict.fromkeys(problems)))
