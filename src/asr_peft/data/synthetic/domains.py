"""The three domains of the synthetic corpus: who speaks, in which accent, through which transforms.

Physical ranges (and why):
- Adult speech (`source`, `dialect`): espeak-ng's adult voice variants, pitch parameter 30-65 (its
  default 50 gives F0 around 100-130 Hz for male and 180-220 Hz for female variants, within adult
  ranges of 85-155 Hz and 165-255 Hz), rate 140-190 words/min (conversational read speech).
- Child speech (`child`): children of 8-11 years, the MyST age range, have vocal tracts of about
  13-14 cm against 17 cm (men) and 14.5-15 cm (women); their formants sit roughly 1.2-1.35x above
  men's and 1.05-1.2x above women's, a scaling that shrinks as children grow (Lee, Potamianos and
  Narayanan, "Acoustics of children's speech", JASA 105(3), 1999), and F0 is 220-300 Hz. We synthesise with a
  raised pitch parameter (75-99) and then apply vocal-tract-length perturbation by resampling:
  playing the waveform back alpha times faster scales every frequency (formants and F0) by alpha,
  alpha drawn from 1.20-1.35 for male and 1.05-1.20 for female variants. Resampling also speeds
  speech up by alpha; with a wider espeak rate range (150-230) the result is the faster, more variable
  rate the task calls for. (Generator version 1 used 1.25-1.45 / 1.10-1.25, whose upper half is
  younger children's scaling; the frozen checkpoint scored 93.6% WER there, hopeless, not shifted.)
- Dialect (`dialect`): accents the source never contains: Scottish (rhotic), Caribbean (th-stopping),
  Lancastrian and West Midlands (h-dropping) English, with the same adult voice variants.
Measured on the generated test sets (median of per-utterance median F0, yin; spectral centroid):
source 111 Hz / 1.88 kHz, child 212 Hz / 2.28 kHz, dialect 112 Hz / 1.95 kHz. The child F0 lands
just below the 220-300 Hz of real 8-11 year olds because male-based variants start low; the formant
shift (x1.21 centroid) is in the intended range.
Every utterance gets a random level (-26 to -16 dBFS RMS) and light white noise (SNR 30-45 dB).

Speakers (generator version 3). In the target domains (`child`, `dialect`) a speaker is a fixed
identity: an accent, an espeak-ng voice variant, and one pitch and one vocal-tract draw; every
utterance of the speaker uses them, only the speaking rate, level and noise vary per utterance. The
voice variants are dealt out to the splits' roles (`VARIANTS_BY_ROLE`), so the adaptation, dev and test
sets of a target domain share no variant and hence no speaker: a method is rewarded for adapting to
the domain, not to the test voices. The source domain keeps version 2's per-utterance draws over all
variants: its pretraining split (`source_train`) is what the shipped checkpoint learned from, and its
test set measures forgetting on voices of that same population (same variants and accents, fresh draws).
"""

from __future__ import annotations

from dataclasses import dataclass

MALE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
FEMALE_VARIANTS = ["f1", "f2", "f3", "f4", "f5"]
SOURCE_ACCENTS = ["en-us", "en-gb-x-rp"]
DIALECT_ACCENTS = ["en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]


@dataclass(frozen=True)
class Domain:
    name: str
    accents: tuple[str, ...]
    pitch: tuple[int, int]  # espeak-ng -p (0-99)
    rate: tuple[int, int]  # espeak-ng -s (words per minute)
    vtlp_male: tuple[float, float]  # frequency scaling by resampling; (1, 1) = none
    vtlp_female: tuple[float, float]
    speakers_per_voice: int = 1  # target domains: speakers drawn per (accent, variant) of a role


DOMAINS = {
    "source": Domain("source", tuple(SOURCE_ACCENTS), (30, 65), (140, 190), (1.0, 1.0), (1.0, 1.0)),
    "child": Domain("child", tuple(SOURCE_ACCENTS), (75, 99), (150, 230), (1.20, 1.35), (1.05, 1.20), speakers_per_voice=2),
    "dialect": Domain("dialect", tuple(DIALECT_ACCENTS), (30, 65), (140, 190), (1.0, 1.0), (1.0, 1.0)),
}
# Which voice variants speak each role's splits (adaptation, dev, test) in a target domain: disjoint, both sexes in each, and
# 6/2/4 variants, so 24 adaptation, 8 dev and 16 test speakers in either target domain (child: 2
# accents x 2 draws per variant; dialect: 4 accents x 1).
VARIANTS_BY_ROLE = {  # keyed by the sentence pool a split draws from (corpus.SPLITS)
    "train": ("m1", "m2", "m3", "m4", "f1", "f2"),
    "dev": ("m5", "f3"),
    "test": ("m6", "m7", "f4", "f5"),
}
LEVEL_DBFS = (-26.0, -16.0)
SNR_DB = (30.0, 45.0)
