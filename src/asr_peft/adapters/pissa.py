"""PiSSA (Meng et al., 2024): LoRA initialised on the principal singular subspace.

With W's top-r SVD (U_r, S_r, V_r) and s = α/r: A = √(S_r/s) V_rᵀ, B = U_r √(S_r/s), so s·B A is
exactly the principal part of W; the frozen base weight becomes the residual W_res = W − s·B₀A₀.
W' = W_res + s·B A equals W at init. Trainable: r(d_in + d_out), as LoRA.
"""

from __future__ import annotations

import torch
from torch import nn

from asr_peft.adapters.lora import LoRALinear
from asr_peft.adapters.precision import add_delta
from asr_peft.adapters.svd import ThinSVD


class PiSSALinear(LoRALinear):
    def peft_form(self, original_weight: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
        """A rank-2r LoRA on the stock weight W (PEFT's own PiSSA-to-LoRA conversion): W' = W_res + s·B A =
        W + s·(B A − B₀A₀), so A' = [A; A₀], B' = [B, −B₀], with B₀A₀ = (W − W_res)/s, rank r, factored
        again by its SVD (the frozen base holds W_res, not B₀ and A₀)."""
        r = self.lora_A.shape[0]
        principal = (original_weight.float() - self.base_layer.weight.float()) / self.scaling
        U, S, Vh = torch.linalg.svd(principal, full_matrices=False)
        root = S[:r].sqrt()
        B0, A0 = U[:, :r] * root, root[:, None] * Vh[:r]
        return (
            {"peft_type": "LORA", "r": 2 * r, "lora_alpha": self.scaling * 2 * r},
            {
                "lora_A.weight": torch.cat([self.lora_A.detach(), A0]),
                "lora_B.weight": torch.cat([self.lora_B.detach(), -B0], dim=1),
            },
        )

    def __init__(self, base_layer: nn.Linear, svd: ThinSVD | None, *, r: int, alpha: float):
        super().__init__(base_layer, r=r, alpha=alpha)
        if svd is None:  # meta device: shapes only
            return
        root = torch.sqrt(svd.S[:r] / self.scaling)
        with torch.no_grad():
            self.lora_A.copy_(root[:, None] * svd.Vh[:r])
            self.lora_B.copy_(svd.U[:, :r] * root[None, :])
            # The residual spectrum stays frozen in the base layer (its weight is rewritten once, here).
            base_layer.weight.copy_(add_delta(base_layer.weight, -self.scaling * self.lora_B @ self.lora_A))
