"""What a configuration is called: its method and budget, and the name of its run directory.

One rule serves the run directory, a sweep's duplicate check, the report, W&B and the closing summary:
a configuration is its method with its budget (`ssvd p=0.4`, `lora r=16`, `svft banded d=2`), the data,
the model, the seed, and every other setting that differs from what the same config groups give by
default. Settings that change neither what is trained nor how it is scored (`NO_EFFECT`), and those
the method does not read (`adapt.p` outside SSVD, `adapt.*` for full and frozen), are not part of it.
So the same command always names the same directory (and resumes there), two commands that train the
same thing name the same directory, and nothing that tells runs apart is cut from the name.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping, cast

from omegaconf import DictConfig, OmegaConf

# Keys (and whole subtrees) that change neither what is trained nor how it is scored: where outputs go,
# logging and display, how many devices share the same global run, extra diagnostics.
NO_EFFECT = (
    "task_name",
    "dry_run",
    "sweep_group",
    "logger",
    "hydra",
    "paths.root_dir",
    "paths.log_dir",
    "paths.output_dir",
    "paths.cache_dir",
    "paths.model_cache_dir",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "callbacks.model_checkpoint.dirpath",
    "callbacks.progress_bar",
    "callbacks.lr_monitor",
    "loader.num_workers",
    "evaluation.progress",
    "evaluation.max_batch_seconds",
    "evaluation.baseline",
    "evaluation.subspace",
    "evaluation.sclite",
    "evaluation.secondary_decodes",  # more columns scored, the same training and primary scores
    "evaluation.validate_before_training",  # one more point of the dev curve; training's generators untouched
)
# Keys that change how a trained run is scored, not what it trains (beside NO_EFFECT): the test sets (and the
# corpus files made for them), the test-time decoding. Validation belongs to training: its decode picks the
# best checkpoint and stops the run, and the update-0 validation is the first point of the run's curve.
SCORING_ONLY = ("data.test", "data.prepare.splits", "evaluation")
SCORING_KEYS_THAT_TRAIN = ("evaluation.validation_decode", "evaluation.validate_before_training")
# SSVD's budget is `adapt.p` (and `adapt.p_groups`); no other method reads them.
METHODS_USING_P = {"ssvd"}
P_KEYS = ("adapt.p", "adapt.p_groups")
# Config groups whose choice the name shows by itself (method and budget, data, model) or that never
# change a run (or only pick what a run is: a sweep's point).
GROUPS_SHOWN_BY_NAME = {"method", "data", "model"}
GROUPS_WITHOUT_EFFECT = {"logger", "paths", "sweep", "point", "hparams_search"}
MAX_NAME = 200  # bytes; file systems allow 255
PLACEHOLDER_RUN_DIR = "<run_dir>"


def _within(key: str, prefixes) -> bool:
    """Whether `key` is one of `prefixes` or inside one of them (a flattened mapping: adapt.p_groups.encoder)."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def has_no_effect(key: str) -> bool:
    return _within(key, NO_EFFECT)


def method_reads(method_name: str | None, key: str) -> bool:
    """Whether a method reads `key` (a dotted `adapt.` key; every other key counts for every method)."""
    if not key.startswith("adapt."):
        return True
    from asr_peft.adapters.registry import METHODS

    spec = METHODS.get(method_name) if method_name is not None else None
    if spec is not None and spec.build is None:  # full and frozen: no targets, no budget
        return False
    return not _within(key, P_KEYS) or method_name in METHODS_USING_P


