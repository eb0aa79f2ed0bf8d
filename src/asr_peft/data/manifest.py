"""Reading utterance lists: JSONL manifests and Kaldi-style data directories.

A JSONL manifest has one object per line: `id`, `audio` (relative to the manifest's directory or
absolute), `text`, and optionally `duration` (s), `speaker`, `language` (ISO 639-3), `start`/`end`
(s, a segment of the audio file). A Kaldi data directory holds `wav.scp`, `text`, optionally
`utt2spk` and `segments` (`utt rec start end`), in which case `wav.scp` is keyed by recording.
"""

from __future__ import annotations

import json
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


def load_utterances(path: str | Path) -> list[Utterance]:
    """Read a JSONL manifest (a file) or a Kaldi data directory (a directory)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_kaldi_dir(path)
    if path.is_file():
        return read_jsonl_manifest(path)
    raise DataError(f"manifest {path} does not exist")


def read_jsonl_manifest(path: str | Path) -> list[Utterance]:
    path = Path(path)
    utterances: list[Utterance] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(entry, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object")
            missing = [key for key in ("id", "audio", "text") if key not in entry]
            if missing:
                raise DataError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
            audio = Path(entry["audio"]).expanduser()
            if not audio.is_absolute():
                audio = path.parent / audio
            utterances.append(
                Utterance(
                    id=str(entry["id"]), audio=audio, text=str(entry["text"]),
                    duration=_optional_float(entry.get("duration"), path, line_no, "duration"),
                    speaker=entry.get("speaker"), language=entry.get("language"),
                    start=_optional_float(entry.get("start"), path, line_no, "start"),
                    end=_optional_float(entry.get("end"), path, line_no, "end"),
                )
            )
    _check_unique_ids(utterances, path)
    return utterances


def _optional_float(value, path: Path, line_no: int, key: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}:{line_no}: field {key} is not a number ({value!r})") from err


def _read_table(path: Path, min_fields: int) -> dict[str, list[str]]:
    """`key value...` lines; the value part may hold spaces (transcripts)."""
    table: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split(maxsplit=1 if min_fields == 2 else -1)
            if len(fields) < min_fields:
                if min_fields == 2 and len(fields) == 1:
                    fields.append("")  # an utterance with an empty transcript; the dataset decides
                else:
                    raise DataError(f"{path}:{line_no}: expected at least {min_fields} fields")
            if fields[0] in table:
                raise DataError(f"{path}:{line_no}: duplicate key {fields[0]}")
            table[fields[0]] = fields[1:]
    return table


def read_kaldi_dir(directory: str | Path) -> list[Utterance]:
    directory = Path(directory)
    for required in ("wav.scp", "text"):
        if not (directory / required).is_file():
            raise DataError(f"Kaldi data directory {directory} has no {required}")
    wav_scp = {key: value[0] for key, value in _read_table(directory / "wav.scp", 2).items()}
    for key, location in wav_scp.items():
        if location.rstrip().endswith("|"):
            raise DataError(f"{directory / 'wav.scp'}: entry {key} is a pipe command; convert the audio to files first")
    texts = {key: value[0] for key, value in _read_table(directory / "text", 2).items()}
    speakers = {}
    if (directory / "utt2spk").is_file():
        speakers = {key: value[0] for key, value in _read_table(directory / "utt2spk", 2).items()}
    segments = None
    if (directory / "segments").is_file():
        segments = _read_table(directory / "segments", 4)

    def resolve(location: str) -> Path:
        audio = Path(location.strip()).expanduser()
        return audio if audio.is_absolute() else directory / audio

    utterances = []
    for utt_id, text in texts.items():
        if segments is not None:
            if utt_id not in segments:
                raise DataError(f"{directory / 'segments'} has no entry for utterance {utt_id}")
            recording, start, end = segments[utt_id][:3]
            if recording not in wav_scp:
                raise DataError(f"{directory / 'wav.scp'} has no recording {recording} (segments, utterance {utt_id})")
            try:
                start_s, end_s = float(start), float(end)
            except ValueError as err:
                raise DataError(f"{directory / 'segments'}: bad times for {utt_id}") from err
            utterances.append(Utterance(utt_id, resolve(wav_scp[recording]), text, duration=end_s - start_s,
                                        speaker=speakers.get(utt_id), start=start_s, end=end_s))
        else:
            if utt_id not in wav_scp:
                raise DataError(f"{directory / 'wav.scp'} has no entry for utterance {utt_id} (in text)")
            utterances.append(Utterance(utt_id, resolve(wav_scp[utt_id]), text, speaker=speakers.get(utt_id)))
    return utterances


def _check_unique_ids(utterances: list[Utterance], source: Path) -> None:
    seen: set[str] = set()
    for utterance in utterances:
        if utterance.id in seen:
            raise DataError(f"{source}: duplicate utterance id {utterance.id}")
        seen.add(utterance.id)
