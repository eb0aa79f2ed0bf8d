"""VeRA (Kopiczko et al., 2024): W' = W + Λ_b B Λ_d A with frozen random A, B shared by all layers of a shape.

A (r×d_in) and B (d_out×r) are drawn once per layer shape from a fixed seed (Kaiming-uniform) and
shared; only the scaling vectors are trained: Λ_d (r, init `d_initial` = 0.1) and Λ_b (d_out, init 0),
so W' = W at init. Trainable per layer: d_out + r. The projections are regenerated from the seed, so
adapter-only checkpoints need not store them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import compute_dtype


class SharedProjections:
    """One frozen random (A, B) pair per (d_out, d_in, r), drawn from `seed` on first use."""

    def __init__(self, seed: int):
        self.seed = seed
        self.pairs: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, d_out: int, d_in: int, r: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (d_out, d_in, r)
        if key not in self.pairs:
            if device.type == "meta":
                return torch.empty(r, d_in, device=device), torch.empty(d_out, r, device=device)
            generator = torch.Generator().manual_seed(self.seed + d_out * 100_003 + d_in * 1_009 + r)
            A = torch.empty(r, d_in).uniform_(-1, 1, generator=generator) * math.sqrt(6 / d_in) / math.sqrt(1 + 5)
            B = torch.empty(d_out, r).uniform_(-1, 1, generator=generator) * math.sqrt(6 / r) / math.sqrt(1 + 5)
            self.pairs[key] = (A.to(device), B.to(device))
        return self.pairs[key]


class VeRALinear(AdapterLayer):
    def __init__(self, base_layer: nn.Linear, projections: SharedProjections, *, r: int, d_initial: float = 0.1):
        super().__init__(base_layer)
        weight = base_layer.weight
        A, B = projections.get(base_layer.out_features, base_layer.in_features, r, weight.device)
        self.register_buffer("vera_A", A, persistent=False)
        self.register_buffer("vera_B", B, persistent=False)
        self.lambda_d = nn.Parameter(torch.full((r,), d_initial, device=weight.device))
        self.lambda_b = nn.Parameter(torch.zeros(base_layer.out_features, device=weight.device))

    def delta_weight(self) -> torch.Tensor:
        dtype = self.lambda_b.dtype
        return (self.lambda_b[:, None] * self.vera_B.to(dtype)) @ (self.lambda_d[:, None] * self.vera_A.to(dtype))

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        hidden = F.linear(x.to(dtype), self.vera_A.to(dtype)) * self.lambda_d.to(dtype)
        return self.base_layer(x) + F.linear(hidden, self.vera_B.to(dtype)) * self.lambda_b.to(dtype)
