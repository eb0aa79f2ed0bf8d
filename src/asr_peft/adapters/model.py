"""Model-level operations over every adapter in a model: inject, count, merge, save and load.

Everything here finds adapters by type (`AdapterLayer`, `LoRAEmbedding`), never by parameter name.

An adapter directory (format 2) holds `adapter_config.json` (format, method, adapt, adapted modules)
and `adapter.safetensors`, the trained tensors, whose metadata records the method and adapt settings
they were trained with and the fingerprint of what each layer was trained in (`adapters/fingerprint.py`).
Loading refuses, in one line naming the file, anything that would not give back the trained model: an
unreadable or incomplete file, an unknown format, a config that differs from the recorded one (say
`rotation` edited from approx to cayley: same shapes, another model), non-finite tensors, tensors that
do not fit the method, and layers rebuilt differently from the fingerprint. Format-1 directories
(earlier versions: no record, no fingerprint) load with a warning.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, cast

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.budget import layer_settings
from asr_peft.adapters.fingerprint import check_fingerprint, fingerprint
from asr_peft.adapters.injection import match_modules, module_type, replace_module
from asr_peft.adapters.lora import LoRAEmbedding
from asr_peft.adapters.registry import get_method
from asr_peft.adapters.ssvd import current_method
from asr_peft.adapters.svd import ThinSVD, thin_svds
from asr_peft.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: no recorded method and no fingerprint (earlier versions)
ADAPTER_TYPES = (AdapterLayer, LoRAEmbedding)


@dataclass
class AdaptationReport:
    method: str
    adapted_modules: list[str]
    trainable: int


def adapter_modules(model: nn.Module) -> Iterator[tuple[str, AdapterLayer | LoRAEmbedding]]:
    for name, module in model.named_modules():
        if isinstance(module, ADAPTER_TYPES):
            yield name, module


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def apply_method(
    model: nn.Module, method: Mapping[str, Any], adapt: Mapping[str, Any], *, svd_cache_dir: str | Path | None = None
) -> AdaptationReport:
    """Freeze what the method does not train and inject its adapters in place (see the registry)."""
    spec = get_method(method)
    if spec.trains == "all":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return AdaptationReport(method["name"], [], trainable_parameter_count(model))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if spec.trains == "none":
        return AdaptationReport(method["name"], [], 0)
    assert spec.build is not None  # a method that trains neither all nor nothing builds adapter layers
    targets: list[tuple[str, nn.Linear]] = []
    for name, _, module in match_modules(model, adapt["targets"]):
        if not isinstance(module, nn.Linear):
            raise ConfigError(f"adapt.targets matched {name}, a {type(module).__name__}; adapters go on nn.Linear modules")
        targets.append((name, module))
    on_meta = any(module.weight.is_meta for _, module in targets)
    settings = layer_settings([name for name, _ in targets], method, adapt)  # adapt.p_groups, per module
    svds: Sequence[ThinSVD | None] = [None] * len(targets)
    if spec.needs_svd and not on_meta:
        svds = thin_svds(
            [module.weight for _, module in targets],
            svd_cache_dir,
            [spec.svd_rank(module, *setting) for (_, module), setting in zip(targets, settings)],
        )
    context: dict = {"layers": [module for _, module in targets]}  # e.g. VeRA's projections span them all
    for (name, module), svd, setting in zip(targets, svds, settings):
        replace_module(model, name, spec.build(module, svd, *setting, context))
    adapted = [name for name, _ in targets]
    if spec.embedding_adapter and method.get("embedding_targets"):
        # Optional patterns (`?`) let one method config serve model families whose embedding is named otherwise
        # or not adapted (Whisper's is tied to its output projection).
        for name, _, module in match_modules(
            model, method["embedding_targets"], key="method.embedding_targets", optional_type=nn.Embedding, allow_none=True
        ):
            embedding = cast(nn.Embedding, module)  # or another type, which LoRAEmbedding refuses in one line
            replace_module(model, name, LoRAEmbedding(embedding, r=method["r"], alpha=method["alpha"]))
            adapted.append(name)
    return AdaptationReport(method["name"], adapted, trainable_parameter_count(model))


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the adapters own; for a model without adapters (full fine-tuning), every trainable tensor."""
    state = {
        f"{name}.{key}": p.detach() for name, module in adapter_modules(model) for key, p in module.named_adapter_parameters()
    }
    if not state:
        state = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    return state


def load_adapter_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "adapter state") -> None:
    """Copy adapter tensors in; the key sets must match exactly (a partial load is a silent bug)."""
    expected = adapter_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"{source} does not fit this model's adapters: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key, target in expected.items():
            if target.shape != state[key].shape:
                raise ModelLoadError(
                    f"{source}: tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(target.shape)}"
                )
            target.copy_(state[key])


