"""Reading audio as 16 kHz mono float32, the input every OWSM model expects."""

from __future__ import annotations

import errno
import math
import os
import stat
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
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: Path) -> AudioInfo:
    """Sample rate and duration from the header only, without decoding the samples."""
    check_regular_file(path)
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"audio file {path} is unreadable: {err}") from err
    if info.samplerate <= 0:
        raise DataError(f"audio file {path} is unreadable: its header gives a sample rate of {info.samplerate}")
    return AudioInfo(sample_rate=info.samplerate, frames=info.frames)


def check_regular_file(path: Path) -> None:
    """A file that exists and is a regular file; a FIFO or device is never opened (reading one blocks
    or never ends)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DataError(f"audio file {path} is a loop of symbolic links") from None
        if os.path.lexists(path):
            raise DataError(f"audio file {path} is a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise DataError(f"audio file {path} does not exist") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise DataError(f"audio file {path} is {kind}, not an audio file")


def check_sample_rate(path: Path, sample_rate: int, *, resample: bool) -> None:
    if sample_rate < MIN_SAMPLE_RATE:
        raise DataError(f"audio file {path} is {sample_rate} Hz, below the {MIN_SAMPLE_RATE} Hz minimum for speech")
    if sample_rate != TARGET_SAMPLE_RATE and not resample:
        raise DataError(
            f"audio file {path} is {sample_rate} Hz, expected {TARGET_SAMPLE_RATE} Hz (set data.resample=true to resample)"
        )


def frame_range(path: Path, sample_rate: int, frames: int, start: float | None, end: float | None) -> tuple[int, int]:
    """First and past-the-end frame of the `start`..`end` segment (seconds; None: the file's ends)."""
    if start is not None and not (math.isfinite(start) and start >= 0):
        raise DataError(f"audio file {path}: segment start {start} s must be a finite number >= 0")
    if end is not None and not math.isfinite(end):
        raise DataError(f"audio file {path}: segment end {end} s must be a finite number")
    first = int(round((start or 0.0) * sample_rate))
    last = int(round(end * sample_rate)) if end is not None else frames
    return first, min(last, frames)


def read_audio(path: Path, *, start: float | None = None, end: float | None = None, resample: bool = True) -> np.ndarray:
    """Samples of `path` (or of its `start`..`end` segment, seconds) as 16 kHz mono float32."""
    info = audio_info(path)
    check_sample_rate(path, info.sample_rate, resample=resample)
    first, last = frame_range(path, info.sample_rate, info.frames, start, end)
    try:
        samples, sample_rate = soundfile.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"audio file {path} is unreadable: {err}") from err
    samples = samples.mean(axis=1)  # down-mix: OWSM is a single-channel model
    if sample_rate != TARGET_SAMPLE_RATE:
        samples = torchaudio.functional.resample(torch.from_numpy(samples), sample_rate, TARGET_SAMPLE_RATE).numpy()
    return np.ascontiguousarray(samples, dtype=np.float32)


@dataclass(frozen=True)
class AudioScan:
    """What decoding a file (or segment) found: the checks that the header cannot answer."""

    frames: int  # decoded, per channel
    peak: float  # largest finite |sample|
    non_finite: int  # NaN or infinite samples


def scan_audio(path: Path, *, start: float | None = None, end: float | None = None, block_frames: int = 1 << 20) -> AudioScan:
    """Decode exactly what `read_audio` reads, block by block (bounded memory); a file that fails to
    decode, or decodes to fewer frames than its header promises (truncated), is a `DataError`."""
    info = audio_info(path)
    first, last = frame_range(path, info.sample_rate, info.frames, start, end)
    frames, peak, non_finite = 0, 0.0, 0
    try:
        with soundfile.SoundFile(str(path)) as handle:
            handle.seek(first)
            while frames < last - first:
                block = handle.read(min(block_frames, last - first - frames), dtype="float32", always_2d=True)
                if not len(block):
                    break
                finite = np.isfinite(block)
                non_finite += int(block.size - np.count_nonzero(finite))
                if finite.any():
                    peak = max(peak, float(np.abs(block[finite]).max()))
                frames += len(block)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise DataError(f"audio file {path} fails to decode: {' '.join(str(err).split())}") from err
    if frames < last - first:
        raise DataError(f"audio file {path} is truncated: {frames} of {last - first} frames decode")
    return AudioScan(frames=frames, peak=peak, non_finite=non_finite)


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi/ESPnet speed perturbation: play `samples` `factor` times faster, so that the duration is
    divided by `factor` and every frequency (F0 and formants) multiplied by it."""
    if factor == 1.0:
        return samples
    # Reading the 16 kHz samples as if taken at 16 kHz x factor and resampling them to 16 kHz.
    source_rate = int(round(TARGET_SAMPLE_RATE * factor))
    changed = torchaudio.functional.resample(torch.from_numpy(samples), source_rate, TARGET_SAMPLE_RATE)
    return np.ascontiguousarray(changed.numpy(), dtype=np.float32)
