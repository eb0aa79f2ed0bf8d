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
import shutil
import signal

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from test_train_e2e import run_in_process

STEPS = 10
COMMON = [
    "method=ssvd",
    "data=manifest",
    "trainer.max_steps=10",
    "trainer.val_check_interval=3",
    "loader.max_batch_size=1",
    "data.speed_perturb=[0.9,1.0,1.1]",
    "evaluation.baseline=false",
    "evaluation.subspace=false",
]


class InterruptAt(Callback):
    """Stops a run at a global step: `sigterm` (the signal a scheduler sends) or `crash` (an exception)."""

    def __init__(self, step: int, how: str):
        self.step, self.how = step, how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.how in ("sigterm", "sigint") and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM if self.how == "sigterm" else signal.SIGINT)

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


def test_a_cached_baseline_changes_nothing_that_training_draws(tiny_corpus, tmp_path, caplog):
    """The first run of a sweep scores the frozen model, the others read its scores from the cache (and
    the audio checks and SVDs too): both train bitwise the same tensors (issue 28, case 2). A cache file
    cut short is scored again and written whole (case 9: it crashed every later run)."""
    args = [
        *COMMON,
        "model=owsm_tiny_pretrained",
        "evaluation.baseline=true",
        "trainer.max_steps=4",
        f"data.corpus_dir={tiny_corpus}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    cold = run_in_process(args, tmp_path / "cold")
    assert len(list((tmp_path / "cache" / "baselines").glob("*.json"))) == 1
    warm = run_in_process(args, tmp_path / "warm")
    [cache] = (tmp_path / "cache" / "baselines").glob("*.json")
    scores = cache.read_text()
    cache.write_text(scores[: len(scores) // 2])
    # Killed after its baseline was cached, before its first checkpoint (step 3): the rerun starts afresh.
    with pytest.raises(RuntimeError, match="crash"):
        run_in_process([*args, "+callbacks.interrupt={_target_:test_resume.InterruptAt,step:2,how:crash}"], tmp_path / "killed")
    assert not (tmp_path / "killed" / "checkpoints").exists()
    assert json.loads(cache.read_text()) == json.loads(scores)
    assert [r.getMessage().split(" (")[0] for r in caplog.records if "baseline cache" in r.getMessage()] == [
        f"baseline cache {cache} is unreadable"
    ]
    rerun = run_in_process(args, tmp_path / "killed")
    first = trained_state(tmp_path / "cold")
    assert first["global_step"] == 4
    for other, record in ((tmp_path / "warm", warm), (tmp_path / "killed", rerun)):
        assert record["baseline_metrics"] == cold["baseline_metrics"] and record["metrics"] == cold["metrics"]
        second = trained_state(other)
        assert second["global_step"] == 4 and second["state_dict"].keys() == first["state_dict"].keys()
        for key, value in first["state_dict"].items():
            assert torch.equal(second["state_dict"][key], value), (other.name, key)


def save_checkpoint_like(path, step):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"model.w": torch.full((2,), float(step))}, "global_step": step}, path)
    return path


def test_a_resume_starts_from_the_newest_checkpoint_that_loads(tmp_path, caplog):
    from asr_peft.training.resume import resumable_checkpoint

    checkpoints = tmp_path / "checkpoints"
    last = save_checkpoint_like(checkpoints / "last.ckpt", 6)
    assert resumable_checkpoint(last) == last and caplog.records == []
    older, newer = save_checkpoint_like(checkpoints / "best.ckpt", 3), save_checkpoint_like(checkpoints / "best-v1.ckpt", 5)
    last.write_bytes(last.read_bytes()[:300])  # torn, as a full disk left it
    assert resumable_checkpoint(last) == newer
    for unusable in (older, newer):
        unusable.write_bytes(b"")
    assert resumable_checkpoint(last) is None
    torch.save([1, 2], last)  # a file that loads but is no checkpoint
    assert resumable_checkpoint(last) is None
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and lines[0].startswith(f"cannot read checkpoint {last}: ")
    assert lines[0].endswith(f"; resuming from {newer} (step 5) instead") and lines[1].endswith("; starting afresh instead")
    assert lines[2] == (
        f"{last} is not a training checkpoint (a dictionary with a state_dict of tensors; it holds list); starting afresh instead"
    )
    assert not any("weights_only" in line for line in lines)


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_the_rerun_resumes(
    uninterrupted, tmp_path, monkeypatch
):
    """The disk fills while `last.ckpt` of step 6 is written: the run fails in one line naming the file,
    `last.ckpt` is still step 3's, whole, no temporary file is left, and once there is space again the
    same command resumes and ends where the uninterrupted run does (issue 28, case 3)."""
    import errno

    import asr_peft.training.trainer as trainer_module
    from asr_peft.files import UnwritableError, write_atomically

    corpus, reference_dir, reference = uninterrupted
    run_dir = tmp_path / "run"
    args = [*COMMON, f"data.corpus_dir={corpus}"]
    lasts = []

    def half_then_full(file):
        file.write(b"\0" * 327_680)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def disk_full_on_the_second_last_checkpoint(path, write):
        if path.endswith("last.ckpt"):
            lasts.append(path)
            if len(lasts) == 2:
                write = half_then_full
        return write_atomically(path, write)

    monkeypatch.setattr(trainer_module, "write_atomically", disk_full_on_the_second_last_checkpoint)
    last = run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(UnwritableError) as full:
        run_in_process(args, run_dir)
    assert str(full.value) == f"cannot write {last}: No space left on device"
    assert trained_state(run_dir)["global_step"] == 3
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == f"UnwritableError: {full.value}"
    monkeypatch.undo()

    resumed = run_in_process(args, run_dir)
    assert resumed["resumed_from"] == str(last) and resumed["global_step"] == STEPS
    assert resumed["validation_history"] == reference["validation_history"] and resumed["metrics"] == reference["metrics"]
    mine, theirs = trained_state(run_dir), trained_state(reference_dir)
    for key, value in theirs["state_dict"].items():
        assert torch.equal(mine["state_dict"][key], value), key


