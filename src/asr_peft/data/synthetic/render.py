"""One utterance from its drawn specification to a 16 kHz mono FLAC file."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile

from asr_peft.data.synthetic import engines
from asr_peft.data.synthetic.transforms import set_level_and_noise, trim_silence, warp
from asr_peft.data.synthetic.voices import DEFAULT_WPM, ESPEAK, VoiceDraw, espeak_pitch

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Rendering:
    """Everything that determines an utterance's audio, drawn in advance from the corpus seed."""

    text: str
    draw: VoiceDraw
    level_dbfs: float
    snr_db: float
    noise_seed: int


def synthesise(text: str, draw: VoiceDraw) -> tuple[np.ndarray, int]:
    """The synthesiser's output before the warp: F0 and tempo divided by alpha, so that the warp lands on the targets."""
    f0, tempo, voice = draw.f0_hz / draw.alpha, draw.tempo / draw.alpha, draw.voice
    if voice.engine == ESPEAK:
        variant = voice.name.split("+", 1)[1]
        return engines.espeak(text, voice.name, int(round(DEFAULT_WPM * tempo)), espeak_pitch(variant, f0))
    return engines.flite(text, voice.name, f0, 1.0 / tempo)


def render(spec: Rendering) -> np.ndarray:
    """The utterance's float32 samples at 16 kHz."""
    samples, rate = synthesise(spec.text, spec.draw)
    samples = warp(samples / 32768.0, rate, SAMPLE_RATE, spec.draw.alpha)
    samples = trim_silence(samples, SAMPLE_RATE)
    return set_level_and_noise(samples, spec.level_dbfs, spec.snr_db, spec.noise_seed).astype(np.float32)


def render_to_file(job: tuple[Rendering, str]) -> float:
    """Worker entry point: write the FLAC unless it exists (an interrupted run resumes); its duration in seconds.

    Written to a temporary name and renamed, so a file that exists is complete.
    """
    spec, path = job
    if not os.path.exists(path):
        samples = render(spec)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.partial"
        soundfile.write(partial, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.replace(partial, path)
    return soundfile.info(path).duration
