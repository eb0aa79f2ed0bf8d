"""SSVD: structured SVD-guided adaptation (Wang, Watanabe, Van hamme, ASRU 2025, arXiv 2509.02830).

With the thin SVD `A = U diag(σ) Vᵀ` of the pretrained weight, SSVD keeps U (the output-side,
"semantic" directions) and the tail of the spectrum fixed, and adapts the top-k right singular
vectors by a rotation G and the top-k singular values by a gated shift:

    A' = U · diag(σ + [sigmoid(g)·Δσ, 0]) · blockdiag(G, I) · Vᵀ,      k = floor(p · min(d_out, d_in))

    rotation=approx  G = I + 2S           (first-order Cayley; S skew-symmetric, k(k−1)/2 numbers)
    rotation=cayley  G = (I − S)⁻¹(I + S)  (exactly orthogonal; solved, never inverted)
    rotation=free    G = I + F            (unconstrained F, k² numbers: the paper's ablation)

Trainable per layer: k + k(k−1)/2 + 1 (free: k + k² + 1); all start at zero, so A' = A at init.

Sides (`method.side`, named by the singular vectors of W = U diag(σ) Vᵀ it rotates on every layer shape):

    smaller (default)  the smaller dimension's: V where d_in <= d_out, U where d_in > d_out (FFN `w_2`, cgmlp
                       `channel_proj2`, `merge_proj`, `embed.out` in OWSM; `fc2` in Whisper). The authors' code
                       factorises A = Wᵀ on those wide layers, so it always rotates the smaller side: the paper's SSVD.
    larger             the other dimension's (U where d_in <= d_out, V where d_in > d_out)
    input / output     V / U on every layer (A = W throughout)
    both               V and U on every layer, each with its own generator of the same kind (`method.rotation`)

The factorised matrix A is Wᵀ for smaller and larger on wide layers and W everywhere else; "the input side"
below means A's (V of A). A's input side is rotated by `smaller`, `input` and `both`, with k_in from `adapt.p`;
its output side by `larger`, `output` and `both`, with k_out from `method.p_out` (null: `adapt.p`), by the same
rule. So `adapt.p` sizes V's rotation and `method.p_out` U's under input, output and both (the project's extension:
the authors' SSVD-O code is not public). With K = max(k_in, k_out) (a side that is off counts 0):

    A' = A + U_K M V_Kᵀ,   M = G_out · diag(σ_K + sigmoid(g)·Δσ) · G_in − diag(σ_K)        (K×K)

G_in as above (its rows mix the rows of V_Kᵀ), G_out mixing the columns of U_K (U_K G_out), each acting
on its side's first k coordinates and the identity on the rest of K (the identity altogether for a side
that is off); Δσ has length K. Trainable per layer: K + 1 + gen(k_in) + gen(k_out), gen(k) = k(k−1)/2
(approx, cayley) or k² (free), gen(0) = 0; A's input side's generator is `skew` (`rotation_free`), its
output side's `skew_out` (`rotation_free_out`). Everything below (formulations, merging) holds for the K×K
core unchanged. `adapt.p_groups` may give module groups their own `adapt.p`, and `method.p_out_groups` their
own `method.p_out` (`adapters/budget.py`). `dry_run=true` lists the vectors each module type rotates.

Configurations written before the side names (with `method.orientation`) are read by `current_method`.

Basis. The trained numbers are coordinates in the basis of A's top-k singular vectors, which are
defined only up to a sign per pair. They are not stored: they are rebuilt on load by `adapters/svd.py`
in its canonical basis (each right singular vector of W has its largest-magnitude entry positive), and
adapter files and checkpoints record a fingerprint of them (`adapters/fingerprint.py`), so a reload is
the trained model or a one-line error.

Against the authors' code (converting an ESPnet SSVD checkpoint): its skew generator `K_vec` forms
A = I − 2K where this project forms G = I + 2S, so S = −K (the `skew` vector holds S's strict upper
triangle, row-major); Δσ and the gate carry over. Their checkpoints store the factors with the
weights, in whatever signs their SVD returned: with d_j = ±1 the sign that maps their rotated vector j
onto this project's canonical one (d_j = sign of the dot product of the two), S_ij = −d_i·d_j·K_ij.

Efficient computation. Only the top-k block changes: A' = A + U_k M V_kᵀ with
M = diag(σ_k + sigmoid(g)Δσ)·G − diag(σ_k). In terms of W that is W' = W + L N Rᵀ (L, R the top-k
factors on the output and input side; N = M, or Mᵀ when Wᵀ was factorised). `formulation`:

- `efficient` (default): a custom autograd function forms W' once per step (d_out·k·(k+d_in) MACs),
  computes y = x W'ᵀ, and in the backward pass gives dx = dy W' and dN = (dy L)ᵀ (x R) — the full
  d_out×d_in weight gradient is never built. W is the frozen base weight, so W' = W exactly at init.
  For few input rows T (decoder layers see tens of tokens, the encoder hundreds of frames) forming W'
  costs more than going through the k-dim subspace: y = x Wᵀ + ((x R) Nᵀ) Lᵀ, dx = dy W + ((dy L) N) Rᵀ,
  dN from the saved x R. Beyond the frozen layer's own work that is T·k·(2d_in + 2d_out + 3k) MACs
  against d_out·k·(k+d_in) + T·k·(d_in + d_out + k), so each call takes the activation path when
  T·(d_in + d_out + 2k) < d_out·(k + d_in). Both paths are exact; they differ only in round-off.
  The formed-W' path keeps W' (d_out×d_in in the compute dtype) from the forward to the backward pass,
  per layer call; `recompute_weight=true` keeps only what rebuilds it and forms it again in the
  backward pass (one more d_out·k·(k+d_in) product per call, bit-identical gradients).
- `activation`: y = x Wᵀ + ((x R) Nᵀ) Lᵀ through plain autograd.
- `reference`: the authors' formulation, rebuilding W' = U diag(σ') blockdiag(G, I) Vᵀ + (W − U diag(σ) Vᵀ)
  from the full factors every step (kept for benchmarks and as a correctness reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.precision import compute_dtype, master_dtype, parameter_math
from asr_peft.adapters.svd import ThinSVD
from asr_peft.errors import ConfigError

ROTATIONS = ("approx", "cayley", "free")
FORMULATIONS = ("efficient", "activation", "reference")
SIDES = ("smaller", "larger", "input", "output", "both")
PAPER_SIDE = SIDES[0]  # the default: the authors' code rotates the smaller dimension's vectors
ROTATES_INPUT_SIDE = ("smaller", "input", "both")  # of the factorised matrix A: sized by adapt.p
ROTATES_OUTPUT_SIDE = ("larger", "output", "both")  # sized by method.p_out (null: adapt.p)
# Before the side names, `method.orientation` chose A (reference: Wᵀ on wide layers; input: W) and `side` A's sides.
LEGACY_SIDES = {
    ("reference", "input"): "smaller",
    ("reference", "output"): "larger",
    ("input", "input"): "input",
    ("input", "output"): "output",
    ("input", "both"): "both",
}


def rank_for(p: float, in_features: int, out_features: int) -> int:
    if not 0.0 < p <= 1.0:
        raise ConfigError(f"adapt.p={p} must be in (0, 1]")
    return max(1, math.floor(p * min(in_features, out_features)))


def side_ranks(side: str, p: float, p_out: float | None, in_features: int, out_features: int) -> tuple[int, int]:
    """(k_in, k_out): the rotated sizes of the input and output sides, 0 for a side that is not rotated.

    Both follow `rank_for`, k_in from `adapt.p` and k_out from `method.p_out` (None: `adapt.p`)."""
    if side not in SIDES:
        raise ConfigError(f"method.side={side!r} is unknown; choose from {', '.join(SIDES)}")
    if p_out is not None and not (isinstance(p_out, (int, float)) and not isinstance(p_out, bool) and 0.0 < p_out <= 1.0):
        raise ConfigError(f"method.p_out={p_out!r} must be a fraction in (0, 1] or null (same as adapt.p)")
    k_in = rank_for(p, in_features, out_features) if side in ROTATES_INPUT_SIDE else 0
    k_out = rank_for(p if p_out is None else p_out, in_features, out_features) if side in ROTATES_OUTPUT_SIDE else 0
    return k_in, k_out


def factorises_transpose(side: str, in_features: int, out_features: int) -> bool:
    """Whether the factorised matrix A is Wᵀ: for the sides named by dimension, on wide layers (d_in > d_out)."""
    return side in ("smaller", "larger") and in_features > out_features


def current_method(method: Mapping[str, Any], *, trained_in: str | None = None) -> dict[str, Any]:
    """`method` in today's keys. An SSVD configuration written with `method.orientation` (before `method.side`
    named W's singular vectors) becomes the side that rotates the same vectors with the same tensors. The one
    that has no such side, orientation=reference with side=both (A = Wᵀ on wide layers, so `skew` rotated U
    there), reads as `both` for a record's description, but is refused when tensors trained with it are to be
    loaded (`trained_in` names their file or run): today's `both` holds them the other way round on wide layers."""
    method = dict(method)
    if method.get("name") != "ssvd" or "orientation" not in method:
        return method
    orientation, side = method.pop("orientation"), method.get("side", "input")
    if (orientation, side) == ("reference", "both"):
        if trained_in is not None:
            raise ConfigError(
                f"{trained_in} was trained with method.orientation=reference side=both, whose wide layers (d_in > d_out) "
                "this version parameterises the other way round (side=both rotates V with `skew` on every layer); "
                "load it with the asr-peft version that trained it, or train it again"
            )
        method["side"] = "both"
        return method
    if (orientation, side) not in LEGACY_SIDES:
        raise ConfigError(f"method.orientation={orientation!r} with method.side={side!r} is not a configuration any version read")
    method["side"] = LEGACY_SIDES[orientation, side]
    return method


