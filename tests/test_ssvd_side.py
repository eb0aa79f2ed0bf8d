"""`method.side` against what it rotates, on both layer shapes: a rotation of W's left singular vectors U
leaves WᵀW (its right vectors and values) unchanged, one of its right vectors V leaves WWᵀ unchanged. The
parameter plan names the same vectors per layer group, and files written before the side names (with
`method.orientation`) load as the side that rotates the same vectors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from asr_peft.adapters import adapter_modules, apply_method, load_adapter, save_adapter
from asr_peft.adapters.model import parameter_plan
from asr_peft.adapters.registry import get_method
from asr_peft.adapters.ssvd import SSVDLinear, current_method
from asr_peft.adapters.svd import thin_svds
from asr_peft.errors import ConfigError, ModelLoadError
from asr_peft.reporting.plan_table import format_plan

TALL, WIDE = (6, 10), (10, 6)  # (d_in, d_out)


def rotated(d_in: int, d_out: int, side: str) -> tuple[torch.Tensor, torch.Tensor, SSVDLinear]:
    """W and W' after a random exact (Cayley) rotation of the chosen side, singular values unchanged."""
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out).double()
    layer = SSVDLinear(base, thin_svds([base.weight.detach()])[0], p=0.5, rotation="cayley", side=side).double()
    with torch.no_grad():
        for name, parameter in layer.named_adapter_parameters():
            if name.startswith("skew"):
                parameter.normal_(0, 0.3)
    weight = base.weight.detach()
    return weight, weight + layer.delta_weight().detach(), layer


def moved(weight: torch.Tensor, adapted: torch.Tensor) -> str:
    """Which of W's singular vectors moved: "U" when WᵀW is kept, "V" when WWᵀ is, "U and V" when neither."""
    keeps_right = torch.allclose(adapted.T @ adapted, weight.T @ weight, atol=1e-6)
    keeps_left = torch.allclose(adapted @ adapted.T, weight @ weight.T, atol=1e-6)
    assert not (keeps_right and keeps_left)  # a real rotation moves something
    return "U" if keeps_right else "V" if keeps_left else "U and V"


@pytest.mark.parametrize(
    ("shape", "side", "expected"),
    [
        (TALL, "smaller", "V"),  # d_in <= d_out: the input dimension is the smaller
        (WIDE, "smaller", "U"),  # d_in > d_out (FFN w_2): the output dimension is
        (TALL, "larger", "U"),
        (WIDE, "larger", "V"),
        (TALL, "input", "V"),
        (WIDE, "input", "V"),
        (TALL, "output", "U"),
        (WIDE, "output", "U"),
        (TALL, "both", "U and V"),
        (WIDE, "both", "U and V"),
    ],
)
def test_each_side_rotates_the_vectors_it_names_on_every_layer_shape(shape, side, expected):
    weight, adapted, layer = rotated(*shape, side)
    assert moved(weight, adapted) == expected
    assert sorted(layer.rotated_vectors().replace(" (k=3)", "").split(" and ")) == sorted(expected.split(" and "))


def test_the_default_side_is_the_smaller_dimension_as_the_authors_code():
    base = nn.Linear(*WIDE)
    assert SSVDLinear(base, thin_svds([base.weight.detach()])[0], p=0.5).rotated_vectors() == "U (k=3)"


def test_the_plan_lists_the_rotated_vectors_per_layer_group():
    torch.manual_seed(0)
    model = nn.ModuleDict({"up": nn.Linear(*TALL), "down": nn.Linear(*WIDE)})
    for name in ("up", "down"):
        base = model[name]
        model[name] = SSVDLinear(base, thin_svds([base.weight.detach()])[0], p=0.5, side="both")
    plan = parameter_plan(model)
    assert plan["rotates"] == {"down": "V (k=3) and U (k=3)", "up": "V (k=3) and U (k=3)"}
    table = format_plan({**plan, "model": "m", "method": {"name": "ssvd"}})
    assert "rotates (singular vectors of W)" in table and "V (k=3) and U (k=3)" in table.splitlines()[2]


LEGACY = [  # (orientation, side) as written before the side names -> the side rotating the same vectors
    ("reference", "input", "smaller"),
    ("reference", "output", "larger"),
    ("input", "input", "input"),
    ("input", "output", "output"),
    ("input", "both", "both"),
]


def two_shapes() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"up": nn.Linear(*TALL), "down": nn.Linear(*WIDE)})


