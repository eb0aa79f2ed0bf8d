"""Rendering one utterance: espeak-ng, vocal-tract-length perturbation, level and noise, 16 kHz."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile
from scipy.signal import resample_poly

from asr_peft.data.synthetic.espeak import synthesise

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Rendering:
    """Everything that determines an utterance's audio (drawn in advance from the corpus seed)."""

    text: str
    voice: str  # espeak-ng voice, e.g. "en-us+m3"
    pitch: int
    rate: int
    vtlp: float  # frequency scaling factor (1.0: none)
    level_dbfs: float
    snr_db: float
    noise_seed: int
    speaker: str = ""  # who speaks, for the manifest (target domains: a fixed identity); not part of the audio


def trim_silence(samples: np.ndarray, threshold: float = 1e-3, margin: int = 1600) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples
    return samples[max(0, loud[0] - margin) : loud[-1] + margin]


def render(spec: Rendering) -> np.ndarray:
    samples, rate_hz = synthesise(spec.text, spec.voice, spec.pitch, spec.rate)
    # Resampling to rate/vtlp and reading the result as `rate` scales every frequency by vtlp.
    target = SAMPLE_RATE / spec.vtlp
    up, down = int(round(target)), int(rate_hz)
    divisor = np.gcd(up, down)
    samples = resample_poly(samples.astype(np.float64), up // divisor, down // divisor)
    samples = trim_silence(samples)
    rms = np.sqrt(np.mean(samples**2)) + 1e-12
    samples = samples * (10 ** (spec.level_dbfs / 20) / rms)
    noise_rms = 10 ** ((spec.level_dbfs - spec.snr_db) / 20)
    samples = samples + np.random.default_rng(spec.noise_seed).normal(0.0, noise_rms, samples.shape)
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def render_to_file(job: tuple[Rendering, str]) -> float:
    """Worker entry point: render and write FLAC; returns the duration in seconds."""
    spec, path = job
    samples = render(spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, samples, SAMPLE_RATE, format="FLAC")
    return len(samples) / SAMPLE_RATE
