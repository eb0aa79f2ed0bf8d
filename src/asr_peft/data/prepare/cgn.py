"""Corpus Gesproken Nederlands (CGN 2.0) into train/dev/test JSONL manifests of time-aligned segments.

Layout of the release (the Flemish part of a component lives under `vl`, the Netherlandic under `nl`):

    <corpus>/data/audio/wav/comp-<x>/<region>/<recording>.wav
    <corpus>/data/annot/text/ort/comp-<x>/<region>/<recording>.ort.gz   orthographic transcription
    <corpus>/data/annot/text/awd/comp-<x>/<region>/<recording>.awd.gz   automatic word alignment

Annotations are Praat TextGrids (long or short text format, gzip-compressed or not, usually latin-1)
with one interval tier per speaker, named by speaker id; `COMMENT` and `BACKGROUND` tiers and the
awd's per-speaker `_FON`/`_SEG` phone tiers are not speech and are ignored. With `ort`, every
non-empty interval of a speaker tier is one utterance; with `awd` (one word per interval), a speaker's
consecutive words form one utterance until a pause of at least `split_pause` seconds or until the
next word would take it over `max_duration`. Utterances point into the recording with `start`/`end`
(nothing is cut or copied); speaker = tier name; texts go through the `cgn` normaliser.

Dropped utterances, counted under the first rule they fail, in this order: `empty_transcript`
(nothing left after normalisation: ggg, xxx, fillers), `outside_audio` (starts after the audio ends;
an end past it is clamped), `invalid_interval` (no positive length), `too_long` (over
`max_duration`), `overlapping_speech` (another speaker's words overlap it, so its audio holds two
voices; kept with `keep_overlap`). Whole recordings are skipped and counted in `skipped_recordings`:
`no_audio`, `no_annotation`, `unreadable_audio` and `malformed_annotation` (these two also listed
in summary.json's `skipped`, or a one-line error with `strict`).

CGN has no official split. Recordings, never utterances, are assigned: recordings that share a
speaker are kept together, and these groups are dealt out in a seeded random order, a group going
to test (then dev) while that brings the split's share of the speech closer to its fraction.
Explicit recording lists replace the random split.
"""

from __future__ import annotations

import bisect
import codecs
import gzip
import logging
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from asr_peft.data.audio import audio_info
from asr_peft.data.manifest import Utterance
from asr_peft.data.normalizers import cgn
from asr_peft.data.prepare.common import (
    SPLITS,
    Skips,
    check_outputs_free,
    check_positive,
    read_id_list,
    write_outputs,
)
from asr_peft.errors import ConfigError, DataError

log = logging.getLogger(__name__)

COMPONENTS = "abcdefghijklmno"
REGIONS = ("nl", "vl")
ANNOTATIONS = ("ort", "awd")
LANGUAGE = "nld"
NON_SPEAKER_TIERS = {"COMMENT", "BACKGROUND"}
AWD_PHONE_TIER_SUFFIXES = ("_FON", "_SEG")
# CGN names unidentified speakers UNKNOWN in every recording: that is not one person, so it must
# neither count as one speaker nor tie recordings together in the split.
UNKNOWN_SPEAKER = "UNKNOWN"
# Tiers of different speakers are segmented independently; boundaries a few ms apart are not overlap.
OVERLAP_TOLERANCE = 0.05


# --- Praat TextGrid ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Tier:
    name: str
    intervals: tuple[Interval, ...]


