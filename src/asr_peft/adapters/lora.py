"""LoRA (Hu et al., 2021): W' = W + (α/r)·B A, A: r×d_in (Kaiming-uniform), B: d_out×r (zeros).

Also `LoRAEmbedding`, the same low-rank update on an embedding table (ESPnet's recipe adapts the
decoder's token embedding `decoder.embed.0` for the LoRA family): E' = E + (α/r)·(B A)ᵀ.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import add_delta, compute_dtype, parameter_math
from asr_peft.errors import ConfigError


def check_rank(r: int, in_features: int, out_features: int) -> None:
    if not 0 < r < min(in_features, out_features):
        raise ConfigError(
            f"method.r={r} must be positive and below the layer's smaller dimension "
            f"{min(in_features, out_features)} ({out_features}x{in_features})"
        )


class LoRALinear(AdapterLayer):
    def __init__(self, base_layer: nn.Linear, *, r: int, alpha: float):
        super().__init__(base_layer)
        check_rank(r, base_layer.in_features, base_layer.out_features)
        factory: dict[str, Any] = {"device": base_layer.weight.device, "dtype": torch.float32}
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, r, **factory))
        if not self.lora_A.is_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * self.lora_B @ self.lora_A

    def peft_form(self, original_weight: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
        """PEFT's LoRA config fields and tensors (names after the layer's) giving this layer's W' on the
        stock `original_weight`: PEFT's scaling lora_alpha / r is this layer's α/r."""
        r = self.lora_A.shape[0]
        return (
            {"peft_type": "LORA", "r": r, "lora_alpha": self.scaling * r},
            {"lora_A.weight": self.lora_A.detach(), "lora_B.weight": self.lora_B.detach()},
        )

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        low_rank = F.linear(F.linear(x.to(dtype), self.lora_A.to(dtype)), self.lora_B.to(dtype))
        return self.base_layer(x) + self.scaling * low_rank


class LoRAEmbedding(nn.Module):
    """A low-rank update of an embedding table; the table itself stays frozen."""

    def __init__(self, base_layer: nn.Embedding, *, r: int, alpha: float):
        super().__init__()
        if not isinstance(base_layer, nn.Embedding):
            raise ConfigError(f"method.embedding_targets matched a {type(base_layer).__name__}, not an nn.Embedding")
        check_rank(r, base_layer.num_embeddings, base_layer.embedding_dim)
        self.base_layer = base_layer
        base_layer.weight.requires_grad_(False)
        factory: dict[str, Any] = {"device": base_layer.weight.device, "dtype": torch.float32}
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.zeros(r, base_layer.num_embeddings, **factory))
        self.lora_B = nn.Parameter(torch.empty(base_layer.embedding_dim, r, **factory))
        if not self.lora_B.is_meta:
            nn.init.normal_(self.lora_B)  # zero A keeps E' = E at init, as in HF PEFT's embedding LoRA
        self.merged = False

    def named_adapter_parameters(self):
        yield "lora_A", self.lora_A
        yield "lora_B", self.lora_B

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_B @ self.lora_A).T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        embedded = self.base_layer(tokens)
        if self.merged:
            return embedded
        # An embedding is no autocast op: the update joins the table's own dtype (fp32 under autocast).
        dtype = embedded.dtype
        return embedded + self.scaling * F.embedding(tokens, self.lora_A.T.to(dtype)) @ self.lora_B.T.to(dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._unmerged_weight = self.base_layer.weight.detach().clone()  # restored exactly on unmerge
            with parameter_math(self.base_layer.weight.device):
                self.base_layer.weight.copy_(add_delta(self.base_layer.weight, self.delta_weight()))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight.copy_(self._unmerged_weight)
            del self._unmerged_weight
            self.merged = False
