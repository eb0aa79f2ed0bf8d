"""The `model` group: a model family's settings (OWSM's tokenizer and ESPnet config, Whisper's architecture
and weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import field_validator

from asr_peft.config.fields import Group, PositiveFloat, PositiveInt, choice, problem
from asr_peft.models import FAMILIES
from asr_peft.models.whisper_weights import WEIGHTS as OFFLINE_WHISPER


class Tokenizer(Group):
    type: Annotated[str, choice("char", "bpe")] = "char"
    bpemodel: str | None = None
    token_list: str | None = None


class Model(Group):
    name: str
    family: Annotated[str, choice(*FAMILIES)] = "owsm"
    init: Annotated[str, choice("pretrained", "random")] = "random"
    hf_id: str | None = None
    path: str | None = None
    normalizer: str | None = None  # the family's scoring normaliser, which data.normalizer may follow
    # OWSM (ESPnet)
    tokenizer: Tokenizer | None = None
    vocab_size: PositiveInt | None = None
    speech_length: PositiveFloat | None = None
    s2t_config: dict[str, Any] | None = None  # ESPnet's config.yaml keys, checked by ESPnet when it builds
    # Whisper (transformers)
    architecture: dict[str, Any] | None = None  # WhisperConfig's keys, checked by transformers when it builds
    offline_weights: Annotated[str, choice(*OFFLINE_WHISPER)] | None = None
    processor_from: str | None = None
    max_new_tokens: PositiveInt | None = None  # decoding's limit on generated tokens (null: the model's, 448)

    @field_validator("path")
    @classmethod
    def _path_is_a_directory(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise problem("is not a directory (a model directory: ESPnet's exported layout, or a Whisper one)")
        return value