# Praat's text formats, long and short alike, are a sequence of quoted strings (with "" for a quote),
# numbers and <exists> flags; everything else (`xmin =`, `item [1]:`) is decoration to skip.
_TOKEN = re.compile(r'"((?:[^"]|"")*)"|([^\s"]+)')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def decode_annotation(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")  # what newer Praat versions write for non-ASCII text
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the CGN release: ISO 8859-1


class _TokenStream:
    def __init__(self, text: str, path: Path):
        self.path = path
        self.tokens: list[tuple[str, object]] = []
        for match in _TOKEN.finditer(text):
            string, bare = match.groups()
            if string is not None:
                self.tokens.append(("string", string.replace('""', '"')))
            elif bare in ("<exists>", "<absent>"):
                self.tokens.append(("flag", bare == "<exists>"))
            elif _NUMBER.fullmatch(bare):
                self.tokens.append(("number", float(bare)))
        self.position = 0

    def take(self, kind: str, what: str):
        if self.position >= len(self.tokens):
            raise DataError(f"{self.path}: malformed TextGrid (it ends before the {what})")
        found_kind, value = self.tokens[self.position]
        if found_kind != kind:
            raise DataError(f"{self.path}: malformed TextGrid (expected the {what}, found {value!r})")
        self.position += 1
        return value

    def count(self, what: str) -> int:
        value = self.take("number", what)
        if value < 0 or value != int(value):
            raise DataError(f"{self.path}: malformed TextGrid ({what} is {value})")
        return int(value)


def parse_textgrid(text: str, path: Path) -> list[Tier]:
    """The interval tiers of a TextGrid in Praat's long or short text format (point tiers are skipped)."""
    stream = _TokenStream(text, path)
    if not str(stream.take("string", "file type")).startswith("ooTextFile"):
        raise DataError(f"{path}: malformed TextGrid (not a Praat text file)")
    if stream.take("string", "object class") != "TextGrid":
        raise DataError(f"{path}: malformed TextGrid (the object is not a TextGrid)")
    stream.take("number", "start time")
    stream.take("number", "end time")
    if not stream.take("flag", "<exists> flag"):
        return []
    tiers = []
    for _ in range(stream.count("number of tiers")):
        tier_class = stream.take("string", "tier class")
        name = stream.take("string", "tier name")
        stream.take("number", "tier start")
        stream.take("number", "tier end")
        size = stream.count(f"number of intervals of tier {name!r}")
        if tier_class == "IntervalTier":
            intervals = tuple(
                Interval(
                    stream.take("number", "interval start"),
                    stream.take("number", "interval end"),
                    stream.take("string", "interval text"),
                )
                for _ in range(size)
            )
            tiers.append(Tier(name, intervals))
        elif tier_class == "TextTier":
            for _ in range(size):
                stream.take("number", "point time")
                stream.take("string", "point mark")
        else:
            raise DataError(f"{path}: malformed TextGrid (unknown tier class {tier_class!r})")
    return tiers


def read_textgrid(path: Path) -> list[Tier]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable gzip file ({err})") from err
    return parse_textgrid(decode_annotation(raw), path)


# --- the corpus tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    id: str
    component: str
    region: str
    audio: Path | None
    annotation: Path | None


def _parse_choices(value: str | Sequence[str], choices: Sequence[str], option: str, prefix: str = "") -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip().lower().removeprefix(prefix) for item in items if item.strip()]
    unknown = [item for item in items if item not in choices]
    if unknown or not items:
        raise ConfigError(f"{option}: {', '.join(unknown) or 'nothing'} given; choose from {', '.join(choices)}")
    return sorted(set(items))


def find_recordings(
    corpus_dir: Path,
    components: list[str],
    regions: list[str],
    annotation: str,
) -> tuple[list[Recording], list[str]]:
    """The selected recordings (audio and/or annotation found) and the selected directories that are absent."""
    audio_root = corpus_dir / "data" / "audio" / "wav"
    annotation_root = corpus_dir / "data" / "annot" / "text" / annotation
    for root in (audio_root, annotation_root):
        if not root.is_dir():
            raise DataError(f"CGN directory {root} does not exist (expected the CGN 2.0 layout under {corpus_dir})")
    recordings: dict[str, Recording] = {}
    absent = []
    for component in components:
        for region in regions:
            audio_dir = audio_root / f"comp-{component}" / region
            annotation_dir = annotation_root / f"comp-{component}" / region
            absent += [str(d) for d in (audio_dir, annotation_dir) if not d.is_dir()]  # e.g. comp-e has no vl
            audio = {path.stem: path for path in audio_dir.glob("*.wav")}
            annotations = {path.name.split(".")[0]: path for path in sorted(annotation_dir.glob(f"*.{annotation}"))}
            annotations.update(
                {
                    path.name.split(".")[0]: path  # gzip-compressed, as released, wins
                    for path in sorted(annotation_dir.glob(f"*.{annotation}.gz"))
                }
            )
            for rec_id in sorted(audio.keys() | annotations.keys()):
                if rec_id in recordings:
                    other = recordings[rec_id]
                    raise DataError(
                        f"CGN recording {rec_id} occurs twice: in comp-{other.component}/{other.region} "
                        f"and comp-{component}/{region}"
                    )
                recordings[rec_id] = Recording(rec_id, component, region, audio.get(rec_id), annotations.get(rec_id))
    if not recordings:
        raise DataError(
            f"no CGN recordings under {audio_root} or {annotation_root} for components "
            f"{','.join(components)} and regions {','.join(regions)}"
        )
    return list(recordings.values()), absent


