"""CGN preparation on fake corpus trees in the CGN 2.0 layout, against hand-computed truths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from asr_peft.data.manifest import load_utterances
from asr_peft.data.prepare import prepare_cgn
from asr_peft.data.prepare.__main__ import main
from asr_peft.data.prepare.cgn import parse_textgrid, read_textgrid
from asr_peft.errors import ConfigError, DataError
from conftest import write_tone
from test_train_e2e import run_in_process

Tiers = dict[str, list[tuple[float, float, str]]]


def long_textgrid(tiers: Tiers, xmax: float) -> str:
    """Praat's long text format, as `Save as text file` writes it."""
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {xmax} ",
        "tiers? <exists> ",
        f"size = {len(tiers)} ",
        "item []: ",
    ]
    for number, (name, intervals) in enumerate(tiers.items(), start=1):
        lines += [
            f"    item [{number}]:",
            '        class = "IntervalTier" ',
            f'        name = "{name}" ',
            "        xmin = 0 ",
            f"        xmax = {xmax} ",
            f"        intervals: size = {len(intervals)} ",
        ]
        for index, (start, end, text) in enumerate(intervals, start=1):
            quoted = text.replace('"', '""')
            lines += [
                f"        intervals [{index}]:",
                f"            xmin = {start} ",
                f"            xmax = {end} ",
                f'            text = "{quoted}" ',
            ]
    return "\n".join(lines) + "\n"


def short_textgrid(tiers: Tiers, xmax: float) -> str:
    """Praat's short text format (`ooTextFile short`)."""
    lines = ['File type = "ooTextFile short"', '"TextGrid"', "", "0", str(xmax), "<exists>", str(len(tiers))]
    for name, intervals in tiers.items():
        lines += ['"IntervalTier"', f'"{name}"', "0", str(xmax), str(len(intervals))]
        for start, end, text in intervals:
            lines += [str(start), str(end), f'"{text}"']
    return "\n".join(lines) + "\n"


