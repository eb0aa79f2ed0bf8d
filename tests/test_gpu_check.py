"""`make gpu-check`'s script in its CPU smoke mode: the same code path as on a GPU, with the tiny model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_check_smoke_mode_runs_and_reports_every_measurement(tmp_path):
    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (written,) = tmp_path.glob("*-smoke.json")
    report = json.loads(written.read_text())
    assert report["smoke"] and report["device"].startswith("cpu")
    model, whisper = report["models"]
    assert whisper["model"].startswith("whisper_tiny_en")
    for checked in (model, whisper):
        assert set(checked["methods"]) == {"lora r=32", "ssvd p=0.4"}
        for values in checked["methods"].values():
            assert values["ok"] and len(values["losses"]) == 2 and all(math.isfinite(x) for x in values["losses"])
            assert values["step_mb"] >= 0 and values["seconds"] > 0  # resident memory on a CPU: coarse
            assert values["merged_vs_unmerged"]["fp32"] < 1e-4  # merging changes nothing but round-off
        assert checked["methods"]["lora r=32"]["step_vs_lora"] == 1.0
    assert model["svd_setup_s"]["layers"] > 0 and model["svd_setup_s"]["full spectrum"] > 0
    assert model["beam"]["seconds_per_utterance"] > 0
    assert "ssvd p=0.4" in result.stdout and "beam search" in result.stdout  # the printed table
