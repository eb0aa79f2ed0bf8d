"""OWSM's text format for the three targets ESPnet's S2T model trains on.

- `text`: `<lang><asr><notimestamps> transcript`, the decoder target (ESPnet adds `<sos>`/`<eos>`);
- `text_prev`: the previous utterance's text as a prompt, or `<na>` when there is none;
- `text_ctc`: the bare transcript, the CTC target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_peft.errors import ConfigError

NO_PREVIOUS_TEXT = "<na>"
ASR_TASK = "<asr>"
NO_TIMESTAMPS = "<notimestamps>"


@dataclass
class OWSMTextEncoder:
    """Turns a transcript into OWSM's token-id targets with the model's own tokenizer."""

    bundle: object  # asr_peft.models.OWSMBundle
    default_language: str = "eng"

    def __post_init__(self) -> None:
        vocabulary = set(self.bundle.token_list)
        for symbol in (ASR_TASK, NO_TIMESTAMPS, NO_PREVIOUS_TEXT, self.language_token(self.default_language)):
            if symbol not in vocabulary:
                raise ConfigError(f"the model's token list has no {symbol} (data.language={self.default_language}?)")

    @staticmethod
    def language_token(language: str) -> str:
        return f"<{language}>"

    def has_language(self, language: str) -> bool:
        return self.language_token(language) in self.bundle.converter.token2id

    def decoder_prefix(self, language: str | None = None) -> str:
        return f"{self.language_token(language or self.default_language)}{ASR_TASK}{NO_TIMESTAMPS}"

    def encode(self, transcript: str, language: str | None = None) -> dict[str, np.ndarray]:
        language = language or self.default_language
        if not self.has_language(language):
            raise ConfigError(f"language {language!r} has no token {self.language_token(language)} in the model's token list")
        ids = self.bundle.text_to_ids
        return {
            "text": np.asarray(ids(f"{self.decoder_prefix(language)} {transcript}"), dtype=np.int64),
            "text_prev": np.asarray(ids(NO_PREVIOUS_TEXT), dtype=np.int64),
            "text_ctc": np.asarray(ids(transcript), dtype=np.int64),
        }
