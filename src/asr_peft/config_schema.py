"""The schema of a composed config: types, ranges and choices of every key a user sets, checked in one
pass before any data or model is loaded.

`validate_config(cfg, task)` resolves the config key by key (a `???` or an interpolation that cannot
resolve is an error naming its key), validates it against the pydantic models below (strict types: a
value that reaches the code is the value that was checked), adds the rules that span keys, and raises
`InvalidConfig` with one line per problem, each naming the key and what it allows:

    optimizer.lr=-1 must be > 0
    data.on_error=ignore must be one of: raise, skip
    data.corpus_dir is required (??? in the config): set data.corpus_dir=<value>

A `???` value is an error only where it is needed: a required key, or one another key's value refers
to (`data=manifest` needs `data.corpus_dir` unless `data.train`, `data.valid` and `data.test` are given).

Choices come from the code that implements them (the method registry, the decoders, the normalisers,
the SSVD/SVFT option tuples), so the schema never drifts from what the code accepts. Free-form groups
stay free where their owner checks them: `model.s2t_config` is ESPnet's, and extra Lightning
arguments (`+trainer.profiler=simple`, `+callbacks.model_checkpoint.every_n_train_steps=10`) are
checked against the signature of the class they go to. The accelerator, device count, strategy and
precision are checked against the machine, and against each other, by `training/hardware.py` in the
same pass (`trainer.accelerator` & co. are typed `Any` here).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from omegaconf import DictConfig, ListConfig
from omegaconf.errors import InterpolationResolutionError, InterpolationToMissingValueError, MissingMandatoryValue
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from asr_peft.adapters.registry import METHODS, get_method
from asr_peft.adapters.ssvd import FORMULATIONS, ORIENTATIONS, ROTATIONS, SIDES
from asr_peft.adapters.svft import PATTERNS
from asr_peft.data.normalizers import NORMALIZERS
from asr_peft.data.validation import ON_ERROR_CHOICES
from asr_peft.errors import ConfigError
from asr_peft.models import FAMILIES, bundle_class
from asr_peft.models.whisper_weights import WEIGHTS as OFFLINE_WHISPER
from asr_peft.training.hardware import validate_hardware
from asr_peft.training.nonfinite import NONFINITE_LOSS_CHOICES

# What SpeechLitModule logs during validation: the metrics a checkpoint or early stopping may monitor.
MONITORED_METRICS = ("val_wer", "val_cer", "val_loss")
SCHEDULES = ("constant", "linear")  # SpeechLitModule's LR multiplier after warm-up
TESTED_CHECKPOINTS = ("best", "last")  # evaluation.checkpoint
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range
DECODE_METHODS = {family: bundle_class({"family": family}).decode_methods for family in FAMILIES}


class InvalidConfig(ConfigError):
    """Every problem of a config, one line each (`str()` joins them for a one-line record)."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


class _Unresolved:
    """A value that only Hydra's runtime can resolve (`${hydra:...}` outside a Hydra app): not checked."""

    def __repr__(self) -> str:
        return "<resolved by Hydra at run time>"


UNRESOLVED = _Unresolved()


def _problem(message: str, key: str | None = None) -> PydanticCustomError:
    """A schema error with its own message; `key`: the sub-key it is about (a model-level check)."""
    return PydanticCustomError("config", message, {"key": key} if key else None)


def _one_of(choices) -> str:
    return ", ".join(str(c) for c in choices)


