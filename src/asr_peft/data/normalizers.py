"""Text normalisers applied to references and hypotheses before WER/CER (`data.normalizer`).

- `none`: the text as it is, whitespace collapsed.
- `whisper_basic`: the behaviour of Whisper's BasicTextNormalizer: lower-case, drop text in brackets
  and parentheses, turn every symbol, punctuation mark and control character into a space.
- `whisper_english`: Whisper's EnglishTextNormalizer, the usual one for English WER, as Hugging Face
  transformers maintains it: fillers dropped, contractions and titles expanded ("won't" -> "will not",
  "Mr" -> "mister"), numbers written as digits ("twenty five" -> "25", "second" -> "2nd"). Without
  Whisper's British-to-American spelling list, which transformers does not ship (a Whisper tokenizer
  downloads it), so "colour" and "color" stay two words.
- `myst`: English child speech exactly as ESPnet's MyST recipe prepares its references
  (egs2/myst/asr1/local/text_preprocess.py): markup and noise tags removed (`<...>`, `[...]`, `{...}`,
  `+...+`, nested `(...)`), each run of digits spelled out and its hyphens dropped ("25" ->
  "TWENTYFIVE"), "&" -> "AND", hyphenated words joined, split upper-case clitics rejoined ("THEY 'RE"
  -> "THEY'RE"), punctuation removed, upper-case; fillers (UM, UH, MM) are kept, as the recipe keeps them.
- `cgn`: Dutch (CGN): fillers (uh, uhm, ggg, xxx, ...) dropped, partial-word and dialect markers
  (`*a`, `*d`, `*u`, `*v`, `*x`, `*z` suffixes, also before punctuation) removed, punctuation removed,
  lower-case; reduced forms keep their apostrophe ("'t", "'k", "z'n"). CGN writes numbers out in
  words, so digits are left as they are.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable, cast

import inflect

from asr_peft.errors import ConfigError

BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]|\([^)]*\)")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _symbols_to_spaces(text: str, keep: str = "") -> str:
    """Every character whose Unicode category is a mark, symbol, punctuation or control becomes a space."""
    return "".join(
        " " if unicodedata.category(c)[0] in "MSPC" and c not in keep else c for c in unicodedata.normalize("NFKC", text)
    )


def whisper_basic(text: str) -> str:
    return _collapse(_symbols_to_spaces(BRACKETED.sub(" ", text.lower())))


@functools.lru_cache(maxsize=1)
def _whisper_english_normalizer() -> Callable[[str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # slow to import: only if used

    return EnglishTextNormalizer(english_spelling_mapping={})


def whisper_english(text: str) -> str:
    return _whisper_english_normalizer()(text)


# ESPnet's MyST recipe (egs2/myst/asr1/local/text_preprocess.py), rule by rule and in its order.
MYST_MARKUP = [re.compile(r"\{.*?\}"), re.compile(r"<.*?>"), re.compile(r"\[.*?\]"), re.compile(r"\+.*?\+")]
INNERMOST_PARENTHESES = re.compile(r"\([^()]*\)")
DIGIT_RUN = re.compile(r"\d+")
_INFLECT = inflect.engine()  # what the recipe spells numbers with
# Case-sensitive, before upper-casing, as the recipe applies them.
MYST_REPLACEMENTS = [
    ("&", " and "),
    ("_", ""),
    ("-", ""),
    ("\u2013", ""),
    ("*", ""),
    ("/", " slash "),
    ("\u2019", "'"),
    ("\u2018", "'"),
    ("'EM", "em"),
    *(
        (f"{word} '{clitic}", f"{word}'{clitic}")
        for word, clitic in (
            ("THEY", "RE"),
            ("I", "M"),
            ("I", "VE"),
            ("I", "LL"),
            ("I", "D"),
            ("YOU", "RE"),
            ("THEY", "VE"),
            ("THEY", "LL"),
            ("THEY", "D"),
            ("HE", "S"),
        )
    ),
    ("'CAUSE", "CAUSE"),
    *((mark, "") for mark in (",", ".", "?", "!", ";", "\u2026")),
    ("+UM", ""),
    ("+UH", ""),
    ("+", ""),
    (":", ""),
]


def remove_markup(text: str) -> str:
    """Drop `{...}`, `<...>`, `[...]`, `+...+` and parentheses, nested ones included (MyST's "((word))")."""
    for pattern in MYST_MARKUP:
        text = pattern.sub("", text)
    previous = None
    while previous != text:
        previous, text = text, INNERMOST_PARENTHESES.sub("", text)
    return text


def myst(text: str) -> str:
    """The recipe's text preprocessing: markup removed, every run of digits spelled out by inflect and
    its hyphens then dropped ("25" -> "TWENTYFIVE", "125" -> "ONE HUNDRED AND TWENTYFIVE"; "1,000" is two
    runs, "ONEZERO"), "&" -> "AND", hyphens and underscores removed (joining the words), "/" -> "SLASH",
    split clitics rejoined where the transcript is upper-case ("THEY 'RE" -> "THEY'RE"), punctuation
    removed, upper-case. Fillers (UM, UH, MM) stay: they are words of the references."""
    text = DIGIT_RUN.sub(lambda match: cast(str, _INFLECT.number_to_words(match.group())), remove_markup(text))
    for old, new in MYST_REPLACEMENTS:
        text = text.replace(old, new)
    return _collapse(text.upper())


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


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": _collapse,
    "whisper_basic": whisper_basic,
    "whisper_english": whisper_english,
    "myst": myst,
    "cgn": cgn,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ConfigError(f"data.normalizer={name!r} is unknown; choose from {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
