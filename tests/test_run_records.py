"""results.json and the run directory: never overwritten when completed, failed and killed runs kept aside,
one configuration and one process per directory; evaluation directory names."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest
from omegaconf import OmegaConf

from asr_peft.cli import overrides_name
from asr_peft.errors import ConfigError
from asr_peft.training.results import claim_run_dir, git_commit, read_results, write_results

CONFIG = OmegaConf.create(
    {
        "method": {"name": "ssvd"},
        "adapt": {"p": 0.4},
        "paths": {"root_dir": "/here"},
        "logger": {"csv": {"save_dir": "${paths.root_dir}"}},
    }
)


def test_a_completed_run_is_returned_by_the_claim_and_never_overwritten(tmp_path):
    claim_run_dir(tmp_path, CONFIG).release()  # the first run: its config is the directory's
    write_results(tmp_path, {"status": "completed", "metrics": {"t": {"wer": 0.1}}})
    claim = claim_run_dir(tmp_path, CONFIG)
    claim.release()
    assert claim.completed["metrics"] == {"t": {"wer": 0.1}}
    assert read_results(tmp_path)["metrics"] == {"t": {"wer": 0.1}}


def test_failed_results_are_kept_aside_when_the_run_is_tried_again(tmp_path):
    write_results(tmp_path, {"status": "failed", "error": "boom"})
    claim_run_dir(tmp_path, CONFIG).release()
    assert read_results(tmp_path) is None
    kept = list(tmp_path.glob("results.failed-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["error"] == "boom"


def test_a_run_directory_belongs_to_one_configuration(tmp_path):
    claim_run_dir(tmp_path, CONFIG).release()
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml") == CONFIG  # written by the claim, unresolved
    write_results(tmp_path, {"status": "completed"})
    other = OmegaConf.merge(CONFIG, {"method": {"name": "lora"}})
    with pytest.raises(ConfigError) as refused:
        claim_run_dir(tmp_path, other)
    assert str(refused.value) == (
        f"{tmp_path} holds a run of another configuration (method.name=ssvd there, lora here); "
        "pick another hydra.run.dir or delete that directory"
    )
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml") == CONFIG and read_results(tmp_path)["status"] == "completed"
    # Machine-local paths and the keys that do not name a run (training/naming.py) are not the configuration.
    moved = OmegaConf.merge(CONFIG, {"paths": {"root_dir": "/elsewhere"}, "logger": {"csv": {"save_dir": "/x"}}})
    claim = claim_run_dir(tmp_path, moved)
    claim.release()
    assert claim.completed == {"status": "completed"}


def _hold(run_dir, ready, release):
    claim = claim_run_dir(run_dir, CONFIG)
    ready.set()
    release.wait(60)
    claim.release()


def test_concurrent_claims_are_excluded_by_a_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ConfigError, match=f"is in use by pid {holder.pid} on "):
            claim_run_dir(tmp_path, CONFIG)
        assert read_results(tmp_path) is None  # the refused claim wrote nothing
    finally:
        release.set()
        holder.join(60)
    claim_run_dir(tmp_path, CONFIG).release()  # free again once the holder is done


def _run_then_die(run_dir):
    claim_run_dir(run_dir, CONFIG)
    write_results(run_dir, {"status": "running", "pid": os.getpid()})
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_run_reads_as_killed_and_is_kept_aside_by_the_next_start(tmp_path):
    process = multiprocessing.get_context("fork").Process(target=_run_then_die, args=(tmp_path,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    record = read_results(tmp_path)
    assert record["status"] == "killed" and "SIGKILL" in record["error"]
    claim_run_dir(tmp_path, CONFIG).release()
    kept = list(tmp_path.glob("results.killed-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "killed"
    assert read_results(tmp_path) is None


def test_a_live_run_reads_as_running(tmp_path):
    claim = claim_run_dir(tmp_path, CONFIG)
    write_results(tmp_path, {"status": "running"})
    try:
        assert read_results(tmp_path)["status"] == "running"
    finally:
        claim.release()


def test_evaluation_names_come_from_the_command_line():
    assert overrides_name("") == "defaults"
    assert overrides_name("adapt.p=0.4,method=ssvd") == "adapt.p=0.4,method=ssvd"
    assert overrides_name("data.corpus_dir=/a b/c") == "data.corpus_dir=_a_b_c"


def test_long_evaluation_names_stay_legal_unique_and_stable():
    overrides = ",".join(f"method.key{i}=value{i}" for i in range(40))
    name = overrides_name(overrides)
    assert len(name) <= 120 and name == overrides_name(overrides) and name != overrides_name(overrides + ",x=1")
    assert name.startswith("method.key0=value0")


def test_without_hydra_dir_the_record_still_says_whose_directory_it_is(tmp_path):
    """Issue 28, case 6: after `rm -r <run>/.hydra` (what `rsync --exclude='.*'` leaves) a run of another
    configuration printed this directory's results as its own."""
    import shutil

    claim_run_dir(tmp_path, CONFIG).release()
    write_results(tmp_path, {"status": "completed", "config": OmegaConf.to_container(CONFIG, resolve=True)})
    shutil.rmtree(tmp_path / ".hydra")
    with pytest.raises(ConfigError) as refused:
        claim_run_dir(tmp_path, OmegaConf.merge(CONFIG, {"method": {"name": "lora"}}))
    assert str(refused.value) == (
        f"{tmp_path} holds a run of another configuration (method.name=ssvd there, lora here, "
        "as its results.json records); pick another hydra.run.dir or delete that directory"
    )
    assert not (tmp_path / ".hydra").exists() and read_results(tmp_path)["status"] == "completed"
    claim = claim_run_dir(tmp_path, CONFIG)  # the same configuration still finds its completed run
    claim.release()
    assert claim.completed["status"] == "completed"


