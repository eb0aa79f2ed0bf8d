"""`method.side` against what it rotates, on both layer shapes: a rotation of W's left singular vectors U
leaves WᵀW (its right vectors and values) unchanged, one of its right vectors V leaves WWᵀ unchanged. The
parameter plan names the same vectors per layer group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asr_peft.adapters.model import parameter_plan
from asr_peft.adapters.ssvd import SSVDLinear
from asr_peft.adapters.svd import thin_svds
from asr_peft.reporting.plan_table import format_plan


def rotated(d_in: int, d_out: int, side: str, orientation: str = "reference") -> tuple[torch.Tensor, torch.Tensor, SSVDLinear]:
    """W and W' after a random exact (Cayley) rotation of the chosen side, singular values unchanged."""
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out).double()
    layer = SSVDLinear(
        base, thin_svds([base.weight.detach()])[0], p=0.5, rotation="cayley", side=side, orientation=orientation
    ).double()
    with torch.no_grad():
        for name, parameter in layer.named_adapter_parameters():
            if name.startswith("skew"):
                parameter.normal_(0, 0.3)
    weight = base.weight.detach()
    return weight, weight + layer.delta_weight().detach(), layer


def kept_gram(weight: torch.Tensor, adapted: torch.Tensor) -> str:
    """ "U" when only the left vectors moved (WᵀW kept), "V" when only the right ones did (WWᵀ kept)."""
    keeps_right = torch.allclose(adapted.T @ adapted, weight.T @ weight, atol=1e-6)
    keeps_left = torch.allclose(adapted @ adapted.T, weight @ weight.T, atol=1e-6)
    assert keeps_right != keeps_left  # a real rotation moves exactly one side
    return "U" if keeps_right else "V"


@pytest.mark.parametrize(
    ("d_in", "d_out", "side", "expected"),
    [
        (6, 10, "input", "V"),
        (6, 10, "output", "U"),  # tall layer (d_in <= d_out): A = W
        (10, 6, "input", "U"),
        (10, 6, "output", "V"),  # wide layer, orientation=reference: A = Wᵀ
    ],
)
def test_each_side_rotates_the_vectors_its_layer_reports(d_in, d_out, side, expected):
    weight, adapted, layer = rotated(d_in, d_out, side)
    assert kept_gram(weight, adapted) == expected
    assert layer.rotated_vectors() == f"{expected} (k=3)"


@pytest.mark.parametrize("side", ["input", "output"])
def test_orientation_input_rotates_by_the_weights_own_sides(side):
    weight, adapted, layer = rotated(10, 6, side, orientation="input")
    assert kept_gram(weight, adapted) == {"input": "V", "output": "U"}[side] == layer.rotated_vectors()[0]


def test_the_plan_lists_the_rotated_vectors_per_layer_group():
    torch.manual_seed(0)
    model = nn.ModuleDict({"up": nn.Linear(6, 10), "down": nn.Linear(10, 6)})
    for name in ("up", "down"):
        base = model[name]
        model[name] = SSVDLinear(base, thin_svds([base.weight.detach()])[0], p=0.5, side="both")
    plan = parameter_plan(model)
    assert plan["rotates"] == {"down": "U (k=3) and V (k=3)", "up": "V (k=3) and U (k=3)"}
    table = format_plan({**plan, "model": "m", "method": {"name": "ssvd"}})
    assert "rotates (singular vectors of W)" in table and "U (k=3) and V (k=3)" in table.splitlines()[2]