def recording(
    corpus: Path,
    component: str,
    region: str,
    rec_id: str,
    *,
    seconds: float | None,
    grid: str | bytes | None,
    annotation: str = "ort",
    gz: bool = True,
    encoding: str = "latin-1",
    sample_rate: int = 16000,
) -> None:
    """Write a recording's WAV (a tone; None: none) and its annotation (None: none) where CGN 2.0 keeps them."""
    if seconds is not None:
        write_tone(corpus / f"data/audio/wav/comp-{component}/{region}/{rec_id}.wav", seconds, sample_rate=sample_rate)
    annotation_dir = corpus / f"data/annot/text/{annotation}/comp-{component}/{region}"
    annotation_dir.mkdir(parents=True, exist_ok=True)
    if grid is not None:
        raw = grid if isinstance(grid, bytes) else grid.encode(encoding)
        name = f"{rec_id}.{annotation}" + (".gz" if gz else "")
        (annotation_dir / name).write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("cgn")
    # Two speakers who overlap at 8.0-9.0 s, a laugh-only chunk, and non-speaker tiers.
    recording(
        corpus,
        "o",
        "vl",
        "fv400001",
        seconds=10.0,
        grid=long_textgrid(
            {
                "V40001": [
                    (0, 1.2, ""),
                    (1.2, 3.5, "één café , alstublieft ."),
                    (3.5, 4.0, ""),
                    (4.0, 6.0, "ggg"),
                    (6.0, 9.0, "uh dat is ko*a mooi*v."),
                    (9.0, 10.0, ""),
                ],
                "V40002": [(0, 8.0, ""), (8.0, 9.5, "ja zeker"), (9.5, 10.0, "")],
                "COMMENT": [(0, 10.0, "telefoon rinkelt")],
                "BACKGROUND": [(0, 10.0, "muziek")],
            },
            10.0,
        ),
    )
    # Short format, not compressed, UTF-8; the annotation runs 0.4 s past the end of the audio.
    recording(
        corpus,
        "o",
        "vl",
        "fv400002",
        seconds=6.0,
        gz=False,
        encoding="utf-8",
        grid=short_textgrid(
            {
                "V40003": [
                    (0, 0.5, ""),
                    (0.5, 2.5, "'t is hier Xxx mooi, zo'n reeën"),
                    (2.5, 3.0, ""),
                    (3.0, 6.4, "tot ziens allemaal"),
                ],
            },
            6.4,
        ),
    )
    # V40001 again (ties it to fv400001 in the split) and an unidentified speaker.
    recording(
        corpus,
        "o",
        "vl",
        "fv400003",
        seconds=4.0,
        grid=long_textgrid(
            {
                "V40001": [(0, 2.0, "dag iedereen"), (2.0, 4.0, "")],
                "UNKNOWN": [(0, 2.5, ""), (2.5, 3.5, "dank u"), (3.5, 4.0, "")],
            },
            4.0,
        ),
    )
    recording(
        corpus,
        "o",
        "vl",
        "fv400004",
        seconds=31.0,
        sample_rate=8000,
        grid=long_textgrid({"V40005": [(0, 31.0, "een heel lang verhaal over vroeger")]}, 31.0),
    )
    recording(
        corpus, "k", "vl", "fv600001", seconds=3.0, grid=long_textgrid({"V40004": [(0, 3.0, "het nieuws van vandaag")]}, 3.0)
    )
    # Outside the default selection (component a; region nl).
    recording(corpus, "a", "vl", "fv100001", seconds=2.0, grid=long_textgrid({"V10001": [(0, 2.0, "niet gekozen")]}, 2.0))
    recording(corpus, "o", "nl", "fn000001", seconds=2.0, grid=long_textgrid({"N00001": [(0, 2.0, "ook niet")]}, 2.0))
    # Broken pieces, each a whole recording skipped.
    recording(corpus, "o", "vl", "fv400005", seconds=2.0, grid=None)  # no annotation
    recording(corpus, "o", "vl", "fv400006", seconds=None, grid=long_textgrid({"V1": [(0, 1, "a")]}, 1))  # no audio
    recording(corpus, "o", "vl", "fv400007", seconds=None, grid=long_textgrid({"V1": [(0, 1, "a")]}, 1))
    (corpus / "data/audio/wav/comp-o/vl/fv400007.wav").write_bytes(b"RIFF....not audio")  # unreadable audio
    recording(corpus, "o", "vl", "fv400008", seconds=2.0, grid=long_textgrid({"V1": [(0, 2, "a b")]}, 2)[:200])
    recording(corpus, "o", "vl", "fv400009", seconds=2.0, grid=None)
    (corpus / "data/annot/text/ort/comp-o/vl/fv400009.ort.gz").write_bytes(b"not gzip")
    return corpus


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def id_list(path: Path, *ids: str) -> Path:
    path.write_text("".join(f"{rec}\n" for rec in ids), encoding="utf-8")
    return path


