"""`method=peft`: any Hugging Face PEFT tuner of `nn.Linear` layers (PSOFT, OFT, BOFT, LoHa, IA3, ...).

`method.peft_config` holds the PEFT config's own fields: `peft_type` plus that tuner's keys, without
`target_modules` (the targets are `adapt.targets`, matched by this project's rule). Each matched layer
is wrapped on its own: PEFT injects its tuner layer around the frozen `nn.Linear`, and `PEFTLinear`
puts it behind the common interface (adapter parameters by structure, merge, unmerge, adapter-only
state), so sweeps, reports and export treat it like the native methods.

ΔW is measured rather than derived per tuner: the tuner's response to the identity matrix (its
output at zero subtracted) minus W. That is exact for tuners that act as x ↦ x W'ᵀ + b (the LoRA
family, orthogonal rotations, input scalings); every measurement is checked on a random probe, and a
tuner that is not linear in its input, or that changes the bias (IA3 on a layer's output), is refused
with an error rather than merged wrongly.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, cast

import torch
import torch.nn.functional as F
from peft import PeftType, inject_adapter_in_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import compute_dtype, master_dtype, parameter_math
from asr_peft.errors import ConfigError


def peft_config(fields: Mapping[str, Any]):
    """The PEFT config object for `method.peft_config`, targeting a single layer named `layer`."""
    fields = dict(fields)
    peft_type = str(fields.pop("peft_type", "")).upper()
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ConfigError(
            f"method.peft_config.peft_type={peft_type or None!r} is not a PEFT tuner; "
            f"choose from {', '.join(sorted(str(t.value) for t in PEFT_TYPE_TO_CONFIG_MAPPING))}"
        )
    if "target_modules" in fields:
        raise ConfigError("method.peft_config.target_modules is not used: the targets are adapt.targets")
    try:
        config_class: Any = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(peft_type)]  # a PeftConfig subclass
        return config_class(target_modules=["layer"], **fields)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"method.peft_config ({peft_type}): {' '.join(str(err).split())}") from err


class PEFTLinear(AdapterLayer):
    tuner: nn.Module  # PEFT's layer around `base_layer`

    def __init__(self, base_layer: nn.Linear, fields: Mapping[str, Any]):
        super().__init__(base_layer)
        holder = nn.Module()
        holder.add_module("layer", base_layer)
        inject_adapter_in_model(peft_config(fields), holder)
        tuner = holder.get_submodule("layer")
        if tuner is base_layer:
            raise ConfigError(f"method.peft_config: PEFT's {fields.get('peft_type')} left the nn.Linear unadapted")
        self.tuner = tuner  # PEFT's layer; its `base_layer` is this adapter's `base_layer`
        for parameter in base_layer.parameters():
            parameter.requires_grad_(False)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        # PEFT hands some tuners' outputs back in the input's dtype (fp32 under autocast, where the frozen
        # layer's is bf16): the common rule of adapters/precision.py applies here too.
        return self.tuner(x).to(compute_dtype(x))

    def delta_weight(self) -> torch.Tensor:
        with parameter_math(self.base_layer.weight.device):
            if master_dtype(self.base_layer.weight.dtype) == self.base_layer.weight.dtype:
                return self._measured_delta(self.tuner)
            # A half-precision base would measure ΔW as a difference of rounded outputs: measure an fp32 copy.
            return self._measured_delta(copy.deepcopy(self.tuner).float())

    def _measured_delta(self, tuner: nn.Module) -> torch.Tensor:
        base = cast(nn.Linear, tuner.base_layer)  # this adapter's base layer, or its fp32 copy
        weight, bias = base.weight, base.bias
        was_training = tuner.training
        tuner.eval()  # no dropout in a measurement
        try:
            eye = torch.eye(self.in_features, device=weight.device, dtype=weight.dtype)
            zero = torch.zeros(1, self.in_features, device=weight.device, dtype=weight.dtype)
            offset = tuner(zero)
            delta = (tuner(eye) - offset).T - weight
            generator = torch.Generator(device=weight.device).manual_seed(0)  # leaves the global RNG alone
            probe = torch.randn(2, self.in_features, generator=generator, device=weight.device, dtype=weight.dtype)
            expected, merged = tuner(probe), F.linear(probe, weight + delta, bias)
        finally:
            tuner.train(was_training)
        tolerance = 1e-5 * float(expected.abs().max()) + 1e-6
        if not torch.allclose(offset, base(zero), rtol=1e-4, atol=tolerance):
            raise ValueError(f"{type(tuner).__module__} changes the layer's bias: it cannot be merged into the weight")
        if not torch.allclose(merged, expected, rtol=1e-4, atol=tolerance):
            raise ValueError(f"{type(tuner).__module__} is not linear in its input: it cannot be merged into a plain nn.Linear")
        return delta
