"""Checking every utterance before anything trains: what training, validation and scoring will read.

Per utterance, in this order (the first failure is the reason):

- `empty_transcript`: the transcript is empty or blank; `empty_after_normalisation`: it has no word
  left after `data.normalizer` (punctuation or markup only), so it cannot be scored and teaches nothing;
- `missing_audio`, `unreadable_audio` (header), `bad_sample_rate`;
- `bad_segment`: `start`/`end` outside the file, negative, or not increasing;
- `too_long`: over `data.max_duration`;
- `too_many_characters`: more transcript than any speech fits in its audio (over
  `MAX_CHARACTERS_PER_SECOND` characters of normalised text per second): a transcript of another, longer
  clip, or a segment with wrong times; such an utterance also grows a training step's memory with the
  square of its length;
- `undecodable_audio`: the samples fail to decode, or fewer decode than the header promises (a
  corrupt or truncated FLAC passes the header check); `non_finite_audio`: NaN or infinite samples
  (float WAV); `silent_audio`: peak below -80 dBFS (no speech can be in it; 16-bit audio's
  quantisation step is -90 dBFS), a labelling mistake for a file with a transcript;
  `out_of_range_audio`: a sample beyond ±`MAX_PEAK`. Integer formats decode into [-1, 1); float files
  may overshoot full scale a little (a mix, a resampler's ringing) and the model copes, but beyond
  ±2 (6 dB over) a file is a scaling mistake (e.g. 16-bit values stored as floats, up to 32767)
  that makes training's loss overflow;
- `unknown_language` (after the model loads): the utterance's language has no token in the model;
- `too_many_tokens` (after the model loads, before anything trains or is scored): the transcript is
  longer, in the model's own tokens, than the model can learn from the utterance's audio. The model
  says how long that is (`TokenLimit`, a function of transcript, language and seconds of audio,
  passed in: CTC aligns at most one token per encoder frame; a decoder may have a maximum length);
  training audio is counted as its fastest speed perturbation makes it.

Manifest lines that cannot be read count as `invalid_manifest_line` / `duplicate_id`; a test utterance
that training sees (a training utterance's id, or its audio and transcript) is `in_train`. With
`data.on_error=raise` the first problem stops the run with a one-line error naming the file or
utterance; with `skip` the utterance is left out and counted per reason, and the counts go to
results.json. Nothing that passes can fail later when the data loader reads it.

Decoding every file costs time on a large corpus, so the audio verdicts are cached in
`<paths.cache_dir>/audio_checks.sqlite`, keyed by file path, a hash of the file's bytes (xxh3-128,
reading a file is far cheaper than decoding it) and segment: an unchanged file is decoded once,
whichever run or sweep job reads it, and a changed one is checked again even when its size and
modification time were kept. The checks of uncached files run on a thread pool (libsndfile, numpy
and xxhash release the GIL).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import xxhash

from asr_peft.data.audio import audio_info, check_sample_rate, scan_audio
from asr_peft.data.manifest import Utterance, load_utterances
from asr_peft.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ON_ERROR_CHOICES = ("raise", "skip")
SILENCE_PEAK = 1e-4  # -80 dBFS
SEGMENT_TOLERANCE_S = 0.01  # an `end` this far past the file's end is rounding, not an error
AUDIO_CHECK_VERSION = 2  # bump when the audio checks change: cached verdicts are then recomputed
MAX_PEAK = 2.0  # see `out_of_range_audio` above
HASH_BLOCK_BYTES = 1 << 22
MAX_CHECK_THREADS = 8
# Fast speech stays below ~20 characters a second (about 7 syllables); 50 leaves room for
# hand-cut segments, and rejects only a transcript that cannot belong to its audio.
MAX_CHARACTERS_PER_SECOND = 50


@dataclass(frozen=True)
class AudioVerdict:
    duration: float | None  # seconds of the utterance (segment or file), when the header could be read
    reason: str | None = None
    message: str | None = None


def check_audio(utt: Utterance, *, resample: bool = True) -> AudioVerdict:
    """The header, segment and decoding checks of one utterance (no transcript, no duration limit)."""
    try:
        info = audio_info(utt.audio)
    except DataError as err:
        return AudioVerdict(None, "missing_audio" if not os.path.lexists(utt.audio) else "unreadable_audio", str(err))
    try:
        check_sample_rate(utt.audio, info.sample_rate, resample=resample)
    except DataError as err:
        return AudioVerdict(None, "bad_sample_rate", str(err))
    start = utt.start if utt.start is not None else 0.0
    end = utt.end if utt.end is not None else info.duration
    if start < 0 or end <= start or end > info.duration + SEGMENT_TOLERANCE_S:
        return AudioVerdict(
            None,
            "bad_segment",
            f"utterance {utt.id}: segment {start}-{end} s is outside {utt.audio} ({info.duration:.2f} s) or empty",
        )
    duration = end - start
    try:
        scan = scan_audio(utt.audio, start=utt.start, end=utt.end)
    except DataError as err:
        return AudioVerdict(duration, "undecodable_audio", str(err))
    where = f"{utt.audio}" + (f" ({start}-{end} s)" if utt.start is not None or utt.end is not None else "")
    if scan.non_finite:
        return AudioVerdict(duration, "non_finite_audio", f"audio file {where} holds {scan.non_finite} NaN or infinite sample(s)")
    if scan.peak > MAX_PEAK:
        return AudioVerdict(
            duration,
            "out_of_range_audio",
            f"audio file {where} has samples up to ±{scan.peak:.3g}, beyond ±{MAX_PEAK:g} (float audio "
            "lies in [-1, 1]; a scaling mistake?)",
        )
    if scan.peak < SILENCE_PEAK:
        return AudioVerdict(
            duration,
            "silent_audio",
            f"audio file {where} is silent (peak {scan.peak:.1e}, below -80 dBFS) but utterance {utt.id} has a transcript",
        )
    return AudioVerdict(duration)


class AudioCheckCache:
    """Audio verdicts by (path, size, mtime, segment, resample) in an SQLite file shared by all runs.

    A cache that cannot be used (a read-only or network file system that refuses SQLite's locks) only
    costs time: the checks then run every time.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.connection: sqlite3.Connection | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
                self.connection.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT)")
            except (OSError, sqlite3.Error) as err:
                self._give_up(err)

    def _give_up(self, err: Exception) -> None:
        log.warning("audio check cache %s unusable (%s); checking every file", self.path, err)
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    @staticmethod
    def key(utt: Utterance, resample: bool, digest: str | None) -> str | None:
        if digest is None:
            return None  # missing files are checked every time: they may appear
        return json.dumps([AUDIO_CHECK_VERSION, str(Path(utt.audio).resolve()), digest, utt.start, utt.end, resample])

    def get_many(self, keys: Iterable[str]) -> dict[str, AudioVerdict]:
        if self.connection is None:
            return {}
        found = {}
        keys = list(keys)
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rows = self.connection.execute(
                    f"SELECT key, verdict FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update({key: AudioVerdict(**json.loads(value)) for key, value in rows})
        except sqlite3.Error as err:
            self._give_up(err)
            return {}
        return found

    def put_many(self, verdicts: Mapping[str, AudioVerdict]) -> None:
        if self.connection is None or not verdicts:
            return
        try:
            with self.connection:
                self.connection.executemany(
                    "INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
                    [(key, json.dumps(verdict.__dict__)) for key, verdict in verdicts.items()],
                )
        except sqlite3.Error as err:
            self._give_up(err)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def content_digest(path: str) -> str | None:
    """xxh3-128 of the file's bytes; None when it is no regular file or cannot be read (the checks then
    say why; a FIFO or /dev/zero is never opened)."""
    if not os.path.isfile(path):
        return None
    digest = xxhash.xxh3_128()
    try:
        with open(path, "rb") as file:
            while block := file.read(HASH_BLOCK_BYTES):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def audio_verdicts(utterances: Sequence[Utterance], *, resample: bool, cache: AudioCheckCache) -> list[AudioVerdict]:
    """`check_audio` of every utterance, from the cache where the file is unchanged, the rest in parallel."""
    workers = max(1, min(MAX_CHECK_THREADS, os.cpu_count() or 1, len(utterances)))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:  # an interruption (SIGTERM, Ctrl-C) must not wait for the whole corpus
        files = sorted({str(utt.audio) for utt in utterances})  # a file of many segments is read once
        digests = dict(zip(files, pool.map(content_digest, files)))
        keys = [cache.key(utt, resample, digests[str(utt.audio)]) for utt in utterances]
        cached = cache.get_many(k for k in keys if k is not None)
        todo = [i for i, key in enumerate(keys) if key not in cached]
        fresh = dict(zip(todo, pool.map(lambda i: check_audio(utterances[i], resample=resample), todo)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    cache.put_many({keys[i]: verdict for i, verdict in fresh.items() if keys[i] is not None})
    return [fresh[i] if i in fresh else cached[keys[i]] for i in range(len(utterances))]


class Rejections:
    """Where a rejected utterance goes: an error (on_error=raise) or a count per reason (skip)."""

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR_CHOICES:
            raise ConfigError(f"data.on_error={on_error} must be one of: {', '.join(ON_ERROR_CHOICES)}")
        self.on_error = on_error
        self.skipped: Counter = Counter()

    @property
    def line_counter(self) -> Counter | None:
        """The counter manifest readers skip bad lines into; None makes them raise."""
        return self.skipped if self.on_error == "skip" else None

    def reject(self, reason: str, message: str) -> None:
        if self.on_error == "raise":
            raise DataError(message)
        self.skipped[reason] += 1


def validate_utterances(
    utterances: Sequence[Utterance],
    *,
    max_duration: float | None,
    on_error: str,
    resample: bool = True,
    normalizer: Callable[[str], str] | None = None,
    cache: AudioCheckCache | None = None,
) -> tuple[list[Utterance], Counter]:
    """Keep the usable utterances (with their duration filled in) and count the others per reason."""
    rejections = Rejections(on_error)
    kept = _validated(
        utterances,
        rejections,
        max_duration=max_duration,
        resample=resample,
        normalizer=normalizer,
        cache=cache or AudioCheckCache(None),
        source="the utterances",
    )
    _report(rejections.skipped, "")
    return kept, rejections.skipped


def _validated(
    utterances: Sequence[Utterance],
    rejections: Rejections,
    *,
    max_duration: float | None,
    resample: bool,
    normalizer: Callable[[str], str] | None,
    cache: AudioCheckCache,
    source: str,
) -> list[Utterance]:
    with_text = []
    for utt in utterances:
        if not utt.text.strip():
            rejections.reject("empty_transcript", f"utterance {utt.id} ({utt.audio}) has an empty transcript")
        elif normalizer is not None and not normalizer(utt.text).strip():
            rejections.reject(
                "empty_after_normalisation",
                f"utterance {utt.id} ({utt.audio}): transcript "
                f"{utt.text!r} has no words after normalisation (nothing to score or learn)",
            )
        else:
            with_text.append(utt)
    kept: list[Utterance] = []
    for utt, verdict in zip(with_text, audio_verdicts(with_text, resample=resample, cache=cache)):
        if verdict.reason is not None:
            rejections.reject(verdict.reason, verdict.message)
        elif max_duration is not None and verdict.duration > max_duration:
            rejections.reject(
                "too_long", f"utterance {utt.id} ({utt.audio}) is {verdict.duration:.1f} s, over data.max_duration={max_duration}"
            )
        elif (characters := len((normalizer or str)(utt.text).strip())) > MAX_CHARACTERS_PER_SECOND * verdict.duration:
            rejections.reject(
                "too_many_characters",
                f"utterance {utt.id} ({utt.audio}): {characters} characters of "
                f"transcript for {verdict.duration:.2f} s of audio, over the {MAX_CHARACTERS_PER_SECOND} "
                "per second that speech reaches (a transcript of another clip, or wrong segment times?)",
            )
        else:
            kept.append(Utterance(utt.id, utt.audio, utt.text, verdict.duration, utt.speaker, utt.language, utt.start, utt.end))
    if not kept:
        raise DataError(f"{source}: no usable utterances left (skipped: {dict(rejections.skipped)})")
    return kept


def _report(skipped: Counter, where: str) -> None:
    if skipped:
        log.warning("skipped %d utterance(s)%s: %s", sum(skipped.values()), where, dict(skipped))


@dataclass(frozen=True)
class TokenLimit:
    """A model's rule for one utterance: its transcript's length in the model's tokens, the most that the
    audio allows (at least this many when within it: exact when over), what sets that maximum (said in
    the error), and whether an utterance over it is refused (nothing learns from it) or accepted with a
    warning (part of the model still learns from it)."""

    tokens: int
    maximum: int
    why: str
    refused: bool = True


@dataclass
class ValidatedData:
    """The splits of a data config after validation, and what was skipped (test sets' reasons as `test/<reason>`)."""

    train: list[Utterance] = field(default_factory=list)
    valid: list[Utterance] = field(default_factory=list)
    test: dict[str, list[Utterance]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)

    def keep_languages(self, known: Callable[[str], bool], default: str, on_error: str) -> None:
        """Drop (or refuse) utterances whose language has no token in the model; needs the model."""

        def problem(utt: Utterance, split: str, training: bool) -> str | None:
            language = utt.language or default
            return (
                None
                if known(language)
                else (f"utterance {utt.id} ({split}): language {language!r} has no token <{language}> in the model's token list")
            )

        self._keep(problem, "unknown_language", on_error)

    def keep_within_token_limits(
        self, limit: Callable[[str, str | None, float], TokenLimit], on_error: str, *, fastest_speed: float = 1.0
    ) -> None:
        """Drop (or refuse) utterances whose transcript the model cannot learn from with their audio
        (`limit`, the model's rule); training audio is counted at `fastest_speed`. Those over a limit
        that the model tolerates are kept, and said in one warning line per split."""
        tolerated: dict[str, list[str]] = {}

        def problem(utt: Utterance, split: str, training: bool) -> str | None:
            seconds = utt.duration / (fastest_speed if training else 1.0)
            bound = limit(utt.text, utt.language, seconds)
            if bound.tokens <= bound.maximum:
                return None
            message = (
                f"utterance {utt.id} ({split}, {utt.audio}): its transcript is {bound.tokens} tokens, over the "
                f"{bound.maximum} that {seconds:.2f} s of audio allow ({bound.why})"
            )
            if bound.refused:
                return message
            tolerated.setdefault(split, []).append(f"{utt.id}: {bound.tokens} tokens for {bound.maximum}")
            return None

        self._keep(problem, "too_many_tokens", on_error)
        for split, examples in tolerated.items():
            log.warning(
                "%s: %d utterance(s) have more tokens than CTC can align to their audio (%s%s); their CTC "
                "loss is zero and only the attention decoder learns from them",
                split,
                len(examples),
                "; ".join(examples[:3]),
                "; ..." if len(examples) > 3 else "",
            )

    def keep_test_apart_from_train(self, normalizer: Callable[[str], str], on_error: str) -> None:
        """Refuse (or skip) test utterances that training sees: a training utterance's id, or its audio
        (the same bytes and segment) with the same transcript."""
        ids = {utt.id for utt in self.train}
        digests: dict[str, str | None] = {}

        def content(utt: Utterance) -> tuple:
            path = str(utt.audio)
            if path not in digests:
                digests[path] = content_digest(path)
            return digests[path], utt.start, utt.end, normalizer(utt.text)

        heard = {content(utt) for utt in self.train}

        def problem(utt: Utterance, split: str, training: bool) -> str | None:
            if split in ("data.train", "data.valid"):
                return None
            if utt.id in ids:
                return (
                    f"utterance {utt.id} ({split}) has the id of a data.train utterance; ids must differ between "
                    "training and test (decodes and records are keyed by them)"
                )
            if content(utt) in heard:
                return (
                    f"utterance {utt.id} ({split}, {utt.audio}): its audio and transcript are also in data.train; "
                    "a test utterance seen in training measures nothing"
                )
            return None

        self._keep(problem, "in_train", on_error)

    def _keep(self, problem: Callable[[Utterance, str, bool], str | None], reason: str, on_error: str) -> None:
        for name, utterances, prefix in self._splits():
            if not utterances:
                continue  # a split this caller did not read
            rejections = Rejections(on_error)
            kept = []
            for utt in utterances:
                message = problem(utt, name, name == "data.train")
                if message is None:
                    kept.append(utt)
                else:
                    rejections.reject(reason, message)
            if not kept:
                raise DataError(f"{name}: no usable utterances left (skipped: {dict(rejections.skipped)})")
            utterances[:] = kept
            self.skipped.update({prefix + why: count for why, count in rejections.skipped.items()})
            _report(rejections.skipped, f" of {name}")

    def _splits(self):
        yield from (("data.train", self.train, ""), ("data.valid", self.valid, ""))
        yield from ((f"test set {name}", utterances, "test/") for name, utterances in self.test.items())


def validate_data(
    data_cfg: Mapping[str, Any],
    *,
    normalizer: Callable[[str], str],
    cache_dir: str | Path | None,
    splits: Sequence[str] = ("train", "valid", "test"),
) -> ValidatedData:
    """Read and validate the data config's manifests (`train`, `valid`, every `test` set) up front."""
    on_error = data_cfg.get("on_error", "raise")
    cache = AudioCheckCache(Path(cache_dir) / "audio_checks.sqlite" if cache_dir is not None else None)
    result = ValidatedData()
    try:
        for split in splits:
            manifests = dict(data_cfg.get("test") or {}) if split == "test" else {split: data_cfg.get(split)}
            for name, path in manifests.items():
                if not path:
                    raise ConfigError(f"data.{split} is not set (a JSONL manifest or a Kaldi data directory)")
                rejections = Rejections(on_error)
                utterances = _validated(
                    load_utterances(path, skipped=rejections.line_counter),
                    rejections,
                    max_duration=data_cfg.get("max_duration"),
                    resample=data_cfg.get("resample", True),
                    normalizer=normalizer,
                    cache=cache,
                    source=str(path),
                )
                prefix = "test/" if split == "test" else ""
                result.skipped.update({prefix + reason: count for reason, count in rejections.skipped.items()})
                _report(rejections.skipped, f" of {path}")
                if split == "test":
                    result.test[name] = utterances
                else:
                    setattr(result, split, utterances)
    finally:
        cache.close()
    if result.train and result.test:
        result.keep_test_apart_from_train(normalizer, on_error)
    return result
