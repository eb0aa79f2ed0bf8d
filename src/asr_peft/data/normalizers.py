"""Text normalisers applied to references and hypotheses before WER/CER (`data.normalizer`).

- `none`: the text as it is, whitespace collapsed.
- `whisper_basic`: the behaviour of Whisper's BasicTextNormalizer: lower-case, drop text in brackets
  and parentheses, turn every symbol, punctuation mark and control character into a space.
- `whisper_english`: Whisper's EnglishTextNormalizer, the usual one for English WER, as Hugging Face
  transformers maintains it: fillers dropped, contractions and titles expanded ("won't" -> "will not",
  "Mr" -> "mister"), numbers written as digits ("twenty five" -> "25", "second" -> "2nd"). Without
  Whisper's British-to-American spelling list, which transformers does not ship (a Whisper tokenizer
  downloads it), so "colour" and "color" stay two words.
- `myst`: English child speech as ESPnet's MyST recipe (egs2/myst/asr1) prepares it: markup and
  noise tags removed (`<...>`, `[...]`, `{...}`, nested `(...)`), digits spelled out ("25" -> "TWENTY
  FIVE", "3rd" -> "THIRD", "2.5" -> "TWO POINT FIVE"), "&" -> "AND", split clitics rejoined ("THEY 'RE"
  -> "THEY'RE"), filler words (um, uh, ...) dropped, punctuation removed, upper-case.
- `cgn`: Dutch (CGN): fillers (uh, uhm, ggg, xxx, ...) dropped, partial-word and dialect markers
  (`*a`, `*d`, `*u`, `*v`, `*x`, `*z` suffixes, also before punctuation) removed, punctuation removed,
  lower-case; reduced forms keep their apostrophe ("'t", "'k", "z'n"). CGN writes numbers out in
  words, so digits are left as they are.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable

import inflect

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


@functools.lru_cache(maxsize=1)
def _whisper_english_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # slow to import: only if used

    return EnglishTextNormalizer(english_spelling_mapping={})


def whisper_english(text: str) -> str:
    return _whisper_english_normalizer()(text)


ENGLISH_FILLERS = {"um", "uh", "umm", "uhm", "hmm", "mm", "mhm", "er", "erm", "ah", "eh"}
# Transcribers sometimes split a contraction ("they 're"); the recipe glues these back on.
ENGLISH_CLITICS = {"s", "re", "ve", "ll", "d", "m", "t"}
FLAT_MARKUP = re.compile(r"<[^>]*>|\[[^\]]*\]|\{[^}]*\}")
INNERMOST_PARENTHESES = re.compile(r"\([^()]*\)")


def remove_markup(text: str) -> str:
    """Drop `<...>`, `[...]`, `{...}` and parentheses, nested ones included (MyST's "((word))")."""
    text = FLAT_MARKUP.sub(" ", text)
    previous = None
    while previous != text:
        previous, text = text, INNERMOST_PARENTHESES.sub(" ", text)
    return text


# "1,000", "25", "2.5", "3rd": a number not glued to a preceding digit or decimal point.
ENGLISH_NUMBER = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?((?:st|nd|rd|th)(?![a-z]))?", re.IGNORECASE)
_INFLECT = inflect.engine()  # what the ESPnet MyST recipe spells numbers with


def spell_out_english_numbers(text: str) -> str:
    """American reading without "and" or hyphens: "125" -> "one hundred twenty five", "3rd" -> "third"."""
    def words(match: re.Match) -> str:
        integer, fraction, ordinal_suffix = match.groups()
        number = integer.replace(",", "") + (fraction or "")
        if ordinal_suffix and not fraction:
            number = _INFLECT.ordinal(number)
        return " " + _INFLECT.number_to_words(number, andword="", comma="").replace("-", " ") + " "
    return ENGLISH_NUMBER.sub(words, text)


def myst(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")  # typographic apostrophes
    text = spell_out_english_numbers(remove_markup(text)).replace("&", " and ").replace("%", " percent ")
    words: list[str] = []
    for token in _symbols_to_spaces(text.lower(), keep="'").split():
        if token.startswith("'") and token[1:] in ENGLISH_CLITICS and words:
            words[-1] += token
            continue
        token = token.strip("'")
        if token and token not in ENGLISH_FILLERS:
            words.append(token)
    return " ".join(words).upper()


DUTCH_FILLERS = {"uh", "uhm", "uhu", "hm", "hmm", "mm", "mmm", "ggg", "xxx", "ah", "eh", "euh"}
# The marker may be followed by sentence punctuation: "goed*v." is "goed" + ".".
CGN_WORD_MARKER = re.compile(r"\*[a-z](?=\W*$)")


def cgn(text: str) -> str:
    words = []
    for word in BRACKETED.sub(" ", text.lower()).split():
        word = CGN_WORD_MARKER.sub("", word)
        word = _collapse(_symbols_to_spaces(word, keep="'-")).replace(" ", "")
        word = word.strip("-")
        if len(word) > 2 and word[0] == word[-1] == "'":
            word = word[1:-1]  # quotes around a word go; a leading apostrophe alone is Dutch spelling ("'t")
        word = word.rstrip("'")
        if word.strip("'") and word not in DUTCH_FILLERS:
            words.append(word)
    return " ".join(words)


NORMALIZERS: dict[str, Callable[[str], str]] = {"none": _collapse, "whisper_basic": whisper_basic,
                                                "whisper_english": whisper_english, "myst": myst, "cgn": cgn}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ConfigError(f"data.normalizer={name!r} is unknown; choose from {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
