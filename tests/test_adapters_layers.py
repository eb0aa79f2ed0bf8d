"""Adapter layers on plain nn.Linear: formulas, counts, gradients, merge, against independent truths."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from asr_peft.adapters import apply_method, merge_adapters, trainable_parameter_count, unmerge_adapters
from asr_peft.adapters.dora import DoRALinear
from asr_peft.adapters.lora import LoRALinear
from asr_peft.adapters.ssvd import SSVDLinear, activation_path_is_cheaper, skew_symmetric
from asr_peft.adapters.svd import thin_svds
from asr_peft.adapters.svft import SVFTLinear
from asr_peft.errors import ConfigError

D_OUT, D_IN = 24, 40


def linear(d_out=D_OUT, d_in=D_IN, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out)


def randomize(module: nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """Give every adapter parameter a non-zero value, as after some training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_adapter_parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


def ssvd(base, p=0.5, **kw):
    return SSVDLinear(base, thin_svds([base.weight])[0], p=p, **kw)


def test_skew_symmetric_and_rotations():
    k = 5
    layer = ssvd(linear(), p=k / D_OUT)
    assert layer.k == k
    with torch.no_grad():
        layer.skew.copy_(torch.randn(k * (k - 1) // 2))
    S = skew_symmetric(layer.skew, k)
    assert torch.equal(S, -S.T) and torch.equal(torch.diagonal(S), torch.zeros(k))
    assert torch.allclose(layer.rotation_matrix(), torch.eye(k) + 2 * S)  # approx: G = I + 2S
    layer.rotation = "cayley"
    G = layer.rotation_matrix()
    assert torch.allclose(G.T @ G, torch.eye(k), atol=1e-5)  # strict Cayley: orthogonal
    assert torch.allclose((torch.eye(k) - S) @ G, torch.eye(k) + S, atol=1e-5)


SIDES = [
    {"side": "smaller"},
    {"side": "larger"},
    {"side": "input"},
    {"side": "output"},
    {"side": "both"},
    {"side": "both", "p_out": 0.25},  # k_out < k_in: G_out padded with the identity
    {"side": "both", "p_out": 0.75},
]  # k_out > k_in: G_in padded, Δσ as long as k_out


def side_id(side: dict) -> str:
    return "-".join(str(v) for v in side.values())


@pytest.mark.parametrize("side", SIDES, ids=side_id)
@pytest.mark.parametrize("d_out, d_in", [(24, 40), (40, 24)])
def test_ssvd_update_is_the_papers_formula(d_out, d_in, side):
    """W' from the layer equals U blockdiag(G_out, I) diag(σ + g·Δσ) blockdiag(G_in, I) Vᵀ of the
    factorised matrix (Wᵀ for side=smaller|larger on a wide layer, as the authors' code), each G built from
    its own parameters, on its own side's top k."""
    base = linear(d_out, d_in)
    layer = ssvd(base, p=0.5, **side)
    randomize(layer)
    W = base.weight.detach()
    # Singular vectors are defined up to a joint sign per pair, and G mixes them, so the formula is
    # evaluated on the same factorisation the layer used: that of W, transposed where the side is named by
    # dimension and the layer is wide (A = Wᵀ), which is a valid SVD of Wᵀ.
    svd = thin_svds([W])[0]
    U, S, Vh = svd.U, svd.S, svd.Vh
    assert torch.allclose(U @ torch.diag(S) @ Vh, W, atol=1e-5)
    transposed = side["side"] in ("smaller", "larger") and d_in > d_out
    if transposed:
        U, Vh = Vh.T, U.T
    r_max = S.numel()
    k_in = math.floor(0.5 * r_max) if side["side"] in ("smaller", "input", "both") else 0
    k_out = math.floor(side.get("p_out", 0.5) * r_max) if side["side"] in ("larger", "output", "both") else 0
    k = max(k_in, k_out)
    assert (layer.k_in, layer.k_out, layer.k) == (k_in, k_out, k)

    def rotation(parameters: str, size: int) -> torch.Tensor:  # G = I + 2S from the layer's own numbers
        G = torch.eye(size)
        if size:
            G = G + 2 * skew_symmetric(getattr(layer, parameters), size)
        return torch.block_diag(G, torch.eye(r_max - size))

    sigma = torch.cat([S[:k] + torch.sigmoid(layer.gate) * layer.delta_sigma, S[k:]])
    expected = U @ rotation("skew_out", k_out) @ torch.diag(sigma) @ rotation("skew", k_in) @ Vh
    expected = expected.T if transposed else expected
    assert torch.allclose(W + layer.delta_weight(), expected.detach(), atol=1e-5)


@pytest.mark.parametrize("side", SIDES[:5] + SIDES[6:], ids=side_id)
@pytest.mark.parametrize("formulation", ["activation", "reference"])
@pytest.mark.parametrize("shape, activation_path", [((3, 7), False), ((1, 2), True)])
def test_efficient_ssvd_matches_other_formulations_in_value_and_gradient(formulation, shape, activation_path, side):
    # 21 rows form W' (21·88 > 24·52), 2 rows go through the rank-k subspace: both paths are covered.
    k = ssvd(linear(), p=0.5, **side).k
    assert activation_path_is_cheaper(shape[0] * shape[1], D_OUT, D_IN, k) == activation_path
    torch.manual_seed(0)
    x = torch.randn(*shape, D_IN)
    layers = {}
    for name in ("efficient", formulation):
        layers[name] = ssvd(linear(), p=0.5, formulation=name, **side)
        randomize(layers[name])
    outputs = {name: layer(x) for name, layer in layers.items()}
    assert torch.allclose(outputs["efficient"], outputs[formulation], atol=1e-5)
    for name, out in outputs.items():
        (out**2).sum().backward()
    for (key, p_eff), (_, p_other) in zip(
        layers["efficient"].named_adapter_parameters(), layers[formulation].named_adapter_parameters()
    ):
        assert p_eff.grad is not None and p_eff.grad.abs().sum() > 0, key  # every side's generator trains
        assert torch.allclose(p_eff.grad, p_other.grad, rtol=1e-4, atol=1e-4), key
    assert layers["efficient"].base_layer.weight.grad is None


@pytest.mark.parametrize("side", ["smaller", "both"])
@pytest.mark.parametrize("rows", [4, 40])  # the activation path and the formed-W' path
def test_ssvd_gradient_reaches_the_input(rows, side):
    layer = ssvd(linear(), p=0.5, side=side)
    randomize(layer)
    x = torch.randn(rows, D_IN, requires_grad=True)
    layer(x).sum().backward()
    W_adapted = (layer.base_layer.weight + layer.delta_weight()).detach()
    assert torch.allclose(x.grad, torch.ones(rows, D_OUT) @ W_adapted, atol=1e-5)  # dx = dy W'


@pytest.mark.parametrize(
    "method, expected",
    [
        ({"name": "ssvd", "rotation": "approx"}, lambda k: k + k * (k - 1) // 2 + 1),
        ({"name": "ssvd", "rotation": "cayley"}, lambda k: k + k * (k - 1) // 2 + 1),
        ({"name": "ssvd", "rotation": "free"}, lambda k: k + k * k + 1),
        # side=output|both: K = max(k_in, k_out) Δσ's, a gate, and each rotated side's generator
        ({"name": "ssvd", "side": "output"}, lambda k: k + k * (k - 1) // 2 + 1),
        ({"name": "ssvd", "side": "both"}, lambda k: k + 2 * (k * (k - 1) // 2) + 1),
        ({"name": "ssvd", "side": "both", "rotation": "free"}, lambda k: k + 2 * k * k + 1),
        ({"name": "ssvd", "side": "both", "p_out": 0.2}, lambda k: k + k * (k - 1) // 2 + 4 * 3 // 2 + 1),  # k_out = 4
        ({"name": "ssvd", "side": "both", "p_out": 0.8}, lambda k: 19 + k * (k - 1) // 2 + 19 * 18 // 2 + 1),  # k_out = 19
        ({"name": "ssvd", "side": "input", "p_out": 0.8}, lambda k: k + k * (k - 1) // 2 + 1),  # p_out sizes U only
        ({"name": "ssvd", "side": "smaller", "p_out": 0.8}, lambda k: k + k * (k - 1) // 2 + 1),
        ({"name": "lora", "r": 4, "alpha": 8}, lambda k: 4 * (D_IN + D_OUT)),
        ({"name": "dora", "r": 4, "alpha": 8}, lambda k: 4 * (D_IN + D_OUT) + D_OUT),
        ({"name": "pissa", "r": 4, "alpha": 4}, lambda k: 4 * (D_IN + D_OUT)),
        ({"name": "vera", "r": 8}, lambda k: D_OUT + 8),
        ({"name": "svft", "pattern": "plain"}, lambda k: min(D_IN, D_OUT) + 1),
        ({"name": "svft", "pattern": "banded", "off_diag": 2}, lambda k: 24 * 5 - 2 * 3 + 1),
        ({"name": "svft", "pattern": "random", "off_diag": 2}, lambda k: 24 * 5 - 2 * 3 + 1),
        ({"name": "svft", "pattern": "top_k", "off_diag": 2}, lambda k: 24 * 5 - 2 * 3 + 1),
    ],
)
def test_per_layer_trainable_counts_follow_the_formulas(method, expected):
    model = nn.Sequential(linear())
    apply_method(model, method, {"p": 0.4, "targets": ["0"]})
    k = math.floor(0.4 * min(D_IN, D_OUT))
    assert trainable_parameter_count(model) == expected(k)


ALL_METHODS = [
    {"name": "ssvd", "rotation": "approx"},
    {"name": "ssvd", "rotation": "cayley"},
    {"name": "ssvd", "rotation": "free"},
    {"name": "ssvd", "side": "output", "rotation": "cayley"},
    {"name": "ssvd", "side": "both", "p_out": 0.25},
    {"name": "ssvd", "side": "both", "rotation": "free"},
    {"name": "svft", "pattern": "banded", "off_diag": 1},
    {"name": "svft", "pattern": "plain"},
    {"name": "lora", "r": 4, "alpha": 8},
    {"name": "dora", "r": 4, "alpha": 8},
    {"name": "pissa", "r": 4, "alpha": 4},
    {"name": "vera", "r": 8},
]


@pytest.mark.parametrize("method", ALL_METHODS, ids=lambda m: "-".join(str(v) for v in m.values()))
def test_identity_at_init_merge_equals_unmerged_and_unmerge_restores(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D_IN, D_OUT), nn.Tanh(), nn.Linear(D_OUT, D_IN))
    x = torch.randn(5, D_IN)
    reference = model(x).detach()
    apply_method(model, method, {"p": 0.5, "targets": ["0", "2"]})
    assert torch.allclose(model(x), reference, atol=1e-5)
    for _, module in model.named_children():
        if hasattr(module, "named_adapter_parameters"):
            randomize(module)
    unmerged = model(x).detach()
    bases = [m.base_layer.weight.detach().clone() for m in (model[0], model[2])]
    merge_adapters(model)
    assert torch.allclose(model(x), unmerged, atol=1e-5)
    unmerge_adapters(model)
    for m, before in zip((model[0], model[2]), bases):
        assert torch.allclose(m.base_layer.weight, before, atol=1e-6)
    assert torch.allclose(model(x), unmerged, atol=1e-6)


def test_merge_refuses_a_diverged_adapter():
    layer = LoRALinear(linear(), r=2, alpha=2)
    with torch.no_grad():
        layer.lora_B.fill_(float("inf"))
    before = layer.base_layer.weight.clone()
    with pytest.raises(ValueError, match="not finite"):
        layer.merge()
    assert torch.equal(layer.base_layer.weight, before) and not layer.merged


def test_lora_and_dora_match_hugging_face_peft():
    """Our layers against PEFT's own implementation as the reference, with the same factors."""
    from peft import LoraConfig, inject_adapter_in_model

    for ours_class, use_dora in ((LoRALinear, False), (DoRALinear, True)):
        torch.manual_seed(0)
        reference = nn.Sequential(nn.Linear(D_IN, D_OUT))
        ours = ours_class(linear(), r=4, alpha=8)
        ours.base_layer.load_state_dict(reference[0].state_dict())
        if use_dora:
            ours.magnitude.data = ours.base_layer.weight.norm(dim=1).detach().clone()
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["0"], use_dora=use_dora), reference)
        peft_layer = reference[0]
        with torch.no_grad():
            ours.lora_A.copy_(torch.randn(4, D_IN))
            ours.lora_B.copy_(torch.randn(D_OUT, 4))
            peft_layer.lora_A["default"].weight.copy_(ours.lora_A)
            peft_layer.lora_B["default"].weight.copy_(ours.lora_B)
            if use_dora:
                ours.magnitude.mul_(1.5)
                peft_layer.lora_magnitude_vector["default"].weight.copy_(ours.magnitude)
        x = torch.randn(6, D_IN)
        assert torch.allclose(ours(x), reference(x), atol=1e-5), ours_class.__name__


def test_vera_matches_hugging_face_peft():
    """One projection pair for the model, Kaiming-uniform with PEFT's bounds, sliced per layer: PEFT's own VeraModel
    with the same seed draws the same numbers, and with the same λ's gives the same outputs."""
    from peft import VeraConfig
    from peft.tuners.vera import VeraModel

    class Layers(nn.Module):
        def __init__(self):
            super().__init__()
            self.wide, self.tall, self.square = nn.Linear(D_IN, D_OUT), nn.Linear(D_OUT, D_IN), nn.Linear(16, 16)

    torch.manual_seed(0)
    ours, reference = Layers(), Layers()
    reference.load_state_dict(ours.state_dict())
    names = ["wide", "tall", "square"]
    apply_method(ours, {"name": "vera", "r": 8, "d_initial": 0.1, "projection_seed": 3}, {"targets": names})
    VeraModel(reference, VeraConfig(r=8, target_modules=names, projection_prng_key=3, d_initial=0.1), "default")
    generator = torch.Generator().manual_seed(1)
    for name in names:
        mine, theirs = getattr(ours, name), getattr(reference, name)
        assert torch.equal(mine.vera_A, theirs.vera_A["default"][:, : theirs.in_features])
        assert torch.equal(mine.vera_B, theirs.vera_B["default"][: theirs.out_features])
        assert torch.equal(mine.lambda_d, theirs.vera_lambda_d["default"])  # init: d_initial
        assert torch.equal(mine.lambda_b, theirs.vera_lambda_b["default"])  # init: 0
        with torch.no_grad():
            for ours_lambda, peft_lambda in (
                (mine.lambda_d, theirs.vera_lambda_d["default"]),
                (mine.lambda_b, theirs.vera_lambda_b["default"]),
            ):
                ours_lambda.copy_(torch.randn(ours_lambda.shape, generator=generator))
                peft_lambda.copy_(ours_lambda)
        x = torch.randn(5, mine.in_features, generator=generator)
        assert torch.allclose(mine(x), theirs(x), atol=1e-6), name
        assert torch.allclose(mine.delta_weight(), theirs.get_delta_weight("default"), atol=1e-6), name
    # the bound PEFT's users know: U(±√(6/fan_in)), fan_in = the largest d_in for A and r for B
    assert float(ours.wide.vera_A.abs().max()) <= (6 / D_IN) ** 0.5 and float(ours.wide.vera_B.abs().max()) <= (6 / 8) ** 0.5
    assert float(ours.wide.vera_A.abs().max()) > 0.8 * (6 / D_IN) ** 0.5


def test_pissa_principal_part_and_residual():
    base = linear()
    W = base.weight.detach().clone()
    from asr_peft.adapters.pissa import PiSSALinear

    layer = PiSSALinear(base, thin_svds([base.weight])[0], r=3, alpha=3)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    principal = U[:, :3] @ torch.diag(S[:3]) @ Vh[:3]
    assert torch.allclose(layer.scaling * layer.lora_B @ layer.lora_A, principal, atol=1e-5)
    assert torch.allclose(layer.base_layer.weight, W - principal, atol=1e-5)


def test_svft_top_k_picks_the_best_aligned_positions():
    base = linear(16, 16)
    svd = thin_svds([base.weight])[0]
    layer = SVFTLinear(base, svd, pattern="top_k", off_diag=1)
    scores = (svd.U.T @ svd.Vh.T).abs()
    chosen = scores[layer.positions[0], layer.positions[1]]
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[layer.positions[0], layer.positions[1]] = False
    assert chosen.min() >= scores[mask].max()


@pytest.mark.parametrize(
    "method, adapt, key",
    [
        ({"name": "ssvd"}, {"p": 0.0, "targets": ["0"]}, "adapt.p"),
        ({"name": "ssvd"}, {"p": 1.5, "targets": ["0"]}, "adapt.p"),
        ({"name": "lora", "r": 24, "alpha": 8}, {"targets": ["0"]}, "method.r"),
        ({"name": "lora", "r": 4, "alpha": 8}, {"targets": ["nope"]}, "adapt.targets"),
        ({"name": "lora", "r": 4, "alpha": 8}, {"targets": []}, "adapt.targets"),
        ({"name": "lora", "r": 4, "alpha": 8}, {"targets": ["1"]}, "adapt.targets"),  # the Tanh: not a Linear
        ({"name": "boft"}, {"targets": ["0"]}, "method.name"),
        ({"name": "ssvd", "rank": 3}, {"p": 0.4, "targets": ["0"]}, "method.rank"),
        ({"name": "ssvd", "rotation": "givens"}, {"p": 0.4, "targets": ["0"]}, "method.rotation"),
        ({"name": "ssvd", "side": "left"}, {"p": 0.4, "targets": ["0"]}, "method.side"),
        ({"name": "ssvd", "side": "both", "p_out": 1.5}, {"p": 0.4, "targets": ["0"]}, "method.p_out"),
        ({"name": "ssvd", "side": "both", "p_out": 0}, {"p": 0.4, "targets": ["0"]}, "method.p_out"),
        ({"name": "svft", "pattern": "diagonal"}, {"targets": ["0"]}, "method.pattern"),
    ],
)
def test_bad_method_configs_fail_before_training_with_one_line(method, adapt, key):
    model = nn.Sequential(linear(), nn.Tanh())
    with pytest.raises(ConfigError) as err:
        apply_method(model, method, adapt)
    assert key in str(err.value) and "\n" not in str(err.value)
