"""What a model family provides: the one interface training, scoring, resume, planning and export use.

A family (OWSM on ESPnet, Whisper on Hugging Face transformers) is a `ModelBundle` subclass in its own
module, registered in `models/__init__.py` under the name a model config gives as `model.family`.
Everything outside `models/` works through this interface and never asks which family it holds:

- what an utterance becomes (`preprocessor`: waveform + transcript + language -> the model's arrays),
  how items become a batch (`collate`) and what a batch costs (`input_seconds`: the padding rule),
- the training loss of a batch (`loss`),
- transcripts of a batch (`transcribe`) with the family's decoding methods (`decode_methods`;
  `validation_decode` is the one validation uses), and both at once for validation (`validate`),
- whether a language has a token (`has_language`), and writing the (merged) model in the family's
  own published layout (`export`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

# What a preprocessor returns for one utterance: the model's arrays (its own keys).
Preprocessor = Callable[[str, "np.ndarray | None", str, "str | None"], dict[str, np.ndarray]]


class ModelBundle(ABC):
    """A loaded model and everything needed to feed it, train it, decode with it and export it."""

    model: torch.nn.Module
    source: str  # where the weights came from, for results.json

    # The decoding methods `evaluation.decode` may name for this family (the first is the default), and the
    # one validation uses every time it runs unless `evaluation.validation_decode` names another.
    decode_methods: tuple[str, ...]
    validation_decode: str

    @property
    @abstractmethod
    def input_seconds(self) -> float | None:
        """Seconds every input is padded or trimmed to (what a batch costs per utterance); None when the
        model takes each utterance at its own length."""

    @abstractmethod
    def preprocessor(self, *, default_language: str, train: bool) -> Preprocessor:
        """(utt_id, 16 kHz waveform or None, transcript, language) -> the model's arrays for one utterance;
        `train`: the training set's variant (e.g. random placement in a padded window)."""

    @abstractmethod
    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """The model's inputs for a batch, from the preprocessor's outputs of its utterances."""

    @abstractmethod
    def loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """The training loss of a collated batch (the model in the caller's mode) and named statistics."""

    @abstractmethod
    def transcribe(self, batch: Mapping[str, Any], *, method: str, languages: list[str], options: Mapping[str, Any]) -> list[str]:
        """Transcripts of a collated batch (on the model's device), decoded with `method` (one of
        `decode_methods`) and its `options` (`evaluation.beam`); `languages`: each utterance's ISO 639-3 code."""

    def validate(self, batch: Mapping[str, Any], *, method: str, languages: list[str]) -> tuple[torch.Tensor, list[str]]:
        """A dev batch's loss and transcripts (decoded with `method`), the model in evaluation mode. A family
        whose decoder reads one encoder output overrides it to run the encoder once for both."""
        with eval_mode(self.model):
            loss, _ = self.loss(batch)
        return loss, self.transcribe(batch, method=method, languages=languages, options={})

    @abstractmethod
    def has_language(self, language: str) -> bool:
        """Whether the model can be told to transcribe `language` (ISO 639-3)."""

    @abstractmethod
    def token_limit(self, default_language: str) -> Callable[[str, str | None, float], Any]:
        """The model's half of the `too_many_tokens` check: (transcript, language, seconds of audio) ->
        `data.validation.TokenLimit` (its tokens, the most the model takes, whether more is refused)."""

    @abstractmethod
    def enable_activation_checkpointing(self) -> None:
        """Re-run the model's blocks in the backward pass instead of keeping their activations
        (`activation_checkpointing=true`), with the family's own mechanism."""

    @abstractmethod
    def export(self, out_dir: Path, *, model: torch.nn.Module, dtype: torch.dtype) -> None:
        """Write `model` (this bundle's model with adapters merged) in the family's published layout."""

    def check_decode_method(self, method: str | None, key: str = "evaluation.decode") -> str:
        """A decoding method the config names at `key`: this family's default when unset, a one-line error
        naming the key when unknown."""
        from asr_peft.errors import ConfigError

        if method is None:
            return self.decode_methods[0]
        if method not in self.decode_methods:
            raise ConfigError(
                f"{key}={method!r} is not a decoding method of this model (choose from: {', '.join(self.decode_methods)})"
            )
        return method

    def check_validation_decode(self, method: str | None) -> str:
        """`evaluation.validation_decode`: this family's `validation_decode` when unset."""
        return self.check_decode_method(method or self.validation_decode, key="evaluation.validation_decode")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Evaluation mode and no autograd for the block; the caller's train/eval mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