def budget(method: Mapping[str, Any], adapt: Mapping[str, Any]) -> list[tuple[str | None, Any]]:
    """What sizes a method, as (key, value) pairs (key None: the value alone): SSVD's p, a rank, SVFT's pattern."""
    name = method.get("name")
    if name in METHODS_USING_P:
        from asr_peft.adapters.ssvd import PAPER_SIDE

        # SSVD's defaults (the paper's side only, one p for every layer) add nothing, so default names stay short.
        side = method.get("side", PAPER_SIDE)
        tokens: list[tuple[str | None, Any]] = [("p", adapt.get("p"))]
        if side != PAPER_SIDE:
            tokens.append(("side", side))
            if method.get("p_out") is not None:
                tokens.append(("p_out", method["p_out"]))
            if method.get("p_out_groups"):
                tokens.append(("p_out_groups", method["p_out_groups"]))
        if adapt.get("p_groups"):
            tokens.append(("p_groups", adapt["p_groups"]))
        return tokens
    if name == "svft":
        pattern = method.get("pattern", "plain")
        return [(None, pattern)] + ([("d", method.get("off_diag", 0))] if pattern != "plain" else [])
    if name == "peft":
        config = method.get("peft_config") or {}
        return [(None, config.get("peft_type"))] + ([("r", config["r"])] if "r" in config else [])
    if "r" in method:
        return [("r", method["r"])]
    return []


# The keys `budget` names (their other method keys, e.g. a PEFT tuner's block size, are named as settings).
BUDGET_KEYS = {
    "adapt.p",
    "adapt.p_groups",
    "method.side",
    "method.p_out",
    "method.p_out_groups",
    "method.r",
    "method.pattern",
    "method.off_diag",
    "method.peft_config.peft_type",
    "method.peft_config.r",
}


def format_value(value: Any) -> str:
    """Short and exact: 0.4, 0.001, 1e-05, true, null, [0.9,1.0,1.1]."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _token(key: str | None, value: Any) -> str:
    return format_value(value) if key is None else f"{key}={format_value(value)}"


def configuration_tokens(
    method: Mapping[str, Any], adapt: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> list[str]:
    """The method's name, its budget, then `extra` settings (method keys without their `method.` prefix)."""
    tokens = [str(method.get("name", "?"))] + [_token(k, v) for k, v in budget(method, adapt)]
    for key in sorted(extra or {}, key=lambda k: (not k.startswith("method."), k)):
        tokens.append(_token(key.removeprefix("method."), (extra or {})[key]))
    return tokens


