"""Manifest and Kaldi readers, audio reading, validation and batching on hand-written fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_peft.data.audio import change_speed, read_audio
from asr_peft.data.dataset import Collate, SpeechDataset
from asr_peft.data.manifest import Utterance, load_utterances
from asr_peft.data.sampler import DurationBucketSampler, duration_buckets
from asr_peft.data.validation import validate_utterances
from asr_peft.errors import ConfigError, DataError
from conftest import write_tone


def test_jsonl_manifest_resolves_relative_audio_and_optional_fields(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        '{"id": "u1", "audio": "a/u1.wav", "text": "hello there", "duration": 1.5, "speaker": "s1", "language": "eng"}\n'
        "\n"
        '{"id": "u2", "audio": "/abs/u2.flac", "text": "bye", "start": 0.5, "end": 1.0}\n',
        encoding="utf-8",
    )
    first, second = load_utterances(tmp_path / "m.jsonl")
    assert first == Utterance("u1", tmp_path / "a/u1.wav", "hello there", 1.5, "s1", "eng")
    assert second.audio == Path("/abs/u2.flac") and (second.start, second.end) == (0.5, 1.0)


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"id": "u1", "text": "x"}', "m.jsonl:1: missing field(s) audio"),
        ('{"id": "u1", "audio": "a.wav", "text": "x"}\n{"id": "u1", "audio": "b.wav", "text": "y"}', "duplicate utterance id u1"),
        ("not json", "m.jsonl:1: not valid JSON"),
        ('{"id": "u1", "audio": "a.wav", "text": "x", "duration": "long"}', "field duration is not a number"),
    ],
)
def test_bad_manifest_lines_give_one_line_errors_naming_the_file(tmp_path, content, expected):
    (tmp_path / "m.jsonl").write_text(content + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_utterances(tmp_path / "m.jsonl")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.jsonl does not exist"):
        load_utterances(tmp_path / "nowhere.jsonl")


def test_kaldi_dir_with_and_without_segments(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "wav.scp").write_text("u1 /data/u1.wav\nu2 rel/u2.wav\n")
    (plain / "text").write_text("u1 HELLO WORLD\nu2 GOOD  MORNING\n")
    (plain / "utt2spk").write_text("u1 spkA\nu2 spkB\n")
    u1, u2 = load_utterances(plain)
    assert (u1.id, u1.audio, u1.text, u1.speaker) == ("u1", Path("/data/u1.wav"), "HELLO WORLD", "spkA")
    assert u2.audio == plain / "rel/u2.wav" and u2.text == "GOOD  MORNING"

    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "wav.scp").write_text("rec1 /data/rec1.wav\n")
    (seg / "segments").write_text("u1 rec1 0.00 1.25\nu2 rec1 1.25 3.00\n")
    (seg / "text").write_text("u1 first part\nu2 second part\n")
    u1, u2 = load_utterances(seg)
    assert (u1.audio, u1.start, u1.end, u1.duration) == (Path("/data/rec1.wav"), 0.0, 1.25, 1.25)
    assert (u2.start, u2.end) == (1.25, 3.0)


def test_kaldi_dir_errors(tmp_path):
    (tmp_path / "text").write_text("u1 hi\n")
    with pytest.raises(DataError, match="has no wav.scp"):
        load_utterances(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 sox in.wav -t wav - |\n")
    with pytest.raises(DataError, match="pipe command"):
        load_utterances(tmp_path)
    (tmp_path / "wav.scp").write_text("u9 /x.wav\n")
    with pytest.raises(DataError, match="no entry for utterance u1"):
        load_utterances(tmp_path)


def test_read_audio_resamples_downmixes_and_cuts_segments(tmp_path):
    t = np.arange(8000 * 2) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 100 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    soundfile.write(str(tmp_path / "s.wav"), stereo, 8000)
    samples = read_audio(tmp_path / "s.wav")
    assert samples.dtype == np.float32 and samples.shape == (32000,)
    # Mono down-mix halves the amplitude of a one-sided stereo tone.
    assert abs(np.abs(samples[1000:-1000]).max() - 0.5) < 0.02
    segment = read_audio(tmp_path / "s.wav", start=0.5, end=1.0)
    assert segment.shape == (8000,)
    with pytest.raises(DataError, match="expected 16000 Hz"):
        read_audio(tmp_path / "s.wav", resample=False)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_divides_duration_and_multiplies_frequency(factor):
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    changed = change_speed(tone, factor)
    assert abs(len(changed) - 16000 / factor) <= 1
    spectrum = np.abs(np.fft.rfft(changed * np.hanning(len(changed))))
    peak_hz = np.argmax(spectrum) * 16000 / len(changed)
    assert peak_hz == pytest.approx(440 * factor, abs=2.0)
    assert change_speed(tone, 1.0) is tone


class SpeechOnly:
    """Stands in for a model's preprocessor: the waveform as it is, no text targets."""

    def __call__(self, utt_id, speech, transcript, language):
        return {"speech": speech}


def test_speed_perturbed_dataset_batches_by_its_slowest_factor_and_draws_every_factor(tmp_path):
    tone = write_tone(tmp_path / "t.wav", 1.0)
    dataset = SpeechDataset([Utterance("a", tone, "x", 1.0)], SpeechOnly(), speed_factors=[0.8, 1.0, 1.25])
    assert dataset.durations == [pytest.approx(1.25)]
    assert {len(dataset[0]["speech"]) for _ in range(60)} == {20000, 16000, 12800}


