"""method=peft: Hugging Face PEFT tuners behind the common adapter interface, checked against PEFT itself."""

from __future__ import annotations

import pytest
import torch
from peft import inject_adapter_in_model
from torch import nn

from asr_peft.adapters import apply_method, trainable_parameter_count
from asr_peft.adapters.injection import match_modules
from asr_peft.adapters.peft_tuner import PEFTLinear, peft_config
from asr_peft.errors import ConfigError
from test_adapters_owsm import adapt_config

CONFIGS = [
    {"peft_type": "PSOFT", "r": 4},
    {"peft_type": "OFT", "r": 0, "oft_block_size": 4},
    {"peft_type": "LORA", "r": 4, "lora_alpha": 8},
    {"peft_type": "IA3", "feedforward_modules": ["layer"]},
]


def perturb(module: nn.Module) -> None:
    with torch.no_grad():
        for _, parameter in module.named_adapter_parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))


@pytest.mark.parametrize("fields", CONFIGS, ids=lambda f: f["peft_type"])
def test_identity_at_init_then_merge_equals_the_tuner_and_unmerge_restores(fields):
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    weight = base.weight.detach().clone()
    layer = PEFTLinear(base, fields)
    x = torch.randn(5, 16)
    assert torch.allclose(layer(x), base(x), atol=1e-6)
    perturb(layer)
    unmerged = layer(x)
    assert not torch.allclose(unmerged, base(x), atol=1e-4)
    layer.merge()
    assert torch.allclose(layer(x), unmerged, atol=1e-5)
    layer.unmerge()
    assert torch.equal(base.weight, weight)


def test_tuners_that_are_not_a_linear_layer_with_its_bias_are_never_merged():
    layer = PEFTLinear(nn.Linear(8, 8), {"peft_type": "LORA", "r": 2})
    layer.tuner.forward = lambda x: layer.base_layer(x) + 0.1 * (x**2) @ torch.ones(8, 8)  # same at x = 0
    with pytest.raises(ValueError, match="not linear"):
        layer.merge()
    assert not layer.merged
    scaled_output = PEFTLinear(nn.Linear(8, 8), {"peft_type": "IA3", "feedforward_modules": []})  # (Wx + b) * l
    perturb(scaled_output)
    with pytest.raises(ValueError, match="bias"):
        scaled_output.merge()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"peft_type": "NOPE"}, "peft_type"),
        ({"r": 4}, "peft_type"),
        ({"peft_type": "LORA", "target_modules": ["x"]}, "target_modules"),
        ({"peft_type": "LORA", "rank_of_everything": 3}, "method.peft_config"),
    ],
)
def test_bad_peft_configs_are_one_line_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as err:
        peft_config(fields)
    assert "\n" not in str(err.value)


def test_on_owsm_the_trainable_count_is_what_peft_itself_trains(tiny_bundle_factory):
    # The generic adapter tests (test_adapters_owsm.py) cover identity, frozen weights, merge and save/load.
    fields = {"peft_type": "PSOFT", "r": 8}
    model, reference = tiny_bundle_factory(0).model, tiny_bundle_factory(0).model
    names = [name for name, _, _ in match_modules(reference, adapt_config()["targets"])]
    reference.requires_grad_(False)
    config = peft_config(fields)
    config.target_modules = set(names)
    inject_adapter_in_model(config, reference)
    report = apply_method(model, {"name": "peft", "peft_config": fields}, adapt_config())
    assert report.trainable == trainable_parameter_count(reference) > 0
    assert len(report.adapted_modules) == len(names)
