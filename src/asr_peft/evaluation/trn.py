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


def read_decodes(decode_dir: Path, per_set: int = 50) -> list[list[str]]:
    """(test set, reference, hypothesis) for the first utterances of each test set's trn files below `decode_dir`."""
    rows = []
    for set_dir in sorted(p for p in Path(decode_dir).iterdir() if p.is_dir()):
        refs = (set_dir / "ref.trn").read_text(encoding="utf-8").splitlines()[:per_set]
        hyps = (set_dir / "hyp.trn").read_text(encoding="utf-8").splitlines()[:per_set]
        rows += [[set_dir.name, ref.rsplit(" (", 1)[0], hyp.rsplit(" (", 1)[0]] for ref, hyp in zip(refs, hyps)]
    return rows