# --- utterances of one recording -----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    speaker: str
    index: int  # of the (first) interval in its tier, 1-based as in Praat
    start: float
    end: float
    text: str  # normalised


def speaker_name(tier: Tier, recording_id: str) -> str:
    name = tier.name.strip()
    return f"{recording_id}_{UNKNOWN_SPEAKER}" if not name or name.upper() == UNKNOWN_SPEAKER else name


def is_speaker_tier(tier: Tier) -> bool:
    name = tier.name.strip().upper()
    return name not in NON_SPEAKER_TIERS and not name.endswith(AWD_PHONE_TIER_SUFFIXES)


def _has_word(text: str) -> bool:
    return any(character.isalnum() for character in text)  # not a pause mark or bare punctuation


def word_groups(
    intervals: Sequence[Interval],
    *,
    split_pause: float,
    max_duration: float,
) -> list[tuple[int, list[Interval]]]:
    """awd words grouped into utterances: (1-based index of the first word, the words)."""
    groups: list[tuple[int, list[Interval]]] = []
    for index, word in enumerate(intervals, start=1):
        if not _has_word(word.text):
            continue
        if groups:
            words = groups[-1][1]
            if word.start - words[-1].end < split_pause and word.end - words[0].start <= max_duration:
                words.append(word)
                continue
        groups.append((index, [word]))
    return groups


def speaker_segments(
    tiers: Iterable[Tier], recording_id: str, annotation: str, *, split_pause: float, max_duration: float
) -> list[Segment]:
    segments = []
    for tier in tiers:
        if not is_speaker_tier(tier):
            continue
        speaker = speaker_name(tier, recording_id)
        if annotation == "ort":
            segments += [
                Segment(speaker, index, interval.start, interval.end, cgn(interval.text))
                for index, interval in enumerate(tier.intervals, start=1)
                if interval.text.strip()
            ]
        else:
            for index, words in word_groups(tier.intervals, split_pause=split_pause, max_duration=max_duration):
                text = cgn(" ".join(word.text for word in words))
                segments.append(Segment(speaker, index, words[0].start, words[-1].end, text))
    return segments


def overlapped(segments: list[Segment]) -> set[Segment]:
    """Segments that another speaker's speech overlaps by more than OVERLAP_TOLERANCE."""
    by_speaker: dict[str, list[Segment]] = {}
    for segment in sorted(segments, key=lambda s: s.start):
        if segment.text:  # laughter or a cough of the other speaker is not a second voice
            by_speaker.setdefault(segment.speaker, []).append(segment)
    starts = {speaker: [s.start for s in speech] for speaker, speech in by_speaker.items()}
    result = set()
    for segment in segments:
        for speaker, speech in by_speaker.items():
            if speaker == segment.speaker:
                continue
            # A speaker's segments are disjoint and sorted, so the last one starting before this one
            # ends is the only one that can reach into it.
            i = bisect.bisect_left(starts[speaker], segment.end - OVERLAP_TOLERANCE)
            if i > 0 and speech[i - 1].end > segment.start + OVERLAP_TOLERANCE:
                result.add(segment)
                break
    return result


