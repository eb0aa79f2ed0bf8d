"""A speech dataset: validated utterances, each made into its model's arrays by the model's preprocessor.

The utterances come checked (`asr_peft.data.validation`): every one of them reads and encodes. What an
utterance becomes (features, targets, padding) is the model family's rule (`ModelBundle.preprocessor`);
how items become a batch is its `collate`, wrapped here with what scoring needs besides.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from torch.utils.data import Dataset

from asr_peft.data.audio import change_speed, read_audio
from asr_peft.data.manifest import Utterance

ITEM_INFO = ("utt_id", "transcript", "language")  # what an item carries besides the model's arrays


class SpeechDataset(Dataset):
    """Validated utterances -> items for `Collate`: what the model's preprocessor makes of each one."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        preprocessor,
        *,
        default_language: str = "eng",
        input_seconds: float | None = None,
        resample: bool = True,
        speed_factors: Sequence[float] | None = None,
    ):
        self.utterances = list(utterances)
        self.preprocessor = preprocessor
        self.default_language = default_language
        self.input_seconds = input_seconds
        self.resample = resample
        # Speed perturbation: each read draws one factor (Python's RNG, seeded per worker by Lightning).
        self.speed_factors = list(speed_factors or [])

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance as the model sees it, which is what a batch costs: the fixed input
        length of a model that pads (OWSM, Whisper: 30 s, however short the utterance), else the utterance
        at its slowest speed factor."""
        if self.input_seconds:
            return [float(self.input_seconds)] * len(self.utterances)
        stretch = 1.0 / min(self.speed_factors, default=1.0)
        return [(utt.duration or 0.0) * stretch for utt in self.utterances]

    def __getitem__(self, index: int) -> dict:
        utt = self.utterances[index]
        speech = read_audio(utt.audio, start=utt.start, end=utt.end, resample=self.resample)
        if self.speed_factors:
            speech = change_speed(speech, random.choice(self.speed_factors))
        language = utt.language or self.default_language
        item = {"utt_id": utt.id, "transcript": utt.text, "language": language}
        item.update(self.preprocessor(utt.id, speech, utt.text, language))
        return item


def model_dataset(
    bundle,
    utterances: Sequence[Utterance],
    *,
    default_language: str,
    train: bool = False,
    resample: bool = True,
    speed_factors: Sequence[float] | None = None,
) -> SpeechDataset:
    """A dataset of `utterances` for `bundle`'s model (its preprocessor, its padding rule)."""
    return SpeechDataset(
        utterances,
        bundle.preprocessor(default_language=default_language, train=train),
        default_language=default_language,
        input_seconds=bundle.input_seconds,
        resample=resample,
        speed_factors=speed_factors,
    )


class Collate:
    """A batch as the model's collate makes it, plus the ids, transcripts and languages for scoring.
    A class (not a closure) so that loader worker processes can pickle it."""

    def __init__(self, model_collate: Callable[[list[dict]], dict]):
        self.model_collate = model_collate

    def __call__(self, items: list[dict]) -> dict:
        batch = self.model_collate([{k: v for k, v in item.items() if k not in ITEM_INFO} for item in items])
        batch.update({key: [item[key] for item in items] for key in ITEM_INFO})
        return batch