def plant_link(link, outside):
    outside.write_text("precious\n")
    link.symlink_to(outside)
    return outside


def test_the_run_never_writes_through_a_planted_symbolic_link(tmp_path):
    """Issue 28, case 5: `.run.lock` and `results.json.tmp` planted as links had their targets overwritten."""
    from asr_peft.files import UnwritableError

    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    run_dir.mkdir()
    outside.mkdir()
    lock = plant_link(run_dir / ".run.lock", outside / "lock-target")
    with pytest.raises(UnwritableError) as refused:
        claim_run_dir(run_dir, CONFIG)
    assert str(refused.value) == (
        f"{run_dir / '.run.lock'} is a symbolic link; a run's own files are never written through one (remove the link)"
    )
    assert lock.read_text() == "precious\n" and read_results(run_dir) is None
    (run_dir / ".run.lock").unlink()
    targets = [
        plant_link(run_dir / name, outside / name.replace("/", "_"))
        for name in ("results.json.tmp", "results.json", ".results.json.tmp")
    ]
    (run_dir / ".hydra").mkdir()
    targets.append(plant_link(run_dir / ".hydra" / "config.yaml", outside / "config.yaml"))
    claim = claim_run_dir(run_dir, CONFIG)
    write_results(run_dir, {"status": "completed"})
    claim.release()
    assert [target.read_text() for target in targets] == ["precious\n"] * 4  # nothing outside the run changed
    assert sorted(p.name for p in outside.iterdir()) == sorted([t.name for t in targets] + ["lock-target"])
    assert not (run_dir / "results.json").is_symlink() and read_results(run_dir)["status"] == "completed"
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml") == CONFIG


def test_a_value_written_differently_that_resolves_the_same_is_the_same_configuration(tmp_path):
    """The demo's `optimizer.lr: ${tuned_lr:}` giving the default 0.001 names the default run's directory
    (training/naming.py), so that directory must accept it; a value that resolves differently is refused."""
    plain = OmegaConf.merge(CONFIG, {"optimizer": {"lr": 0.001}, "tuned": {"lr": 0.001, "other": 0.003}})
    claim_run_dir(tmp_path, plain).release()
    write_results(tmp_path, {"status": "completed"})
    same = OmegaConf.merge(plain, {"optimizer": {"lr": "${tuned.lr}"}})
    claim = claim_run_dir(tmp_path, same)
    claim.release()
    assert claim.completed is not None
    other = OmegaConf.merge(plain, {"optimizer": {"lr": "${tuned.other}"}})
    with pytest.raises(ConfigError, match=r"\(optimizer.lr=0.001 there, \$\{tuned.other\} here\)"):
        claim_run_dir(tmp_path, other)


def test_a_commit_is_dirty_for_code_changes_not_for_records_or_prose(tmp_path):
    """A sweep's driver appends finished runs to results/ while the next run trains: that run's code is the commit's."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("src/train.py", "results/lr_search/runs.parquet", "docs/protocol.md", "README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    head = git_commit(tmp_path)
    assert head and not head.endswith("-dirty")
    for path in ("results/lr_search/runs.parquet", "docs/protocol.md", "README.md"):
        (tmp_path / path).write_text("2")
    (tmp_path / "untracked.py").write_text("2")
    assert git_commit(tmp_path) == head
    (tmp_path / "src/train.py").write_text("2")
    assert git_commit(tmp_path) == f"{head}-dirty"
