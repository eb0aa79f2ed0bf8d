"""How many tokens an OWSM model can learn from a given stretch of audio: the model's half of the
`too_many_tokens` check (`data/validation.py`, `ValidatedData.keep_within_token_limits`).

ESPnet's S2T model trains CTC on the encoder's output: CTC emits at most one token per encoder frame,
and a token repeated next to itself needs a blank frame between the two, so a transcript of N tokens
with R such repeats needs N + R frames. More than that gives an infinite CTC loss (ESPnet's
`zero_infinity` then hides it as zero) and a memory use that grows with the transcript. The frames
are the model's own: its frontend and encoder count them from the number of samples (OWSM pads every
input to 30 s; the tiny model takes the audio as it is). ESPnet's attention decoder extends its
positional encoding to any length, so it sets no bound of its own; a model whose decoder has a
maximum length gives its limit through the same function.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch

from asr_peft.data.audio import TARGET_SAMPLE_RATE
from asr_peft.data.validation import TokenLimit
from asr_peft.evaluation.decoding import eval_mode, pad_or_trim


def ctc_frames_needed(tokens: list[int]) -> int:
    """Encoder frames a CTC alignment of `tokens` needs: one per token, one blank between equal neighbours."""
    return len(tokens) + sum(1 for before, after in zip(tokens, tokens[1:]) if before == after)


def owsm_token_limit(bundle, preprocessor) -> Callable[[str, str | None, float], TokenLimit]:
    """The rule `keep_within_token_limits` asks: (transcript, language, seconds of audio) -> TokenLimit."""
    model = bundle.model

    @lru_cache(maxsize=None)
    def encoder_frames(samples: int) -> int:
        speech, lengths = pad_or_trim(torch.zeros(1, samples), torch.tensor([samples]), bundle.speech_length)
        parameter = next(model.parameters())
        from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

        try:
            with eval_mode(model):
                _, encoded = model.encode(speech.to(parameter.device, parameter.dtype), lengths.to(parameter.device))
        except (TooShortUttError, RuntimeError):  # shorter than the encoder's subsampling: no frame at all
            return 0
        return max(0, int(encoded[0]))

    def limit(transcript: str, language: str | None, seconds: float) -> TokenLimit:
        ctc_tokens = preprocessor.encode(transcript, language)["text_ctc"].tolist()
        padded = bundle.speech_length or seconds  # a model that pads sees its fixed window, whatever the audio
        frames = encoder_frames(max(1, int(padded * TARGET_SAMPLE_RATE)))
        return TokenLimit(tokens=ctc_frames_needed(ctc_tokens), maximum=frames,
                          why=f"CTC aligns one token per encoder frame, and {frames} frames come from that audio; "
                              "a token repeated next to itself takes two")
    return limit
