"""The synthetic corpus: deterministic for a seed, domains shifted as documented, splits disjoint."""

from __future__ import annotations

import hashlib
import json
import shutil

import librosa
import numpy as np
import pytest
import soundfile

from asr_peft.data.manifest import load_utterances
from asr_peft.data.synthetic import ensure_corpus
from asr_peft.data.synthetic.corpus import SPLITS
from asr_peft.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (make install installs it)")
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


def median_f0_and_centroid(manifest):
    f0s, centroids = [], []
    for utt in load_utterances(manifest):
        samples, rate = soundfile.read(str(utt.audio), dtype="float32")
        f0 = librosa.yin(samples, fmin=60, fmax=500, sr=rate)
        voiced = librosa.feature.rms(y=samples)[0] > 0.02
        f0s.append(np.median(f0[: len(voiced)][voiced[: len(f0)]]))
        centroids.append(np.median(librosa.feature.spectral_centroid(y=samples, sr=rate)[0]))
    return np.median(f0s), np.median(centroids)


def test_child_speech_is_shifted_as_documented(corpus):
    source_f0, source_centroid = median_f0_and_centroid(corpus / "source_test.jsonl")
    child_f0, child_centroid = median_f0_and_centroid(corpus / "child_test.jsonl")
    assert 85 <= source_f0 <= 200          # adult range
    assert child_f0 >= 1.5 * source_f0     # raised F0 x formant scaling: children's 220-300 Hz region
    assert child_centroid >= 1.1 * source_centroid   # formants moved up by the vocal-tract scaling


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
