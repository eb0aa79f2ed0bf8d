"""Token lists for OWSM-architecture models that are built from a config rather than loaded.

A pretrained OWSM checkpoint carries its own 50k BPE token list; a model built from its architecture
alone (the tiny model, meta-device planning, benchmarks) needs one with the same special-symbol
conventions, so that ESPnet's S2T model, its preprocessor and stock `Speech2Text` all find
`<sos>`, `<eos>`, `<sop>`, `<na>`, the language and task tokens, and the timestamp range.
"""

from __future__ import annotations

from asr_peft.errors import ConfigError

# OWSM's layout: blank and unk first, then the non-linguistic symbols, the text units, and
# <sos>/<eos>/<sop> last (ESPnetS2TModel looks them up by name).
LEADING_SPECIALS = ["<blank>", "<unk>", "<na>", "<nospeech>"]
LANGUAGE_TOKENS = ["<eng>", "<nld>"]
TASK_TOKENS = ["<asr>"]
# Speech2Text's ScoreFilter treats ids from <0.00> to <30.00> as timestamps; <notimestamps> disables them.
TIME_TOKENS = ["<notimestamps>", "<0.00>", "<30.00>"]
TRAILING_SPECIALS = ["<sos>", "<eos>", "<sop>"]
NON_LINGUISTIC_SYMBOLS = ["<na>", "<nospeech>", *LANGUAGE_TOKENS, *TASK_TOKENS, *TIME_TOKENS]

# Characters of English and Dutch orthography after normalisation; "<space>" is ESPnet's word separator.
CHARACTERS = ["<space>", "'", *"abcdefghijklmnopqrstuvwxyz", *"0123456789", *"àáâäçèéêëïíîñóôöúûü"]


def char_token_list(vocab_size: int | None = None) -> list[str]:
    """OWSM-style token list with character units, padded with unused `<pad_N>` units to `vocab_size`.

    Padding lets a model built from an architecture config have the real output-layer size
    (OWSM's 50k vocabulary) for parameter planning and benchmarks.
    """
    tokens = [*LEADING_SPECIALS, *LANGUAGE_TOKENS, *TASK_TOKENS, *TIME_TOKENS, *CHARACTERS]
    minimum = len(tokens) + len(TRAILING_SPECIALS)
    if vocab_size is not None:
        if vocab_size < minimum:
            raise ConfigError(f"model.vocab_size={vocab_size} is smaller than the {minimum} tokens a char model needs")
        tokens += [f"<pad_{i}>" for i in range(vocab_size - minimum)]
    return tokens + TRAILING_SPECIALS
