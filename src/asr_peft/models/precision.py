"""Running a model in one of Lightning's precisions, for training and for scoring alike.

Precision names are Lightning's (`32-true`, `64-true`, `bf16-mixed` / `16-mixed`: autocast over fp32
weights, `bf16-true` / `16-true`: weights and activations in half precision), validated and unified
by `training/hardware.py`.

Under `*-true` Lightning casts the whole model to half precision; here the adapters' own tensors are
left out of that cast, untouched (not rounded and cast back: a resumed adapter would lose its
precision), so that their small updates are not rounded away while the frozen weights and
activations run in half precision (see `adapters/precision.py` for how the adapters compute).
Outside the Trainer (scoring), `precision_plugin` gives the same Lightning plugin, so a test set is
decoded exactly as validation ran.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, cast

from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
import torch
from torch import nn

from asr_peft.adapters.model import adapter_modules


def cast_keeping_adapters(model: nn.Module, cast: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """`cast(model)` (a dtype conversion) with every adapter's own parameters and buffers (not the wrapped
    frozen layer's) left exactly as they were."""
    owned: list[tuple[dict[str, Any], str, torch.Tensor, torch.Tensor]] = []
    for _, adapter in adapter_modules(model):
        frozen = {id(t) for t in (*adapter.base_layer.parameters(), *adapter.base_layer.buffers())}
        for owner in adapter.modules():
            for table in (owner._parameters, owner._buffers):
                owned += [(table, key, t, t.data) for key, t in table.items() if t is not None and id(t) not in frozen]
    model = cast(model)
    for owner_table, key, tensor, data in owned:
        tensor.data = data  # a parameter keeps its identity through the cast: the optimizer's and DDP's
        owner_table[key] = tensor  # a buffer was replaced by its cast copy: the original goes back
    return model


HalfPrecisionName = Literal["bf16-true", "16-true"]


class HalfPrecisionWithFP32Adapters(HalfPrecision):
    """Lightning's `bf16-true`/`16-true`, with the adapters' tensors kept in fp32 (master weights)."""

    def convert_module(self, module: nn.Module) -> nn.Module:
        return cast_keeping_adapters(module, super().convert_module)


def precision_plugin(precision: str, device_type: str) -> Precision:
    """The Lightning precision plugin for a (unified) precision name on a device type (`cpu`, `cuda`)."""
    if precision in ("bf16-true", "16-true"):
        return HalfPrecisionWithFP32Adapters(cast(HalfPrecisionName, precision))
    if precision in ("bf16-mixed", "16-mixed"):
        return MixedPrecision(cast(Literal["bf16-mixed", "16-mixed"], precision), device_type)
    if precision == "64-true":
        return DoublePrecision()
    return Precision()
