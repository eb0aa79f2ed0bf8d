"""MyST preparation on a fake corpus tree in the release's layout, against hand-computed truths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr_peft.data.manifest import load_utterances
from asr_peft.data.prepare import prepare_myst
from asr_peft.data.prepare.__main__ import main
from asr_peft.errors import DataError
from conftest import ROOT, write_tone
from test_train_e2e import run_in_process

TRAIN_A = "myst_002030_2014-02-28_09-37-56_MX_1.1"  # a session of student 002030
TRAIN_B = "myst_002031_2014-03-01_10-00-00_VB_2.1"
DEV = "myst_002040_2014-03-02_11-00-00_EC_1.2"
TEST = "myst_002050_2014-03-03_12-00-00_SS_3.1"


def utterance(
    corpus: Path, split: str, session: str, number: int, text: str | None, seconds: float | None, sample_rate: int = 16000
) -> str:
    """Write <session>_<number>.flac (a tone; None: no audio) and .trn (None: no transcript); return the id."""
    student = session.split("_")[1]
    utt_id = f"{session}_{number:03d}"
    directory = corpus / "data" / split / student / session
    directory.mkdir(parents=True, exist_ok=True)
    if seconds is not None:
        write_tone(directory / f"{utt_id}.flac", seconds, sample_rate=sample_rate, seed=number)
    if text is not None:
        (directory / f"{utt_id}.trn").write_text(text + "\n", encoding="utf-8")
    return utt_id


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("myst")
    utterance(corpus, "train", TRAIN_A, 1, "um the frog has 3 legs (()) <no_signal>", 1.5)
    utterance(corpus, "train", TRAIN_A, 2, "yes [NOISE]", 1.0)  # too few words
    utterance(corpus, "train", TRAIN_A, 3, "<no_signal> (( ))", 1.0)  # empty
    utterance(corpus, "train", TRAIN_A, 4, "this one goes on for far too long", 30.5, sample_rate=8000)
    utterance(corpus, "train", TRAIN_A, 5, None, 1.0)  # audio, no transcript
    utterance(corpus, "train", TRAIN_A, 6, "a transcript without any audio", None)  # transcript, no audio
    broken = utterance(corpus, "train", TRAIN_A, 7, "the audio file is broken", None)
    (corpus / "data/train/002030" / TRAIN_A / f"{broken}.flac").write_bytes(b"not a flac file at all")
    utterance(corpus, "train", TRAIN_B, 1, "They 're making 25 circuits, uh, right?", 2.0)
    utterance(corpus, "development", DEV, 1, "The magnet sticks to iron.", 1.0)
    utterance(corpus, "test", TEST, 1, "it goes around in a circle", 1.0)
    utterance(corpus, "test", TEST, 2, "the bulb lights up now", 1.25)
    utterance(corpus, "test", TEST, 3, "we need 2 batteries", 1.0)
    return corpus


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_manifests_hold_normalised_texts_and_every_drop_is_counted(corpus, tmp_path):
    summary = prepare_myst(corpus, tmp_path / "out")
    session_a = corpus / "data/train/002030" / TRAIN_A
    train = read_jsonl(tmp_path / "out/train.jsonl")
    assert train == [
        {
            "id": f"{TRAIN_A}_001",
            "audio": str(session_a / f"{TRAIN_A}_001.flac"),
            "text": "UM THE FROG HAS THREE LEGS",
            "duration": 1.5,
            "speaker": "002030",
            "language": "eng",
        },
        {
            "id": f"{TRAIN_B}_001",
            "audio": str(corpus / "data/train/002031" / TRAIN_B / f"{TRAIN_B}_001.flac"),
            "text": "THEY 'RE MAKING TWENTYFIVE CIRCUITS UH RIGHT",
            "duration": 2.0,
            "speaker": "002031",
            "language": "eng",
        },
    ]
    assert [u["text"] for u in read_jsonl(tmp_path / "out/dev.jsonl")] == ["THE MAGNET STICKS TO IRON"]
    assert [u["text"] for u in read_jsonl(tmp_path / "out/test.jsonl")] == [
        "IT GOES AROUND IN A CIRCLE",
        "THE BULB LIGHTS UP NOW",
        "WE NEED TWO BATTERIES",
    ]

    assert summary == json.loads((tmp_path / "out/summary.json").read_text(encoding="utf-8"))
    assert summary["splits"]["train"] == {
        "manifest": "train.jsonl",
        "utterances": 2,
        "hours": round(3.5 / 3600, 4),
        "speakers": 2,
        "dropped": {
            "empty_transcript": 1,
            "no_audio": 1,
            "no_transcript": 1,
            "too_few_words": 1,
            "too_long": 1,
            "unreadable_audio": 1,
        },
    }
    assert summary["splits"]["test"]["utterances"] == 3 and summary["splits"]["test"]["dropped"] == {}
    [skipped] = summary["skipped"]
    assert skipped["reason"] == "unreadable_audio" and f"{TRAIN_A}_007.flac" in skipped["error"]
    assert summary["options"] == {"keep_list": None, "max_duration": 30.0, "min_words": 3, "strict": False}

    # What training reads back: the same utterances, audio found, durations from the headers.
    first, second = load_utterances(tmp_path / "out/train.jsonl")
    assert first.audio.is_file() and (first.duration, first.speaker, first.language) == (1.5, "002030", "eng")
    assert second.text == "THEY 'RE MAKING TWENTYFIVE CIRCUITS UH RIGHT"
    assert len(load_utterances(tmp_path / "out/test.jsonl")) == 3


def test_keep_list_restricts_only_the_test_set(corpus, tmp_path):
    keep = tmp_path / "test.list"
    keep.write_text(f"{TEST}_001\n\n{TEST}_003\nmyst_999999_not_in_the_corpus_001\n", encoding="utf-8")
    # The listed test set is kept whole ("WE NEED TWO BATTERIES" has 4 words); the other splits get the limit.
    summary = prepare_myst(corpus, tmp_path / "out", keep_list=keep, min_words=5)
    assert [u.id for u in load_utterances(tmp_path / "out/test.jsonl")] == [f"{TEST}_001", f"{TEST}_003"]
    assert summary["splits"]["test"]["dropped"] == {"not_in_keep_list": 1}
    assert summary["keep_list"] == {"listed": 3, "kept": 2, "not_in_corpus": 1}
    assert summary["splits"]["train"]["utterances"] == 2 and summary["splits"]["dev"]["utterances"] == 1


def test_options_change_the_word_and_duration_limits(corpus, tmp_path):
    summary = prepare_myst(corpus, tmp_path / "out", min_words=1, max_duration=1.2)
    train = summary["splits"]["train"]
    # "YES" now passes the word rule; the 1.5 s, 2 s and 30.5 s utterances fail the duration rule.
    assert train["utterances"] == 1 and train["dropped"]["too_long"] == 3 and "too_few_words" not in train["dropped"]
    assert [u.text for u in load_utterances(tmp_path / "out/train.jsonl")] == ["YES"]


def test_strict_stops_at_the_unreadable_file(corpus, tmp_path):
    with pytest.raises(DataError) as err:
        prepare_myst(corpus, tmp_path / "out", strict=True)
    assert f"{TRAIN_A}_007.flac is unreadable" in str(err.value) and "\n" not in str(err.value)


def test_existing_outputs_are_not_overwritten_without_overwrite(corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dev.jsonl").write_text("", encoding="utf-8")  # an empty file holds nothing to lose
    prepare_myst(corpus, out)
    (out / "train.jsonl").write_text('{"id": "mine"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"{out / 'train.jsonl'} already exists; pass --overwrite"):
        prepare_myst(corpus, out)
    assert (out / "train.jsonl").read_text(encoding="utf-8") == '{"id": "mine"}\n'
    prepare_myst(corpus, out, overwrite=True)
    assert len(load_utterances(out / "train.jsonl")) == 2
    assert not list(out.glob(".*.tmp"))  # no temporary file left beside the outputs


def test_wrong_layout_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match=f"MyST corpus directory {tmp_path / 'data'} does not exist"):
        prepare_myst(tmp_path, tmp_path / "out")
    (tmp_path / "data/train").mkdir(parents=True)
    (tmp_path / "data/test").mkdir()
    with pytest.raises(DataError, match=f"MyST split directory {tmp_path / 'data/development'} does not exist"):
        prepare_myst(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_release_directory_itself_may_be_given(corpus, tmp_path):
    release = tmp_path / "LDC2021S05"
    release.mkdir()
    os.symlink(corpus, release / "myst_child_conv_speech")
    assert prepare_myst(release, tmp_path / "out")["splits"]["dev"]["utterances"] == 1


def test_command_line(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "asr_peft.data.prepare", "myst", str(corpus), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"{out / 'train.jsonl'}: 2 utterances" in run.stdout
    assert len(load_utterances(out / "test.jsonl")) == 3

    with pytest.raises(SystemExit) as exit_info:
        main(["myst", str(corpus), str(out)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {out / 'train.jsonl'} already exists; pass --overwrite to replace it\n"


def test_prepared_manifests_train_with_data_myst(corpus, tmp_path):
    prepare_myst(corpus, tmp_path / "myst")
    sclite = bool(shutil.which("sclite") or shutil.which("sctk"))  # scored with sclite too where it is installed
    record = run_in_process(
        [
            "method=ssvd",
            "data=myst",
            f"data.corpus_dir={tmp_path / 'myst'}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "evaluation.baseline=false",
            f"evaluation.sclite={sclite}",
        ],
        tmp_path / "run",
    )
    assert record["status"] == "completed" and record["global_step"] == 2
    metrics = record["metrics"]["myst_test"]
    assert metrics["num_utterances"] == 3
    if sclite:
        assert metrics["sclite"]["wer"] == pytest.approx(metrics["wer"])
        assert metrics["sclite"]["num_words"] == metrics["num_words"]
