"""What a short run prints: each line once, no advertisement or known-harmless dependency noise, and a
closing summary that says what was tested, how long it took and how much of the model trained."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import ROOT
from test_train_e2e import FAST

# Everything a short run may print (progress bars off, as when they are not wanted): the seed, ESPnet's
# vocabulary, the frozen model's score, the trainable count, Lightning's device lines and stop reason,
# the adapted score, then the summary (configuration, results, parameters, tested checkpoint, time, one
# line per test set).
EXPECTED_LINES = 14


def test_a_short_run_prints_each_line_once_and_nothing_it_knows_to_be_noise(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}  # warnings must show
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            *FAST,
            "method=ssvd",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "ASR_PEFT_ROOT": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    messages = [re.sub(r"^\[[^]]*\]\[[^]]*\]\[[A-Z]+\] - ", "", line) for line in lines]
    assert len(messages) == len(set(messages)), "a line printed twice:\n" + "\n".join(lines)
    for noise in ("litlogger", "FLOPs", "Gradient checkpoint layers", "Warning", "deprecated", "INFO: "):
        assert not any(noise in line for line in lines), f"{noise!r} in:\n" + "\n".join(lines)
    assert len(lines) == EXPECTED_LINES, "\n".join(lines)

    record = json.loads((run_dir / "results.json").read_text())
    share = 100 * record["parameters"]["trainable"] / record["parameters"]["total"]
    assert record["tested_step"] in (2, 4) and record["tested_checkpoint"].endswith("best.ckpt")
    trainable, total = record["parameters"]["trainable"], record["parameters"]["total"]
    assert f"trainable parameters: {trainable:,} of {total:,} ({share:.2f}% of the model)" in result.stdout
    assert f"tested checkpoint: {record['tested_checkpoint']} (step {record['tested_step']} of 4, validation WER" in result.stdout
    assert re.search(r"^time: training \d+( min \d+)? s, \d+( min \d+)? s in all", result.stdout, re.M)
    assert "\nconfiguration: ssvd p=0.4  (manifest, owsm_tiny, seed 0)\n" in result.stdout