def save_adapter(model: nn.Module, directory: str | Path, method: Mapping[str, Any], adapt: Mapping[str, Any]) -> Path:
    """adapter.safetensors (with the method and fingerprint it was trained with) + adapter_config.json;
    refuses to overwrite an existing adapter."""
    directory = Path(directory)
    if (directory / ADAPTER_WEIGHTS).exists():
        raise ConfigError(f"{directory / ADAPTER_WEIGHTS} exists already; save the adapter elsewhere")
    directory.mkdir(parents=True, exist_ok=True)
    method, adapt = dict(method), dict(adapt)
    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    record = {
        "format": str(ADAPTER_FORMAT),
        "method": json.dumps(method, sort_keys=True),
        "adapt": json.dumps(adapt, sort_keys=True),
        "fingerprint": json.dumps(fingerprint(adapter_modules(model))),
    }
    save_file(state, directory / ADAPTER_WEIGHTS, metadata=record)
    config = {
        "format": ADAPTER_FORMAT,
        "method": method,
        "adapt": adapt,
        "adapted_modules": [name for name, _ in adapter_modules(model)],
    }
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def _read_adapter_config(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(
            f"{path} does not exist: not an adapter directory (save_adapter / export.py --adapter-only write one)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ModelLoadError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(config).__name__}, not an object")
    if type(config.get("format")) is not int or config["format"] not in READABLE_FORMATS:
        raise ModelLoadError(
            f"{path}: format {config.get('format')!r} is not one this version reads "
            f"({', '.join(map(str, READABLE_FORMATS))}); a newer version may have written it"
        )
    if not isinstance(config.get("method"), dict) or "name" not in config["method"]:
        raise ModelLoadError(f"{path} has no `method` with a `name` (the method the adapter was trained with)")
    if not isinstance(config.get("adapt"), dict):
        raise ModelLoadError(f"{path} has no `adapt` mapping (the adapter targets it was trained with)")
    return config


def _read_adapter_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (checked finite) and the record in the file's metadata (decoded JSON)."""
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist: the adapter directory lacks its tensors")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors reports a torn file in several ways; all mean the same here
        raise ModelLoadError(f"{path} is not a readable safetensors file ({err})") from err
    try:
        record = {key: json.loads(metadata[key]) for key in ("method", "adapt", "fingerprint") if key in metadata}
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: the record in its metadata is not valid JSON ({err.msg})") from err
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{path}: tensor {key} holds non-finite values (NaN or inf)")
    return state, record


def _first_difference(stated: Mapping[str, Any], recorded: Mapping[str, Any]) -> str | None:
    for key in sorted(set(stated) | set(recorded)):
        if stated.get(key) != recorded.get(key):
            return f"{key}={stated.get(key)!r} where the tensors were trained with {recorded.get(key)!r}"
    return None


def load_adapter(base_model: nn.Module, directory: str | Path, *, svd_cache_dir: str | Path | None = None) -> AdaptationReport:
    """Re-apply the saved method to a freshly loaded base model, load the adapter tensors, and check the
    rebuilt layers against the recorded fingerprint (see the module docstring for what is refused)."""
    directory = Path(directory)
    config_path, weights_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    config = _read_adapter_config(config_path)
    state, record = _read_adapter_tensors(weights_path)
    if config["format"] >= 2:
        if not {"method", "adapt", "fingerprint"} <= set(record):
            raise ModelLoadError(
                f"{weights_path} lacks the record of its method and fingerprint that format "
                f"{config['format']} requires (it was replaced by another file?)"
            )
        for group in ("method", "adapt"):
            difference = _first_difference(config[group], record[group])
            if difference:
                raise ModelLoadError(f"{config_path}: {group}.{difference} (recorded in {weights_path})")
    try:
        method = current_method(config["method"], trained_in=str(weights_path))  # a file written before today's keys
        report = apply_method(base_model, method, config["adapt"], svd_cache_dir=svd_cache_dir)
    except ConfigError as err:
        raise ModelLoadError(f"{config_path}: {err}") from err
    load_adapter_state(base_model, state, source=str(weights_path))
    check_fingerprint(adapter_modules(base_model), record.get("fingerprint"), str(weights_path))
    return report


def merge_adapters(model: nn.Module) -> None:
    for _, module in adapter_modules(model):
        module.merge()


def unmerge_adapters(model: nn.Module) -> None:
    for _, module in adapter_modules(model):
        module.unmerge()


def merged_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every adapter folded into a plain `nn.Linear`/`nn.Embedding`: stock ESPnet keys."""
    plain = copy.deepcopy(model)
    for name, module in list(adapter_modules(plain)):
        if isinstance(module, AdapterLayer):
            replace_module(plain, name, module.merged_linear())
        else:
            module.merge()
            replace_module(plain, name, module.base_layer)
    return plain


def parameter_plan(model: nn.Module) -> dict[str, Any]:
    """Trainable parameters per module type and in total, and which singular vectors of the weight each
    module type's adapters rotate (`rotates`, for the methods that rotate any).

    A module's type is its name without block indices, e.g. `encoder.attn.linear_q` for every
    `encoder.encoders.<i>.attn.linear_q`.
    """
    per_type: dict[str, dict[str, int]] = {}
    rotates: dict[str, set[str]] = {}
    for name, module in adapter_modules(model):
        kind = module_type(name)
        row = per_type.setdefault(kind, {"modules": 0, "trainable": 0})
        row["modules"] += 1
        row["trainable"] += sum(p.numel() for _, p in module.named_adapter_parameters() if p.requires_grad)
        vectors = module.rotated_vectors() if isinstance(module, AdapterLayer) else None
        if vectors:
            rotates.setdefault(kind, set()).add(vectors)
    return {
        "per_module_type": dict(sorted(per_type.items())),
        "trainable": trainable_parameter_count(model),
        "total": total_parameter_count(model),
        "rotates": {kind: "; ".join(sorted(v)) for kind, v in sorted(rotates.items())},
    }
