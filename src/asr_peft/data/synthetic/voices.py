"""Who speaks in each domain, and the physical ranges every utterance's voice is drawn from.

Each utterance draws physical targets (mean F0 in Hz, a vocal-tract-length ratio, a tempo) and the
synthesisers are set to reach them. Ranges and their sources:

- Adult F0 (`source`, `dialect`): men 90-140 Hz, women 170-240 Hz, around the vowel means of
  Peterson & Barney (1952: 132 / 223 Hz) and Hillenbrand et al. (1995: 138 / 227 Hz) and inside
  the speaking ranges of Titze (1994, *Principles of Voice Production*).
- Child F0 (`child`): 220-300 Hz, children of 8-11 years (the MyST age range): Peterson & Barney's
  children 264 Hz, Hillenbrand et al.'s 10-12-year-olds 237 Hz, Lee, Potamianos & Narayanan (1999)
  about 230-270 Hz at these ages, with no sex difference before puberty.
- Vocal tract length: adult men about 17 cm, women about 14.5 cm, children of 8-11 years 11.5-13.5
  cm (Fitch & Giedd 1999; Vorperian et al. 2005). Formant frequencies scale inversely with the
  length, so a child voice is an adult voice with every formant multiplied by
  alpha = L_adult / L_child: 1.26-1.48 from a man's voice, 1.07-1.26 from a woman's. The warp is done
  by resampling (see `transforms.warp`), which also multiplies F0 and tempo by alpha; the
  synthesiser is asked for F0 / alpha and tempo / alpha so that the result hits the drawn targets.
- Tempo (relative to the synthesisers' default of about 175 words per minute): adults 0.85-1.15; the
  child domain 0.95-1.45, faster and more variable as the benchmark asks. Real 8-11-year-olds speak
  somewhat *slower* and more variably than adults (Lee et al. 1999): the faster tempo is a design
  choice that widens the acoustic gap, not a model of children.

espeak-ng sets F0 through its pitch parameter `-p` (0-99). For a voice variant F0 = F0_50 * g(p),
where F0_50 is the variant's median F0 at `-p 50` and g a curve shared by all variants; both were
measured with espeak-ng 1.51 (median YIN F0 of voiced frames of three reference sentences; the
curve is the mean over variants m3, f3 and klatt) and are the tables below. flite's `kal16`, `slt`
and `awb` take F0 in Hz (`int_f0_target_mean`); `rms` ignores it and is not used.

Child voices start from the source voices that can reach 300 Hz / alpha: espeak-ng's female variants
(their `-p 99` is 290-340 Hz; the male variants stop near 165 Hz) and both flite voices.
The dialect domain speaks in accents the source never contains (Scottish, Caribbean, Lancastrian and
West Midlands English, flite's Scottish `awb`), with the source variants and three it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESPEAK, FLITE = "espeak-ng", "flite"
DEFAULT_WPM = 175  # espeak-ng's default rate; tempo 1.0
ADULT_TRACT_CM = {"male": 17.0, "female": 14.5}
CHILD_TRACT_CM = (11.5, 13.5)
ADULT_F0_HZ = {"male": (90.0, 140.0), "female": (170.0, 240.0)}
CHILD_F0_HZ = (220.0, 300.0)
ADULT_TEMPO, CHILD_TEMPO = (0.85, 1.15), (0.95, 1.45)

# espeak-ng variants: the sex of the voice they model and their median F0 (Hz) at -p 50 (espeak-ng 1.51).
ESPEAK_VARIANTS = {
    "m1": ("male", 95), "m2": ("male", 100), "m3": ("male", 105), "m4": ("male", 94), "m5": ("male", 102),
    "m6": ("male", 102), "m7": ("male", 107), "m8": ("male", 84), "klatt": ("male", 105), "klatt4": ("male", 103),
    "Andy": ("male", 96), "f1": ("female", 179), "f2": ("female", 196), "f3": ("female", 211),
    "f4": ("female", 180), "f5": ("female", 205), "steph": ("female", 183), "linda": ("female", 231),
}
# g(p) = F0(p) / F0(50), the same for every variant (espeak-ng 1.51).
ESPEAK_PITCH_CURVE = ((0, 0.708), (10, 0.744), (20, 0.791), (30, 0.853), (40, 0.922), (50, 1.0),
                      (60, 1.095), (70, 1.205), (80, 1.33), (90, 1.478), (99, 1.626))


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an engine, its voice name and the sex its vocal tract is modelled on."""

    engine: str
    name: str  # espeak-ng "accent+variant" (e.g. "en-gb+f3"), or a flite voice
    sex: str

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


