"""Adapter methods (SSVD, SVFT, LoRA, DoRA, PiSSA, VeRA, full, frozen) behind one interface."""

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.model import (
    AdaptationReport,
    adapter_modules,
    adapter_state_dict,
    apply_method,
    load_adapter,
    load_adapter_state,
    merge_adapters,
    merged_copy,
    parameter_plan,
    save_adapter,
    total_parameter_count,
    trainable_parameter_count,
    unmerge_adapters,
)
from asr_peft.adapters.registry import METHODS

__all__ = [
    "METHODS",
    "AdaptationReport",
    "AdapterLayer",
    "adapter_modules",
    "adapter_state_dict",
    "apply_method",
    "load_adapter",
    "load_adapter_state",
    "merge_adapters",
    "merged_copy",
    "parameter_plan",
    "save_adapter",
    "total_parameter_count",
    "trainable_parameter_count",
    "unmerge_adapters",
]
