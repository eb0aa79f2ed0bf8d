"""VeRA (Kopiczko et al., 2024) as Hugging Face PEFT implements it: W' = W + Λ_b B Λ_d A.

One frozen random pair serves every adapted layer: A (r × the largest d_in) and B (the largest d_out × r),
drawn from a CPU generator seeded with `projection_seed` (PEFT's `projection_prng_key`), A first, each
Kaiming-uniform with PEFT's bound √(6/fan_in) (A: √(6/max d_in), B: √(6/r)); a layer uses the slices
A[:, :d_in] and B[:d_out, :]. Only the scaling vectors train: Λ_d (r, init `d_initial` = 0.1) and Λ_b
(d_out, init 0), so W' = W at init. Trainable per layer: d_out + r. The same targets, r and seed give
PEFT's projections bit for bit (tests/test_adapters_layers.py), so the projections are regenerated
rather than stored; adapter files and checkpoints record their fingerprint.

Earlier versions of this project drew one pair per layer shape with the bound 1/√fan_in, which made
ΔW 3.7-6× smaller at the same λ (so a learning rate meant something else); adapters trained that way
do not reproduce with these projections.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import compute_dtype
from asr_peft.errors import ConfigError


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(−b, b) with b = √(6/fan_in), fan_in = shape[1]: Kaiming-uniform for a ReLU gain, as PEFT's VeRA draws it."""
    bound = math.sqrt(6 / shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class SharedProjections:
    """The model's one frozen (A, B) pair, sized for the largest of `layers`, drawn from `seed`."""

    def __init__(self, layers: Sequence[nn.Linear], r: int, seed: int):
        if not isinstance(r, int) or r <= 0:
            raise ConfigError(f"method.r={r!r} must be a positive integer")
        d_in, d_out = max(layer.in_features for layer in layers), max(layer.out_features for layer in layers)
        if any(layer.weight.is_meta for layer in layers):  # planning: shapes only
            self.A, self.B = torch.empty(r, d_in, device="meta"), torch.empty(d_out, r, device="meta")
        else:
            generator = torch.Generator(device="cpu").manual_seed(seed)
            self.A = kaiming_uniform((r, d_in), generator)
            self.B = kaiming_uniform((d_out, r), generator)

    def for_layer(self, layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        device = layer.weight.device
        return self.A[:, : layer.in_features].to(device), self.B[: layer.out_features].to(device)


class VeRALinear(AdapterLayer):
    # the shared projections, registered as buffers in __init__
    vera_A: torch.Tensor
    vera_B: torch.Tensor

    def __init__(self, base_layer: nn.Linear, projections: SharedProjections, *, d_initial: float = 0.1):
        super().__init__(base_layer)
        weight = base_layer.weight
        A, B = projections.for_layer(base_layer)
        self.register_buffer("vera_A", A, persistent=False)
        self.register_buffer("vera_B", B, persistent=False)
        self.lambda_d = nn.Parameter(torch.full((A.shape[0],), float(d_initial), device=weight.device))
        self.lambda_b = nn.Parameter(torch.zeros(base_layer.out_features, device=weight.device))

    def peft_form(self, original_weight: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
        """PEFT's VeRA: the same projections regenerate from `projection_prng_key`, so only the scales travel."""
        return (
            {"peft_type": "VERA", "r": self.lambda_d.shape[0]},
            {"vera_lambda_b": self.lambda_b.detach(), "vera_lambda_d": self.lambda_d.detach()},
        )

    def delta_weight(self) -> torch.Tensor:
        dtype = self.lambda_b.dtype
        return (self.lambda_b[:, None] * self.vera_B.to(dtype)) @ (self.lambda_d[:, None] * self.vera_A.to(dtype))

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        hidden = F.linear(x.to(dtype), self.vera_A.to(dtype)) * self.lambda_d.to(dtype)
        return self.base_layer(x) + F.linear(hidden, self.vera_B.to(dtype)) * self.lambda_b.to(dtype)
