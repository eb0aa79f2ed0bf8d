"""Every adapter under mixed and half precision, at the layer level, against its own fp32 gradients.

Modes, as Lightning runs them: `bf16-mixed`/`16-mixed` (fp32 weights, CPU autocast; fp16 autocast
works on this torch's CPU for the ops an adapter layer uses, though Lightning's Trainer has no
`16-mixed` on the CPU) and `bf16-true`/`16-true` (frozen weights and activations in half precision,
adapter tensors left in fp32 by `cast_keeping_adapters`, as the Trainer does).

The truth is the same layer computed in fp32 from the same (half-rounded) inputs. Stated tolerance:
relative Frobenius error of every gradient and of the output ≤ 3e-2 for bf16 (8 mantissa bits) and ≤ 4e-3
for fp16 (11 bits); measured worst cases are below a third of that. A scalar gate g (SSVD, SVFT) is
the exception: its gradient (1 − sigmoid(g))·Σᵢ pᵢ ∂L/∂pᵢ over the parameters it scales (SSVD's Δσ,
SVFT's values) is a sum whose terms cancel, so its error is measured against the sum of the terms'
magnitudes instead (same tolerance); the identity itself is checked on the fp32 truth.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from asr_peft.adapters import apply_method
from asr_peft.adapters.lora import LoRAEmbedding
from asr_peft.adapters.model import adapter_modules
from asr_peft.models.precision import cast_keeping_adapters
from test_adapters_layers import D_IN, D_OUT, randomize

TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 4e-3}
MODES = [("mixed", torch.bfloat16), ("mixed", torch.float16), ("true", torch.bfloat16), ("true", torch.float16)]

SSVD_VARIANTS = [
    {"name": "ssvd", "rotation": rotation, "formulation": formulation}
    for rotation in ("approx", "cayley", "free")
    for formulation in ("efficient", "activation", "reference")
]
SSVD_SIDES = [
    {"name": "ssvd", "side": "both", "p_out": 0.25, "rotation": "cayley"},  # k_out < k_in
    {"name": "ssvd", "side": "both", "p_out": 0.75, "formulation": "reference"},
    {"name": "ssvd", "side": "output", "rotation": "free", "formulation": "activation"},
]
METHODS = [
    *SSVD_VARIANTS,
    *SSVD_SIDES,
    {"name": "ssvd", "recompute_weight": True},
    *({"name": "svft", "pattern": pattern, "off_diag": 1} for pattern in ("plain", "banded", "random", "top_k")),
    {"name": "lora", "r": 4, "alpha": 8},
    {"name": "dora", "r": 4, "alpha": 8},
    {"name": "pissa", "r": 4, "alpha": 4},
    {"name": "vera", "r": 8},
    {"name": "peft", "peft_config": {"peft_type": "PSOFT", "r": 4}},
    {"name": "peft", "peft_config": {"peft_type": "OFT", "r": 0, "oft_block_size": 4}},
    {"name": "peft", "peft_config": {"peft_type": "LORA", "r": 4, "lora_alpha": 8}},
]


def method_id(method: dict) -> str:
    return "-".join(str(v) for k, v in method.items() if k != "peft_config") + (
        f"-{method['peft_config']['peft_type']}" if "peft_config" in method else ""
    )


def relative_error(value: torch.Tensor, truth: torch.Tensor) -> float:
    return float((value.detach().float() - truth.detach().float()).norm() / truth.detach().float().norm())


GATED = {"delta_sigma", "values"}  # what a gate scales: SSVD's Δσ, SVFT's sparse values


def gradient_scale(name: str, model: nn.Module, grads: dict[str, torch.Tensor]) -> float:
    """‖∂L/∂p‖ for a tensor; for a gate, Σ|terms| of (1 − sigmoid(g))·Σᵢ pᵢ ∂L/∂pᵢ (checked to equal ∂L/∂g)."""
    if not name.endswith(".gate"):
        return float(grads[name].norm())
    prefix = name.removesuffix("gate")
    scaled = next(prefix + key for key in GATED if prefix + key in grads)
    parameters = dict(model.named_parameters())
    factor = 1 - torch.sigmoid(parameters[name].detach())
    terms = factor * parameters[scaled].detach() * grads[scaled]
    assert torch.allclose(terms.sum(), grads[name], rtol=1e-4, atol=1e-6), name
    return float(terms.abs().sum())


def adapted_layer(method: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(D_IN, D_OUT))
    apply_method(model, method, {"p": 0.5, "targets": ["0"]})
    randomize(model[0], scale=0.3)
    return model


def half_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """What the Trainer does under *-true: the whole model in half precision, then the adapters back to fp32."""
    return cast_keeping_adapters(copy.deepcopy(model), lambda m: m.to(dtype))


def run(model: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, autocast: torch.dtype | None):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        y = model(x)
    y.backward(grad_out.to(y.dtype))
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    return y, x.grad, grads


@pytest.mark.parametrize("mode, dtype", MODES, ids=lambda v: str(v).removeprefix("torch."))
@pytest.mark.parametrize("rows", [3, 60], ids=["few-rows", "many-rows"])  # both paths of the efficient SSVD step
@pytest.mark.parametrize("method", METHODS, ids=method_id)
def test_adapter_layers_train_in_low_precision_with_fp32_gradients(method, rows, mode, dtype):
    reference = adapted_layer(method)
    if mode == "true":  # the truth sees the same half-rounded frozen weights
        with torch.no_grad():
            for _, module in adapter_modules(reference):
                module.base_layer.weight.copy_(module.base_layer.weight.to(dtype).float())
                module.base_layer.bias.copy_(module.base_layer.bias.to(dtype).float())
    layer = half_copy(reference, dtype) if mode == "true" else copy.deepcopy(reference)
    torch.manual_seed(1)
    x = torch.randn(rows, D_IN).to(dtype).float()  # representable in half precision: the same input for both
    grad_out = torch.randn(rows, D_OUT).to(dtype).float()
    y_ref, dx_ref, grads_ref = run(reference, x, grad_out, None)
    y, dx, grads = run(layer, x.to(dtype) if mode == "true" else x, grad_out, dtype if mode == "mixed" else None)

    assert y.dtype == dtype  # what the frozen layer would hand the next one
    assert dx.dtype == (dtype if mode == "true" else torch.float32)
    assert relative_error(y, y_ref) < TOLERANCE[dtype]
    assert relative_error(dx, dx_ref) < TOLERANCE[dtype]
    assert grads.keys() == grads_ref.keys() and grads
    for name, grad in grads.items():
        assert grad is not None and grad.dtype == torch.float32, name  # fp32 master weights, fp32 gradients
        error = float((grad - grads_ref[name]).norm()) / gradient_scale(name, reference, grads_ref)
        assert error < TOLERANCE[dtype], name


@pytest.mark.parametrize("mode, dtype", MODES, ids=lambda v: str(v).removeprefix("torch."))
def test_embedding_adapter_in_low_precision(mode, dtype):
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Embedding(30, 16))
    if mode == "true":
        with torch.no_grad():
            reference[0].weight.copy_(reference[0].weight.to(dtype).float())
    reference[0] = LoRAEmbedding(reference[0], r=4, alpha=8)
    with torch.no_grad():
        reference[0].lora_A.normal_()
    layer = half_copy(reference, dtype) if mode == "true" else copy.deepcopy(reference)
    tokens = torch.randint(0, 30, (3, 7))
    grad_out = torch.randn(3, 7, 16).to(dtype).float()
    outputs = []
    for model, autocast in ((reference, False), (layer, mode == "mixed")):
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            y = model(tokens)
        y.backward(grad_out.to(y.dtype))
        outputs.append((y, model[0].lora_A.grad, model[0].lora_B.grad))
    (y_ref, dA_ref, dB_ref), (y, dA, dB) = outputs
    assert y.dtype == (dtype if mode == "true" else torch.float32)  # the table's own dtype, as nn.Embedding
    assert dA.dtype == dB.dtype == torch.float32
    for value, truth in ((y, y_ref), (dA, dA_ref), (dB, dB_ref)):
        assert relative_error(value, truth) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_cayley_rotation_and_core_are_fp32_whatever_the_storage_dtype(dtype):
    model = adapted_layer({"name": "ssvd", "rotation": "cayley"})
    layer = model[0].to(dtype)  # parameters too: a model cast without the Trainer's fp32 restore
    G = layer.rotation_matrix()  # torch.linalg.solve has no bf16 kernel: this raised before
    assert G.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.allclose(G.T @ G, torch.eye(layer.k, dtype=G.dtype), atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.core().dtype == G.dtype and layer.delta_weight().dtype == G.dtype


def test_efficient_step_recomputing_w_prime_gives_the_same_gradients_bit_for_bit():
    kept, recomputed = adapted_layer({"name": "ssvd"}), adapted_layer({"name": "ssvd", "recompute_weight": True})
    x, grad_out = torch.randn(60, D_IN), torch.randn(60, D_OUT)
    (y1, dx1, g1), (y2, dx2, g2) = run(kept, x, grad_out, None), run(recomputed, x, grad_out, None)
    assert torch.equal(y1, y2) and torch.equal(dx1, dx2)
    assert all(torch.equal(g1[name], g2[name]) for name in g1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_merge_into_half_precision_adds_in_fp32_and_rounds_once(dtype):
    """A small ΔW (‖ΔW‖/‖W‖ = 1e-2, as on the shipped checkpoint) merged into half-precision weights:
    W + ΔW is added in fp32 and rounded once, which no other order beats element by element (rounding
    to nearest is optimal); the old order (ΔW rounded, then a half-precision sum) lost more."""
    model = adapted_layer({"name": "lora", "r": 4, "alpha": 8})
    with torch.no_grad():
        model[0].lora_B.mul_(0.01 * model[0].base_layer.weight.norm() / model[0].delta_weight().norm())
    half = half_copy(model, dtype)[0]
    weight, delta = half.base_layer.weight.detach().clone(), half.delta_weight().detach()
    assert delta.dtype == torch.float32
    half.merge()
    assert torch.equal(half.base_layer.weight, (weight.float() + delta).to(dtype))
    exact = weight.double() + delta.double()
    errors = {
        "once": (half.base_layer.weight.double() - exact).abs(),
        "twice": ((weight + delta.to(dtype)).double() - exact).abs(),
    }
    assert (errors["once"] <= errors["twice"]).all() and errors["once"].sum() < errors["twice"].sum()
    half.unmerge()
    assert torch.equal(half.base_layer.weight, weight)


def test_svds_run_in_fp32_or_better_whatever_the_weights_dtype():
    """SVD set-up of a half-precision weight (a bf16-true model, an fp16 checkpoint): fp32 factors that
    reproduce the weight as stored, as accurately as for an fp32 weight."""
    from asr_peft.adapters.svd import thin_svds

    torch.manual_seed(0)
    weight = torch.randn(48, 80) / 9
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        stored = weight.to(dtype)
        svd = thin_svds([stored])[0]
        assert svd.U.dtype == svd.S.dtype == svd.Vh.dtype == torch.float32
        assert relative_error((svd.U * svd.S) @ svd.Vh, stored.float()) < 1e-5


@pytest.mark.parametrize(
    "precision, method",
    [
        ("bf16-mixed", "ssvd"),
        pytest.param("bf16-true", "ssvd", marks=pytest.mark.slow),
        pytest.param("bf16-true", "lora", marks=pytest.mark.slow),
        pytest.param("16-true", "ssvd", marks=pytest.mark.slow),
    ],
)
def test_a_run_trains_and_scores_in_low_precision(tiny_corpus, tmp_path, precision, method):
    """The whole run under a low precision on the CPU: training steps, validation, baseline and test scoring
    in the same precision (recorded), finite losses, adapter tensors checkpointed in fp32."""
    from test_train_e2e import run_in_process

    record = run_in_process(
        [
            f"method={method}",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            f"trainer.precision={precision}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
        tmp_path / "run",
    )
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["scored_on"] == {"device": "cpu", "precision": precision}
    assert all(0 <= metrics["wer"] for metrics in (*record["metrics"].values(), *record["baseline_metrics"].values()))
    assert all(torch.isfinite(torch.tensor(h["val_loss"])) for h in record["validation_history"])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state and all(tensor.dtype == torch.float32 for tensor in state.values())


@pytest.mark.parametrize(
    "dtype, lost_range", [(torch.bfloat16, (0.05, 0.4)), (torch.float16, (0.005, 0.05)), (torch.float32, (0.0, 1e-4))]
)
def test_export_measures_what_its_stored_dtype_does_to_delta_w(tiny_bundle_factory, tmp_path, dtype, lost_range):
    """delta_rounding against the weights export_espnet_dir actually wrote, with ‖ΔW‖/‖W‖ = 1e-2 per layer."""
    from asr_peft.adapters import merged_copy
    from asr_peft.models.export import WEIGHTS, delta_rounding, export_espnet_dir
    from omegaconf import OmegaConf

    from conftest import ROOT

    bundle = tiny_bundle_factory(0)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    apply_method(bundle.model, {"name": "lora", "r": 4, "alpha": 8}, {"targets": targets})
    exact, deltas = {}, {}
    with torch.no_grad():
        for name, module in adapter_modules(bundle.model):
            randomize(module)
            module.lora_B.mul_(0.01 * module.base_layer.weight.norm() / module.delta_weight().norm())
            deltas[name] = module.delta_weight().double()
            exact[name] = module.base_layer.weight.double() + deltas[name]
    measured = delta_rounding(bundle.model, dtype)
    export_espnet_dir(bundle, tmp_path / "out", model=merged_copy(bundle.model), dtype=dtype)
    stored = torch.load(tmp_path / "out" / WEIGHTS, weights_only=True)
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {dtype}
    errors = {name: float((stored[f"{name}.weight"].double() - exact[name]).norm()) for name in exact}
    truth = (sum(e**2 for e in errors.values()) / sum(float(d.norm()) ** 2 for d in deltas.values())) ** 0.5
    assert measured.layers == len(exact) and measured.lost == pytest.approx(truth, rel=0.05, abs=1e-6)
    assert lost_range[0] <= measured.lost <= lost_range[1]
    worst = max(exact, key=lambda name: errors[name] / float(deltas[name].norm()))
    assert measured.worst_layer == worst or dtype == torch.float32


@pytest.mark.slow
def test_export_cli_names_the_dtype_and_warns_when_it_loses_delta_w(tiny_corpus, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from test_train_e2e import FAST, train_cli

    run_dir = tmp_path / "run"
    result = train_cli(
        [
            *FAST,
            "method=lora",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "evaluation.baseline=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {}
    for dtype in ("bfloat16", "float32"):
        outputs[dtype] = subprocess.run(
            [sys.executable, str(ROOT / "export.py"), str(run_dir), "--out", str(tmp_path / dtype), "--dtype", dtype],
            capture_output=True,
            text=True,
        )
        assert outputs[dtype].returncode == 0, outputs[dtype].stderr[-3000:]
        assert f"weights stored as {dtype}" in outputs[dtype].stdout
    assert "warning: storing bfloat16 rounds away" in outputs["bfloat16"].stderr
    assert "warning" not in outputs["float32"].stderr and "rounds away 0.0%" in outputs["float32"].stdout


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "bf16-true"])
def test_scoring_decodes_in_the_precision_it_is_given(tiny_bundle_factory, tiny_corpus, monkeypatch, precision):
    """What the decoder sees: autocast on for *-mixed, bf16 speech into a bf16 model (adapters fp32) for *-true."""
    from asr_peft.evaluation import scoring

    bundle = tiny_bundle_factory(0)
    apply_method(bundle.model, {"name": "ssvd"}, {"p": 0.4, "targets": ["encoder.encoders.0.feed_forward.w_1"]})
    seen = []
    real_transcribe = bundle.transcribe

    def spy(batch, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), batch["speech"].dtype))
        return real_transcribe(batch, **kwargs)

    monkeypatch.setattr(bundle, "transcribe", spy)
    data = {"test": {"test": str(tiny_corpus / "test.jsonl")}}
    metrics = scoring.score_test_sets(bundle, data, {"progress": False}, str.lower, None, device="cpu", precision=precision)
    assert metrics["test"]["num_utterances"] == 2 and seen
    expected = {"32-true": (False, torch.float32), "bf16-mixed": (True, torch.float32), "bf16-true": (False, torch.bfloat16)}
    assert set(seen) == {expected[precision]}
    layer = bundle.model.encoder.encoders[0].feed_forward.w_1
    assert layer.base_layer.weight.dtype == (torch.bfloat16 if precision == "bf16-true" else torch.float32)
    assert layer.delta_sigma.dtype == layer.left.dtype == torch.float32
