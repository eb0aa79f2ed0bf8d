"""How many tokens an OWSM model can learn from a given stretch of audio: the model's half of the
`too_many_tokens` check (`data/validation.py`, `ValidatedData.keep_within_token_limits`).

ESPnet's S2T model trains CTC on the encoder's output: CTC emits at most one token per encoder frame,
and a token repeated next to itself needs a blank frame between the two, so a transcript of N tokens
with R such repeats needs N + R frames. The frames are the model's own: its frontend and encoder
count them from the number of samples (OWSM pads every input to 30 s; the tiny model takes the
audio as it is). With more tokens than that the CTC loss is infinite; ESPnet's CTC zeroes it
(`zero_infinity`), so a model that also trains its attention decoder (`ctc_weight` < 1) still learns
from the utterance through the decoder: such utterances are accepted with a warning, and refused
only for a CTC-only model, which would learn nothing from them. ESPnet's attention decoder extends
its positional encoding to any length, so it sets no maximum of its own; a model whose decoder has
one gives it through the same function, as a hard limit. What bounds memory whatever the model is
the characters-per-second check that runs before the model loads.
"""

from __future__ import annotations

import bisect
from typing import Callable

import torch

from asr_peft.data.audio import TARGET_SAMPLE_RATE
from asr_peft.data.validation import TokenLimit
from asr_peft.models.base import eval_mode
from asr_peft.models.owsm_decoding import pad_or_trim


def ctc_frames_needed(tokens: list[int]) -> int:
    """Encoder frames a CTC alignment of `tokens` needs: one per token, one blank between equal neighbours."""
    return len(tokens) + sum(1 for before, after in zip(tokens, tokens[1:]) if before == after)


class EncoderFrames:
    """The encoder's output length for a number of input samples, as the model computes it.

    Running the encoder for every utterance's length would cost seconds per thousand utterances; the
    length never decreases with more samples, so a question that the lengths already computed for a
    shorter and a longer input answer (`at_least` / `at_most`) runs nothing.
    """

    def __init__(self, bundle):
        self.bundle = bundle
        self.samples: list[int] = []
        self.frames: list[int] = []

    def exact(self, samples: int) -> int:
        position = bisect.bisect_left(self.samples, samples)
        if position < len(self.samples) and self.samples[position] == samples:
            return self.frames[position]
        frames = self._encode(samples)
        self.samples.insert(position, samples)
        self.frames.insert(position, frames)
        return frames

    def bounds(self, samples: int) -> tuple[int, int | None]:
        """(frames surely reached, frames surely not exceeded; None: unknown) from the lengths computed."""
        position = bisect.bisect_right(self.samples, samples)
        lower = self.frames[position - 1] if position else 0
        upper = self.frames[position] if position < len(self.samples) else None
        return lower, upper

    def _encode(self, samples: int) -> int:
        from espnet.nets.pytorch_backend.transformer.subsampling import TooShortUttError

        model = self.bundle.model
        speech, lengths = pad_or_trim(torch.zeros(1, samples), torch.tensor([samples]), self.bundle.speech_length)
        parameter = next(model.parameters())
        try:
            with eval_mode(model):
                _, encoded = model.encode(speech.to(parameter.device, parameter.dtype), lengths.to(parameter.device))
        except (TooShortUttError, RuntimeError):  # shorter than the encoder's subsampling: no frame at all
            return 0
        return max(0, int(encoded[0]))


def owsm_token_limit(bundle, preprocessor) -> Callable[[str, str | None, float], TokenLimit]:
    """The rule `keep_within_token_limits` asks: (transcript, language, seconds of audio) -> TokenLimit."""
    frames = EncoderFrames(bundle)
    ctc_only = float(getattr(bundle.model, "ctc_weight", 0.0)) >= 1.0

    def limit(transcript: str, language: str | None, seconds: float) -> TokenLimit:
        needed = ctc_frames_needed(preprocessor.encode(transcript, language)["text_ctc"].tolist())
        samples = max(1, int((bundle.speech_length or seconds) * TARGET_SAMPLE_RATE))  # a padding model's window
        lower, upper = frames.bounds(samples)
        available = lower if needed <= lower else frames.exact(samples)
        return TokenLimit(
            tokens=needed,
            maximum=available,
            refused=ctc_only,
            why=f"CTC aligns one token per encoder frame, and {available} frames come from that audio; "
            "a token repeated next to itself takes two",
        )

    return limit