def skew_symmetric(upper: torch.Tensor, k: int) -> torch.Tensor:
    """The k×k skew-symmetric matrix whose strict upper triangle is `upper` (row-major)."""
    S = upper.new_zeros(k, k)
    rows, cols = torch.triu_indices(k, k, offset=1, device=upper.device)
    S = S.index_put((rows, cols), upper)
    return S - S.T


def activation_path_is_cheaper(rows: int, d_out: int, d_in: int, k: int) -> bool:
    """Whether x·R (activation path) beats forming W' for `rows` input vectors (see module docstring)."""
    return rows * (d_in + d_out + 2 * k) < d_out * (k + d_in)


def _adapted_weight(weight, left, right, core, dtype):
    """W' = W + L N Rᵀ added in fp32 and rounded once to the compute dtype."""
    master = master_dtype(weight.dtype)
    return torch.addmm(weight.to(master), left.to(master) @ core.to(master), right.to(master).T).to(dtype)


class _LowRankUpdateLinear(torch.autograd.Function):
    """y = x (W + L N Rᵀ)ᵀ + b with a gradient for N only, never forming dW (see module docstring).

    Autocast is declared by explicit casts, for any device: the products run in the dtype the frozen
    layer would use here (`compute_dtype`), W' is formed in fp32 and rounded once, and each gradient
    comes back in its input's own dtype (x's, and N's fp32), so fp32 factors never meet a bf16 dy.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, left, right, core, recompute_weight):
        dtype = compute_dtype(x)  # read before autocast is switched off for the explicit casts below
        ctx.dtypes = (x.dtype, core.dtype, dtype)
        with parameter_math(x.device):
            x = x.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            rows = x.numel() // x.shape[-1]
            d_out, d_in = weight.shape
            ctx.activation_path = activation_path_is_cheaper(rows, d_out, d_in, core.shape[0])
            if ctx.activation_path:
                left_c, right_c, core_c = left.to(dtype), right.to(dtype), core.to(dtype)
                projected = x @ right_c
                ctx.save_for_backward(projected, weight, left_c, right_c, core_c)
                return F.linear(x, weight.to(dtype), bias) + (projected @ core_c.T) @ left_c.T
            adapted = _adapted_weight(weight, left, right, core, dtype)
            ctx.recompute_weight = recompute_weight
            # Either W' itself (d_out×d_in, the fast default) or what rebuilds it (W is the model's own).
            ctx.save_for_backward(x, weight if recompute_weight else adapted, left, right, core)
            return F.linear(x, adapted, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x_dtype, core_dtype, dtype = ctx.dtypes
        grad_x = grad_core = None
        with parameter_math(grad_out.device):
            grad_out = grad_out.to(dtype)
            if ctx.activation_path:
                projected, weight, left, right, core = ctx.saved_tensors
                grad_left = grad_out @ left
                if ctx.needs_input_grad[0]:
                    grad_x = (grad_out @ weight.to(dtype) + (grad_left @ core) @ right.T).to(x_dtype)
                if ctx.needs_input_grad[5]:
                    k = core.shape[0]
                    grad_core = (grad_left.reshape(-1, k).T @ projected.reshape(-1, k)).to(core_dtype)
                return grad_x, None, None, None, None, grad_core, None
            x, weight_or_adapted, left, right, core = ctx.saved_tensors
            if ctx.needs_input_grad[0]:
                adapted = (
                    _adapted_weight(weight_or_adapted, left, right, core, dtype) if ctx.recompute_weight else weight_or_adapted
                )
                grad_x = (grad_out @ adapted).to(x_dtype)
            if ctx.needs_input_grad[5]:
                flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
                flat_x = x.reshape(-1, x.shape[-1])
                grad_core = ((flat_grad @ left.to(dtype)).T @ (flat_x @ right.to(dtype))).to(core_dtype)
        return grad_x, None, None, None, None, grad_core, None


class SSVDLinear(AdapterLayer):
    # buffers registered in __init__ (nn.Module's attribute lookup types them as Tensor | Module otherwise)
    left: torch.Tensor
    right: torch.Tensor
    sigma_k: torch.Tensor
    U_full: torch.Tensor
    S_full: torch.Tensor
    Vh_full: torch.Tensor

    def __init__(
        self,
        base_layer: nn.Linear,
        svd: ThinSVD | None,
        *,
        p: float,
        rotation: str = "approx",
        formulation: str = "efficient",
        recompute_weight: bool = False,
        side: str = PAPER_SIDE,
        p_out: float | None = None,
    ):
        super().__init__(base_layer)
        for key, value, choices in (
            ("rotation", rotation, ROTATIONS),
            ("formulation", formulation, FORMULATIONS),
        ):
            if value not in choices:
                raise ConfigError(f"method.{key}={value!r} is unknown; choose from {', '.join(choices)}")
        d_out, d_in = base_layer.out_features, base_layer.in_features
        self.k_in, self.k_out = side_ranks(side, p, p_out, d_in, d_out)
        self.k = k = max(self.k_in, self.k_out)  # the core's size: both sides' top-k bases
        if not isinstance(recompute_weight, bool):
            raise ConfigError(f"method.recompute_weight={recompute_weight!r} must be true or false")
        self.rotation, self.formulation, self.recompute_weight = rotation, formulation, recompute_weight
        self.transposed = factorises_transpose(side, d_in, d_out)
        weight = base_layer.weight
        factory: dict[str, Any] = {"device": weight.device, "dtype": torch.float32}
        self.delta_sigma = nn.Parameter(torch.zeros(k, **factory))
        self.gate = nn.Parameter(torch.zeros(1, **factory))  # 1-element, not 0-d: FSDP refuses scalars
        # One generator per rotated side, named after the side (`skew`/`rotation_free`: the input side,
        # as before the output side existed, so input-side adapter files keep their keys).
        for suffix, size in (("", self.k_in), ("_out", self.k_out)):
            if size == 0:
                continue
            if rotation == "free":
                self.register_parameter("rotation_free" + suffix, nn.Parameter(torch.zeros(size, size, **factory)))
            else:
                self.register_parameter("skew" + suffix, nn.Parameter(torch.zeros(size * (size - 1) // 2, **factory)))
        # Factors are derived from the frozen weight, so they stay out of checkpoints (non-persistent)
        # and are recomputed (or read from the SVD cache) in the canonical basis when the method is
        # applied again; the fingerprint checks they are the ones the adapter was trained in.
        r_max = min(d_in, d_out)
        if svd is None:  # meta device: shapes only
            U, S, Vh = (torch.empty(d_out, r_max, **factory), torch.empty(r_max, **factory), torch.empty(r_max, d_in, **factory))
        else:  # the SVD of W; that of Wᵀ has the same factors, swapped
            U, S, Vh = svd.U, svd.S, svd.Vh
        # Output-side L (d_out×k) and input-side R (d_in×k) factors of W's top-k block; factorising Wᵀ
        # instead only changes which side the rotation acts on (N = Mᵀ, see core()).
        self.register_buffer("left", U[:, :k].contiguous(), persistent=False)
        self.register_buffer("right", Vh[:k].T.contiguous(), persistent=False)
        self.register_buffer("sigma_k", S[:k].clone(), persistent=False)
        if formulation == "reference":  # the factors of A = W (or Wᵀ), as the reference code holds them
            U_A, Vh_A = (Vh.T, U.T) if self.transposed else (U, Vh)
            self.register_buffer("U_full", U_A.contiguous(), persistent=False)
            self.register_buffer("S_full", S.contiguous(), persistent=False)
            self.register_buffer("Vh_full", Vh_A.contiguous(), persistent=False)

    def rotated_vectors(self) -> str:
        """W's singular vectors this layer rotates, per rotated side: V (right, W's input side) or U (left, W's
        output side); A's input side is W's output side where A = Wᵀ (side=smaller or larger on a wide layer)."""
        input_side, output_side = ("U", "V") if self.transposed else ("V", "U")
        sides = [f"{input_side} (k={self.k_in})"] if self.k_in else []
        return " and ".join(sides + ([f"{output_side} (k={self.k_out})"] if self.k_out else []))

    def _generator(self, size: int, suffix: str) -> torch.Tensor:
        """One side's `size`×`size` rotation in fp32 (fp64 for an fp64 model), whatever the storage dtype."""
        dtype = master_dtype(self.delta_sigma.dtype)
        eye = torch.eye(size, device=self.delta_sigma.device, dtype=dtype)
        if self.rotation == "free":
            return eye + getattr(self, "rotation_free" + suffix).to(dtype)
        S = skew_symmetric(getattr(self, "skew" + suffix).to(dtype), size)
        if self.rotation == "approx":
            return eye + 2 * S
        return torch.linalg.solve(eye - S, eye + S)

    def _padded(self, G: torch.Tensor) -> torch.Tensor:
        """G on the first coordinates of the core, identity on the rest (a side with the smaller k)."""
        rest = self.k - G.shape[0]
        return G if rest == 0 else torch.block_diag(G, torch.eye(rest, device=G.device, dtype=G.dtype))

    def rotation_matrix(self) -> torch.Tensor:
        """G_in (k×k, the input side of the factorised matrix); the identity where that side is not rotated."""
        if self.k_in == 0:
            return torch.eye(self.k, device=self.delta_sigma.device, dtype=master_dtype(self.delta_sigma.dtype))
        return self._padded(self._generator(self.k_in, ""))

    def output_rotation_matrix(self) -> torch.Tensor | None:
        """G_out (k×k, the output side of the factorised matrix), or None where that side is not rotated."""
        return self._padded(self._generator(self.k_out, "_out")) if self.k_out else None

    def core(self) -> torch.Tensor:
        """N: W' = W + L N Rᵀ (M of the factorised matrix, transposed when Wᵀ was factorised), in fp32."""
        G = self.rotation_matrix()
        sigma = self.sigma_k.to(G.dtype)
        scaled = sigma + torch.sigmoid(self.gate.to(G.dtype)) * self.delta_sigma.to(G.dtype)
        rotated = scaled[:, None] * G  # diag(σ + g·Δσ) G_in
        G_out = self.output_rotation_matrix()
        if G_out is not None:
            rotated = G_out @ rotated
        M = rotated - torch.diag(sigma)
        return M.T if self.transposed else M

    def delta_weight(self) -> torch.Tensor:
        with parameter_math(self.left.device):
            core = self.core()
            return self.left.to(core.dtype) @ core @ self.right.to(core.dtype).T

    def _reference_weight(self) -> torch.Tensor:
        """The authors' form: the whole W' from the full factors, plus the SVD round-off residual (fp32)."""
        k = self.k
        G = self.rotation_matrix()
        U, S, Vh = (t.to(G.dtype) for t in (self.U_full, self.S_full, self.Vh_full))
        scaled = torch.cat([S[:k] + torch.sigmoid(self.gate.to(G.dtype)) * self.delta_sigma.to(G.dtype), S[k:]])
        rotated = torch.cat([G @ Vh[:k], Vh[k:]])
        G_out = self.output_rotation_matrix()
        U_rotated = U if G_out is None else torch.cat([U[:, :k] @ G_out, U[:, k:]], dim=1)
        W = self.base_layer.weight.to(G.dtype)
        residual = (W.T if self.transposed else W) - (U * S) @ Vh
        adapted = (U_rotated * scaled) @ rotated + residual
        return adapted.T if self.transposed else adapted

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.base_layer.weight, self.bias
        if self.formulation == "efficient":
            with parameter_math(x.device):
                core = self.core()
            return _LowRankUpdateLinear.apply(x, weight, bias, self.left, self.right, core, self.recompute_weight)
        dtype = compute_dtype(x)
        with parameter_math(x.device):
            x = x.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            if self.formulation == "activation":
                core = self.core().to(dtype)
                return F.linear(x, weight.to(dtype), bias) + ((x @ self.right.to(dtype)) @ core.T) @ self.left.to(dtype).T
            return F.linear(x, self._reference_weight().to(dtype), bias)