def recording_utterances(
    recording: Recording, segments: list[Segment], audio_duration: float, *, max_duration: float, keep_overlap: bool
) -> tuple[list[Utterance], Counter]:
    utterances, dropped = [], Counter()
    overlapping = set() if keep_overlap else overlapped(segments)
    for segment in segments:
        start, end = round(segment.start, 3), round(min(segment.end, audio_duration), 3)
        if not segment.text:
            reason = "empty_transcript"
        elif start >= audio_duration:
            reason = "outside_audio"
        elif end <= start:
            reason = "invalid_interval"
        elif end - start > max_duration:
            reason = "too_long"
        elif segment in overlapping:
            reason = "overlapping_speech"
        else:
            utterances.append(
                Utterance(
                    f"{recording.id}-{segment.speaker}-{segment.index:05d}",
                    recording.audio.absolute(),
                    segment.text,
                    round(end - start, 3),
                    segment.speaker,
                    LANGUAGE,
                    start,
                    end,
                )
            )
            continue
        dropped[reason] += 1
    return utterances, dropped


# --- the split -----------------------------------------------------------------------------------


def speaker_groups(speakers_of: dict[str, set[str]]) -> list[list[str]]:
    """Recordings connected by shared speakers (union-find), each group sorted, groups sorted."""
    parent = {rec: rec for rec in speakers_of}

    def root(rec: str) -> str:
        while parent[rec] != rec:
            parent[rec] = parent[parent[rec]]
            rec = parent[rec]
        return rec

    first_recording_of: dict[str, str] = {}
    for rec in sorted(speakers_of):
        for speaker in speakers_of[rec]:
            if speaker in first_recording_of:
                parent[root(rec)] = root(first_recording_of[speaker])
            else:
                first_recording_of[speaker] = rec
    groups: dict[str, list[str]] = {}
    for rec in sorted(speakers_of):
        groups.setdefault(root(rec), []).append(rec)
    return sorted(groups.values())


