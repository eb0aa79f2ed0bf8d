"""A speech dataset for ESPnet's S2T model: validated utterances, OWSM text targets, padded batches.

The utterances come checked (`asr_peft.data.validation`): every one of them reads and encodes.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from asr_peft.data.audio import TARGET_SAMPLE_RATE, change_speed, read_audio
from asr_peft.data.manifest import Utterance
from asr_peft.data.owsm_text import OWSMTextEncoder

IGNORE_ID = -1  # ESPnet's ignore_id: padding of token sequences


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
