"""results.json: never overwritten when completed, failed ones kept aside; evaluation directory names."""

from __future__ import annotations

import json

import pytest

from asr_peft.cli import overrides_name
from asr_peft.errors import ConfigError
from asr_peft.training.results import claim_run_dir, read_results, write_results


def test_completed_results_are_never_overwritten(tmp_path):
    write_results(tmp_path, {"status": "completed", "metrics": {"t": {"wer": 0.1}}})
    with pytest.raises(ConfigError, match="already records a completed run"):
        claim_run_dir(tmp_path)
    assert read_results(tmp_path)["metrics"] == {"t": {"wer": 0.1}}


def test_failed_results_are_kept_aside_when_the_run_is_tried_again(tmp_path):
    write_results(tmp_path, {"status": "failed", "error": "boom"})
    claim_run_dir(tmp_path)
    assert read_results(tmp_path) is None
    kept = list(tmp_path.glob("results.failed-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["error"] == "boom"


def test_evaluation_names_come_from_the_command_line():
    assert overrides_name("") == "defaults"
    assert overrides_name("adapt.p=0.4,method=ssvd") == "adapt.p=0.4,method=ssvd"
    assert overrides_name("data.corpus_dir=/a b/c") == "data.corpus_dir=_a_b_c"


def test_long_evaluation_names_stay_legal_unique_and_stable():
    overrides = ",".join(f"method.key{i}=value{i}" for i in range(40))
    name = overrides_name(overrides)
    assert len(name) <= 120 and name == overrides_name(overrides) and name != overrides_name(overrides + ",x=1")
    assert name.startswith("method.key0=value0")
