"""The one interface every adapter layer answers, and the safe, reversible merge they share.

An adapter layer wraps a frozen `nn.Linear` (`base_layer`) and owns a few parameters of its own.
What it owns is found by structure, never by name: every parameter registered on the adapter module
itself or on its submodules other than `base_layer`. Each method supplies two things:

- `delta_weight()`: the change it makes to the base weight, `W' − W` (differentiable), in the adapter's
  own precision (fp32), never rounded to a half-precision base weight's dtype;
- `adapted_forward(x)`: the layer's output while unmerged (usually cheaper than forming `W'`), in the
  dtype the frozen layer computes in (see `adapters/precision.py`).

Merging writes `W + ΔW` into the base layer after checking it is finite (so a diverged adapter can
never corrupt the model), added in fp32 and rounded once; unmerging restores the pre-merge weight exactly.
"""

from __future__ import annotations

import abc
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.precision import add_delta, compute_dtype, parameter_math
from asr_peft.errors import ConfigError


def _reshape_scalar_parameters(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before gates became 1-element tensors hold them 0-d: reshape on load."""
    for name, parameter in module._parameters.items():
        value = state_dict.get(prefix + name)
        if parameter is not None and value is not None and value.dim() == 0 and parameter.shape == (1,):
            state_dict[prefix + name] = value.reshape(1)


class AdapterLayer(nn.Module, abc.ABC):
    base_layer: nn.Linear

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise ConfigError(f"adapt.targets matched a {type(base_layer).__name__}; adapters wrap nn.Linear modules only")
        self.base_layer = base_layer
        self.merged = False
        for parameter in base_layer.parameters():
            parameter.requires_grad_(False)
        self.register_load_state_dict_pre_hook(_reshape_scalar_parameters)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def weight(self) -> torch.Tensor:
        # ESPnet's decoder reads `output_layer.weight` (e.g. for tied embeddings); give it the frozen base.
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def named_adapter_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The parameters this adapter owns (everything but the wrapped layer's), by structure."""
        for name, parameter in self.named_parameters():
            if not name.startswith("base_layer."):
                yield name, parameter

    def rotated_vectors(self) -> str | None:
        """Which singular vectors of the base weight the adapter rotates, for the parameter plan (None: none)."""
        return None

    @abc.abstractmethod
    def delta_weight(self) -> torch.Tensor:
        """W' − W for the current adapter parameters (differentiable)."""

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        with parameter_math(x.device):
            weight = add_delta(self.base_layer.weight, self.delta_weight()).to(dtype)
            bias = self.base_layer.bias
            return F.linear(x.to(dtype), weight, None if bias is None else bias.to(dtype))

    def merged_weight(self) -> torch.Tensor:
        """W + ΔW in the base weight's dtype, added in fp32 and rounded once."""
        with torch.no_grad(), parameter_math(self.base_layer.weight.device):
            return add_delta(self.base_layer.weight, self.delta_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        return self.adapted_forward(x)

    @torch.no_grad()
    def merge(self) -> None:
        """Write W + ΔW into the base layer (checked finite first); the adapter then costs nothing."""
        if self.merged:
            return
        merged = self.merged_weight()
        if not torch.isfinite(merged).all():
            raise ValueError(f"{type(self).__name__}: merged weight is not finite; the adapter has diverged")
        # The pre-merge weight is kept and restored bit for bit on unmerge: W + ΔW − ΔW is not W in
        # floating point, and repeated merge/unmerge cycles must never let the frozen weight drift.
        self._unmerged_weight = self.base_layer.weight.detach().clone()
        self.base_layer.weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.base_layer.weight.copy_(self._unmerged_weight)
        del self._unmerged_weight
        self.merged = False

    def merged_linear(self) -> nn.Linear:
        """A plain `nn.Linear` with the adapted weight, for export (the adapter itself is unchanged)."""
        with torch.no_grad():
            weight = self.base_layer.weight if self.merged else self.merged_weight()
            linear = nn.Linear(
                self.in_features,
                self.out_features,
                bias=self.base_layer.bias is not None,
                device=weight.device,
                dtype=weight.dtype,
            )
            linear.weight.copy_(weight)
            if self.base_layer.bias is not None:
                linear.bias.copy_(self.base_layer.bias)
        return linear