def espeak_voices(accents: list[str], variants: list[str]) -> list[Voice]:
    return [Voice(ESPEAK, f"{accent}+{variant}", ESPEAK_VARIANTS[variant][0]) for accent in accents for variant in variants]


# "en" is espeak-ng's British English (language en-gb): by that name a +variant applies, while
# "en-gb+VARIANT" selects the voice by language and silently drops the variant.
SOURCE_ACCENTS = ["en-us", "en", "en-gb-x-rp"]
DIALECT_ACCENTS = ["en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
SOURCE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt4", "f1", "f2", "f3", "f4", "f5", "steph"]
DIALECT_ONLY_VARIANTS = ["m8", "Andy", "linda"]
SOURCE_FLITE = [Voice(FLITE, "kal16", "male"), Voice(FLITE, "slt", "female")]


@dataclass(frozen=True)
class Domain:
    """A domain's voices and the physical ranges its utterances are drawn from."""

    name: str
    voices: tuple[Voice, ...]
    f0_hz: dict[str, tuple[float, float]]  # by the voice's sex
    tract_cm: tuple[float, float] | None   # the speakers' vocal tract length; None: the voice's own
    tempo: tuple[float, float]


def domains(flite: bool) -> dict[str, Domain]:
    """The three domains; `flite=False` leaves out the flite voices (for machines without flite)."""
    source = espeak_voices(SOURCE_ACCENTS, SOURCE_VARIANTS) + (SOURCE_FLITE if flite else [])
    child = [v for v in source if v.engine == FLITE or v.sex == "female"]
    dialect = espeak_voices(DIALECT_ACCENTS, SOURCE_VARIANTS + DIALECT_ONLY_VARIANTS)
    dialect += [Voice(FLITE, "awb", "male")] if flite else []
    child_f0 = {"male": CHILD_F0_HZ, "female": CHILD_F0_HZ}
    return {
        "source": Domain("source", tuple(source), ADULT_F0_HZ, None, ADULT_TEMPO),
        "child": Domain("child", tuple(child), child_f0, CHILD_TRACT_CM, CHILD_TEMPO),
        "dialect": Domain("dialect", tuple(dialect), ADULT_F0_HZ, None, ADULT_TEMPO),
    }


def espeak_pitch(variant: str, f0_hz: float) -> int:
    """espeak-ng's `-p` value that gives `variant` a median F0 of `f0_hz` (clipped to 0-99)."""
    points, gains = zip(*ESPEAK_PITCH_CURVE)
    gain = f0_hz / ESPEAK_VARIANTS[variant][1]
    return int(round(np.interp(np.log(gain), np.log(gains), points)))


@dataclass(frozen=True)
class VoiceDraw:
    """A voice and its physical targets for one utterance (after the warp)."""

    voice: Voice
    f0_hz: float
    alpha: float  # formant scaling by the vocal-tract-length warp (1.0: none)
    tempo: float


def draw_voice(domain: Domain, rng: np.random.Generator, sample_rate: int) -> VoiceDraw:
    """Draw a voice and its targets; alpha is rounded so that the warp's resampling ratio stays small."""
    voice = domain.voices[int(rng.integers(len(domain.voices)))]
    f0 = float(rng.uniform(*domain.f0_hz[voice.sex]))
    tempo = float(rng.uniform(*domain.tempo))
    alpha = 1.0
    if domain.tract_cm is not None:
        alpha = ADULT_TRACT_CM[voice.sex] / float(rng.uniform(*domain.tract_cm))
        alpha = sample_rate / (round(sample_rate / alpha / 50) * 50)
    return VoiceDraw(voice, f0, alpha, tempo)