def choice(*choices: str):
    """A string restricted to `choices`, with a message listing them."""

    def check(value: Any) -> Any:
        if value not in choices:
            raise _problem(f"must be one of: {_one_of(choices)}")
        return value

    return Annotated[str, BeforeValidator(check)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count_or_fraction(what: str):
    """Lightning's `int | float` knobs: a positive count, or a fraction in (0, 1]."""

    def check(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if isinstance(value, float) and 0.0 < value <= 1.0:
            return value
        raise _problem(f"must be a positive whole number of {what} or a fraction in (0, 1]")

    return Annotated[Any, BeforeValidator(check)]


def bool_or(*words: str):
    """Lightning's `bool | str` knobs (`deterministic: warn`, `save_last: link`)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value is None or value in words:
            return value
        raise _problem(f"must be true, false or {_one_of(words)}")

    return Annotated[Any, BeforeValidator(check)]


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
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
                    raise _problem(f"is not an argument of {self.target}", key=unknown[0])
        return self


class Paths(Group):
    root_dir: str
    data_dir: str
    log_dir: str
    output_dir: Any = None  # Hydra's run directory
    cache_dir: str
    model_cache_dir: str | None = None


class Tokenizer(Group):
    type: choice("char", "bpe") = "char"
    bpemodel: str | None = None
    token_list: str | None = None


class Model(Group):
    name: str
    family: choice(*FAMILIES) = "owsm"
    init: choice("pretrained", "random") = "random"
    hf_id: str | None = None
    path: str | None = None
    normalizer: str | None = None  # the family's scoring normaliser, which data.normalizer may follow
    # OWSM (ESPnet)
    tokenizer: Tokenizer | None = None
    vocab_size: PositiveInt | None = None
    speech_length: PositiveFloat | None = None
    s2t_config: dict[str, Any] | None = None  # ESPnet's config.yaml keys, checked by ESPnet when it builds
    # Whisper (transformers)
    architecture: dict[str, Any] | None = None  # WhisperConfig's keys, checked by transformers when it builds
    offline_weights: choice(*OFFLINE_WHISPER) | None = None
    processor_from: str | None = None
    max_new_tokens: PositiveInt | None = None  # decoding's limit on generated tokens (null: the model's, 448)

    @field_validator("path")
    @classmethod
    def _path_is_a_directory(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise _problem("is not a directory (a model directory: ESPnet's exported layout, or a Whisper one)")
        return value


class Method(BaseModel):
    """Type rules of a method's hyperparameters; which keys a method takes is the registry's rule."""

    model_config = ConfigDict(strict=True, extra="allow")


class SSVD(Method):
    name: Literal["ssvd"]
    rotation: choice(*ROTATIONS) = ROTATIONS[0]
    orientation: choice(*ORIENTATIONS) = ORIENTATIONS[0]
    formulation: choice(*FORMULATIONS) = FORMULATIONS[0]
    side: choice(*SIDES) = SIDES[0]
    # the output side's adapt.p (side=output|both); null: adapt.p
    p_out: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    # module-name group -> its own p_out, replacing `p_out` for the targets in it (adapters/budget.py)
    p_out_groups: dict[str, Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] | None = None


class SVFT(Method):
    name: Literal["svft"]
    pattern: choice(*PATTERNS) = PATTERNS[0]
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
    p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    targets: Annotated[list[str], Field(min_length=1)]
    # module-name group -> its own p, replacing `p` for the targets in it (adapters/budget.py)
    p_groups: dict[str, Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] | None = None


class Data(Group):
    name: str
    corpus_dir: str | None = None
    prepare: dict[str, Any] | None = None  # a `_target_` that generates or prepares the corpus
    train: str | None = None
    valid: str | None = None
    test: Annotated[dict[str, str], Field(min_length=1)] | None = None  # {} would test nothing, silently
    language: Annotated[str, Field(min_length=1)] = "eng"
    normalizer: choice(*NORMALIZERS) = "whisper_basic"
    max_duration: PositiveFloat | None = None
    on_error: choice(*ON_ERROR_CHOICES) = "raise"
    resample: bool = True
    speed_perturb: list[Annotated[float, Field(ge=0.5, le=2.0)]] | None = None


class Loader(Group):
    batch_size: PositiveInt | None = None  # fixed-size batches; the sampler asks for one of the two
    max_batch_seconds: PositiveFloat | None = None
    max_batch_size: PositiveInt | None = None
    num_workers: NonNegativeInt = 0


class Trainer(Instantiated):
    # Checked against the machine by the hardware check, not here.
    accelerator: Any = None
    devices: Any = None
    strategy: Any = None
    precision: Any = None
    num_nodes: PositiveInt = 1
    max_steps: int = -1
    max_epochs: int | None = None
    max_time: str | dict[str, int] | None = None
    val_check_interval: count_or_fraction("training steps") | None = None
    check_val_every_n_epoch: PositiveInt | None = None
    limit_val_batches: count_or_fraction("batches") = 1.0
    num_sanity_val_steps: Annotated[int, Field(ge=-1)] = 0
    accumulate_grad_batches: PositiveInt = 1
    gradient_clip_val: NonNegativeFloat | None = None
    log_every_n_steps: PositiveInt = 50
    enable_progress_bar: bool = True
    deterministic: bool_or("warn") = False
    use_distributed_sampler: bool = False
    profiler: choice("simple", "advanced", "pytorch", "xla") | None = None  # Lightning's profilers by name

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise _problem("must be a positive number of optimizer steps (or -1: limited by trainer.max_epochs)")
        return value

    @field_validator("max_epochs")
    @classmethod
    def _epochs(cls, value: int | None) -> int | None:
        if value is not None and (value == 0 or value < -1):
            raise _problem("must be a positive number of epochs, or -1 / null for no limit")
        return value


class ModelCheckpoint(Instantiated):
    dirpath: Any = None
    filename: str | None = None
    monitor: choice(*MONITORED_METRICS) | None = None
    mode: choice("min", "max") = "min"
    save_top_k: Annotated[int, Field(ge=-1)] = 1
    save_last: bool_or("link") = None
    auto_insert_metric_name: bool = True


class EarlyStopping(Instantiated):
    monitor: choice(*MONITORED_METRICS)
    mode: choice("min", "max") = "min"
    patience: NonNegativeInt = 3
    min_delta: NonNegativeFloat = 0.0


class LearningRateMonitor(Instantiated):
    logging_interval: choice("step", "epoch") | None = None


class ProgressBar(Instantiated):
    refresh_rate: NonNegativeInt = 1


class Callbacks(BaseModel):
    """The shipped callbacks by name (each may be removed with `~` or set to null), plus any others."""

    model_config = ConfigDict(strict=True, extra="allow")
    model_checkpoint: ModelCheckpoint | None = None
    early_stopping: EarlyStopping | None = None
    lr_monitor: LearningRateMonitor | None = None
    progress_bar: ProgressBar | None = None

    @model_validator(mode="after")
    def _others_are_instantiable(self):
        for name, value in (self.model_extra or {}).items():
            if value is not None:
                Instantiated.model_validate(value)
        return self


class Optimizer(Group):
    lr: PositiveFloat
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.9, 0.98]
    weight_decay: NonNegativeFloat = 0.0
    eps: PositiveFloat = 1e-8
    scheduler: str | None = None  # an ESPnet scheduler's name, resolved by ESPnet when it builds
    scheduler_conf: dict[str, Any] | None = None
    warmup_steps: NonNegativeInt | None = None
    schedule: choice(*SCHEDULES) | None = None


class Beam(Group):
    beam_size: PositiveInt = 5
    ctc_weight: Probability = 0.3
    penalty: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    maxlenratio: Annotated[float, Field(allow_inf_nan=False)] = 0.0


ANY_DECODE_METHOD = choice(*sorted({m for methods in DECODE_METHODS.values() for m in methods}))


class Evaluation(Group):
    decode: ANY_DECODE_METHOD | None = None
    validation_decode: ANY_DECODE_METHOD | None = None
    secondary_decodes: list[ANY_DECODE_METHOD] = []
    validate_before_training: bool = False
    beam: Beam = Beam()
    checkpoint: choice(*TESTED_CHECKPOINTS) = "best"
    baseline: bool = True
    subspace: bool = True
    sclite: bool = False
    max_utterances: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    max_batch_seconds: PositiveFloat = 200.0
    progress: bool = True
    device: str | None = None  # checked against the machine by the hardware check
    precision: Any = None


class TrainConfig(Group):
    task_name: str
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    dry_run: bool = False
    activation_checkpointing: bool = False
    on_nonfinite_loss: choice(*NONFINITE_LOSS_CHOICES) = "stop"
    sweep_group: str | None = None  # the W&B group of a multirun's jobs
    loader: Loader
    paths: Paths
    model: Model
    method: MethodConfig
    adapt: Adapt
    data: Data
    trainer: Trainer
    logger: dict[str, Instantiated | None] | None = None
    callbacks: Callbacks | None = None
    optimizer: Optimizer
    evaluation: Evaluation

    @model_validator(mode="after")
    def _decode_is_the_familys(self):
        methods, family = DECODE_METHODS[self.model.family], self.model.family
        for key in ("decode", "validation_decode"):
            method = getattr(self.evaluation, key)
            if method is not None and method not in methods:
                raise _problem(f"must be one of: {_one_of(methods)} for model family {family}", key=f"evaluation.{key}")
        for method in self.evaluation.secondary_decodes:
            if method not in methods:
                message = f"may hold only: {_one_of(methods)} for model family {family} (not {method})"
                raise _problem(message, key="evaluation.secondary_decodes")
        return self


class EvaluateConfig(Group):
    task_name: str
    run_dir: str
    checkpoint: str = "best"
    paths: Paths
    data: Data | None = None
    evaluation: Evaluation

    @field_validator("run_dir")
    @classmethod
    def _run_dir(cls, value: str) -> str:
        if not Path(value).expanduser().is_dir():
            raise _problem("is not a directory (a training run's directory, e.g. outputs/train/<run>)")
        return value

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, value: str) -> str:
        if value not in TESTED_CHECKPOINTS and not Path(value).expanduser().is_file():
            raise _problem(f"must be one of: {_one_of(TESTED_CHECKPOINTS)}, or the path of a .ckpt file")
        return value


SCHEMAS = {"train": TrainConfig, "evaluate": EvaluateConfig}


def validate_config(cfg: DictConfig, task: str = "train", *, check_hardware: bool = True) -> None:
    """Check every key of a composed config (without its `hydra` node); raise `InvalidConfig` listing all problems.

    `check_hardware`: also check the accelerator, strategy, devices and precision against this machine
    (`training/hardware.py`); a dry run plans a GPU run on a laptop, so it leaves them out.
    """
    problems: list[str] = []
    missing: set[str] = set()
    values = _resolve(cfg, "", problems, missing, skip=("hydra",))
    try:
        validated = SCHEMAS[task].model_validate(values)
    except ValidationError as err:
        problems += [line for error in err.errors() if (line := _describe(error, SCHEMAS[task], missing))]
    else:
        problems += _cross_checks(validated) if task == "train" else []
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


def _cross_checks(cfg: TrainConfig) -> list[str]:
    """Rules that span keys."""
    problems = []
    trainer = cfg.trainer
    if trainer.max_steps == -1 and trainer.max_epochs in (None, -1):
        problems.append("trainer.max_steps=-1 needs trainer.max_epochs (a positive number): otherwise training never ends")
    if cfg.data.train is None or cfg.data.valid is None:
        missing = "data.train" if cfg.data.train is None else "data.valid"
        problems.append(f"{missing} is not set (a JSONL manifest or a Kaldi data directory)")
    if cfg.optimizer.scheduler:  # checked here, not after the data, the model and the baseline
        from asr_peft.training.module import espnet_scheduler_class

        try:
            espnet_scheduler_class(cfg.optimizer.scheduler)
        except ConfigError as err:
            problems.append(str(err))
        else:
            problems += [
                f"optimizer.{key} applies only without optimizer.scheduler; set the schedule in optimizer.scheduler_conf"
                for key in ("warmup_steps", "schedule")
                if getattr(cfg.optimizer, key)
            ]
    return problems


def _resolve(
    node: DictConfig | ListConfig, prefix: str, problems: list[str], missing: set[str], skip: tuple[str, ...] = ()
) -> Any:
    """The config as plain values, resolved key by key so that one bad key does not hide the others.

    A `???` value becomes None (a required key then fails as such) and its key goes to `missing`; a
    value that refers to a `???` names the missing key in `problems`.
    """
    keys = [k for k in node.keys() if k not in skip] if isinstance(node, DictConfig) else list(range(len(node)))
    out: dict | list = {} if isinstance(node, DictConfig) else []
    for key in keys:
        name = f"{prefix}{key}" if isinstance(node, DictConfig) else f"{prefix[:-1]}[{key}]"
        try:
            value = node[key]
        except MissingMandatoryValue:
            missing.add(name)
            value = None
        except InterpolationToMissingValueError as err:
            source = re.search(r"Missing mandatory value: (\S+)", str(err))
            source = source.group(1) if source else name
            if not any(line.startswith(f"{source} is required") for line in problems):
                problems.append(f"{source} is required (??? in the config; {name} uses it): set {source}=<value>")
            value = UNRESOLVED
        except InterpolationResolutionError as err:
            if "HydraConfig was not set" not in str(err):
                problems.append(f"{name} cannot be resolved: {' '.join(str(err).split()[:30])}")
            value = UNRESOLVED
        if isinstance(value, (DictConfig, ListConfig)):
            value = None if value._is_none() else _resolve(value, f"{name}.", problems, missing)
        if isinstance(out, dict):
            out[str(key)] = value
        else:
            out.append(value)
    return out


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


def _show(value: Any) -> str:
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


def _describe(error: dict, schema: type[BaseModel], missing: set[str]) -> str | None:
    """One line for one pydantic error: `<key>=<value> <what it allows>`."""
    value = error.get("input")
    if value is UNRESOLVED or (isinstance(value, dict) and UNRESOLVED in value.values()):
        return None  # reported (or resolved by Hydra) already
    loc = list(error["loc"])
    if len(loc) > 1 and loc[0] == "method" and error["type"] != "union_tag_invalid":
        loc.pop(1)  # the discriminated union's tag
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"method.name={_show(error['ctx']['tag'])} must be one of: {_one_of(METHODS)}"
    if kind == "union_tag_not_found":
        return f"method.name is required (one of: {_one_of(METHODS)})"
    key = _dotted(loc)
    if key in missing:
        return f"{key} is required (??? in the config): set {key}=<value>"
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, [str(part) for part in loc[:-1]])
        group = _dotted(loc[:-1]) or "the config"
        return f"{key} is not a setting of {group}" + (f" (it has: {_one_of(allowed)})" if allowed else "")
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
    return f"{key}={_show(value)} {message}"


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
