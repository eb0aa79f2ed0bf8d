"""Reading audio as 16 kHz mono float32, the input every OWSM model expects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from asr_peft.errors import DataError

TARGET_SAMPLE_RATE = 16000
# Below telephone bandwidth there is no usable speech; such a file is a mistake, not data to resample.
MIN_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    duration: float


def audio_info(path: Path) -> AudioInfo:
    """Sample rate and duration from the header only, without decoding the samples."""
    if not Path(path).is_file():
        raise DataError(f"audio file {path} does not exist")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"audio file {path} is unreadable: {err}") from err
    return AudioInfo(sample_rate=info.samplerate, duration=info.frames / info.samplerate)


def check_sample_rate(path: Path, sample_rate: int, *, resample: bool) -> None:
    if sample_rate < MIN_SAMPLE_RATE:
        raise DataError(f"audio file {path} is {sample_rate} Hz, below the {MIN_SAMPLE_RATE} Hz minimum for speech")
    if sample_rate != TARGET_SAMPLE_RATE and not resample:
        raise DataError(
            f"audio file {path} is {sample_rate} Hz, expected {TARGET_SAMPLE_RATE} Hz (set data.resample=true to resample)"
        )


def read_audio(path: Path, *, start: float | None = None, end: float | None = None, resample: bool = True) -> np.ndarray:
    """Samples of `path` (or of its `start`..`end` segment, seconds) as 16 kHz mono float32."""
    info = audio_info(path)
    check_sample_rate(path, info.sample_rate, resample=resample)
    first = int(round((start or 0.0) * info.sample_rate))
    last = int(round(end * info.sample_rate)) if end is not None else -1
    try:
        samples, sample_rate = soundfile.read(str(path), start=first, stop=None if last < 0 else last,
                                              dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"audio file {path} is unreadable: {err}") from err
    samples = samples.mean(axis=1)  # down-mix: OWSM is a single-channel model
    if sample_rate != TARGET_SAMPLE_RATE:
        samples = torchaudio.functional.resample(torch.from_numpy(samples), sample_rate, TARGET_SAMPLE_RATE).numpy()
    return np.ascontiguousarray(samples, dtype=np.float32)


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi/ESPnet speed perturbation: play `samples` `factor` times faster, so that the duration is
    divided by `factor` and every frequency (F0 and formants) multiplied by it."""
    if factor == 1.0:
        return samples
    # Reading the 16 kHz samples as if taken at 16 kHz x factor and resampling them to 16 kHz.
    source_rate = int(round(TARGET_SAMPLE_RATE * factor))
    changed = torchaudio.functional.resample(torch.from_numpy(samples), source_rate, TARGET_SAMPLE_RATE)
    return np.ascontiguousarray(changed.numpy(), dtype=np.float32)
