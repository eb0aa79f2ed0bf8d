"""MyST children's speech (LDC2021S05) into train/dev/test JSONL manifests.

Layout of the release (`<corpus>` may also be the directory holding `myst_child_conv_speech/`):

    <corpus>/data/{train,development,test}/<student_id>/<session_id>/<utterance>.flac
                                                                     <utterance>.trn   (its transcript)

Splits keep the corpus's own partition (development -> dev.jsonl). Texts are normalised with the
`myst` normaliser (ESPnet's recipe, local/text_preprocess.py: markup and noise tags removed, digits
spelled out, punctuation dropped, upper case; fillers kept). An utterance is dropped, counted under the
first rule it fails, in this order:

    no_transcript      audio without a .trn
    no_audio           a .trn without audio
    not_in_keep_list   test utterance absent from --keep-list (the papers' filtered test set)
    empty_transcript   nothing left after normalisation (markup and noise only)
    too_few_words      fewer than --min-words words (3, as in the Whisper-on-MyST papers)
    unreadable_audio   the FLAC header cannot be read (listed in summary.json; an error with --strict)
    too_long           longer than --max-duration seconds (30; from the header, nothing is decoded)

With --keep-list (the recipe's `conf/file_list/test.list`, its Whisper-filtered `test_filter`: 10,328
utterances, 184,823 words) the test set is the listed utterances themselves: the list was made with
its own word and duration rules, so --min-words and --max-duration do not drop any of them again.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from asr_peft.data.audio import audio_info
from asr_peft.data.manifest import Utterance
from asr_peft.data.normalizers import myst
from asr_peft.data.prepare.common import Skips, check_outputs_free, check_positive, read_id_list, write_outputs
from asr_peft.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train", "dev": "development", "test": "test"}
RELEASE_DIR = "myst_child_conv_speech"  # the top directory of the LDC release
LANGUAGE = "eng"


def find_data_dir(corpus_dir: Path) -> Path:
    for candidate in (corpus_dir / "data", corpus_dir / RELEASE_DIR / "data"):
        if candidate.is_dir():
            break
    else:
        raise DataError(
            f"MyST corpus directory {corpus_dir / 'data'} does not exist "
            f"(expected data/{{train,development,test}}/<student>/<session>/*.flac)"
        )
    for split_dir in SPLIT_DIRS.values():
        if not (candidate / split_dir).is_dir():
            raise DataError(f"MyST split directory {candidate / split_dir} does not exist")
    return candidate


def read_transcript(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # a few transcripts were saved by Windows editors


def files_by_stem(split_dir: Path, suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(split_dir.rglob(f"*{suffix}")):
        if path.stem in found:
            raise DataError(f"utterance id {path.stem} occurs twice: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def prepare_split(
    split_dir: Path,
    audio: dict[str, Path],
    transcripts: dict[str, Path],
    *,
    keep: set[str] | None,
    max_duration: float,
    min_words: int,
    skips: Skips,
) -> tuple[list[Utterance], Counter]:
    utterances: list[Utterance] = []
    dropped: Counter = Counter()
    for utt_id in sorted(audio.keys() | transcripts.keys()):
        if utt_id not in transcripts:
            dropped["no_transcript"] += 1
            continue
        if utt_id not in audio:
            dropped["no_audio"] += 1
            continue
        if keep is not None and utt_id not in keep:
            dropped["not_in_keep_list"] += 1
            continue
        text = myst(read_transcript(transcripts[utt_id]))
        if not text:
            dropped["empty_transcript"] += 1
            continue
        listed = keep is not None  # a keep list already applied its own limits
        if len(text.split()) < min_words and not listed:
            dropped["too_few_words"] += 1
            continue
        try:
            duration = audio_info(audio[utt_id]).duration
        except DataError as err:
            skips.record(err, "unreadable_audio", dropped)
            continue
        if duration > max_duration and not listed:
            dropped["too_long"] += 1
            continue
        speaker = audio[utt_id].relative_to(split_dir).parts[0]  # <student_id>/<session_id>/<file>
        utterances.append(Utterance(utt_id, audio[utt_id].absolute(), text, round(duration, 4), speaker, LANGUAGE))
    return utterances, dropped


def prepare_myst(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    keep_list: str | Path | None = None,
    max_duration: float = 30.0,
    min_words: int = 3,
    strict: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write train/dev/test.jsonl and summary.json into `out_dir`; return the summary."""
    corpus_dir, out_dir = Path(corpus_dir).expanduser(), Path(out_dir).expanduser()
    check_positive(max_duration, "--max-duration")
    if min_words < 0:
        raise ConfigError(f"--min-words must be 0 or more, got {min_words}")
    check_outputs_free(out_dir, overwrite)
    data_dir = find_data_dir(corpus_dir)
    keep = set(read_id_list(keep_list, "--keep-list")) if keep_list is not None else None

    skips = Skips(strict)
    manifests, dropped, paired_ids = {}, {}, {}
    for split, split_dir in SPLIT_DIRS.items():
        log.info("reading %s", data_dir / split_dir)
        audio, transcripts = files_by_stem(data_dir / split_dir, ".flac"), files_by_stem(data_dir / split_dir, ".trn")
        manifests[split], dropped[split] = prepare_split(
            data_dir / split_dir,
            audio,
            transcripts,
            keep=keep if split == "test" else None,
            max_duration=max_duration,
            min_words=min_words,
            skips=skips,
        )
        paired_ids[split] = audio.keys() & transcripts.keys()

    summary = {
        "corpus": "myst",
        "corpus_dir": str(corpus_dir.absolute()),
        "options": {
            "keep_list": str(keep_list) if keep_list is not None else None,
            "max_duration": max_duration,
            "min_words": min_words,
            "strict": strict,
        },
        "skipped": skips.entries,
    }
    if keep is not None:
        missing = keep - paired_ids["test"]
        summary["keep_list"] = {"listed": len(keep), "kept": len(manifests["test"]), "not_in_corpus": len(missing)}
        if missing:
            log.warning("%d id(s) of %s have no audio and transcript in the test set", len(missing), keep_list)
    return write_outputs(out_dir, manifests, dropped, summary)