def test_a_model_that_pads_makes_every_utterance_cost_its_fixed_length(tmp_path):
    tone = write_tone(tmp_path / "t.wav", 1.0)
    utterances = [Utterance("a", tone, "x", 1.0), Utterance("b", tone, "y", 12.0)]
    dataset = SpeechDataset(utterances, SpeechOnly(), input_seconds=30, speed_factors=[0.9, 1.1])
    assert dataset.durations == [30.0, 30.0]
    # 60 s of padded audio per batch is two utterances, not sixty 1-s ones.
    assert DurationBucketSampler([30.0] * 7, max_batch_seconds=60.0, shuffle=False).batches == [[0, 1], [2, 3], [4, 5], [6]]


def test_validation_raises_or_counts_every_bad_input(tmp_path):
    good = write_tone(tmp_path / "good.wav", 1.0)
    long = write_tone(tmp_path / "long.wav", 3.0)
    low = write_tone(tmp_path / "low.wav", 1.0, sample_rate=4000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really audio")
    utterances = [
        Utterance("ok", good, "fine"),
        Utterance("empty", good, "   "),
        Utterance("missing", tmp_path / "gone.wav", "x"),
        Utterance("broken", tmp_path / "broken.wav", "x"),
        Utterance("long", long, "x"),
        Utterance("low", low, "x"),
    ]
    kept, skipped = validate_utterances(utterances, max_duration=2.0, on_error="skip")
    assert [u.id for u in kept] == ["ok"] and kept[0].duration == pytest.approx(1.0)
    assert dict(skipped) == {
        "empty_transcript": 1,
        "missing_audio": 1,
        "unreadable_audio": 1,
        "too_long": 1,
        "bad_sample_rate": 1,
    }
    expectations = {
        "empty": "empty transcript",
        "missing": "gone.wav does not exist",
        "broken": "broken.wav is unreadable",
        "long": "over data.max_duration=2.0",
        "low": "low.wav is 4000 Hz",
    }
    for utt in utterances[1:]:
        with pytest.raises(DataError) as err:
            validate_utterances([utt], max_duration=2.0, on_error="raise")
        assert expectations[utt.id] in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="data.on_error"):
        validate_utterances(utterances, max_duration=2.0, on_error="ignore")


def test_duration_buckets_hand_computed():
    durations = [1.0, 5.0, 2.0, 2.5, 9.0, 1.5]
    # Sorted: 1.0(0) 1.5(5) 2.0(2) 2.5(3) 5.0(1) 9.0(4); padded cost = longest x count <= 6 s.
    assert duration_buckets(durations, 6.0) == [[0, 5, 2], [3], [1], [4]]
    assert duration_buckets(durations, 100.0, max_batch_size=2) == [[0, 5], [2, 3], [1, 4]]


def test_sampler_shards_batches_evenly_across_ranks():
    durations = [float(i % 7 + 1) for i in range(23)]
    ranks = [list(DurationBucketSampler(durations, max_batch_seconds=8.0, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    everything = sorted(i for batch in ranks[0] + ranks[1] for i in batch)
    assert set(everything) == set(range(23))
    one = DurationBucketSampler(durations, max_batch_seconds=8.0, seed=3)
    first = list(one)
    one.set_epoch(1)
    assert first != list(one) and sorted(map(tuple, first)) == sorted(map(tuple, list(one)))


@pytest.mark.parametrize("world_size", [1, 2])
def test_a_resumed_sampler_goes_on_with_the_batches_its_epoch_had_left(world_size):
    durations = [float(i % 7 + 1) for i in range(23)]
    for rank in range(world_size):
        full = DurationBucketSampler(durations, max_batch_seconds=8.0, seed=3, rank=rank, world_size=world_size)
        full.set_epoch(2)
        expected = list(full)
        resumed = DurationBucketSampler(durations, max_batch_seconds=8.0, seed=3, rank=rank, world_size=world_size)
        resumed.resume(epoch=2, batches_done=3)
        resumed.set_epoch(2)  # what the epoch's start does
        assert list(resumed) == expected[3:]
        assert list(resumed) == expected  # only the first pass over that epoch is shortened
        resumed.resume(epoch=2, batches_done=3)
        resumed.set_epoch(3)  # the saved epoch had ended: the next one is whole
        full.set_epoch(3)
        assert list(resumed) == list(full)


def test_every_training_epoch_tells_the_sampler_its_number():
    from types import SimpleNamespace

    from asr_peft.training.datamodule import SamplerEpochs

    sampler = DurationBucketSampler([1.0, 2.0, 3.0], max_batch_seconds=1.0)
    trainer = SimpleNamespace(train_dataloader=SimpleNamespace(batch_sampler=sampler), current_epoch=4)
    SamplerEpochs().on_train_epoch_start(trainer, None)
    assert sampler.epoch == 4


def test_collate_pads_speech_with_zeros_and_tokens_with_ignore_id(tiny_bundle):
    items = [
        {
            "utt_id": "a",
            "transcript": "x",
            "language": "eng",
            "speech": np.ones(3, np.float32),
            "text": np.array([5, 6]),
            "text_prev": np.array([2]),
            "text_ctc": np.array([6]),
        },
        {
            "utt_id": "b",
            "transcript": "y",
            "language": "nld",
            "speech": np.ones(5, np.float32),
            "text": np.array([7]),
            "text_prev": np.array([2]),
            "text_ctc": np.array([7, 8, 9]),
        },
    ]
    batch = Collate(tiny_bundle.collate)(items)
    assert batch["speech"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["text"].tolist() == [[5, 6], [7, -1]] and batch["text_ctc_lengths"].tolist() == [1, 3]
    assert batch["utt_id"] == ["a", "b"] and batch["language"] == ["eng", "nld"]
