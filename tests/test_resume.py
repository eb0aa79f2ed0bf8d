"""Resuming: an interrupted run, resumed from `last.ckpt`, ends exactly where an uninterrupted one does.

A short deterministic CPU run (owsm_tiny, 4 batches per epoch, SpecAugment on, speed perturbation on:
torch's, numpy's and Python's generators all matter) is interrupted mid-epoch, once by SIGTERM between
validations and once by a crash right after a validation's checkpoint, then resumed with the same
command; its validation history, test scores and trained weights must equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import json
import os
import signal

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from test_train_e2e import run_in_process

STEPS = 10
COMMON = ["method=ssvd", "data=manifest", "trainer.max_steps=10", "trainer.val_check_interval=3", "loader.max_batch_size=1",
          "data.speed_perturb=[0.9,1.0,1.1]", "evaluation.baseline=false", "evaluation.subspace=false"]


class InterruptAt(Callback):
    """Stops a run at a global step: `sigterm` (the signal a scheduler sends) or `crash` (an exception)."""

    def __init__(self, step: int, how: str):
        self.step, self.how = step, how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.how == "sigterm" and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.how == "crash" and trainer.global_step == self.step:
            raise RuntimeError(f"crash before step {self.step + 1}")


def logged_training_steps(metrics_csv):
    with metrics_csv.open(newline="") as rows:
        return [int(row["step"]) for row in csv.DictReader(rows) if row["train_loss"]]


def trained_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_corpus_factory):
    corpus = tiny_corpus_factory(tmp_path_factory.mktemp("corpus"))
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    return corpus, run_dir, run_in_process([*COMMON, f"data.corpus_dir={corpus}"], run_dir)


@pytest.mark.parametrize("how, step, last_step", [("sigterm", 5, 5), pytest.param("crash", 6, 6, marks=pytest.mark.slow)])
def test_a_resumed_run_equals_an_uninterrupted_one(uninterrupted, tmp_path, how, step, last_step):
    corpus, reference_dir, reference = uninterrupted
    run_dir = tmp_path / "run"
    args = [*COMMON, f"data.corpus_dir={corpus}"]
    interrupt = f"+callbacks.interrupt={{_target_:test_resume.InterruptAt,step:{step},how:{how}}}"
    if how == "sigterm":
        with pytest.raises(SystemExit) as stopped:
            run_in_process([*args, interrupt], run_dir)
        assert stopped.value.code == 128 + signal.SIGTERM
    else:
        with pytest.raises(RuntimeError, match="crash"):
            run_in_process([*args, interrupt], run_dir)
    interrupted = json.loads((run_dir / "results.json").read_text())
    assert interrupted["status"] == "failed" and ("SIGTERM" in interrupted["error"]) == (how == "sigterm")
    assert trained_state(run_dir)["global_step"] == last_step  # last.ckpt is the latest state, not the best one

    resumed = run_in_process(args, run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == STEPS
    assert resumed["validation_history"] == reference["validation_history"]
    assert [h["step"] for h in resumed["validation_history"]] == [3, 6, 9]
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["tested_checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    earlier = list((run_dir / "csv").glob("metrics.earlier-*.csv"))  # Lightning's CSVLogger deletes metrics.csv
    assert len(earlier) == 1, "the interrupted attempt's logged metrics were not kept"
    before, after = logged_training_steps(earlier[0]), logged_training_steps(run_dir / "csv" / "metrics.csv")
    assert before == list(range(last_step)) and before + after == list(range(STEPS))  # the whole curve, once
    mine, theirs = trained_state(run_dir), trained_state(reference_dir)
    assert mine["global_step"] == theirs["global_step"] == STEPS  # saved at the end of training too
    assert mine["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(mine["state_dict"][key], value), key