def test_segments_texts_times_and_drops(corpus, tmp_path):
    lists = {"dev": id_list(tmp_path / "dev.list", "fv400002"), "test": id_list(tmp_path / "test.list", "fv600001")}
    summary = prepare_cgn(corpus, tmp_path / "out", split_lists=lists)
    wav = corpus / "data/audio/wav/comp-o/vl"

    def entry(utt_id, audio, text, start, end, speaker):
        return {
            "id": utt_id,
            "audio": str(audio),
            "text": text,
            "duration": round(end - start, 3),
            "speaker": speaker,
            "language": "nld",
            "start": start,
            "end": end,
        }

    assert read_jsonl(tmp_path / "out/train.jsonl") == [
        entry("fv400001-V40001-00002", wav / "fv400001.wav", "één café alstublieft", 1.2, 3.5, "V40001"),
        entry("fv400003-V40001-00001", wav / "fv400003.wav", "dag iedereen", 0.0, 2.0, "V40001"),
        entry("fv400003-fv400003_UNKNOWN-00002", wav / "fv400003.wav", "dank u", 2.5, 3.5, "fv400003_UNKNOWN"),
    ]
    assert read_jsonl(tmp_path / "out/dev.jsonl") == [
        entry("fv400002-V40003-00002", wav / "fv400002.wav", "'t is hier mooi zo'n reeën", 0.5, 2.5, "V40003"),
        entry("fv400002-V40003-00004", wav / "fv400002.wav", "tot ziens allemaal", 3.0, 6.0, "V40003"),  # clamped
    ]
    assert read_jsonl(tmp_path / "out/test.jsonl") == [
        entry(
            "fv600001-V40004-00001",
            corpus / "data/audio/wav/comp-k/vl/fv600001.wav",
            "het nieuws van vandaag",
            0.0,
            3.0,
            "V40004",
        )
    ]

    splits = summary["splits"]
    assert splits["train"] == {
        "manifest": "train.jsonl",
        "utterances": 3,
        "hours": round(5.3 / 3600, 4),
        "speakers": 2,
        "dropped": {"empty_transcript": 1, "overlapping_speech": 2, "too_long": 1},
    }
    assert (splits["dev"]["utterances"], splits["dev"]["dropped"], splits["test"]["speakers"]) == (2, {}, 1)
    assert summary["recordings"] == {"train": ["fv400001", "fv400003", "fv400004"], "dev": ["fv400002"], "test": ["fv600001"]}
    assert summary["skipped_recordings"] == {"malformed_annotation": 2, "no_annotation": 1, "no_audio": 1, "unreadable_audio": 1}
    errors = {entry["reason"]: [] for entry in summary["skipped"]}
    for skipped in summary["skipped"]:
        errors[skipped["reason"]].append(skipped["error"])
    assert "fv400007.wav is unreadable" in errors["unreadable_audio"][0]
    assert "fv400008.ort.gz: malformed TextGrid" in errors["malformed_annotation"][0]
    assert "fv400009.ort.gz: not a readable gzip file" in errors["malformed_annotation"][1]
    assert summary["split_lists"] == {"dev": {"listed": 1, "not_in_selection": 0}, "test": {"listed": 1, "not_in_selection": 0}}
    assert str(corpus / "data/audio/wav/comp-m/vl") in summary["absent_directories"]
    assert summary["speakers_in_several_splits"] == 0
    assert summary["options"]["components"] == ["k", "m", "o"] and summary["options"]["regions"] == ["vl"]

    # Training reads the segments back: start/end inside the recording, audio found.
    dev = load_utterances(tmp_path / "out/dev.jsonl")
    assert [(u.start, u.end, u.duration) for u in dev] == [(0.5, 2.5, 2.0), (3.0, 6.0, 3.0)]
    assert all(u.audio.is_file() and u.language == "nld" for u in dev)


def test_overlap_can_be_kept_and_selection_is_configurable(corpus, tmp_path):
    summary = prepare_cgn(
        corpus,
        tmp_path / "out",
        components="comp-o",
        regions="vl",
        keep_overlap=True,
        split_lists={"train": id_list(tmp_path / "train.list", "fv400001")},
    )
    assert [u.text for u in load_utterances(tmp_path / "out/train.jsonl")] == [
        "één café alstublieft",
        "dat is ko mooi",
        "ja zeker",
    ]
    assert summary["skipped_recordings"]["not_in_split_lists"] == 3  # fv400002-4: a train list names all of train

    summary = prepare_cgn(corpus, tmp_path / "nl", components="o,a", regions="nl", dev_fraction=0, test_fraction=0)
    assert [u.id for u in load_utterances(tmp_path / "nl/train.jsonl")] == ["fn000001-N00001-00001"]
    assert summary["recordings"]["train"] == ["fn000001"]


def write_split_corpus(corpus: Path, speakers: list[str]) -> None:
    """One recording per speaker entry, each with one second of speech (entries may repeat a speaker)."""
    for number, speaker in enumerate(speakers):
        recording(
            corpus,
            "o",
            "vl",
            f"fv5{number:05d}",
            seconds=2.0,
            grid=long_textgrid({speaker: [(0, 0.5, ""), (0.5, 1.5, "een twee drie"), (1.5, 2.0, "")]}, 2.0),
        )


