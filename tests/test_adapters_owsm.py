"""Adapters on the real ESPnet OWSM classes: presets, identity at init, frozen weights, save/load, plans."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from omegaconf import OmegaConf

from asr_peft.adapters import (
    adapter_modules,
    apply_method,
    load_adapter,
    merge_adapters,
    merged_copy,
    parameter_plan,
    save_adapter,
    trainable_parameter_count,
    unmerge_adapters,
)
from asr_peft.adapters.injection import match_modules, module_type
from asr_peft.errors import ConfigError
from asr_peft.models import load_owsm
from conftest import ROOT, model_config


def method_config(name: str, **overrides) -> dict:
    return {**OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "method" / f"{name}.yaml")), **overrides}


def adapt_config(name: str = "owsm_all", **overrides) -> dict:
    return {**OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "adapt" / f"{name}.yaml")), **overrides}


# Small ranks so that every method fits the tiny model's 128-wide layers.
METHODS = [
    method_config("ssvd"),
    method_config("ssvd", rotation="cayley"),
    method_config("svft"),
    method_config("svft", pattern="banded", off_diag=2),
    method_config("lora", r=4, alpha=8),
    method_config("dora", r=4, alpha=8),
    method_config("pissa", r=4, alpha=4),
    method_config("vera", r=16),
    method_config("peft", peft_config={"peft_type": "PSOFT", "r": 8}),
    method_config("full"),
    method_config("frozen"),
]
IDS = ["ssvd", "ssvd-cayley", "svft", "svft-banded", "lora", "dora", "pissa", "vera", "peft-psoft", "full", "frozen"]


@pytest.fixture
def batch(tiny_bundle):
    from asr_peft.data.dataset import Collate
    from asr_peft.models.owsm_text import OWSMPreprocessor

    torch.manual_seed(0)
    encoder = OWSMPreprocessor(tiny_bundle)
    items = [
        {
            "utt_id": str(i),
            "transcript": t,
            "language": "eng",
            "speech": (0.1 * torch.randn(6000 + 2000 * i)).numpy(),
            **encoder.encode(t),
        }
        for i, t in enumerate(["hello world", "good day"])
    ]
    return {k: v for k, v in Collate(tiny_bundle.collate)(items).items() if k not in ("utt_id", "transcript", "language")}


def encoder_output(model, batch):
    model.eval()
    with torch.no_grad():
        return model.encode(batch["speech"], batch["speech_lengths"])[0]


def loss(model, batch):
    return model(**batch)[0]


def test_presets_match_exactly_the_recipe_modules(tiny_bundle):
    """owsm_all: every recipe module of every block, decoder self/src attention included; nothing else."""
    kinds = Counter(pattern for _, pattern, _ in match_modules(tiny_bundle.model, adapt_config()["targets"]))
    blocks = 2
    expected = {p: blocks for p in adapt_config()["targets"] if p != "encoder.embed.out?"}  # conv2d8's name (v4)
    expected.update(
        {"encoder.embed.out.0?": 1, "decoder.output_layer": 1, "feed_forward.w_1": 2 * blocks, "feed_forward.w_2": 2 * blocks}
    )  # encoder and decoder FFNs
    assert kinds == expected
    names = [n for n, _, _ in match_modules(tiny_bundle.model, ["attn.linear_q"])]
    assert names == ["encoder.encoders.0.attn.linear_q", "encoder.encoders.1.attn.linear_q"]  # dot boundary
    names = [n for n, _, _ in match_modules(tiny_bundle.model, ["re:decoder\\.decoders\\.\\d\\.(self|src)_attn\\.linear_q"])]
    assert len(names) == 4
    ffn = Counter(p for _, p, _ in match_modules(tiny_bundle.model, adapt_config("ffn")["targets"]))
    assert ffn["feed_forward.w_1"] == 2 * blocks  # encoder and decoder FFNs; the macaron one is separate
    assert "ctc.ctc_lo" not in [n for n, _, _ in match_modules(tiny_bundle.model, adapt_config()["targets"])]


def test_optional_patterns_may_match_nothing_and_only_match_linear_layers(tiny_bundle):
    model = tiny_bundle.model
    assert [n for n, _, _ in match_modules(model, ["decoder.output_layer", "merge_proj_typo?"])] == ["decoder.output_layer"]
    with pytest.raises(ConfigError, match="adapt.targets: pattern.s. merge_proj_typo match no module"):
        match_modules(model, ["decoder.output_layer", "merge_proj_typo"])
    # `encoder.embed.out` is the Sequential(Linear, PosEnc) here: named, it matches (and injection then
    # refuses it as non-Linear); optional, it is passed over.
    assert [n for n, _, _ in match_modules(model, ["encoder.embed.out"])] == ["encoder.embed.out"]
    assert [n for n, _, _ in match_modules(model, ["encoder.embed.out?", "encoder.embed.out.0?"])] == ["encoder.embed.out.0"]
    with pytest.raises(ConfigError, match="none of the optional patterns"):
        match_modules(model, ["encoder.embed.out?", "nothing?"])


@pytest.mark.parametrize(
    "name, input_projection, encoder_types",
    [
        # OWSM v4 (conv2d8): the input projection is encoder.embed.out itself; the rest is v3.1's recipe list
        (
            "owsm_v4_base",
            "encoder.embed.out",
            {
                f"encoder.{t}": 6
                for t in (
                    "attn.linear_q",
                    "attn.linear_k",
                    "attn.linear_v",
                    "attn.linear_out",
                    "cgmlp.channel_proj1",
                    "cgmlp.channel_proj2",
                    "feed_forward.w_1",
                    "feed_forward.w_2",
                    "feed_forward_macaron.w_1",
                    "feed_forward_macaron.w_2",
                    "merge_proj",
                )
            },
        ),
        # OWLS (Transformer encoder, conv2d): self_attn and feed_forward in each of its 16 encoder blocks
        (
            "owls_2b",
            "encoder.embed.out.0",
            {
                f"encoder.{t}": 16
                for t in (
                    "self_attn.linear_q",
                    "self_attn.linear_k",
                    "self_attn.linear_v",
                    "self_attn.linear_out",
                    "feed_forward.w_1",
                    "feed_forward.w_2",
                )
            },
        ),
    ],
)
def test_owsm_all_preset_serves_other_architectures(name, input_projection, encoder_types):
    """One preset across the zoo: the decoder is the same Transformer decoder everywhere; the encoder's
    layers are what the architecture has."""
    model = load_owsm(model_config(name), device="meta").model
    names = [n for n, _, _ in match_modules(model, adapt_config()["targets"])]
    assert [n for n in names if n.startswith("encoder.embed")] == [input_projection]
    blocks = len(model.decoder.decoders)
    expected = {f"decoder.{a}.linear_{x}": blocks for a in ("self_attn", "src_attn") for x in ("q", "k", "v", "out")}
    expected.update(
        {
            "decoder.feed_forward.w_1": blocks,
            "decoder.feed_forward.w_2": blocks,
            "decoder.output_layer": 1,
            "encoder.embed.out": 1,
            **encoder_types,
        }
    )
    assert Counter(module_type(n) for n in names) == expected


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_every_method_is_identity_at_init_and_trains_only_its_own_parameters(method, tiny_bundle_factory, batch, tmp_path):
    bundle = tiny_bundle_factory(0)
    model = bundle.model
    reference = encoder_output(model, batch)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = apply_method(model, method, adapt_config(), svd_cache_dir=tmp_path / "svd")
    assert torch.allclose(encoder_output(model, batch), reference, atol=1e-5)
    if method["name"] == "frozen":
        assert trainable_parameter_count(model) == 0
        return
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for step in range(4):  # train/eval cycles, with merges in between, as validation would do
        optimizer.zero_grad()
        value = loss(model, batch)
        value.backward()
        first = value.item() if first is None else first
        optimizer.step()
        if method["name"] != "full":
            merge_adapters(model)
            encoder_output(model, batch)
            unmerge_adapters(model)
        model.train()
    assert loss(model, batch).item() < first, "a few optimisation steps must lower the loss"
    if method["name"] == "full":
        return
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    owned = {f"{m}.{k}" for m, module in adapter_modules(model) for k, _ in module.named_adapter_parameters()}
    assert trainable == owned and report.trainable == sum(p.numel() for n, p in model.named_parameters() if n in owned)
    for name, parameter in model.named_parameters():
        if name in owned:
            continue
        original = name.replace(".base_layer", "")
        if method["name"] == "pissa" and original.endswith("weight") and original in frozen and ".base_layer." in name:
            continue  # PiSSA's base holds the residual W - sBA by design (checked in the layer tests)
        assert torch.equal(parameter, frozen[original]), f"{name} drifted"


@pytest.mark.parametrize("method", METHODS[:8], ids=IDS[:8])
def test_adapter_only_save_and_load_into_a_fresh_base_reproduces_outputs(method, tiny_bundle_factory, batch, tmp_path):
    trained = tiny_bundle_factory(0).model
    apply_method(trained, method, adapt_config(), svd_cache_dir=tmp_path / "svd")
    with torch.no_grad():
        for _, module in adapter_modules(trained):
            for _, p in module.named_adapter_parameters():
                p.add_(0.01 * torch.randn_like(p))
    save_adapter(trained, tmp_path / "adapter", method, adapt_config())
    fresh = tiny_bundle_factory(0).model
    load_adapter(fresh, tmp_path / "adapter", svd_cache_dir=tmp_path / "svd")
    assert torch.equal(encoder_output(fresh, batch), encoder_output(trained, batch))
    with pytest.raises(ConfigError, match="exists already"):
        save_adapter(trained, tmp_path / "adapter", method, adapt_config())


def test_merged_copy_is_a_plain_espnet_model_with_the_same_outputs(tiny_bundle_factory, batch):
    model = tiny_bundle_factory(0).model
    apply_method(model, method_config("ssvd"), adapt_config())
    with torch.no_grad():
        for _, module in adapter_modules(model):
            for _, p in module.named_adapter_parameters():
                p.add_(0.01 * torch.randn_like(p))
    plain = merged_copy(model)
    assert not list(adapter_modules(plain))
    assert set(plain.state_dict()) == set(tiny_bundle_factory(0).model.state_dict())
    assert torch.allclose(encoder_output(plain, batch), encoder_output(model, batch), atol=1e-5)


def test_owsm_1b_plan_on_the_meta_device_matches_the_papers_32m():
    bundle = load_owsm(model_config("owsm_1b"), device="meta")
    apply_method(bundle.model, method_config("ssvd"), adapt_config())
    plan = parameter_plan(bundle.model)
    k = 409  # floor(0.4 * 1024): every adapted OWSM-1B layer has min(d_out, d_in) = 1024
    assert plan["trainable"] == (18 * 11 + 18 * 10 + 2) * (k + k * (k - 1) // 2 + 1) == 31_861_480
    assert plan["per_module_type"]["decoder.src_attn.linear_q"] == {"modules": 18, "trainable": 18 * 83_846}


def test_lora_plan_on_owsm_1b_counts_the_embedding_adapter():
    bundle = load_owsm(model_config("owsm_1b"), device="meta")
    apply_method(bundle.model, method_config("lora"), adapt_config())
    r, d, ffn, vocab = 32, 1024, 4096, 50000
    per_encoder_block = 4 * r * 2 * d + r * (d + ffn) + r * (ffn // 2 + d) + 4 * r * (d + ffn) + r * (2 * d + d)
    per_decoder_block = 8 * r * 2 * d + 2 * r * (d + ffn)
    embed_out = r * (d * 19 + d)  # conv2d subsampling: 1024 channels x 19 frequency bins -> 1024
    output_layer = embedding = r * (d + vocab)
    expected = 18 * (per_encoder_block + per_decoder_block) + embed_out + output_layer + embedding
    assert parameter_plan(bundle.model)["trainable"] == expected == 42_259_456
