"""DoRA (Liu et al., 2024): W' = m ⊙ (W + s·B A) / ‖W + s·B A‖_row, the norm detached.

m (d_out) starts as the row norms of W, so W' = W at init. Detaching the norm (the paper's §4.3,
as HF PEFT does) keeps the gradient to the LoRA factors cheap. Trainable: r(d_in + d_out) + d_out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.lora import LoRALinear
from asr_peft.adapters.precision import compute_dtype, master_dtype, parameter_math


class DoRALinear(LoRALinear):
    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float):
        super().__init__(base_layer, r=r, alpha=alpha)
        weight = base_layer.weight
        magnitude = torch.empty(weight.shape[0], device=weight.device) if weight.is_meta else weight.norm(dim=1).float()
        self.magnitude = nn.Parameter(magnitude.detach().clone())

    def _combined(self) -> torch.Tensor:
        """W + s B A in fp32 (the parameter-side math of `adapters/precision.py`)."""
        dtype = master_dtype(self.lora_A.dtype)
        with parameter_math(self.lora_A.device):
            return self.base_layer.weight.to(dtype) + self.scaling * self.lora_B.to(dtype) @ self.lora_A.to(dtype)

    def _direction_scale(self, combined: torch.Tensor) -> torch.Tensor:
        """m / ‖W + s B A‖ per output row, the norm treated as a constant."""
        return self.magnitude.to(combined.dtype) / combined.norm(dim=1).detach()

    def peft_form(self, original_weight: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
        """LoRA's, with PEFT's DoRA flag and magnitude vector (the same detached-norm formula)."""
        fields, tensors = super().peft_form(original_weight)
        return {**fields, "use_dora": True}, {**tensors, "lora_magnitude_vector": self.magnitude.detach()}

    def delta_weight(self) -> torch.Tensor:
        combined = self._combined()
        return self._direction_scale(combined)[:, None] * combined - self.base_layer.weight.to(combined.dtype)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        bias = self.base_layer.bias
        x = x.to(dtype)
        low_rank = F.linear(F.linear(x, self.lora_A.to(dtype)), self.lora_B.to(dtype))
        unbiased = F.linear(x, self.base_layer.weight.to(dtype)) + self.scaling * low_rank
        out = unbiased * self._direction_scale(self._combined()).to(dtype)
        return out + bias.to(dtype) if bias is not None else out