def random_split(
    seconds_of: dict[str, float], speakers_of: dict[str, set[str]], *, dev_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    groups = speaker_groups(speakers_of)
    random.Random(seed).shuffle(groups)
    total = sum(seconds_of.values())
    target = {"test": test_fraction * total, "dev": dev_fraction * total}
    filled = {"test": 0.0, "dev": 0.0}
    split_of = {}
    for group in groups:
        seconds = sum(seconds_of[rec] for rec in group)
        split = "train"
        if seconds > 0:  # recordings with nothing usable stay in train
            for held_out in ("test", "dev"):
                # Joining moves the split closer to its target: keeps big speaker groups in train.
                if filled[held_out] + seconds / 2 < target[held_out]:
                    split = held_out
                    filled[held_out] += seconds
                    break
        split_of.update({rec: split for rec in group})
    for held_out in ("test", "dev"):
        if target[held_out] > 0 and filled[held_out] == 0:
            raise DataError(
                f"no speaker-disjoint group of recordings fits the {held_out} split "
                f"(--{held_out}-fraction {test_fraction if held_out == 'test' else dev_fraction}); "
                f"name its recordings with --{held_out}-list"
            )
    return split_of


def listed_split(recording_ids: Iterable[str], lists: dict[str, list[str]]) -> tuple[dict[str, str | None], dict]:
    """Recordings named in --{train,dev,test}-list go there; the rest to train, or nowhere given a train list."""
    split_of_listed: dict[str, str] = {}
    for split, ids in lists.items():
        for rec in ids:
            if split_of_listed.setdefault(rec, split) != split:
                raise ConfigError(f"recording {rec} is in both --{split_of_listed[rec]}-list and --{split}-list")
    rest = None if "train" in lists else "train"
    present = set(recording_ids)
    split_of = {rec: split_of_listed.get(rec, rest) for rec in present}
    report = {split: {"listed": len(ids), "not_in_selection": len(set(ids) - present)} for split, ids in lists.items()}
    return split_of, report


# --- the command ---------------------------------------------------------------------------------


def prepare_cgn(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    components: str | Sequence[str] = "o,k,m",
    regions: str | Sequence[str] = "vl",
    annotation: str = "ort",
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_duration: float = 30.0,
    split_pause: float = 0.5,
    keep_overlap: bool = False,
    split_lists: dict[str, str | Path] | None = None,
    strict: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write train/dev/test.jsonl and summary.json into `out_dir`; return the summary."""
    corpus_dir, out_dir = Path(corpus_dir).expanduser(), Path(out_dir).expanduser()
    components = _parse_choices(components, COMPONENTS, "--components", prefix="comp-")
    regions = _parse_choices(regions, REGIONS, "--regions")
    if annotation not in ANNOTATIONS:
        raise ConfigError(f"--annotation: {annotation!r} given; choose from {', '.join(ANNOTATIONS)}")
    for value, option in ((dev_fraction, "--dev-fraction"), (test_fraction, "--test-fraction")):
        if not 0 <= value < 1:
            raise ConfigError(f"{option} must be in [0, 1), got {value}")
    if dev_fraction + test_fraction >= 1:
        raise ConfigError(f"--dev-fraction + --test-fraction must be below 1, got {dev_fraction + test_fraction}")
    check_positive(max_duration, "--max-duration")
    check_positive(split_pause, "--split-pause")
    lists = {split: read_id_list(path, f"--{split}-list") for split, path in (split_lists or {}).items() if path is not None}
    check_outputs_free(out_dir, overwrite)
    recordings, absent_dirs = find_recordings(corpus_dir, components, regions, annotation)
    for directory in absent_dirs:
        log.info("not in this copy of CGN: %s", directory)

    skips = Skips(strict)
    skipped_recordings: Counter = Counter()
    utterances_of: dict[str, list[Utterance]] = {}
    dropped_of: dict[str, Counter] = {}
    for recording in recordings:
        if recording.audio is None or recording.annotation is None:
            skipped_recordings["no_audio" if recording.audio is None else "no_annotation"] += 1
            continue
        try:
            audio_duration = audio_info(recording.audio).duration
        except DataError as err:
            skips.record(err, "unreadable_audio", skipped_recordings)
            continue
        try:
            tiers = read_textgrid(recording.annotation)
        except DataError as err:
            skips.record(err, "malformed_annotation", skipped_recordings)
            continue
        segments = speaker_segments(tiers, recording.id, annotation, split_pause=split_pause, max_duration=max_duration)
        utterances_of[recording.id], dropped_of[recording.id] = recording_utterances(
            recording, segments, audio_duration, max_duration=max_duration, keep_overlap=keep_overlap
        )

    split_report = None
    if lists:
        split_of, split_report = listed_split(utterances_of, lists)
    else:
        seconds_of = {rec: sum(utt.duration for utt in utts) for rec, utts in utterances_of.items()}
        speakers_of = {rec: {utt.speaker for utt in utts} for rec, utts in utterances_of.items()}
        split_of = random_split(seconds_of, speakers_of, dev_fraction=dev_fraction, test_fraction=test_fraction, seed=seed)

    manifests = {split: [] for split in SPLITS}
    dropped = {split: Counter() for split in SPLITS}
    recordings_of = {split: [] for split in SPLITS}
    for rec in sorted(utterances_of):
        split = split_of[rec]
        if split is None:
            skipped_recordings["not_in_split_lists"] += 1
            continue
        manifests[split] += utterances_of[rec]
        dropped[split] += dropped_of[rec]
        recordings_of[split].append(rec)
    splits_per_speaker = Counter(speaker for split in SPLITS for speaker in {utt.speaker for utt in manifests[split]})

    summary = {
        "corpus": "cgn",
        "corpus_dir": str(corpus_dir.absolute()),
        "options": {
            "components": components,
            "regions": regions,
            "annotation": annotation,
            "dev_fraction": dev_fraction,
            "test_fraction": test_fraction,
            "seed": seed,
            "max_duration": max_duration,
            "split_pause": split_pause if annotation == "awd" else None,
            "keep_overlap": keep_overlap,
            "strict": strict,
            "split_lists": {split: str(path) for split, path in (split_lists or {}).items() if path},
        },
        "recordings": {split: recordings_of[split] for split in SPLITS},
        "speakers_in_several_splits": sum(1 for n in splits_per_speaker.values() if n > 1),
        "skipped_recordings": dict(sorted(skipped_recordings.items())),
        "skipped": skips.entries,
        "absent_directories": absent_dirs,
    }
    if split_report is not None:
        summary["split_lists"] = split_report
    return write_outputs(out_dir, manifests, dropped, summary)
