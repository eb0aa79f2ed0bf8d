"""OWSM's inputs for one utterance, made by ESPnet's own `S2TPreprocessor` from the model's config.

The preprocessor is built exactly as `S2TTask.build_preprocess_fn` builds it for ESPnet's OWSM training
and fine-tuning, from the model's `config.yaml` (tokenizer, token list, `preprocessor_conf`), and it
produces the three targets ESPnet's S2T model trains on:

- `text`: `<lang><asr><notimestamps> transcript`, the decoder target (the model adds `<sos>`/`<eos>`).
  ESPnet drops the first token of `text`, which for sentencepiece is the lone word-boundary piece "▁"
  before `<lang>`; a tokenizer that emits no such piece (the character tokenizer of models built from
  a config) is given a leading space to drop, so that no tokenizer loses its language token.
- `text_prev`: the previous utterance's text as a prompt; `<na>` (manifests hold single utterances).
- `text_ctc`: the bare transcript, the CTC target.

For a model that pads its input to a fixed length (OWSM: 30 s) the preprocessor also pads or trims
the waveform; in training it places the utterance at a random offset inside the window
(`speech_init_silence`, ESPnet's NumPy draw). A model trained on unpadded input (the shipped tiny one)
gets its waveform as it is.

One deliberate difference: the targets carry no timestamps, so ESPnet's timestamp augmentation is off
(`time_apply_prob: 1.0`). With untimed text, its rule (drop timestamps, insert `<notimestamps>` after
the first two tokens) would give half of the targets a second `<notimestamps>`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from asr_peft.errors import ConfigError

if TYPE_CHECKING:
    from asr_peft.models.owsm import OWSMBundle

NO_PREVIOUS_TEXT = "<na>"
ASR_TASK = "<asr>"
NO_TIMESTAMPS = "<notimestamps>"
TIMESTAMP_AUGMENTATION_OFF = {"time_apply_prob": 1.0}


def espnet_preprocessor(bundle, *, train: bool):
    """ESPnet's S2T preprocessor for this model, as `S2TTask.build_preprocess_fn` builds it."""
    from asr_peft.models.owsm import full_espnet_config, s2t_task

    args = argparse.Namespace(**full_espnet_config(bundle.s2t_config))
    conf = dict(args.preprocessor_conf or {})
    if bundle.speech_length:
        conf["speech_length"] = bundle.speech_length
    conf.update(TIMESTAMP_AUGMENTATION_OFF)
    args.preprocessor_conf = conf
    args.use_preprocessor = True
    return s2t_task().build_preprocess_fn(args, train=train)


@dataclass
class OWSMPreprocessor:
    """An utterance (waveform, transcript, language) -> the arrays `ESPnetS2TModel.forward` takes."""

    bundle: OWSMBundle
    default_language: str = "eng"
    train: bool = False
    espnet: Any = field(init=False, repr=False)  # ESPnet's preprocessor
    leading_space: str = field(init=False, default="")

    def __post_init__(self) -> None:
        vocabulary = set(self.bundle.token_list)
        for symbol in (ASR_TASK, NO_TIMESTAMPS, NO_PREVIOUS_TEXT, self.language_token(self.default_language)):
            if symbol not in vocabulary:
                raise ConfigError(f"the model's token list has no {symbol} (data.language={self.default_language}?)")
        self.espnet = espnet_preprocessor(self.bundle, train=self.train)
        prefix = self.decoder_prefix()
        specials = [self.language_token(self.default_language), ASR_TASK, NO_TIMESTAMPS]
        if self.espnet.tokenizer.text2tokens(prefix)[:3] == specials:
            self.leading_space = " "  # no word-boundary piece of its own: give ESPnet one to drop
        if self.espnet.tokenizer.text2tokens(self.leading_space + prefix)[1:4] != specials:
            raise ConfigError(f"the model's tokenizer splits {prefix!r} into other tokens than {specials}")

    @property
    def speech_length(self) -> float | None:
        """Seconds every input is padded or trimmed to; None when the model takes unpadded input."""
        return self.bundle.speech_length or None

    @staticmethod
    def language_token(language: str) -> str:
        return f"<{language}>"

    def decoder_prefix(self, language: str | None = None) -> str:
        return f"{self.language_token(language or self.default_language)}{ASR_TASK}{NO_TIMESTAMPS}"

    def has_language(self, language: str) -> bool:
        return self.bundle.has_language(language)

    def __call__(
        self, utt_id: str, speech: np.ndarray | None, transcript: str, language: str | None = None
    ) -> dict[str, np.ndarray]:
        """`speech` (1-D, 16 kHz; padded or trimmed when the model pads) and the three token-id targets."""
        language = language or self.default_language
        if not self.has_language(language):
            raise ConfigError(f"language {language!r} has no token {self.language_token(language)} in the model's token list")
        data: dict[str, Any] = {
            "text": f"{self.leading_space}{self.decoder_prefix(language)} {transcript}",
            "text_prev": NO_PREVIOUS_TEXT,
            "text_ctc": transcript,
        }
        if speech is not None and self.speech_length:
            data["speech"] = speech
        data = self.espnet(utt_id, data)
        if speech is not None:
            placed = data.get("speech", speech)
            data["speech"] = placed[:, 0] if placed.ndim == 2 else placed  # ESPnet returns (time, channel)
        return data

    def encode(self, transcript: str, language: str | None = None) -> dict[str, np.ndarray]:
        """The token-id targets alone."""
        return self("text", None, transcript, language)
