"""Subspace diagnostics against matrices built with known rotations, and on a real SSVD layer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from asr_peft.adapters.injection import module_type
from asr_peft.adapters.lora import LoRALinear
from asr_peft.adapters.ssvd import SSVDLinear
from asr_peft.adapters.svd import thin_svds
from asr_peft.errors import ConfigError
from asr_peft.adapters.subspace import (
    SUBSPACE_FILE,
    compute_subspace_diagnostics,
    effective_rank,
    principal_angles_deg,
    write_subspace_diagnostics,
)

D_OUT, D_IN = 40, 30
SPECTRUM = torch.linspace(10.0, 1.0, D_IN, dtype=torch.float64)  # well separated: subspaces well defined


def orthonormal(n: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def givens(n: int, i: int, j: int, angle_deg: float) -> torch.Tensor:
    """Rotation by `angle_deg` in the plane of coordinates i and j."""
    G = torch.eye(n, dtype=torch.float64)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    G[i, i], G[i, j], G[j, i], G[j, j] = c, -s, s, c
    return G


U, V = orthonormal(D_OUT, 0)[:, :D_IN], orthonormal(D_IN, 1)


def weight(left: torch.Tensor = U, right: torch.Tensor = V) -> torch.Tensor:
    return ((left * SPECTRUM) @ right.T).float()


def state(*weights: torch.Tensor, prefix: str = "encoder.encoders") -> dict[str, torch.Tensor]:
    return {f"{prefix}.{i}.attn.linear_q.weight": w for i, w in enumerate(weights)}


NAMES = ["encoder.encoders.0.attn.linear_q"]


def test_rotating_right_singular_vectors_moves_only_the_input_side():
    # r = floor(0.1 * 30) = 3. Turning v_1 towards v_10 (outside the top 3) by 25 degrees takes the top-3
    # input subspace 25 degrees away along one direction; the other two angles and the output side stay 0.
    rotated = weight(right=V @ givens(D_IN, 0, 9, 25.0))
    result = compute_subspace_diagnostics(state(weight()), state(rotated), NAMES, rank_fraction=0.1)
    layer = result["layers"][NAMES[0]]
    kind = result["layer_types"]["encoder.attn.linear_q"]
    assert layer["rank"] == 3 and kind["layers"] == 1 and kind["shape"] == [D_OUT, D_IN]
    assert kind["input_angles_deg"] == pytest.approx([25.0, 0.0, 0.0], abs=1e-3)
    assert kind["output_angles_deg"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)
    assert layer["input_angle_max_deg"] == pytest.approx(25.0, abs=1e-3)
    assert layer["input_angle_mean_deg"] == pytest.approx(25.0 / 3, abs=1e-3)


def test_rotating_left_singular_vectors_moves_only_the_output_side():
    rotated = weight(left=orthonormal(D_OUT, 0) @ givens(D_OUT, 1, 35, 40.0)[:, :D_IN])
    result = compute_subspace_diagnostics(state(weight()), state(rotated), NAMES, rank_fraction=0.1)
    kind = result["layer_types"]["encoder.attn.linear_q"]
    assert kind["output_angles_deg"] == pytest.approx([40.0, 0.0, 0.0], abs=1e-3)
    assert kind["input_angles_deg"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)


def test_rotation_inside_the_top_subspace_is_invisible_at_that_rank():
    # Mixing v_1 and v_2 keeps span(v_1, v_2, v_3): at r = 3 nothing moved, which is why r stays below SSVD's k.
    rotated = weight(right=V @ givens(D_IN, 0, 1, 30.0))
    result = compute_subspace_diagnostics(state(weight()), state(rotated), NAMES, rank_fraction=0.1)
    assert result["overall"]["input_angle_mean_deg"] == pytest.approx(0.0, abs=1e-3)


def test_delta_spectrum_of_a_rank_one_update():
    u, v = U[:, 4], V[:, 7]
    update = (2.5 * torch.outer(u, v)).float()
    result = compute_subspace_diagnostics(state(weight()), state(weight() + update), NAMES, spectrum_head=4)
    layer, kind = result["layers"][NAMES[0]], result["layer_types"]["encoder.attn.linear_q"]
    assert kind["delta_spectrum"] == pytest.approx([2.5, 0.0, 0.0, 0.0], abs=1e-4)
    assert layer["delta_effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert layer["delta_relative_norm"] == pytest.approx(2.5 / float(torch.linalg.vector_norm(SPECTRUM)), rel=1e-4)


def test_layers_are_grouped_by_type_and_averaged():
    names = ["encoder.encoders.0.attn.linear_q", "encoder.encoders.1.attn.linear_q", "decoder.decoders.0.src_attn.linear_q"]
    base = {f"{n}.weight": weight() for n in names}
    adapted = {
        names[0] + ".weight": weight(right=V @ givens(D_IN, 0, 9, 10.0)),
        names[1] + ".weight": weight(right=V @ givens(D_IN, 0, 9, 30.0)),
        names[2] + ".weight": weight(),
    }
    result = compute_subspace_diagnostics(base, adapted, names, rank_fraction=0.1)
    assert sorted(result["layer_types"]) == ["decoder.src_attn.linear_q", "encoder.attn.linear_q"]
    encoder = result["layer_types"]["encoder.attn.linear_q"]
    assert encoder["layers"] == 2 and encoder["input_angle_max_deg"] == pytest.approx(20.0, abs=1e-3)
    assert encoder["input_angles_deg"][0] == pytest.approx(20.0, abs=1e-3)
    assert result["layer_types"]["decoder.src_attn.linear_q"]["input_angle_max_deg"] == pytest.approx(0.0, abs=1e-3)
    assert result["overall"]["layers"] == 3
    assert result["overall"]["input_angle_mean_deg"] == pytest.approx((10 + 30 + 0) / 3 / 3, abs=1e-3)


def test_ssvd_with_an_exact_rotation_turns_the_input_side_only():
    # SSVD's claim: U is frozen, so an orthogonal G (rotation=cayley, Δσ = 0) moves only the input side.
    base = nn.Linear(D_IN, D_IN, bias=False)
    with torch.no_grad():
        base.weight.copy_(((orthonormal(D_IN, 2) * SPECTRUM) @ V.T).float())
    adapter = SSVDLinear(base, thin_svds([base.weight])[0], p=0.5, rotation="cayley")
    with torch.no_grad():
        adapter.skew.copy_(0.05 * torch.randn(adapter.skew.shape, generator=torch.Generator().manual_seed(3)))
    pretrained = nn.Sequential(nn.Linear(D_IN, D_IN, bias=False))
    pretrained[0].weight.data.copy_(base.weight)
    adapted = nn.Sequential(adapter)  # unmerged: read as W + ΔW
    result = compute_subspace_diagnostics(pretrained, adapted, ["0"], rank_fraction=0.2)
    layer = result["layers"]["0"]
    assert layer["input_angle_max_deg"] > 5.0 and layer["output_angle_max_deg"] < 0.05
    adapter.merge()
    merged = compute_subspace_diagnostics(pretrained, adapted, ["0"], rank_fraction=0.2)["layers"]["0"]
    assert merged["input_angle_max_deg"] == pytest.approx(layer["input_angle_max_deg"], abs=1e-3)


def test_lora_moves_both_sides():
    torch.manual_seed(0)
    base = nn.Linear(D_IN, D_OUT, bias=False)
    adapter = LoRALinear(base, r=4, alpha=8)
    with torch.no_grad():
        adapter.lora_B.normal_(std=0.1)  # B = 0 at init; as after some training
    pretrained = nn.Sequential(nn.Linear(D_IN, D_OUT, bias=False))
    pretrained[0].weight.data.copy_(base.weight)
    layer = compute_subspace_diagnostics(pretrained, nn.Sequential(adapter), ["0"], rank_fraction=0.2)["layers"]["0"]
    assert layer["input_angle_max_deg"] > 1.0 and layer["output_angle_max_deg"] > 1.0
    assert layer["delta_effective_rank"] <= 4.0 + 1e-6


def test_principal_angles_and_effective_rank_helpers():
    e = torch.eye(3, dtype=torch.float64)
    tilted = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64) / math.sqrt(2)
    assert principal_angles_deg(e[:, :1], tilted) == pytest.approx([45.0])
    assert effective_rank(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(4.0)
    assert effective_rank(torch.zeros(3)) == 0.0
    assert module_type("decoder.decoders.11.self_attn.linear_v") == "decoder.self_attn.linear_v"
    assert module_type("0") == "0"


def test_bad_inputs_name_the_module(tmp_path):
    with pytest.raises(ConfigError, match="no encoder.encoders.0.attn.linear_q.weight"):
        compute_subspace_diagnostics(state(weight()), {}, NAMES)
    unmerged = {"encoder.encoders.0.attn.linear_q.base_layer.weight": weight()}
    with pytest.raises(ConfigError, match="unmerged adapter at encoder.encoders.0.attn.linear_q"):
        compute_subspace_diagnostics(state(weight()), unmerged, NAMES)
    with pytest.raises(ConfigError, match="not matrices of one shape"):
        compute_subspace_diagnostics(state(weight()), state(weight().T.contiguous()), NAMES)
    with pytest.raises(ConfigError, match="has no module nope"):
        compute_subspace_diagnostics(nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2)), ["nope"])


def test_written_file_is_the_returned_dict(tmp_path):
    result = compute_subspace_diagnostics(state(weight()), state(weight()), NAMES)
    path = write_subspace_diagnostics(tmp_path, result)
    assert path.name == SUBSPACE_FILE and json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert np.isfinite(result["overall"]["input_angle_mean_deg"]) and result["overall"]["delta_effective_rank"] == 0.0