def test_split_is_by_recording_speaker_disjoint_and_seeded(tmp_path):
    speakers = ["V50000", "V50000", "V50002", "V50002", "V50002", *(f"V5{n:04d}" for n in range(5, 12))]
    write_split_corpus(tmp_path / "cgn", speakers)
    assignments = []
    for seed in range(4):
        out = tmp_path / f"seed{seed}"
        summary = prepare_cgn(tmp_path / "cgn", out, dev_fraction=0.25, test_fraction=0.25, seed=seed)
        recordings = summary["recordings"]
        assert sorted(sum(recordings.values(), [])) == [f"fv5{n:05d}" for n in range(12)]  # each exactly once
        split_of = {rec: split for split, recs in recordings.items() for rec in recs}
        assert split_of["fv500000"] == split_of["fv500001"]
        assert split_of["fv500002"] == split_of["fv500003"] == split_of["fv500004"]
        assert summary["speakers_in_several_splits"] == 0
        for split in ("dev", "test"):
            # Groups join while that brings the split nearer to 3 s of the 12 s: 2-4 s, never empty.
            assert 2 <= len(load_utterances(out / f"{split}.jsonl")) <= 4
            assert {u.id.split("-")[0] for u in load_utterances(out / f"{split}.jsonl")} == set(recordings[split])
        assignments.append(split_of)
    assert len({tuple(sorted(a.items())) for a in assignments}) > 1  # the seed matters

    again = prepare_cgn(tmp_path / "cgn", tmp_path / "again", dev_fraction=0.25, test_fraction=0.25, seed=1)
    assert again["recordings"] == json.loads((tmp_path / "seed1/summary.json").read_text())["recordings"]
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "seed1" / name).read_bytes()


def test_one_speaker_everywhere_cannot_be_split_disjointly(tmp_path):
    write_split_corpus(tmp_path / "cgn", ["V50000"] * 4)
    with pytest.raises(DataError, match="no speaker-disjoint group of recordings fits the test split"):
        prepare_cgn(tmp_path / "cgn", tmp_path / "out")


def test_awd_words_are_grouped_at_pauses_and_at_the_length_limit(tmp_path):
    words = [
        (0, 0.5, ""),
        (0.5, 0.8, "de"),
        (0.8, 1.2, "kat"),
        (1.2, 1.3, ""),
        (1.3, 1.7, "zit"),
        (1.7, 2.5, ""),
        (2.5, 3.0, "op"),
        (3.0, 3.4, "de"),
        (3.4, 3.9, "mat."),
        (3.9, 5.0, ""),
    ]
    recording(
        tmp_path / "cgn",
        "o",
        "vl",
        "fv400001",
        seconds=5.0,
        annotation="awd",
        grid=long_textgrid({"V40001": words, "V40001_FON": [(0, 5.0, "d @ k A t")], "V40001_SEG": [(0, 5.0, "d")]}, 5.0),
    )

    def utterances(out: str, *options: str) -> list[tuple]:
        main(
            [
                "cgn",
                str(tmp_path / "cgn"),
                str(tmp_path / out),
                "--annotation",
                "awd",
                "--dev-fraction",
                "0",
                "--test-fraction",
                "0",
                *options,
            ]
        )
        return [(u.id, u.text, u.start, u.end) for u in load_utterances(tmp_path / out / "train.jsonl")]

    assert utterances("default") == [
        ("fv400001-V40001-00002", "de kat zit", 0.5, 1.7),
        ("fv400001-V40001-00007", "op de mat", 2.5, 3.9),
    ]
    assert utterances("short", "--max-duration", "1.0") == [
        ("fv400001-V40001-00002", "de kat", 0.5, 1.2),
        ("fv400001-V40001-00005", "zit", 1.3, 1.7),
        ("fv400001-V40001-00007", "op de", 2.5, 3.4),
        ("fv400001-V40001-00009", "mat", 3.4, 3.9),
    ]
    assert [text for _, text, _, _ in utterances("long_pause", "--split-pause", "1.0")] == ["de kat zit op de mat"]