def configuration_label(method: Mapping[str, Any], adapt: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
    """e.g. `ssvd p=0.4`, `lora r=16 alpha=32`, `svft banded d=2`, `full`, `ssvd p=0.4 optimizer.lr=0.01`."""
    return " ".join(configuration_tokens(method, adapt, extra))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differences(run: Mapping[str, Any], reference: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(keys whose value differs or that only the run has, keys only the reference has), both dotted.

    A subtree the run lacks entirely counts once, by its top key (`~callbacks.early_stopping`).
    """
    run_flat, reference_flat = flatten(run), flatten(reference)
    changed = [k for k, v in run_flat.items() if k not in reference_flat or _comparable(v) != _comparable(reference_flat[k])]
    removed: list[str] = []
    present = _prefixes(run_flat)
    for key in reference_flat:
        if key in run_flat:
            continue
        parts = key.split(".")
        top = next((".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) not in present), None)
        if top is None:  # a value (say a null adapt.p_groups) the run made a mapping: its keys count as changed
            continue
        if top not in removed:
            removed.append(top)
    return changed, removed


def training_differences(run: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The dotted keys of two resolved configs that differ in what is trained. None: a completed run of one
    is a trained run of the other, whose checkpoints it can score (the comparison scores its LR search's)."""
    changed, removed = differences(run, other)
    changed_back, removed_back = differences(other, run)
    keys = dict.fromkeys([*changed, *removed, *changed_back, *removed_back])
    return [
        key for key in keys if _within(key, SCORING_KEYS_THAT_TRAIN) or not (has_no_effect(key) or _within(key, SCORING_ONLY))
    ]


def _prefixes(flat: Mapping[str, Any]) -> set[str]:
    prefixes: set[str] = set()
    for key in flat:
        parts = key.split(".")
        prefixes.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return prefixes


def _job_tree(job: DictConfig) -> tuple[dict[str, Any], DictConfig]:
    """A job config as written (a plain tree) and a copy to resolve values in.

    The run directory is not known yet when the name is made, so `paths.output_dir` stands in as a
    placeholder; loggers may be named after the run, so they go (they never change a run).
    """
    tree = cast(dict[str, Any], OmegaConf.to_container(job, resolve=False))
    tree.pop("hydra", None)
    tree.pop("logger", None)
    tree.setdefault("paths", {})["output_dir"] = PLACEHOLDER_RUN_DIR
    return tree, OmegaConf.create(tree)


def _resolved(config: DictConfig, key: str, written: Any) -> Any:
    """A value as it resolves; as written when it cannot be resolved yet (a `???` the run will report)."""
    try:
        value = OmegaConf.select(config, key, throw_on_missing=True)
    except Exception:  # noqa: BLE001 - any resolution failure: the name shows what the user wrote
        return written
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def counted(key: str, method_name: str | None) -> bool:
    return not has_no_effect(key) and method_reads(method_name, key)


def sanitise(name: str) -> str:
    """A legal, shell-friendly directory name; over MAX_NAME bytes, a readable head and a hash of the whole."""
    name = re.sub(r"[^A-Za-z0-9._,=+~-]", "_", name)
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}-{digest}"
    return name


def run_name(
    job: DictConfig, reference: DictConfig, choices: Mapping[str, str | None], default_choices: Mapping[str, str | None]
) -> str:
    """`<method>_<budget>[_<method settings>],<data>,<model>,seed=<n>[,<group>=<choice>...][,<key>=<value>...]`.

    `reference` is the config the same group choices give without any value override (no sweep point
    either): every counted setting that differs from it is named, method settings next to the method.
    """
    raw, config = _job_tree(job)
    reference_raw, reference_config = _job_tree(reference)
    method, adapt = _resolved(config, "method", {}) or {}, _resolved(config, "adapt", {}) or {}
    method_name = method.get("name")
    changed, removed = differences(raw, reference_raw)
    shown = {"method.name", "data.name", "model.name", "seed"} | BUDGET_KEYS
    written, reference_written = flatten(raw), flatten(reference_raw)
    values = {k: _resolved(config, k, written[k]) for k in changed}
    # A value written differently that resolves to the reference's (a sweep's `${tuned_lr:}` giving the
    # default rate) trains the same thing: the same run.
    changed = [
        k
        for k in changed
        if k not in reference_written
        or _comparable(values[k]) != _comparable(_resolved(reference_config, k, reference_written[k]))
    ]
    method_extra = {k: values[k] for k in changed if k.startswith("method.") and not _within(k, shown)}
    groups = [
        f"{group}={choice}"
        for group, choice in sorted(choices.items())
        if not group.startswith("hydra/")
        and group not in GROUPS_SHOWN_BY_NAME | GROUPS_WITHOUT_EFFECT
        and choice != default_choices.get(group)
        and (group == "experiment" or any(counted(k, method_name) for k in written if k.startswith(group + ".")))
    ]
    others = [
        f"{k}={format_value(values[k])}"
        for k in sorted(changed)
        if not k.startswith("method.") and not _within(k, shown) and counted(k, method_name)
    ]
    others += [f"~{k}" for k in sorted(removed) if counted(k, method_name)]
    head = "_".join(configuration_tokens(method, adapt, method_extra))
    data, model, seed = (_resolved(config, key, written.get(key)) for key in ("data.name", "model.name", "seed"))
    return sanitise(",".join([head, str(data), str(model), f"seed={seed}", *groups, *others]))


def reference_overrides(choices: Mapping[str, str | None], default_choices: Mapping[str, str | None]) -> list[str]:
    """The overrides that give a run's group choices and nothing else (the sweep and its point aside)."""
    overrides = []
    for group, choice in choices.items():
        if choice is None or group.startswith("hydra/") or group in GROUPS_WITHOUT_EFFECT:
            continue
        overrides.append(f"{group}={choice}" if group in default_choices else f"+{group}={choice}")
    return overrides
