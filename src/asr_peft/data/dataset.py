"""A speech dataset for ESPnet's S2T model: validated utterances, OWSM text targets, padded batches.

Every utterance is checked once, up front, from the audio header alone: the file exists and is
readable, the sample rate is usable, the transcript is not empty, the duration is within
`max_duration`. With `on_error=raise` the first problem stops the run with a one-line error naming
the file; with `on_error=skip` the utterance is dropped and counted per reason (`skipped`), and the
counts end up in results.json.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from asr_peft.data.audio import TARGET_SAMPLE_RATE, audio_info, change_speed, check_sample_rate, read_audio
from asr_peft.data.manifest import Utterance
from asr_peft.data.owsm_text import OWSMTextEncoder
from asr_peft.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")
IGNORE_ID = -1  # ESPnet's ignore_id: padding of token sequences


def validate_utterances(
    utterances: Sequence[Utterance], *, max_duration: float | None, on_error: str, resample: bool = True,
) -> tuple[list[Utterance], Counter]:
    """Keep the usable utterances (with their duration filled in) and count the others per reason."""
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"data.on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    kept: list[Utterance] = []
    skipped: Counter = Counter()

    def reject(reason: str, message: str) -> None:
        if on_error == "raise":
            raise DataError(message)
        skipped[reason] += 1

    for utt in utterances:
        if not utt.text.strip():
            reject("empty_transcript", f"utterance {utt.id} ({utt.audio}) has an empty transcript")
            continue
        try:
            info = audio_info(utt.audio)
            check_sample_rate(utt.audio, info.sample_rate, resample=resample)
        except DataError as err:
            reason = "missing_audio" if not utt.audio.exists() else "unreadable_audio"
            if "Hz" in str(err):
                reason = "bad_sample_rate"
            reject(reason, str(err))
            continue
        start = utt.start or 0.0
        end = utt.end if utt.end is not None else info.duration
        if end > info.duration + 0.01 or end <= start:
            reject("bad_segment", f"utterance {utt.id}: segment {start}-{end} s is outside {utt.audio} ({info.duration:.2f} s)")
            continue
        duration = end - start
        if max_duration is not None and duration > max_duration:
            reject("too_long", f"utterance {utt.id} ({utt.audio}) is {duration:.1f} s, over data.max_duration={max_duration}")
            continue
        kept.append(Utterance(utt.id, utt.audio, utt.text, duration, utt.speaker, utt.language, utt.start, utt.end))
    if skipped:
        log.warning("skipped %d utterance(s): %s", sum(skipped.values()), dict(skipped))
    if not kept:
        raise DataError(f"no usable utterances left (skipped: {dict(skipped)})")
    return kept, skipped


class SpeechDataset(Dataset):
    """Validated utterances → dicts of numpy arrays in the keys `ESPnetS2TModel.forward` takes."""

    def __init__(self, utterances: Sequence[Utterance], text_encoder: OWSMTextEncoder, *, resample: bool = True,
                 speech_length: float | None = None, speed_factors: Sequence[float] | None = None):
        self.utterances = list(utterances)
        self.text_encoder = text_encoder
        self.resample = resample
        # Speed perturbation: each read draws one factor (Python's RNG, seeded per worker by Lightning).
        self.speed_factors = list(speed_factors or [])
        # OWSM models were pretrained on inputs padded or trimmed to a fixed length (30 s).
        self.pad_to_samples = int(speech_length * TARGET_SAMPLE_RATE) if speech_length else None

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance as batched: the slowest speed factor's, so batches keep their bound."""
        stretch = 1.0 / min(self.speed_factors, default=1.0)
        return [(utt.duration or 0.0) * stretch for utt in self.utterances]

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        speech = read_audio(utt.audio, start=utt.start, end=utt.end, resample=self.resample)
        if self.speed_factors:
            speech = change_speed(speech, random.choice(self.speed_factors))
        if self.pad_to_samples is not None:
            speech = np.pad(speech[: self.pad_to_samples], (0, max(0, self.pad_to_samples - len(speech))))
        item = {"utt_id": utt.id, "speech": speech, "transcript": utt.text}
        item.update(self.text_encoder.encode(utt.text, utt.language))
        return item


def collate(items: list[dict]) -> dict:
    """Pad a list of items into a batch: speech with zeros, token ids with ESPnet's ignore id."""
    batch: dict = {"utt_id": [item["utt_id"] for item in items], "transcript": [item["transcript"] for item in items]}
    for key, pad_value in (("speech", 0.0), ("text", IGNORE_ID), ("text_prev", IGNORE_ID), ("text_ctc", IGNORE_ID)):
        sequences = [torch.from_numpy(np.asarray(item[key])) for item in items]
        batch[f"{key}_lengths"] = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        batch[key] = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=pad_value)
    return batch
