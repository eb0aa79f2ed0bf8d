"""Model families behind one interface (`models/base.py`): OWSM on ESPnet, Whisper on transformers.

`load_model(model_cfg)` builds or loads the model a `model` config describes, with the family its
`model.family` names (default: owsm); nothing outside this package asks which family it holds.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from asr_peft.errors import ConfigError
from asr_peft.models.base import ModelBundle
from asr_peft.models.owsm import OWSMBundle, build_model, load_exported, load_owsm

# family name -> (module, loader function, bundle class): imported on use (ESPnet and transformers are slow to import)
FAMILIES = {
    "owsm": ("asr_peft.models.owsm", "load_owsm", "OWSMBundle"),
    "whisper": ("asr_peft.models.whisper", "load_whisper", "WhisperBundle"),
}
DEFAULT_FAMILY = "owsm"


def family_of(model_cfg: Mapping[str, Any]) -> str:
    family = model_cfg.get("family") or DEFAULT_FAMILY
    if family not in FAMILIES:
        raise ConfigError(f"model.family={family!r} is unknown (choose from: {', '.join(FAMILIES)})")
    return family


def bundle_class(model_cfg: Mapping[str, Any]) -> type[ModelBundle]:
    """The bundle class of the config's family (its decoding methods, without loading anything)."""
    module, _, cls = FAMILIES[family_of(model_cfg)]
    return getattr(importlib.import_module(module), cls)


def load_model(model_cfg: Mapping[str, Any], *, device: str = "cpu", cache_dir: str | Path | None = None) -> ModelBundle:
    """Build or load the model of a `model` config (`device="meta"`: the architecture alone, for planning)."""
    module, loader, _ = FAMILIES[family_of(model_cfg)]
    return getattr(importlib.import_module(module), loader)(model_cfg, device=device, cache_dir=cache_dir)


__all__ = [
    "FAMILIES",
    "ModelBundle",
    "OWSMBundle",
    "bundle_class",
    "build_model",
    "family_of",
    "load_exported",
    "load_model",
    "load_owsm",
]
