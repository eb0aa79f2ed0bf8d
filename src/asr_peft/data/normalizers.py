"""Text normalisers applied to references and hypotheses before WER/CER (`data.normalizer`).

- `none`: the text as it is, whitespace collapsed.
- `whisper_basic`: the behaviour of Whisper's BasicTextNormalizer: lower-case, drop text in brackets
  and parentheses, turn every symbol, punctuation mark and control character into a space.
- `myst`: English child speech as ESPnet's MyST recipe scores it: markup and noise tags removed,
  filler words (um, uh, ...) dropped, punctuation removed, upper-case.
- `cgn`: Dutch (CGN): fillers (uh, uhm, ggg, xxx, ...) dropped, partial-word and dialect markers
  (`*a`, `*d`, `*u`, `*v`, `*x` suffixes) removed, punctuation removed, lower-case.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

from asr_peft.errors import ConfigError

BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _symbols_to_spaces(text: str, keep: str = "") -> str:
    """Every character whose Unicode category is a mark, symbol, punctuation or control becomes a space."""
    return "".join(" " if unicodedata.category(c)[0] in "MSPC" and c not in keep else c
                   for c in unicodedata.normalize("NFKC", text))


def whisper_basic(text: str) -> str:
    return _collapse(_symbols_to_spaces(BRACKETED.sub(" ", text.lower())))


ENGLISH_FILLERS = {"um", "uh", "umm", "uhm", "hmm", "mm", "mhm", "er", "erm", "ah", "eh"}


def myst(text: str) -> str:
    text = BRACKETED.sub(" ", text.lower())
    text = _symbols_to_spaces(text, keep="'")
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w and w not in ENGLISH_FILLERS).upper()


DUTCH_FILLERS = {"uh", "uhm", "uhu", "hm", "hmm", "mm", "mmm", "ggg", "xxx", "ah", "eh", "euh"}
CGN_WORD_MARKER = re.compile(r"\*[a-z]$")


def cgn(text: str) -> str:
    words = []
    for word in BRACKETED.sub(" ", text.lower()).split():
        word = CGN_WORD_MARKER.sub("", word)
        word = _collapse(_symbols_to_spaces(word, keep="'-")).replace(" ", "")
        word = word.strip("'-")
        if word and word not in DUTCH_FILLERS:
            words.append(word)
    return " ".join(words)


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": _collapse, "whisper_basic": whisper_basic, "myst": myst, "cgn": cgn}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ConfigError(f"data.normalizer={name!r} is unknown; choose from {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