@pytest.mark.slow
def test_a_torn_last_checkpoint_resumes_from_the_newest_one_that_loads(uninterrupted, tmp_path, caplog):
    """Issue 28, case 3: a `last.ckpt` torn on a full disk (by earlier versions, which wrote it in place) made
    every rerun crash; the rerun now says so in one line and resumes from the best checkpoint, ending where
    the uninterrupted run does."""
    corpus, reference_dir, reference = uninterrupted
    run_dir = tmp_path / "run"
    args = [*COMMON, f"data.corpus_dir={corpus}"]
    with pytest.raises(SystemExit):
        run_in_process([*args, "+callbacks.interrupt={_target_:test_resume.InterruptAt,step:8,how:sigterm}"], run_dir)
    last, best = run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt"
    best_step = torch.load(best, map_location="cpu", weights_only=True)["global_step"]
    whole = last.read_bytes()
    last.write_bytes(whole[: len(whole) // 2])
    caplog.clear()
    resumed = run_in_process(args, run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == str(best) and best_step in (3, 6)
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("cannot read checkpoint")]
    assert line.startswith(f"cannot read checkpoint {last}: ")
    assert line.endswith(f"; resuming from {best} (step {best_step}) instead")
    assert resumed["global_step"] == STEPS and resumed["metrics"] == reference["metrics"]
    assert sorted(path.name for path in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]  # no last-v1.ckpt
    mine, theirs = trained_state(run_dir), trained_state(reference_dir)  # last.ckpt rewritten whole
    for key, value in theirs["state_dict"].items():
        assert torch.equal(mine["state_dict"][key], value), key


EARLY_STOPPED = ["callbacks.early_stopping.patience=1", "+callbacks.early_stopping.min_delta=10"]  # stops at step 6


@pytest.fixture(scope="module")
def early_stopped(tmp_path_factory, tiny_corpus_factory):
    """A run that early stopping ends at its second validation (no WER improves by 10), 4 updates before its cap."""
    corpus = tiny_corpus_factory(tmp_path_factory.mktemp("corpus"))
    run_dir = tmp_path_factory.mktemp("early_stopped") / "run"
    record = run_in_process([*COMMON, *EARLY_STOPPED, f"data.corpus_dir={corpus}"], run_dir)
    assert record["global_step"] == 6 and [h["step"] for h in record["validation_history"]] == [3, 6]
    return corpus, run_dir, record


def test_an_early_stopped_run_killed_while_scoring_is_scored_again_not_trained_on(early_stopped, tmp_path, monkeypatch):
    """Lightning does not keep `should_stop`: the rerun of a run killed after early stopping (while its test
    sets were scored) trained on to step 9 and tested another checkpoint. It now only scores again."""
    import asr_peft.training.run as run_module

    corpus, _, reference = early_stopped
    args = [*COMMON, *EARLY_STOPPED, f"data.corpus_dir={corpus}"]
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(run_module, "score_test_sets", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            run_in_process(args, run_dir)
    resumed = run_in_process(args, run_dir)
    assert resumed["status"] == "completed" and resumed["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 6 and resumed["validation_history"] == reference["validation_history"]
    assert resumed["metrics"] == reference["metrics"] and resumed["trained_in"] is None


def test_checkpoints_copied_into_another_run_directory_are_scored_there_and_say_where_they_were_trained(early_stopped, tmp_path):
    """An LR search's run at the chosen rate trains what the comparison's run of the same seed trains; the
    driver copies its checkpoints instead of training again. The copy is what is tested, not the original
    that Lightning's restored state names, and the record says where the training ran."""
    corpus, reference_dir, reference = early_stopped
    run_dir = tmp_path / "scored"
    shutil.copytree(reference_dir / "checkpoints", run_dir / "checkpoints")
    scored = run_in_process(
        [*COMMON, *EARLY_STOPPED, f"data.corpus_dir={corpus}", "evaluation.secondary_decodes=[ctc_greedy]"], run_dir
    )
    assert scored["status"] == "completed" and scored["global_step"] == 6 and scored["tested_step"] == reference["tested_step"]
    assert scored["tested_checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    assert scored["trained_in"] == str(reference_dir / "checkpoints")
    assert scored["validation_history"] == reference["validation_history"]
    assert scored["metrics"]["test"]["wer"] == reference["metrics"]["test"]["wer"]
    assert "ctc_greedy" in scored["metrics"]["test"]["secondary"]


class PoisonBatch(Callback):
    """Makes the batch of one step NaN (as a file of NaN samples would) and remembers its utterances."""

    def __init__(self, step: int):
        self.step, self.utterances = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and self.utterances is None:  # once: a skipped batch makes no step
            batch["speech"].fill_(float("nan"))
            self.utterances = list(batch["utt_id"])
            PoisonBatch.last = self


@pytest.mark.parametrize("action", ["stop", "skip"])
def test_a_nonfinite_training_loss_stops_the_run_at_its_step_or_skips_the_batch(tiny_corpus, tmp_path, caplog, action):
    """Issue 28, case 4: training went on with train_loss=nan, saved NaN checkpoints and crashed in scipy."""
    from asr_peft.training.nonfinite import NonFiniteLoss

    args = [
        *COMMON,
        f"data.corpus_dir={tiny_corpus}",
        "trainer.max_steps=4",
        f"on_nonfinite_loss={action}",
        "+callbacks.poison={_target_:test_resume.PoisonBatch,step:2}",
    ]
    run_dir = tmp_path / "run"
    if action == "stop":
        with pytest.raises(NonFiniteLoss) as stopped:
            run_in_process(args, run_dir)
        utterances = ", ".join(PoisonBatch.last.utterances)
        assert str(stopped.value) == (
            f"training loss is nan at step 2, on the batch of utterance(s) {utterances}: the run stops before the update "
            "(the checkpoints hold the last validated state); check those utterances' audio and transcripts, or set "
            "on_nonfinite_loss=skip to leave such batches out"
        )
        record = json.loads((run_dir / "results.json").read_text())
        assert record["status"] == "failed" and record["error"] == f"NonFiniteLoss: {stopped.value}"
        assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # no validation came before step 2
        return
    record = run_in_process(args, run_dir)
    utterances = ", ".join(PoisonBatch.last.utterances)
    assert record["status"] == "completed" and record["global_step"] == 4  # the skipped batch made no step
    assert [r.getMessage() for r in caplog.records if r.name == "asr_peft.training.nonfinite"] == [
        f"training loss is nan at step 2, on the batch of utterance(s) {utterances}: batch skipped (on_nonfinite_loss=skip)"
    ]
    assert all(torch.isfinite(value).all() for value in trained_state(run_dir)["state_dict"].values())


@pytest.mark.parametrize("when", ["validating", pytest.param("training", marks=pytest.mark.slow)])
def test_ctrl_c_is_recorded_and_exits_with_130(tiny_corpus, tmp_path, monkeypatch, caplog, when):
    """Issue 28, case 11: Ctrl-C exited 1 with the record `SystemExit: 1` (Lightning's exit after its own
    shutdown), or with a KeyboardInterrupt traceback while the data were being checked."""
    import asr_peft.training.run as run_module

    args = [*COMMON, f"data.corpus_dir={tiny_corpus}", "trainer.max_steps=4"]
    if when == "validating":

        def pressed(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(run_module, "validate_data", pressed)
    else:
        args.append("+callbacks.interrupt={_target_:test_resume.InterruptAt,step:2,how:sigint}")
    with pytest.raises(SystemExit) as stopped:
        run_in_process(args, tmp_path / "run")
    assert stopped.value.code == 128 + signal.SIGINT
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    line = "interrupted (Ctrl-C); the same command resumes the run from checkpoints/last.ckpt"
    assert record["status"] == "failed" and record["error"] == line
    assert [r.getMessage() for r in caplog.records if r.name == "asr_peft.training.run" and r.levelname == "ERROR"] == [line]
