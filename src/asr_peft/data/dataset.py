"""A speech dataset for ESPnet's S2T model: validated utterances, ESPnet's own preprocessing and collation.

Every utterance is checked once, up front, from the audio header alone: the file exists and is
readable, the sample rate is usable, the transcript is not empty, the duration is within
`max_duration`. With `on_error=raise` the first problem stops the run with a one-line error naming
the file; with `on_error=skip` the utterance is dropped and counted per reason (`skipped`), and the
counts end up in results.json.
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
from collections import Counter
from typing import Sequence

from torch.utils.data import Dataset

from asr_peft.data.audio import audio_info, change_speed, check_sample_rate, read_audio
from asr_peft.data.manifest import Utterance
from asr_peft.data.owsm_text import OWSMPreprocessor
from asr_peft.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")


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
