"""sclite's `trn` transcript format: one `text (speaker-utterance)` line per utterance."""

from __future__ import annotations

from pathlib import Path


def trn_id(utterance_id: str, speaker: str | None = None) -> str:
    """sclite takes the speaker from the part before the first '-' of the id in parentheses."""
    return f"{speaker}-{utterance_id}" if speaker else f"{utterance_id.split('-')[0]}-{utterance_id}"


def write_trn(path: Path, ids: list[str], texts: list[str], speakers: list[str | None] | None = None) -> Path:
    speakers = speakers or [None] * len(ids)
    lines = [f"{' '.join(text.split())} ({trn_id(i, s)})" for i, text, s in zip(ids, texts, speakers)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)
