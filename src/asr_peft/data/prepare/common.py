"""What the corpus preparations share: the output files, the no-overwrite rule, skips, summary.json.

Every preparation writes `train.jsonl`, `dev.jsonl`, `test.jsonl` (the names `configs/data/*.yaml`
read) and `summary.json` into one output directory. Audio paths in the manifests are absolute: the
corpus stays where it is and nothing is copied or cut.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

from asr_peft.data.manifest import Utterance
from asr_peft.errors import ConfigError, DataError
from asr_peft.files import write_text_atomically

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
MANIFEST_NAMES = {split: f"{split}.jsonl" for split in SPLITS}
SUMMARY_NAME = "summary.json"


def check_outputs_free(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty manifest or summary unless asked to, before any work is done."""
    for name in [*MANIFEST_NAMES.values(), SUMMARY_NAME]:
        path = out_dir / name
        if path.is_file() and path.stat().st_size > 0 and not overwrite:
            raise DataError(f"{path} already exists; pass --overwrite to replace it")


def check_positive(value: float, option: str) -> None:
    if not value > 0:
        raise ConfigError(f"{option} must be positive, got {value}")


class Skips:
    """Files that could not be read: a one-line error under `strict`, otherwise counted and listed."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.entries: list[dict] = []

    def record(self, error: DataError, reason: str, counts: Counter) -> None:
        if self.strict:
            raise error
        counts[reason] += 1
        self.entries.append({"reason": reason, "error": str(error)})
        log.warning("skipped (%s): %s", reason, error)


def read_id_list(path: str | Path, option: str) -> list[str]:
    """One id per line (the first field; blank lines ignored), as in ESPnet's `conf/file_list/*.list`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{option} file {path} does not exist")
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{option} file {path} lists no ids")
    return ids


def hours(utterances: Iterable[Utterance]) -> float:
    return sum(utt.duration or 0.0 for utt in utterances) / 3600


def manifest_line(utt: Utterance) -> str:
    """One JSONL object in the format `asr_peft.data.manifest.read_jsonl_manifest` reads back."""
    entry = {
        "id": utt.id,
        "audio": str(utt.audio),
        "text": utt.text,
        "duration": utt.duration,
        "speaker": utt.speaker,
        "language": utt.language,
        "start": utt.start,
        "end": utt.end,
    }
    return json.dumps({key: value for key, value in entry.items() if value is not None}, ensure_ascii=False)


def split_summary(utterances: list[Utterance], dropped: Counter) -> dict:
    return {
        "utterances": len(utterances),
        "hours": round(hours(utterances), 4),
        "speakers": len({utt.speaker for utt in utterances}),
        "dropped": dict(sorted(dropped.items())),
    }


def write_outputs(out_dir: Path, manifests: Mapping[str, list[Utterance]], dropped: Mapping[str, Counter], summary: dict) -> dict:
    """Write the three manifests (sorted by id) and summary.json; return the summary written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split in SPLITS:
        utterances = sorted(manifests.get(split, []), key=lambda utt: utt.id)
        # Whole or not at all: a half-written manifest would then be protected by the no-overwrite rule.
        write_text_atomically(out_dir / MANIFEST_NAMES[split], "".join(manifest_line(utt) + "\n" for utt in utterances))
        splits[split] = {"manifest": MANIFEST_NAMES[split], **split_summary(utterances, dropped.get(split, Counter()))}
    head = {key: summary[key] for key in ("corpus", "corpus_dir", "options") if key in summary}
    summary = {**head, "splits": splits, **{key: value for key, value in summary.items() if key not in head}}
    write_text_atomically(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    for split, stats in splits.items():
        log.info(
            "%s: %d utterances, %.2f h, %d speakers, dropped %s",
            split,
            stats["utterances"],
            stats["hours"],
            stats["speakers"],
            stats["dropped"] or "none",
        )
    return summary