def test_textgrid_reader_skips_point_tiers_and_reads_quotes(tmp_path):
    text = (
        long_textgrid({"V1": [(0, 1.5, 'hij zei "ja"'), (1.5, 2.0, "")]}, 2.0).replace(  # written as ""ja""
            "size = 1 \n", "size = 2 \n", 1
        )
        + '    item [2]:\n        class = "TextTier"\n        name = "COMMENT"\n        xmin = 0\n'
        "        xmax = 2.0\n        points: size = 1\n        points [1]:\n            number = 0.7\n"
        '            mark = "deur"\n'
    )
    [tier] = parse_textgrid(text, tmp_path / "x.ort")
    assert tier.name == "V1" and [(i.start, i.end, i.text) for i in tier.intervals] == [
        (0.0, 1.5, 'hij zei "ja"'),
        (1.5, 2.0, ""),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "malformed TextGrid (it ends before the file type)"),
        (b'File type = "ooTextFile"\nObject class = "Pitch 1"\n', "malformed TextGrid (the object is not a TextGrid)"),
        (
            long_textgrid({"V1": [(0, 1, "a")]}, 1).rsplit("text", 1)[0].encode(),
            "malformed TextGrid (it ends before the interval text)",
        ),
        (
            long_textgrid({"V1": [(0, 1, "a")]}, 1).replace("intervals: size = 1", "intervals: size = -1").encode(),
            "malformed TextGrid (number of intervals of tier 'V1' is -1.0)",
        ),
    ],
)
def test_malformed_textgrids_give_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "fv000001.ort.gz"
    path.write_bytes(gzip.compress(content))
    with pytest.raises(DataError) as err:
        read_textgrid(path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_strict_stops_at_the_first_unreadable_recording(corpus, tmp_path):
    with pytest.raises(DataError, match="fv400007.wav is unreadable"):
        prepare_cgn(corpus, tmp_path / "out", strict=True)


def test_wrong_layout_and_bad_options_name_the_path_or_option(corpus, tmp_path):
    with pytest.raises(DataError, match=f"CGN directory {tmp_path / 'data/audio/wav'} does not exist"):
        prepare_cgn(tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match=f"CGN directory {corpus / 'data/annot/text/awd'} does not exist"):
        prepare_cgn(corpus, tmp_path / "out", annotation="awd")
    with pytest.raises(DataError, match="no CGN recordings under"):
        prepare_cgn(corpus, tmp_path / "out", components="e", regions="vl")
    with pytest.raises(ConfigError, match="--components: z given; choose from a, b"):
        prepare_cgn(corpus, tmp_path / "out", components="o,z")
    with pytest.raises(ConfigError, match="--dev-fraction \\+ --test-fraction must be below 1"):
        prepare_cgn(corpus, tmp_path / "out", dev_fraction=0.5, test_fraction=0.5)
    twice = id_list(tmp_path / "twice.list", "fv400001")
    with pytest.raises(ConfigError, match="fv400001 is in both --dev-list and --test-list"):
        prepare_cgn(corpus, tmp_path / "out", split_lists={"dev": twice, "test": twice})
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_not_overwritten_without_overwrite(corpus, tmp_path, capsys):
    args = [
        "cgn",
        str(corpus),
        str(tmp_path / "out"),
        "--dev-list",
        str(id_list(tmp_path / "d", "fv400002")),
        "--test-list",
        str(id_list(tmp_path / "t", "fv600001")),
    ]
    main(args)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'out/train.jsonl'} already exists; pass --overwrite to replace it\n")
    assert main([*args, "--overwrite"])["splits"]["train"]["utterances"] == 3


def test_prepared_manifests_train_with_data_cgn(corpus, tmp_path):
    prepare_cgn(
        corpus,
        tmp_path / "cgn",
        split_lists={"dev": id_list(tmp_path / "dev", "fv600001"), "test": id_list(tmp_path / "test", "fv400002")},
    )
    record = run_in_process(
        [
            "method=lora",
            "data=cgn",
            f"data.corpus_dir={tmp_path / 'cgn'}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "evaluation.baseline=false",
        ],
        tmp_path / "run",
    )
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["metrics"]["cgn_test"]["num_utterances"] == 2
