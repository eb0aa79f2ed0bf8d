"""report.py checks every record before using it (issue 28, case 10): a hand-edited results.json had
crashed it with a 44-line pandas traceback naming no file, and NaN, "12%", -0.5 WERs and infinite
parameter counts were averaged or dropped without a word."""

from __future__ import annotations

import json

import pytest

from asr_peft.evaluation.trn import write_trn
from asr_peft.reporting.aggregate import collect

REFERENCES = ["a cat sat", "the dog ran"]
HYPOTHESES = ["a cat sat", "the dog"]  # 1 error in 6 words


def good_record() -> dict:
    return {
        "status": "completed",
        "seed": 0,
        "model": {"name": "owsm_tiny"},
        "data": {"name": "manifest"},
        "method": {"name": "lora", "r": 4},
        "adapt": {"p": 0.4},
        "parameters": {"trainable": 10, "total": 100},
        "metrics": {"test": {"wer": 1 / 6, "cer": 0.1, "num_utterances": 2}},
        "baseline_metrics": None,
    }


def scored(wer, utterances=2) -> dict:
    return {"test": {"wer": wer, "num_utterances": utterances}}


RATE = "metrics.test.wer must be a finite number >= 0, not"
CASES = [
    ("seed", {"a": 1}, "seed must be an integer, not dict {'a': 1}"),
    ("model", {"name": ["x"]}, "model.name must be a string, not list ['x']"),
    ("metrics", scored(float("nan")), f"{RATE} float nan"),
    ("metrics", scored("12%"), f"{RATE} str '12%'"),
    ("metrics", scored(-0.5), f"{RATE} float -0.5"),
    ("parameters", {"trainable": 10, "total": float("inf")}, "parameters.total must be a whole number >= 0, not float inf"),
    ("parameters", {"trainable": 10, "total": 5}, "parameters.trainable=10 exceeds parameters.total=5"),
    ("metrics", scored(1 / 6, 3), "metrics.test.num_utterances=3 but its decodes ({run}/decode/test/ref.trn) hold 2"),
    ("metrics", scored(3.25), "metrics.test.wer=3.25 but its decodes ({run}/decode/test/hyp.trn) give 0.166667"),
]


@pytest.mark.parametrize("key, value, line", CASES, ids=[f"{key}-{i}" for i, (key, _, _) in enumerate(CASES)])
def test_a_bad_record_is_named_in_one_line_and_left_out_of_every_table(tmp_path, key, value, line):
    runs = {}
    for name, record in (("good", good_record()), ("bad", {**good_record(), key: value})):
        run = tmp_path / name
        (run / "decode" / "test").mkdir(parents=True)
        write_trn(run / "decode" / "test" / "ref.trn", ["u1", "u2"], REFERENCES)
        write_trn(run / "decode" / "test" / "hyp.trn", ["u1", "u2"], HYPOTHESES)
        (run / "results.json").write_text(json.dumps(record))
        runs[name] = run
    collection = collect([tmp_path])
    assert [run.directory for run in collection.runs] == [runs["good"]]
    expected = line.replace("{run}", str(runs["bad"]))
    assert collection.unreadable == [f"{runs['bad'] / 'results.json'}: {expected}"]
