"""bench/run.py's side-by-side training section on the tiny model (its numbers mean nothing here; the code path
is the one `make bench` runs on OWSM-base), and its ratios against hand-computed values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # bench/run.py imports bench/step.py as `step`
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratios_are_medians_of_per_round_ratios_with_their_spread(bench):
    table = bench.ratios_to({"lora": [1.0, 2.0, 2.0], "ssvd": [2.0, 4.0, 6.0]}, "lora")
    assert {k: table["ssvd"][k] for k in ("ratio", "low", "high")} == {"ratio": 2.0, "low": 2.0, "high": 3.0}
    assert table["lora"]["ratio"] == table["lora"]["low"] == table["lora"]["high"] == 1.0


@pytest.mark.slow  # ten models built and trained: half a minute of CPU
def test_every_method_is_timed_in_every_round_in_one_process(bench):
    seconds = bench.training_side_by_side(2, "32-true", model_name="owsm_tiny", seconds=1.0)
    assert list(seconds) == list(bench.METHODS)
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in seconds.values())
