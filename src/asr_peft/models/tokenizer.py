"""Training an OWSM-style BPE tokenizer (sentencepiece) for a model built from its config.

OWSM's own tokenizers are 50k-unit unigram BPE models in which the language, task and timestamp
symbols are user-defined pieces; a small model trained here follows the same convention so that
ESPnet's tokenizer, its `TokenIDConverter` and stock `Speech2Text` treat it like a released model.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece

from asr_peft.errors import DataError
from asr_peft.models.token_list import (
    LANGUAGE_TOKENS,
    LEADING_SPECIALS,
    NON_LINGUISTIC_SYMBOLS,
    TASK_TOKENS,
    TIME_TOKENS,
    TRAILING_SPECIALS,
)

SENTENCEPIECE_CONTROL = {"<unk>", "<s>", "</s>"}


def train_bpe(texts: list[str], out_dir: Path, *, vocab_size: int, model_type: str = "unigram") -> tuple[Path, list[str]]:
    """Train `bpe.model` on `texts` and return it with the model's token list (OWSM order)."""
    if not texts:
        raise DataError("no text to train a tokenizer on")
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "train_text.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out_dir / "bpe"),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        input_sentence_size=10**7,
        shuffle_input_sentence=True,
        user_defined_symbols=",".join(NON_LINGUISTIC_SYMBOLS),
        minloglevel=2,
        num_threads=2,
    )
    corpus.unlink()
    (out_dir / "bpe.vocab").unlink(missing_ok=True)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))
    specials = [*LEADING_SPECIALS, *LANGUAGE_TOKENS, *TASK_TOKENS, *TIME_TOKENS]
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    units = [p for p in pieces if p not in SENTENCEPIECE_CONTROL and p not in specials]
    return out_dir / "bpe.model", [*specials, *units, *TRAILING_SPECIALS]
