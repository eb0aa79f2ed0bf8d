"""A speech dataset for ESPnet's S2T model: validated utterances, ESPnet's own preprocessing and collation.

The utterances come checked (`asr_peft.data.validation`): every one of them reads and encodes.
"""

from __future__ import annotations

import argparse
import functools
import random
from typing import Sequence

from torch.utils.data import Dataset

from asr_peft.data.audio import change_speed, read_audio
from asr_peft.data.manifest import Utterance
from asr_peft.data.owsm_text import OWSMPreprocessor


class SpeechDataset(Dataset):
    """Validated utterances -> items for `collate`: what ESPnet's S2T preprocessor makes of each one."""

    def __init__(self, utterances: Sequence[Utterance], preprocessor: OWSMPreprocessor, *, resample: bool = True,
                 speed_factors: Sequence[float] | None = None):
        self.utterances = list(utterances)
        self.preprocessor = preprocessor
        self.resample = resample
        # Speed perturbation: each read draws one factor (Python's RNG, seeded per worker by Lightning).
        self.speed_factors = list(speed_factors or [])

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance as the model sees it, which is what a batch costs: the fixed input
        length of a model that pads (OWSM: 30 s, however short the utterance), else the utterance at
        its slowest speed factor."""
        if self.preprocessor.speech_length:
            return [float(self.preprocessor.speech_length)] * len(self.utterances)
        stretch = 1.0 / min(self.speed_factors, default=1.0)
        return [(utt.duration or 0.0) * stretch for utt in self.utterances]

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        speech = read_audio(utt.audio, start=utt.start, end=utt.end, resample=self.resample)
        if self.speed_factors:
            speech = change_speed(speech, random.choice(self.speed_factors))
        language = utt.language or self.preprocessor.default_language
        item = {"utt_id": utt.id, "transcript": utt.text, "language": language}
        item.update(self.preprocessor(utt.id, speech, utt.text, language))
        return item


MODEL_KEYS = ("speech", "text", "text_prev", "text_ctc")  # ESPnet's collate adds each one's `_lengths`


@functools.cache
def espnet_collate():
    """ESPnet's S2T collate function (`CommonCollateFn`: speech padded with 0, token ids with -1)."""
    from asr_peft.models.owsm import s2t_task

    return s2t_task().build_collate_fn(argparse.Namespace(), train=True)


def collate(items: list[dict]) -> dict:
    """A batch as ESPnet's collate makes it, plus the ids, transcripts and languages for scoring."""
    utt_ids, batch = espnet_collate()([(item["utt_id"], {key: item[key] for key in MODEL_KEYS}) for item in items])
    batch.update(utt_id=list(utt_ids), transcript=[item["transcript"] for item in items],
                 language=[item["language"] for item in items])
    return batch
