"""The `data` and `loader` groups: the corpus, its manifests and checks, and how batches are formed."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from asr_peft.config.fields import Group, NonNegativeInt, PositiveFloat, PositiveInt, choice
from asr_peft.data.normalizers import NORMALIZERS
from asr_peft.data.validation import ON_ERROR_CHOICES


class Data(Group):
    name: str
    corpus_dir: str | None = None
    prepare: dict[str, Any] | None = None  # a `_target_` that generates or prepares the corpus
    train: str | None = None
    valid: str | None = None
    test: Annotated[dict[str, str], Field(min_length=1)] | None = None  # {} would test nothing, silently
    language: Annotated[str, Field(min_length=1)] = "eng"
    normalizer: Annotated[str, choice(*NORMALIZERS)] = "whisper_basic"
    max_duration: PositiveFloat | None = None
    on_error: Annotated[str, choice(*ON_ERROR_CHOICES)] = "raise"
    resample: bool = True
    speed_perturb: list[Annotated[float, Field(ge=0.5, le=2.0)]] | None = None


class Loader(Group):
    batch_size: PositiveInt | None = None  # fixed-size batches; the sampler asks for one of the two
    max_batch_seconds: PositiveFloat | None = None
    max_batch_size: PositiveInt | None = None
    num_workers: NonNegativeInt = 0
