"""Signal transforms applied after synthesis: the vocal-tract-length warp, trimming, level and noise."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly


def warp(samples: np.ndarray, rate: int, sample_rate: int, alpha: float) -> np.ndarray:
    """Resample to `sample_rate` with every frequency (formants, F0) and the tempo multiplied by `alpha`.

    Resampling to sample_rate / alpha and reading the result at sample_rate plays it alpha times faster:
    the spectrum stretches by alpha, which is what a vocal tract alpha times shorter does to formants
    (the uniform-tube approximation behind vocal-tract-length perturbation). alpha = 1 is plain resampling.
    """
    target = int(round(sample_rate / alpha))
    divisor = gcd(target, rate)
    return resample_poly(samples.astype(np.float64), target // divisor, rate // divisor)


def trim_silence(samples: np.ndarray, sample_rate: int, margin_s: float = 0.1, floor_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing silence (below `floor_db` of the peak), keeping `margin_s` on each side."""
    peak = np.max(np.abs(samples), initial=0.0)
    loud = np.flatnonzero(np.abs(samples) > peak * 10 ** (floor_db / 20))
    if loud.size == 0:
        return samples
    margin = int(margin_s * sample_rate)
    return samples[max(0, loud[0] - margin): loud[-1] + margin]


def set_level_and_noise(samples: np.ndarray, level_dbfs: float, snr_db: float, noise_seed: int) -> np.ndarray:
    """Scale to an RMS of `level_dbfs` and add white noise `snr_db` below it (seeded), clipped to [-1, 1]."""
    rms = np.sqrt(np.mean(samples**2)) + 1e-12
    speech = samples * (10 ** (level_dbfs / 20) / rms)
    noise_rms = 10 ** ((level_dbfs - snr_db) / 20)
    noise = np.random.default_rng(noise_seed).normal(0.0, noise_rms, samples.shape)
    return np.clip(speech + noise, -1.0, 1.0)
