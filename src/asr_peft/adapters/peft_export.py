"""Writing trained adapters as a Hugging Face PEFT adapter directory (`export.py --peft`).

`PeftModel.from_pretrained(<the stock base model>, <directory>)` then gives the trained model. Each
adapter layer says what it is in PEFT's terms (`peft_form`: LoRA, DoRA, PiSSA as a rank-2r LoRA on the
stock weight, VeRA); methods PEFT has no tuner for (SSVD, SVFT) are refused by name. The layer names are
PEFT's: `base_model.model.<module>.<tensor>`, as `get_peft_model_state_dict` writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.model import adapter_modules
from asr_peft.errors import ConfigError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"


def save_peft_adapter(
    model: nn.Module, original: nn.Module, directory: str | Path, method: Mapping[str, Any], *, base_model_name: str | None = None
) -> Path:
    """Write `model`'s adapters for PEFT; `original`: the stock pretrained model (PiSSA's base weight differs)."""
    directory = Path(directory)
    if (directory / PEFT_WEIGHTS).exists():
        raise ConfigError(f"{directory / PEFT_WEIGHTS} exists already; export the adapter elsewhere")
    layers = [(name, layer) for name, layer in adapter_modules(model) if isinstance(layer, AdapterLayer)]
    if len(layers) != len(list(adapter_modules(model))) or not layers:
        raise ConfigError(
            f"method={method.get('name')}: only adapters of Linear layers export to PEFT "
            "(no embedding adapters, e.g. method.embedding_targets=[])"
        )
    originals = dict(original.named_modules())
    fields: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        peft_form = getattr(layer, "peft_form", None)
        if not callable(peft_form):
            raise ConfigError(
                f"method={method.get('name')} has no PEFT tuner to export to (PEFT has LoRA, DoRA, "
                "PiSSA as LoRA, VeRA); export the merged model instead"
            )
        layer_fields, layer_tensors = peft_form(originals[name].weight.detach())
        if fields and layer_fields != fields:
            raise ConfigError(f"{name}: PEFT takes one setting for every layer, and {layer_fields} differs from {fields}")
        fields = layer_fields
        tensors.update({f"base_model.model.{name}.{key}": value.float().contiguous() for key, value in layer_tensors.items()})
    config = {
        **fields,
        "target_modules": sorted(name for name, _ in layers),
        "base_model_name_or_path": base_model_name,
        "task_type": None,
        "inference_mode": True,
        "bias": "none",
    }
    if fields["peft_type"] == "LORA":
        config.update(lora_dropout=0.0, fan_in_fan_out=False, init_lora_weights=True, use_dora=fields.get("use_dora", False))
    else:  # VeRA: its projections regenerate from the seed the method drew them with
        config.update(
            projection_prng_key=int(method.get("projection_seed", 0)),
            save_projection=False,
            vera_dropout=0.0,
            d_initial=float(method.get("d_initial", 0.1)),
        )
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / PEFT_WEIGHTS), metadata={"format": "pt"})
    (directory / PEFT_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory
