"""SVFT: singular-vector-guided fine-tuning (Lingam et al., arXiv 2405.19597).

    W' = U (diag σ + sigmoid(g)·M) Vᵀ = W + sigmoid(g) · U M Vᵀ

U, σ, V are the frozen thin SVD of W; M (r_max × r_max) is sparse on a fixed pattern, starts at 0,
and its non-zero entries plus the gate g are the trainable parameters (count: entries + 1). M's entries
are coordinates in the singular basis: U and V are not stored but rebuilt on load in the canonical
basis of `adapters/svd.py` (a sign flip of a pair would flip M's off-diagonal entries in its row and
column), and adapter files and checkpoints record their fingerprint (`adapters/fingerprint.py`).

Patterns (`method.pattern`, `method.off_diag` = d):
- `plain`: the diagonal, r_max entries (ESPnet's MyST recipe);
- `banded`: all (i, j) with |i − j| ≤ d, r_max(2d+1) − d(d+1) entries;
- `random`: the same number of entries as `banded`, at positions drawn with a fixed seed;
- `top_k`: the same number, at the positions of the largest alignment scores |u_iᵀ v_j| between left and
  right singular vectors (over their first min(d_out, d_in) coordinates when W is not square).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import compute_dtype
from asr_peft.adapters.svd import ThinSVD
from asr_peft.errors import ConfigError

PATTERNS = ("plain", "banded", "random", "top_k")


def banded_positions(r: int, d: int) -> torch.Tensor:
    rows = torch.arange(r).repeat_interleave(2 * d + 1)
    cols = rows + torch.arange(-d, d + 1).repeat(r)
    keep = (cols >= 0) & (cols < r)
    return torch.stack([rows[keep], cols[keep]])


def pattern_positions(pattern: str, r: int, d: int, svd: ThinSVD | None, seed: int) -> torch.Tensor:
    """2×n (row, col) positions of M's trainable entries."""
    if pattern == "plain":
        return torch.arange(r).repeat(2, 1)
    if d < 0 or d >= r:
        raise ConfigError(f"method.off_diag={d} must be in [0, {r - 1}] for a layer of rank {r}")
    count = r * (2 * d + 1) - d * (d + 1)
    if pattern == "banded":
        return banded_positions(r, d)
    if pattern == "random":
        generator = torch.Generator().manual_seed(seed)
        flat = torch.randperm(r * r, generator=generator)[:count].sort().values
        return torch.stack([flat // r, flat % r])
    if svd is None:  # meta device: the count is known, the positions are not needed
        return torch.zeros(2, count, dtype=torch.long)
    common = min(svd.U.shape[0], svd.Vh.shape[1])
    scores = (svd.U[:common].T @ svd.Vh[:, :common].T).abs()
    flat = scores.flatten().topk(count).indices.sort().values.cpu()
    return torch.stack([flat // r, flat % r])


class SVFTLinear(AdapterLayer):
    U: torch.Tensor  # buffers: the top-r factors of W and the pattern's (row, column) positions
    V: torch.Tensor
    positions: torch.Tensor

    def __init__(self, base_layer: nn.Linear, svd: ThinSVD | None, *, pattern: str = "plain", off_diag: int = 0, seed: int = 0):
        super().__init__(base_layer)
        if pattern not in PATTERNS:
            raise ConfigError(f"method.pattern={pattern!r} is unknown; choose from {', '.join(PATTERNS)}")
        weight = base_layer.weight
        r = min(base_layer.in_features, base_layer.out_features)
        factory: dict[str, Any] = {"device": weight.device, "dtype": torch.float32}
        positions = pattern_positions(pattern, r, off_diag, svd, seed)
        self.r = r
        self.diagonal = pattern == "plain"
        self.values = nn.Parameter(torch.zeros(positions.shape[1], **factory))
        self.gate = nn.Parameter(torch.zeros(1, **factory))  # 1-element, not 0-d: FSDP refuses scalars
        if svd is None:
            U, Vh = torch.empty(base_layer.out_features, r, **factory), torch.empty(r, base_layer.in_features, **factory)
        else:
            U, Vh = svd.U, svd.Vh
        self.register_buffer("U", U.contiguous(), persistent=False)
        self.register_buffer("V", Vh.T.contiguous(), persistent=False)
        self.register_buffer("positions", positions.to(weight.device), persistent=False)

    def sparse_core(self) -> torch.Tensor:
        """sigmoid(g)·M as a dense r×r matrix (only the pattern's entries non-zero)."""
        core = self.values.new_zeros(self.r, self.r).index_put((self.positions[0], self.positions[1]), self.values)
        return torch.sigmoid(self.gate) * core

    def delta_weight(self) -> torch.Tensor:
        U, V = self.U.to(self.values.dtype), self.V.to(self.values.dtype)
        if self.diagonal:
            return (U * (torch.sigmoid(self.gate) * self.values)) @ V.T
        return U @ self.sparse_core() @ V.T

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = compute_dtype(x)
        projected = x.to(dtype) @ self.V.to(dtype)  # activation path: never forms the d_out×d_in update
        if self.diagonal:
            projected = projected * (torch.sigmoid(self.gate) * self.values).to(dtype)
        else:
            projected = projected @ self.sparse_core().to(dtype).T
        return self.base_layer(x) + projected @ self.U.to(dtype).T
