"""Model-level operations over every adapter in a model: inject, count, merge, save and load.

Everything here finds adapters by type (`AdapterLayer`, `LoRAEmbedding`), never by parameter name.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.injection import match_modules, module_type, replace_module
from asr_peft.adapters.lora import LoRAEmbedding
from asr_peft.adapters.registry import get_method
from asr_peft.adapters.svd import thin_svds
from asr_peft.errors import ConfigError

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_TYPES = (AdapterLayer, LoRAEmbedding)


@dataclass
class AdaptationReport:
    method: str
    adapted_modules: list[str]
    trainable: int


def adapter_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if isinstance(module, ADAPTER_TYPES):
            yield name, module


def trainable_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def apply_method(model: nn.Module, method: Mapping[str, Any], adapt: Mapping[str, Any], *,
                 svd_cache_dir: str | Path | None = None) -> AdaptationReport:
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
    targets = match_modules(model, adapt.get("targets"))
    for name, _, module in targets:
        if not isinstance(module, nn.Linear):
            raise ConfigError(f"adapt.targets matched {name}, a {type(module).__name__}; adapters go on nn.Linear modules")
    on_meta = any(module.weight.is_meta for _, _, module in targets)
    svds = [None] * len(targets)
    if spec.needs_svd and not on_meta:
        svds = thin_svds([module.weight for _, _, module in targets], svd_cache_dir,
                         [spec.svd_rank(module, method, adapt) for _, _, module in targets])
    context: dict = {}
    for (name, _, module), svd in zip(targets, svds):
        replace_module(model, name, spec.build(module, svd, method, adapt, context))
    adapted = [name for name, _, _ in targets]
    if spec.embedding_adapter and method.get("embedding_targets"):
        for name, _, module in match_modules(model, method["embedding_targets"], key="method.embedding_targets"):
            replace_module(model, name, LoRAEmbedding(module, r=method["r"], alpha=method["alpha"]))
            adapted.append(name)
    return AdaptationReport(method["name"], adapted, trainable_parameter_count(model))


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the adapters own; for a model without adapters (full fine-tuning), every trainable tensor."""
    state = {f"{name}.{key}": p.detach() for name, module in adapter_modules(model)
             for key, p in module.named_adapter_parameters()}
    if not state:
        state = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    return state


def load_adapter_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy adapter tensors in; the key sets must match exactly (a partial load is a silent bug)."""
    expected = adapter_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(f"adapter state does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key, target in expected.items():
            if target.shape != state[key].shape:
                raise ConfigError(f"adapter tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(target.shape)}")
            target.copy_(state[key])


def save_adapter(model: nn.Module, directory: str | Path, method: Mapping[str, Any], adapt: Mapping[str, Any]) -> Path:
    """adapter.safetensors + adapter_config.json; refuses to overwrite an existing adapter."""
    directory = Path(directory)
    if (directory / ADAPTER_WEIGHTS).exists():
        raise ConfigError(f"{directory / ADAPTER_WEIGHTS} exists already; save the adapter elsewhere")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    save_file(state, directory / ADAPTER_WEIGHTS)
    config = {"format": 1, "method": dict(method), "adapt": dict(adapt),
              "adapted_modules": [name for name, _ in adapter_modules(model)]}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def load_adapter(base_model: nn.Module, directory: str | Path, *, svd_cache_dir: str | Path | None = None) -> AdaptationReport:
    """Re-apply the saved method to a freshly loaded base model, then load the adapter tensors."""
    directory = Path(directory)
    if not (directory / ADAPTER_CONFIG).is_file():
        raise ConfigError(f"{directory} holds no {ADAPTER_CONFIG}")
    config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    report = apply_method(base_model, config["method"], config["adapt"], svd_cache_dir=svd_cache_dir)
    load_adapter_state(base_model, load_file(directory / ADAPTER_WEIGHTS))
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
    """Trainable parameters per module type and in total.

    A module's type is its name without block indices, e.g. `encoder.attn.linear_q` for every
    `encoder.encoders.<i>.attn.linear_q`.
    """
    per_type: dict[str, dict[str, int]] = {}
    for name, module in adapter_modules(model):
        kind = module_type(name)
        row = per_type.setdefault(kind, {"modules": 0, "trainable": 0})
        row["modules"] += 1
        row["trainable"] += sum(p.numel() for _, p in module.named_adapter_parameters() if p.requires_grad)
    return {"per_module_type": dict(sorted(per_type.items())), "trainable": trainable_parameter_count(model),
            "total": total_parameter_count(model)}