def rewrite_as_legacy(directory, orientation: str, side: str) -> None:
    """The adapter directory as a version with `method.orientation` wrote it: the keys only (tensors as they are)."""
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["method"] = {**config["method"], "orientation": orientation, "side": side}
    config_path.write_text(json.dumps(config))
    weights = directory / "adapter.safetensors"
    with safe_open(weights, framework="pt") as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    save_file(tensors, weights, metadata={**metadata, "method": json.dumps(config["method"], sort_keys=True)})


@pytest.mark.parametrize(("orientation", "old_side", "side"), LEGACY)
def test_an_adapter_file_written_with_orientation_loads_as_the_same_rotation(tmp_path, orientation, old_side, side):
    """The old pair's vectors, by the definition of its day (A = Wᵀ on wide layers under reference), are the
    new side's: the file loads into the same weights, and the old name of each case is the test's truth."""
    method, adapt = {"name": "ssvd", "rotation": "cayley", "side": side}, {"p": 0.5, "targets": ["up", "down"]}
    model = two_shapes()
    apply_method(model, method, adapt)
    with torch.no_grad():
        for _, layer in adapter_modules(model):
            for _, parameter in layer.named_adapter_parameters():
                parameter.normal_(0, 0.3)
    save_adapter(model, tmp_path / "adapter", method, adapt)
    rewrite_as_legacy(tmp_path / "adapter", orientation, old_side)
    reloaded = two_shapes()
    load_adapter(reloaded, tmp_path / "adapter")
    for (_, trained), (_, loaded) in zip(adapter_modules(model), adapter_modules(reloaded)):
        assert torch.equal(trained.delta_weight(), loaded.delta_weight())
        assert loaded.rotated_vectors() == trained.rotated_vectors()
    wide_vectors = dict(adapter_modules(reloaded))["down"].rotated_vectors().replace(" (k=3)", "")
    transposed = orientation == "reference"  # the old rule: A = Wᵀ on a wide layer, sides named on A
    expected = {"input": "U" if transposed else "V", "output": "V" if transposed else "U", "both": "V and U"}[old_side]
    assert wide_vectors == expected


def test_orientation_reference_with_both_sides_is_refused_where_tensors_load_and_described_in_records(tmp_path):
    method, adapt = {"name": "ssvd", "side": "both"}, {"p": 0.5, "targets": ["up", "down"]}
    model = two_shapes()
    apply_method(model, method, adapt)
    save_adapter(model, tmp_path / "adapter", method, adapt)
    rewrite_as_legacy(tmp_path / "adapter", "reference", "both")
    with pytest.raises(ModelLoadError, match=r"adapter\.safetensors was trained with method\.orientation=reference side=both"):
        load_adapter(two_shapes(), tmp_path / "adapter")
    assert current_method({"name": "ssvd", "orientation": "reference", "side": "both"}) == {"name": "ssvd", "side": "both"}


def test_a_config_naming_orientation_is_told_the_side_that_replaces_it():
    with pytest.raises(ConfigError, match=r"method\.orientation is gone.*method\.side=larger"):
        get_method({"name": "ssvd", "orientation": "reference", "side": "output"})


def claim_with_saved(tmp_path, saved_method: dict, method: dict) -> None:
    from omegaconf import OmegaConf

    from asr_peft.training.results import claim_run_dir

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"seed": 0, "method": saved_method}))
    claim_run_dir(run_dir, OmegaConf.create({"seed": 0, "method": method})).release()


def test_a_run_directory_written_with_orientation_is_the_same_configuration_as_its_side_today(tmp_path):
    """Resuming after the rename: the saved pair is read as its side, so the same rotation claims the directory,
    another is refused, and reference/both (whose checkpoints mean something else today) is refused by name."""
    legacy = {"name": "ssvd", "orientation": "reference", "side": "output"}
    claim_with_saved(tmp_path / "same", legacy, {"name": "ssvd", "side": "larger"})
    with pytest.raises(ConfigError, match=r"method\.side=larger there, output here"):
        claim_with_saved(tmp_path / "other", legacy, {"name": "ssvd", "side": "output"})
    with pytest.raises(ConfigError, match=r"run was trained with method\.orientation=reference side=both"):
        claim_with_saved(tmp_path / "both", {**legacy, "side": "both"}, {"name": "ssvd", "side": "both"})
