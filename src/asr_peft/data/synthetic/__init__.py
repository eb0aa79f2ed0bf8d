"""The offline synthetic domain-shift corpus: adult source speech, child-like speech and unseen accents.

`python -m asr_peft.data.synthetic --out DIR` generates it; `ensure_corpus` does the same from code and
configs, and does nothing when DIR already holds it.
"""

from asr_peft.data.synthetic.corpus import ensure_corpus

__all__ = ["ensure_corpus"]
