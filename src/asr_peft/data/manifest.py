"""Reading utterance lists: JSONL manifests and Kaldi-style data directories.

A JSONL manifest has one object per line: `id`, `audio` (relative to the manifest's directory or
absolute), `text`, and optionally `duration` (s), `speaker`, `language` (ISO 639-3), `start`/`end`
(s, a segment of the audio file). A Kaldi data directory holds `wav.scp`, `text`, optionally
`utt2spk` and `segments` (`utt rec start end`), in which case `wav.scp` is keyed by recording.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from asr_peft.errors import DataError


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: Path
    text: str
    duration: float | None = None
    speaker: str | None = None
    language: str | None = None
    start: float | None = None
    end: float | None = None


def load_utterances(path: str | Path, *, skipped: Counter | None = None) -> list[Utterance]:
    """Read a JSONL manifest (a file) or a Kaldi data directory (a directory).

    A line that cannot be read (not UTF-8, not JSON, a missing or mistyped field, a repeated id) is a
    `DataError` naming the file and line; given a `skipped` counter (`data.on_error=skip`), the line
    is left out and counted instead (`invalid_manifest_line`, `duplicate_id`).
    """
    path = Path(path).expanduser()
    lines = _Lines(skipped)
    if path.is_dir():
        utterances = read_kaldi_dir(path, lines)
    elif path.is_file():
        utterances = read_jsonl_manifest(path, lines)
    else:
        raise DataError(f"manifest {path} does not exist")
    return _unique_ids(utterances, path, lines)


class _Lines:
    """Where a bad line goes: an error (on_error=raise) or a count (on_error=skip)."""

    def __init__(self, skipped: Counter | None):
        self.skipped = skipped

    def reject(self, message: str, reason: str = "invalid_manifest_line") -> None:
        if self.skipped is None:
            raise DataError(message)
        self.skipped[reason] += 1

    def read(self, path: Path):
        """(line number, text) of every non-blank line; a line that is not UTF-8 is rejected."""
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    self.reject(f"{path}:{line_no}: not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 1]!r})")
                    continue
                if line.strip():
                    yield line_no, line.rstrip("\r\n")


def read_jsonl_manifest(path: str | Path, lines: _Lines | None = None) -> list[Utterance]:
    path = Path(path)
    lines = lines or _Lines(None)
    utterances: list[Utterance] = []
    for line_no, line in lines.read(path):
        try:
            utterances.append(_jsonl_entry(line, path))
        except _BadLine as err:
            lines.reject(f"{path}:{line_no}: {err}")
    return utterances


class _BadLine(ValueError):
    """What is wrong with one manifest line (the caller adds file and line number)."""


def _jsonl_entry(line: str, path: Path) -> Utterance:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise _BadLine(f"not valid JSON ({err.msg})") from err
    if not isinstance(entry, dict):
        raise _BadLine("expected a JSON object")
    missing = [key for key in ("id", "audio", "text") if key not in entry]
    if missing:
        raise _BadLine(f"missing field(s) {', '.join(missing)}")
    for key in ("id", "audio", "text"):
        value = entry[key]
        if key == "id" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, str):
            raise _BadLine(f"field {key} is {'null' if value is None else type(value).__name__}, not a string")
    if not entry["audio"].strip():
        raise _BadLine("field audio is empty")
    for key in ("speaker", "language"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise _BadLine(f"field {key} is {type(entry[key]).__name__}, not a string")
    audio = Path(entry["audio"]).expanduser()
    if not audio.is_absolute():
        audio = path.parent / audio
    return Utterance(
        id=str(entry["id"]),
        audio=audio,
        text=entry["text"],
        duration=_optional_float(entry.get("duration"), "duration"),
        speaker=entry.get("speaker"),
        language=entry.get("language"),
        start=_optional_float(entry.get("start"), "start"),
        end=_optional_float(entry.get("end"), "end"),
    )


def _optional_float(value, key: str) -> float | None:
    return None if value is None else _float(value, key)


def _float(value, key: str) -> float:
    if isinstance(value, bool):
        raise _BadLine(f"field {key} is not a number ({value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise _BadLine(f"field {key} is not a number ({value!r})") from err
    if not math.isfinite(number):
        raise _BadLine(f"field {key} is not a finite number ({value!r})")
    return number


def _read_table(path: Path, min_fields: int, lines: _Lines) -> dict[str, list[str]]:
    """`key value...` lines; the value part may hold spaces (transcripts)."""
    table: dict[str, list[str]] = {}
    for line_no, line in lines.read(path):
        fields = line.split(maxsplit=1 if min_fields == 2 else -1)
        if len(fields) < min_fields:
            if min_fields == 2 and len(fields) == 1:
                fields.append("")  # an utterance with an empty transcript; validation decides
            else:
                lines.reject(f"{path}:{line_no}: expected at least {min_fields} fields")
                continue
        if fields[0] in table:
            lines.reject(f"{path}:{line_no}: duplicate key {fields[0]}", "duplicate_id")
            continue
        table[fields[0]] = fields[1:]
    return table


def read_kaldi_dir(directory: str | Path, lines: _Lines | None = None) -> list[Utterance]:
    directory = Path(directory)
    lines = lines or _Lines(None)
    for required in ("wav.scp", "text"):
        if not (directory / required).is_file():
            raise DataError(f"Kaldi data directory {directory} has no {required}")
    wav_scp = {}
    for key, value in _read_table(directory / "wav.scp", 2, lines).items():
        if value[0].rstrip().endswith("|"):
            lines.reject(f"{directory / 'wav.scp'}: entry {key} is a pipe command; convert the audio to files first")
        else:
            wav_scp[key] = value[0]
    texts = {key: value[0] for key, value in _read_table(directory / "text", 2, lines).items()}
    speakers = {}
    if (directory / "utt2spk").is_file():
        speakers = {key: value[0] for key, value in _read_table(directory / "utt2spk", 2, lines).items()}
    segments = None
    if (directory / "segments").is_file():
        segments = _read_table(directory / "segments", 4, lines)

    def resolve(location: str) -> Path:
        audio = Path(location.strip()).expanduser()
        return audio if audio.is_absolute() else directory / audio

    utterances = []
    for utt_id, text in texts.items():
        if segments is not None:
            if utt_id not in segments:
                lines.reject(f"{directory / 'segments'} has no entry for utterance {utt_id}")
                continue
            recording, start, end = segments[utt_id][:3]
            if recording not in wav_scp:
                lines.reject(f"{directory / 'wav.scp'} has no recording {recording} (segments, utterance {utt_id})")
                continue
            try:
                start_s, end_s = _float(start, "start"), _float(end, "end")
            except _BadLine as err:
                lines.reject(f"{directory / 'segments'}: utterance {utt_id}: {err}")
                continue
            utterances.append(
                Utterance(
                    utt_id,
                    resolve(wav_scp[recording]),
                    text,
                    duration=end_s - start_s,
                    speaker=speakers.get(utt_id),
                    start=start_s,
                    end=end_s,
                )
            )
        else:
            if utt_id not in wav_scp:
                lines.reject(f"{directory / 'wav.scp'} has no entry for utterance {utt_id} (in text)")
                continue
            utterances.append(Utterance(utt_id, resolve(wav_scp[utt_id]), text, speaker=speakers.get(utt_id)))
    return utterances


def _unique_ids(utterances: list[Utterance], source: Path, lines: _Lines) -> list[Utterance]:
    seen: set[str] = set()
    unique = []
    for utterance in utterances:
        if utterance.id in seen:
            lines.reject(f"{source}: duplicate utterance id {utterance.id}", "duplicate_id")
            continue
        seen.add(utterance.id)
        unique.append(utterance)
    return unique
