"""activation_checkpointing=true: ESPnet's own block checkpointing, switched on for a loaded model."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from asr_peft.adapters import apply_method
from asr_peft.adapters.model import adapter_modules
from asr_peft.errors import ConfigError
from asr_peft.models.checkpointing import enable_activation_checkpointing
from conftest import ROOT
from test_adapters_layers import randomize
from test_precision import relative_error


def synthetic_batch(bundle, seconds: float, size: int) -> dict:
    """Noise audio with a real OWSM text target, collated as training batches are."""
    from asr_peft.data.dataset import Collate
    from asr_peft.models.owsm_text import OWSMPreprocessor

    generator = torch.Generator().manual_seed(0)
    encoder = OWSMPreprocessor(bundle)
    text = "the quick brown fox jumps over the lazy dog"
    items = [
        {
            "utt_id": str(i),
            "transcript": text,
            "language": "eng",
            **encoder.encode(text),
            "speech": (0.1 * torch.randn(int(seconds * 16000), generator=generator)).numpy(),
        }
        for i in range(size)
    ]
    return {k: v for k, v in Collate(bundle.collate)(items).items() if k not in ("utt_id", "transcript", "language")}


def loss_and_gradients(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model(**batch)[0]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-mixed"])
def test_checkpointed_blocks_run_twice_and_give_the_same_gradients(tiny_bundle_factory, autocast):
    bundle = tiny_bundle_factory(0)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    apply_method(bundle.model, {"name": "ssvd"}, {"p": 0.4, "targets": targets})
    for _, adapter in adapter_modules(bundle.model):
        randomize(adapter)  # trained values: no gradient is zero by symmetry
    bundle.model.train()
    batch = synthetic_batch(bundle, seconds=1.0, size=2)
    checkpointed = copy.deepcopy(bundle.model)
    layers = enable_activation_checkpointing(checkpointed)
    assert layers == {"encoder": [0, 1, 2], "decoder": [1, 2]}  # owsm_tiny: 2 + 2 blocks, plus the subsampling

    calls = []
    for block in (*checkpointed.encoder.encoders, *checkpointed.decoder.decoders):
        block.register_forward_pre_hook(lambda *args: calls.append(1))  # recomputation stops early: no post-hook
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        plain = loss_and_gradients(bundle.model, batch)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        recomputed = loss_and_gradients(checkpointed, batch)
    assert len(calls) == 2 * 4  # each block's forward ran again in the backward pass
    assert torch.equal(plain[0], recomputed[0])
    for name, grad in plain[1].items():
        assert relative_error(recomputed[1][name], grad) < 1e-5, name


def test_an_encoder_without_espnets_mechanism_is_refused():
    from torch import nn

    model = nn.Module()
    model.encoder, model.decoder = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="activation_checkpointing=true: ESPnet's Linear \\(encoder\\)"):
        enable_activation_checkpointing(model)
