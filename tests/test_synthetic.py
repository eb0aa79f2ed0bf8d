"""The synthetic corpus: deterministic for a seed, domains shifted as documented, splits disjoint."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from asr_peft.data.manifest import load_utterances
from asr_peft.data.synthetic import ensure_corpus
from asr_peft.data.synthetic.corpus import SPLITS, complete_splits, split_names
from asr_peft.errors import DataError
from conftest import compose_config

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make install installs it)")
SCALE = 0.01


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return ensure_corpus(tmp_path_factory.mktemp("synth") / "corpus", seed=3, scale=SCALE, workers=2)


def digest(directory):
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in (".flac", ".jsonl"):
            h.update(path.relative_to(directory).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_corpus(corpus, tmp_path):
    again = ensure_corpus(tmp_path / "again", seed=3, scale=SCALE, workers=1)
    assert digest(again) == digest(corpus)
    other = ensure_corpus(tmp_path / "other", seed=4, scale=SCALE, workers=2)
    assert digest(other) != digest(corpus)


def test_a_split_rendered_alone_is_bit_identical_to_the_same_split_in_a_full_corpus(corpus, tmp_path):
    alone = ensure_corpus(tmp_path / "alone", seed=3, scale=SCALE, workers=1, splits=["child_test"])
    assert complete_splits(alone) == ["child_test"] and [p.name for p in (alone / "audio").iterdir()] == ["child_test"]

    def files(root, split):
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in [root / f"{split}.jsonl", *sorted((root / "audio" / split).iterdir())]
        }

    assert files(alone, "child_test") == files(corpus, "child_test")
    # More splits later, as a data config names them (manifest paths, nested): added, the first left alone.
    stamps = {p: p.stat().st_mtime_ns for p in (alone / "audio" / "child_test").iterdir()}
    ensure_corpus(
        alone,
        seed=3,
        scale=SCALE,
        workers=2,
        splits=[str(alone / "dialect_adapt.jsonl"), {"test": str(alone / "child_test.jsonl")}],
    )
    assert complete_splits(alone) == ["dialect_adapt", "child_test"]
    assert files(alone, "dialect_adapt") == files(corpus, "dialect_adapt")
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert set(json.loads((alone / "card.json").read_text())["splits"]) == {"dialect_adapt", "child_test"}
    with pytest.raises(DataError, match="not a split of the synthetic corpus"):
        ensure_corpus(alone, seed=3, scale=SCALE, splits=[str(tmp_path / "elsewhere" / "child_test.jsonl")])


@pytest.mark.parametrize("data, task", [("synth_child", "child"), ("synth_dialect", "dialect")])
def test_a_task_generates_only_the_splits_it_reads(data, task):
    """Not the 16,500-utterance pretraining split: only `make pretrained-checkpoint` needs that one."""
    from omegaconf import OmegaConf

    prepare = OmegaConf.to_container(compose_config("train", [f"data={data}"]).data.prepare, resolve=True)
    assert split_names(prepare["splits"], Path(prepare["out_dir"])) == [
        f"{task}_adapt",
        f"{task}_dev",
        "source_test",
        "child_test",
        "dialect_test",
    ]


def test_manifests_follow_the_contract(corpus):
    for split in SPLITS:
        utterances = load_utterances(corpus / f"{split}.jsonl")
        assert utterances, split
        for utt in utterances[:5]:
            info = soundfile.info(str(utt.audio))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert abs(info.duration - utt.duration) < 1e-3 and utt.language == "eng" and utt.text == utt.text.lower()
    card = json.loads((corpus / "card.json").read_text())
    assert card["seed"] == 3 and set(card["splits"]) == set(SPLITS) and (corpus / "CARD.md").is_file()


def test_no_training_sentence_in_any_test_or_dev_split(corpus):
    texts = {split: {u.text for u in load_utterances(corpus / f"{split}.jsonl")} for split in SPLITS}
    training = texts["source_train"] | texts["child_adapt"] | texts["dialect_adapt"]
    for split in ("source_test", "child_test", "dialect_test", "source_dev", "child_dev", "dialect_dev"):
        assert not training & texts[split], split
    assert texts["source_test"] == texts["child_test"] == texts["dialect_test"]  # paired test sets


def f0_and_centroid(samples, rate=16000):
    f0 = librosa.yin(samples, fmin=60, fmax=500, sr=rate)
    voiced = librosa.feature.rms(y=samples)[0] > 0.02
    frames = min(len(f0), len(voiced))
    return np.median(f0[:frames][voiced[:frames]]), np.median(librosa.feature.spectral_centroid(y=samples, sr=rate)[0])


@pytest.mark.parametrize("variant", ["m1", "m3", "f2", "f4"])
def test_child_transform_raises_f0_and_formants_as_documented(variant):
    """The same voice and sentence, rendered as source and as child: F0 and spectral centroid move up."""
    from asr_peft.data.synthetic.render import Rendering, render

    text = "the children played a long game in the garden"
    adult = render(Rendering(text, f"en-us+{variant}", pitch=50, rate=170, vtlp=1.0, level_dbfs=-20, snr_db=40, noise_seed=0))
    child = render(Rendering(text, f"en-us+{variant}", pitch=85, rate=190, vtlp=1.3, level_dbfs=-20, snr_db=40, noise_seed=0))
    adult_f0, adult_centroid = f0_and_centroid(adult)
    child_f0, child_centroid = f0_and_centroid(child)
    assert child_f0 >= 1.4 * adult_f0 and child_f0 >= 170
    assert child_centroid >= 1.1 * adult_centroid
    assert len(child) < len(adult)  # resampling-based VTLP also speeds speech up


def test_child_test_set_sits_in_the_child_f0_range(corpus):
    def median_f0(split):
        return np.median(
            [
                f0_and_centroid(soundfile.read(str(u.audio), dtype="float32")[0])[0]
                for u in load_utterances(corpus / f"{split}.jsonl")
            ]
        )

    assert median_f0("child_test") >= 180 and median_f0("child_test") > 1.2 * median_f0("source_test")


def test_ensure_corpus_is_a_no_op_when_present_and_never_clobbers(corpus):
    before = (corpus / "source_test.jsonl").stat().st_mtime_ns
    assert ensure_corpus(corpus, seed=3, scale=SCALE) == corpus
    assert (corpus / "source_test.jsonl").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="different synthetic corpus"):
        ensure_corpus(corpus, seed=99, scale=SCALE)


def test_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not a synthetic corpus"):
        ensure_corpus(tmp_path, seed=0, scale=SCALE)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_without_the_command_libespeak_ng_speaks_the_same_reproducibly(monkeypatch):
    from asr_peft.data.synthetic import espeak
    from asr_peft.data.synthetic.render import trim_silence

    text, voice = "she sells sea shells by the sea shore", "en-gb-scotland+f2"
    command, command_rate = espeak.synthesise_with_command(text, voice, 60, 150)
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)  # a machine without the command
    library, library_rate = espeak.synthesise(text, voice, 60, 150)
    # Spoken in a fresh fork each time, so earlier utterances leave no trace in the samples.
    espeak.synthesise(text, "en-us+m3", 30, 190)
    assert np.array_equal(espeak.synthesise(text, voice, 60, 150)[0], library)
    assert library_rate == command_rate
    spoken, reference = trim_silence(library), trim_silence(command)
    assert abs(len(spoken) - len(reference)) < 0.15 * len(reference)
    common = min(len(spoken), len(reference))
    assert np.corrcoef(spoken[:common], reference[:common])[0, 1] > 0.99
    with pytest.raises(DataError, match="no voice"):
        espeak.synthesise(text, "xx-nonexistent", 50, 150)


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], [s for s in SPLITS if s != "source_train"]),  # both tasks; the pretraining split only on demand
        (["--splits", "all"], None),
        (["--splits", "child_test", "child_dev"], ["child_test", "child_dev"]),
    ],
)
def test_the_command_line_generates_the_tasks_splits_unless_told(argv, expected, monkeypatch, tmp_path):
    from asr_peft.data.synthetic import __main__ as command

    asked = {}
    monkeypatch.setattr(command, "ensure_corpus", lambda out, **kwargs: asked.update(kwargs) or out)
    monkeypatch.setattr("sys.argv", ["synthetic", "--out", str(tmp_path), *argv])
    command.main()
    assert asked["splits"] == expected


@pytest.mark.parametrize("domain", ["child", "dialect"])
def test_adaptation_dev_and_test_voices_of_a_target_domain_are_disjoint(corpus, domain):
    """Voice = everything that identifies a speaker: no speaker id, espeak variant, or (voice, pitch,
    vocal-tract factor) draw is shared between the domain's adaptation, dev and test splits, in the
    manifests or in the data card; a speaker keeps one voice, pitch and factor in every utterance."""
    from asr_peft.data.synthetic.corpus import plan

    card = json.loads((corpus / "card.json").read_text())["splits"]
    renderings = plan(3, SCALE)
    roles = [f"{domain}_adapt", f"{domain}_dev", f"{domain}_test"]
    manifest_speakers = {split: {u.speaker for u in load_utterances(corpus / f"{split}.jsonl")} for split in roles}
    for split in roles:
        assert manifest_speakers[split] <= set(card[split]["speakers"]), split
        by_speaker = {}
        for spec in renderings[split]:
            by_speaker.setdefault(spec.speaker, set()).add((spec.voice, spec.pitch, spec.vtlp))
        assert all(len(identities) == 1 for identities in by_speaker.values()), split
    for i, first in enumerate(roles):
        for second in roles[i + 1 :]:
            assert not set(card[first]["speakers"]) & set(card[second]["speakers"])
            assert not set(card[first]["voice_variants"]) & set(card[second]["voice_variants"]), (first, second)
            identities = [{(s.voice, s.pitch, s.vtlp) for s in renderings[split]} for split in (first, second)]
            assert not identities[0] & identities[1]
    # The source test set speaks with the pretraining population's voices (forgetting, not new voices).
    assert set(card["source_test"]["voice_variants"]) <= set(card["source_train"]["voice_variants"])
