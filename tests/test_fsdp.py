"""FSDP checkpoints keep the adapters: parameter names under auto-wrap versus the state dict's names.

Lightning's FSDP needs a GPU, but torch's FSDP itself wraps a model on the CPU (one gloo process), so
the names are FSDP's own: the model is wrapped exactly as `trainer=fsdp` configures it (its auto-wrap
classes, `use_orig_params`), and the state dict comes from Lightning's own full-state-dict context.
"""

from __future__ import annotations

import socket
import warnings

import pytest
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from omegaconf import OmegaConf

from asr_peft.adapters import apply_method
from asr_peft.training.module import SpeechLitModule, state_dict_name
from conftest import ROOT, compose_config


@pytest.fixture
def gloo_group(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def lit_module(bundle, method):
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    apply_method(bundle.model, method, {"p": 0.4, "targets": targets})
    return SpeechLitModule(bundle, optimizer={"lr": 1e-3}, normalizer=str.lower)


def test_state_dict_names_drop_wrapper_segments():
    assert (
        state_dict_name("encoder.encoders.0._fsdp_wrapped_module._checkpoint_wrapped_module.attn.linear_q.lora_A")
        == "encoder.encoders.0.attn.linear_q.lora_A"
    )
    assert state_dict_name("_orig_mod.decoder.embed.0.lora_B") == "decoder.embed.0.lora_B"


@pytest.mark.parametrize(
    "method",
    [{"name": "ssvd"}, {"name": "lora", "r": 4, "alpha": 8, "embedding_targets": ["decoder.embed.0"]}],
    ids=["ssvd", "lora"],
)
def test_adapters_survive_an_fsdp_checkpoint_round_trip(tiny_bundle_factory, gloo_group, method):
    from lightning.fabric.strategies.fsdp import _get_full_state_dict_context
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    module = lit_module(tiny_bundle_factory(0), method)
    with torch.no_grad():  # trained values, so a round trip that loses or swaps tensors shows
        for name, parameter in module.model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))
    trained = {f"model.{name}": p.detach().clone() for name, p in module.model.named_parameters() if p.requires_grad}

    strategy = compose_config("train", ["trainer=fsdp"]).trainer.strategy
    policy = {instantiate(entry) for entry in strategy.auto_wrap_policy}
    with warnings.catch_warnings():  # FSDP warns that one process cannot shard (NO_SHARD) and about mixed requires_grad
        warnings.simplefilter("ignore")
        wrapped = FullyShardedDataParallel(
            module,
            auto_wrap_policy=ModuleWrapPolicy(policy),
            use_orig_params=strategy.use_orig_params,
            device_id=torch.device("cpu"),
        )
        with _get_full_state_dict_context(wrapped, world_size=1):
            state_dict = wrapped.state_dict()
    names = [name for name, p in module.model.named_parameters() if p.requires_grad]
    assert any("_fsdp_wrapped_module." in name for name in names)  # the blocks were wrapped in place
    assert not any("_fsdp_wrapped_module." in key for key in state_dict)  # the state dict names are clean

    checkpoint = {"state_dict": state_dict}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == set(trained)  # every adapter tensor kept, the frozen model dropped
    for key, value in trained.items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    module.on_load_checkpoint(checkpoint)  # names every trainable tensor as present

    fresh = lit_module(tiny_bundle_factory(0), method)  # what resuming or testing rebuilds, unwrapped
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=False)
    for key, value in trained.items():
        assert torch.equal(fresh.get_parameter(key), value), key


def test_checkpoints_with_the_former_scalar_gates_still_load(tiny_bundle_factory):
    """Gates are 1-element tensors since FSDP refuses 0-d parameters; older checkpoints hold them 0-d."""
    module = lit_module(tiny_bundle_factory(0), {"name": "ssvd"})
    state = {key: value.clone() for key, value in module.state_dict().items()}
    gates = [key for key in state if key.endswith(".gate")]
    assert gates and all(state[key].shape == (1,) for key in gates)
    for i, key in enumerate(gates):
        state[key] = torch.tensor(0.1 * i)
    module.load_state_dict(state)
    assert [float(module.get_parameter(key).detach()) for key in gates] == pytest.approx([0.1 * i for i in range(len(gates))])
