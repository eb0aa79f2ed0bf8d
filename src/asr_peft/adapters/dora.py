"""DoRA (Liu et al., 2024): W' = m ⊙ (W + s·B A) / ‖W + s·B A‖_row, the norm detached.

m (d_out) starts as the row norms of W, so W' = W at init. Detaching the norm (the paper's §4.3,
as HF PEFT does) keeps the gradient to the LoRA factors cheap. Trainable: r(d_in + d_out) + d_out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.lora import LoRALinear


class DoRALinear(LoRALinear):
    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float):
        super().__init__(base_layer, r=r, alpha=alpha)
        weight = base_layer.weight
        magnitude = torch.empty(weight.shape[0], device=weight.device) if weight.is_meta else weight.norm(dim=1).float()
        self.magnitude = nn.Parameter(magnitude.detach().clone())

    def _direction_scale(self) -> torch.Tensor:
        """m / ‖W + s B A‖ per output row, the norm treated as a constant."""
        combined = self.base_layer.weight + self.scaling * self.lora_B @ self.lora_A
        return self.magnitude / combined.norm(dim=1).detach()

    def delta_weight(self) -> torch.Tensor:
        combined = self.base_layer.weight + self.scaling * self.lora_B @ self.lora_A
        return (self._direction_scale()[:, None] * combined - self.base_layer.weight).to(self.base_layer.weight.dtype)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.base_layer.bias
        unbiased = F.linear(x, self.base_layer.weight) + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)
        out = unbiased * self._direction_scale()
        return out + bias if bias is not None else out
