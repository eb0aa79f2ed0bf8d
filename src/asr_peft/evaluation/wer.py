"""Word and character error rates with jiwer, after a text normaliser."""

from __future__ import annotations

from typing import Callable

import jiwer


def error_rates(references: list[str], hypotheses: list[str], normalizer: Callable[[str], str]) -> dict:
    """Corpus-level WER/CER (fractions) and the counts behind them.

    References that are empty after normalisation cannot be scored (WER is undefined for them);
    they are left out and counted in `num_empty_references`.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [(normalizer(r), normalizer(h)) for r, h in zip(references, hypotheses)]
    scored = [(r, h) for r, h in pairs if r]
    result = {"num_utterances": len(scored), "num_empty_references": len(pairs) - len(scored)}
    if not scored:
        return {
            **result,
            "wer": None,
            "cer": None,
            "num_words": 0,
            "num_chars": 0,
            "substitutions": 0,
            "deletions": 0,
            "insertions": 0,
        }
    refs, hyps = [r for r, _ in scored], [h for _, h in scored]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    num_words = words.hits + words.substitutions + words.deletions
    num_chars = chars.hits + chars.substitutions + chars.deletions
    return {
        **result,
        "wer": words.wer,
        "cer": chars.cer,
        "num_words": num_words,
        "num_chars": num_chars,
        "substitutions": words.substitutions,
        "deletions": words.deletions,
        "insertions": words.insertions,
    }
