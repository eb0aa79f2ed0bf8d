"""The offline synthetic domain-shift corpus: adult source speech, child-like speech and unseen accents."""

from asr_peft.data.synthetic.corpus import ensure_corpus

__all__ = ["ensure_corpus"]
