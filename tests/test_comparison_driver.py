"""scripts/comparison.py: the protocol's stages as single runs, skipped once the committed tables hold
them, and an LR search that extends a configuration's rates past the edge its best rate sits at."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT
from test_tuned_lr import LORA_R4, trial


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("comparison_driver", ROOT / "scripts" / "comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["comparison_driver"] = module
    spec.loader.exec_module(module)
    return module


def test_a_stage_is_its_sweep_files_grid(driver):
    runs = driver.grid("lr_search")
    assert len(runs) == 2 * 23 * 2 * 3  # domains x configurations x seeds x rates
    assert runs[0] == {"data": "synth_child", "+point": "ssvd_p0.4", "seed": "0", "optimizer.lr": "0.0003"}
    rates = {
        point: [r["optimizer.lr"] for r in runs if r["+point"] == point and r["seed"] == "1"][:3]
        for point in ("lora_r4", "vera_r256")
    }
    assert rates == {"lora_r4": ["0.0003", "0.001", "0.003"], "vera_r256": ["0.01", "0.03", "0.1"]}  # sweeps/point_rates.yaml
    assert driver.run_name(runs[0]) == "data=synth_child,point=ssvd_p0.4,seed=0,optimizer.lr=0.0003"
    assert len(driver.grid("comparison")) == 5 * 2 * 23 and len(driver.grid("scale")) == 5 * 2 * 6
    assert len(driver.grid("lr_search_scale")) == 2 * 6 * 2 * 3


@pytest.mark.parametrize("lr, direction, expected", [(1e-2, 1, 3e-2), (3e-2, 1, 0.1), (3e-4, -1, 1e-4), (1e-4, -1, 3e-5)])
def test_the_next_half_decade(driver, lr, direction, expected):
    assert driver.half_decade(lr, direction) == pytest.approx(expected)


def test_a_run_the_tables_hold_is_not_trained_again(driver, monkeypatch, tmp_path):
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    monkeypatch.setattr(
        driver, "table_runs", lambda directory: {"data=x,seed=0"} if directory == tmp_path / "results" / "s" else set()
    )
    monkeypatch.setattr(driver, "run_child", lambda *a, **k: pytest.fail("trained again"))
    assert driver.train("s", {"data": "x", "seed": "0"}, []) == ("done", 0.0)


def test_the_lr_search_extends_past_an_edge_until_the_best_rate_is_inside(driver, monkeypatch):
    """Dev WER falls with the rate up to 3e-2: the grid's best is its highest rate (1e-2), so 3e-2 is tried,
    then 0.1; 0.1 is worse, the best (3e-2) sits inside, and the search stops."""
    wer = {3e-4: 0.6, 1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.3, 3e-2: 0.2, 0.1: 0.35, 0.3: 0.5}
    point = {"data": "synth_child", "+point": "lora_r4"}
    runs = [{**point, "seed": s, "optimizer.lr": f"{lr:g}"} for s in ("0", "1") for lr in (3e-4, 1e-3, 3e-3, 1e-2)]
    records = {
        driver.run_name(r): trial(float(r["optimizer.lr"]), [wer[float(r["optimizer.lr"])]], 0.5, seed=int(r["seed"]))
        for r in runs
    }
    trained = []

    def fake_train(stage, overrides, extra):
        trained.append(overrides["optimizer.lr"])
        records[driver.run_name(overrides)] = trial(
            float(overrides["optimizer.lr"]), [wer[float(overrides["optimizer.lr"])]], 0.5, seed=int(overrides["seed"])
        )
        return "completed", 0.0

    monkeypatch.setattr(driver, "read_records", lambda stage: dict(records))
    monkeypatch.setattr(driver, "train", fake_train)
    assert driver.extend_edges("lr_search", runs, [], driver.Budget(None), extend=3) == 0
    assert trained == ["0.03", "0.03", "0.1", "0.1"]


def test_runs_appended_one_by_one_make_the_tables_written_at_once(tmp_path):
    """A stage's tables grow a run at a time (across sessions); they equal the tables of the same runs
    written together, and a run they hold already is refused."""
    import pandas as pd

    from asr_peft.errors import ConfigError
    from asr_peft.reporting.tables import DECODES_TABLE, RUNS_TABLE, append_run, table_runs, write_tables
    from test_reporting_tables import _sweep

    sweep = _sweep(tmp_path / "sweep") / "decoded"
    write_tables(sweep, tmp_path / "at_once")
    names = sorted(path.parent.relative_to(sweep).as_posix() for path in sweep.glob("*/results.json"))
    for name in names:
        append_run(tmp_path / "grown", sweep / name, name)
    assert table_runs(tmp_path / "grown") == set(names)
    for table, key in ((RUNS_TABLE, ["run"]), (DECODES_TABLE, ["run", "test_set", "utterance"])):
        at_once = pd.read_parquet(tmp_path / "at_once" / table).sort_values(key, ignore_index=True)
        grown = pd.read_parquet(tmp_path / "grown" / table).sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(grown, at_once)
    with pytest.raises(ConfigError, match=f"holds a run named {names[0]} already"):
        append_run(tmp_path / "grown", sweep / names[0], names[0])


def test_a_run_is_one_train_py_command_with_the_extra_overrides(driver, monkeypatch, tmp_path):
    """`scripts/comparison.py comparison -- trainer=gpu`: the same run on a GPU machine; the run directory
    is quoted for Hydra (its name holds '=' and ','); a run that fails is reported, not recorded."""
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    commands = []
    monkeypatch.setattr(driver, "run_child", lambda command, log: commands.append(command) or 1)
    status, _ = driver.train("comparison", {"seed": "0", "+point": "lora_r4"}, ["trainer=gpu"])
    run_dir = tmp_path / "outputs" / "comparison" / "seed=0,point=lora_r4"
    assert commands == [
        [sys.executable, "train.py", "+sweep=comparison", "seed=0", "+point=lora_r4", "trainer=gpu", f"hydra.run.dir='{run_dir}'"]
    ]
    assert status.startswith("failed (exit 1") and not (tmp_path / "results" / "comparison").exists()
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(commands[0][-1]).value() == str(run_dir)  # as Hydra reads it


def test_workers_share_the_grid_by_whole_configurations(driver):
    """`--worker k/n`: the shares are disjoint, together the grid, and each holds every seed and rate of
    its configurations (an LR search extends edges from a configuration's complete grid)."""
    runs = driver.grid("lr_search")
    shares = [driver.share(runs, (k, 3)) for k in range(3)]
    names = [{driver.run_name(o) for o in share} for share in shares]
    assert sum(map(len, names)) == len(runs) and set.union(*names) == {driver.run_name(o) for o in runs}
    for share in shares:
        for configuration in {driver.configuration(o) for o in share}:
            assert sum(driver.configuration(o) == configuration for o in share) == 2 * 3  # seeds x rates
    assert driver.share(runs, (0, 1)) == runs
    assert shares[1][0] == {"data": "synth_child", "+point": "lora_r4", "seed": "0", "optimizer.lr": "0.0003"}


@pytest.mark.parametrize("text", ["2/2", "1", "a/2", "-1/2"])
def test_a_bad_worker_is_refused(driver, text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=f"--worker {text}: expected K/N"):
        driver.worker_spec(text)


def test_an_append_waits_for_another_workers_append(tmp_path):
    """Two workers append to one stage's tables: a read-add-write waits while another holds the tables'
    lock, then keeps the other's run (without the lock, the later write would drop it)."""
    import threading

    from asr_peft.reporting.tables import appending, append_run, table_runs
    from test_reporting_tables import _sweep

    sweep = _sweep(tmp_path / "sweep") / "decoded"
    name = sorted(path.parent.relative_to(sweep).as_posix() for path in sweep.glob("*/results.json"))[0]
    tables = tmp_path / "tables"
    with appending(tables):
        worker = threading.Thread(target=append_run, args=(tables, sweep / name, name))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and table_runs(tables) == set()
    worker.join(timeout=30)
    assert not worker.is_alive() and table_runs(tables) == {name}


def test_a_driver_stopped_by_sigterm_stops_its_run_first(tmp_path):
    """`kill <driver>` (a session's end, a scheduler): the training process it launched is stopped with it
    (and so writes its interrupted record), not left running orphaned on the tables' next run."""
    import os
    import signal
    import subprocess
    import textwrap
    import time

    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    script = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("d", {str(ROOT / "scripts" / "comparison.py")!r})
        d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)
        d.stop_on_sigterm()
        d.run_child([sys.executable, "-c", {child!r}], None)
    """)
    driver_process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    driver_process.send_signal(signal.SIGTERM)
    assert driver_process.wait(timeout=30) != 0
    time.sleep(0.5)
    try:
        os.kill(child_pid, 0)
    except ProcessLookupError:
        return
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the run outlived its driver")


def test_the_plan_prices_a_model_by_its_measured_runs_once_three_ran_in_one_go(driver):
    """Minutes per run: the median wall time of a model's completed runs that ran in one go (a resumed
    run's clock includes its pause); the guess until 3 such runs exist."""

    def record(model, minutes, resumed=None, status="completed"):
        started = "2026-12-07T10:00:00+00:00"
        finished = f"2026-12-07T{10 + minutes // 60:02d}:{minutes % 60:02d}:00+00:00"
        return {
            "status": status,
            "resumed_from": resumed,
            "started_at": started,
            "finished_at": finished,
            "config": {"model": {"name": model}},
        }

    records = [record("toy", 10), record("toy", 14), record("toy", 30), record("toy", 500, resumed="last.ckpt")]
    records += [record("toy", 1, status="failed"), record("whisper", 70), record("whisper", 90)]
    estimate = driver.minutes_per_run(records, {"toy": 5.0, "whisper": 80.0, "base": 200.0})
    assert estimate == {"toy": (14.0, "median of 3 runs"), "whisper": (80.0, "guessed"), "base": (200.0, "guessed")}


CHILD, DIALECT, TOY = "synth_child", "synth_dialect", "owsm_tiny_pretrained"
METHODS = {"lora_r4": LORA_R4, "vera_r256": {"name": "vera", "r": 256}}


class Tables:
    """Fake committed tables for an LR search and the comparison at its rates: `train` skips what they hold,
    fails the runs of data sets in `failing`, records a search trial whose dev WER is `wer[data][lr]`, and
    lists the comparison runs it trains."""

    def __init__(self, driver, monkeypatch, tmp_path, wer, rates=None):
        """`rates`: each point's search axis (LoRA r=4 on 1e-3, 3e-3, 1e-2 by default); `wer` the dev WER by data
        set and rate (or by point, data set and rate for several points)."""
        self.driver, self.wer, self.failing, self.trained = driver, wer, set(), []
        self.held: dict[str, dict] = {"lr_search": {}, "comparison": {}}
        rates = rates or {"lora_r4": ("0.001", "0.003", "0.01")}
        grids = {
            "lr_search": [
                {"data": d, "+point": point, "seed": "0", "optimizer.lr": lr}
                for d in (CHILD, DIALECT)
                for point, axis in rates.items()
                for lr in axis
            ],
            "comparison": [{"seed": "0", "data": d, "+point": point} for d in (CHILD, DIALECT) for point in rates],
        }
        monkeypatch.setattr(driver, "grid", lambda stage: [dict(o) for o in grids[stage]])
        monkeypatch.setattr(driver, "stage_defaults", lambda stage: (TOY, CHILD))
        monkeypatch.setattr(driver, "table_runs", lambda directory: set(self.held.get(directory.name, {})))
        monkeypatch.setattr(driver, "read_records", lambda stage: dict(self.held[stage]))
        monkeypatch.setattr(driver, "tuned_lr_path", lambda: tmp_path / "tuned_lr.yaml")
        monkeypatch.setattr(driver, "train", self.train)

    def train(self, stage, overrides, extra):
        name = self.driver.run_name(overrides)
        if name in self.held[stage]:
            return "done", 0.0
        if overrides["data"] in self.failing:
            return "failed (exit 1)", 0.0
        if stage == "comparison":
            self.trained.append(name)
            self.held[stage][name] = {}
        else:
            lr, point, data = float(overrides["optimizer.lr"]), overrides["+point"], overrides["data"]
            wer = self.wer[point][data][lr] if point in self.wer else self.wer[data][lr]
            self.held[stage][name] = trial(lr, [wer], 0.5, data=data, method=METHODS[point])
        return "completed", 0.0

    def written(self):
        path = self.driver.tuned_lr_path()
        chosen = self.driver.read_tuned_lr(path).get(TOY, {}) if path.is_file() else {}
        return {data: entries["lora r=4 alpha=8"]["lr"] for data, entries in chosen.items()}


def test_the_rates_of_each_data_set_are_written_once_its_search_is_final_and_its_runs_start_then(
    driver, monkeypatch, tmp_path, capsys
):
    """The child search completes (its best rate at the grid's low edge, so 3e-4 is tried and loses) while the
    dialect runs fail: the child rate is written and the comparison trains child runs, the dialect runs wait;
    once the dialect search completes (best 3e-3, inside its grid) they run too."""
    wer = {CHILD: {3e-4: 0.35, 1e-3: 0.3, 3e-3: 0.4, 1e-2: 0.5}, DIALECT: {1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.45}}
    tables = Tables(driver, monkeypatch, tmp_path, wer)
    tables.failing = {DIALECT}
    assert driver.run_stage("lr_search", [], driver.Budget(None), 3) == 3
    assert tables.written() == {CHILD: 0.001}
    assert (
        "not written: results/lr_search holds 0 of the 3 runs of its grid for model=owsm_tiny_pretrained data=synth_dialect"
        in (capsys.readouterr().out)
    )
    assert driver.run_stage("comparison", [], driver.Budget(None), 3) == 0
    assert tables.trained == ["seed=0,data=synth_child,point=lora_r4"]
    assert "comparison: waiting: results/lr_search holds 0 of the 3 runs" in capsys.readouterr().out
    tables.failing = set()
    assert driver.run_stage("lr_search", [], driver.Budget(None), 3) == 0
    assert tables.written() == {CHILD: 0.001, DIALECT: 0.003}
    assert driver.run_stage("comparison", [], driver.Budget(None), 3) == 0
    assert tables.trained[1:] == ["seed=0,data=synth_dialect,point=lora_r4"]


def test_a_search_whose_best_rate_sits_at_an_edge_it_has_not_gone_past_keeps_its_runs_waiting(driver, monkeypatch, tmp_path):
    """A complete grid is not a final search: the best rate at its edge goes on past it, 3 half decades at most
    (the comparison refuses in one line while every run waits)."""
    from asr_peft.errors import ConfigError

    falling = {lr: lr for lr in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)}  # the lower the rate, the lower the dev WER
    tables = Tables(driver, monkeypatch, tmp_path, {CHILD: falling, DIALECT: falling})
    for overrides in driver.grid("lr_search"):
        tables.train("lr_search", overrides, [])
    final, waiting = driver.search_state("lr_search")
    assert final == {} and waiting[TOY, CHILD].endswith("lora r=4 alpha=8 (best at the lowest rate)")
    with pytest.raises(ConfigError, match="comparison: every run waits for its rates: lr_search goes on past an edge"):
        driver.run_stage("comparison", [], driver.Budget(None), 3)
    assert driver.run_stage("lr_search", [], driver.Budget(None), 3) == 0  # tries 3e-4, 1e-4, 3e-5: still falling
    assert tables.written() == {CHILD: 3e-5, DIALECT: 3e-5}
    assert driver.run_stage("comparison", [], driver.Budget(None), 3) == 0 and len(tables.trained) == 2


def test_rates_the_tables_chose_but_the_rates_file_does_not_hold_keep_their_runs_waiting(driver, monkeypatch, tmp_path):
    """sweeps/tuned_lr.yaml still holding another rate (v1's) for a final search: its runs wait, naming the file."""
    wer = {CHILD: {1e-3: 0.4, 3e-3: 0.3, 1e-2: 0.5}, DIALECT: {1e-3: 0.4, 3e-3: 0.3, 1e-2: 0.5}}
    tables = Tables(driver, monkeypatch, tmp_path, wer)
    for overrides in driver.grid("lr_search"):
        tables.train("lr_search", overrides, [])
    driver.write_tuned_lr(
        {TOY: {CHILD: {"lora r=4 alpha=8": {"lr": 0.01}}, DIALECT: {"lora r=4 alpha=8": {"lr": 0.003}}}}, driver.tuned_lr_path()
    )
    assert driver.waiting_for_rates("comparison") == {
        (TOY, CHILD): "tuned_lr.yaml does not hold the rates results/lr_search chose for model=owsm_tiny_pretrained "
        "data=synth_child (python scripts/comparison.py lr_search writes them)"
    }
    assert driver.run_stage("comparison", [], driver.Budget(None), 3) == 0
    assert tables.trained == ["seed=0,data=synth_dialect,point=lora_r4"]


@pytest.mark.parametrize("tried, expected", [((1e-4, 3e-4, 1e-3, 3e-3), False), ((3e-5, 1e-4, 3e-4, 1e-3, 3e-3), True)])
def test_a_search_goes_three_half_decades_past_its_grid_at_most(driver, tried, expected):
    entry = {"edge": "lowest", "trials": [[lr, 0.3, [0.3]] for lr in tried]}
    assert driver.past_the_grid(entry, [1e-3, 3e-3], driver.EXTEND) is expected


def test_a_point_on_its_own_rates_goes_past_its_own_edge_and_its_search_ends(driver, monkeypatch, tmp_path):
    """VeRA searches 0.03-0.3 (sweeps/point_rates.yaml), above LoRA's 1e-3-1e-2. Its dev WER falls with the
    rate, so its best sits at its own lowest rate and the search tries 1e-2, 3e-3 and 1e-3: 3 half decades past
    its own axis, so the search is final, though none of those rates is below the lowest of the whole grid."""
    falling = {lr: lr for lr in (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)}
    lora = {CHILD: {1e-3: 0.4, 3e-3: 0.3, 1e-2: 0.5}, DIALECT: {1e-3: 0.4, 3e-3: 0.3, 1e-2: 0.5}}
    rates = {"lora_r4": ("0.001", "0.003", "0.01"), "vera_r256": ("0.03", "0.1", "0.3")}
    Tables(driver, monkeypatch, tmp_path, {"lora_r4": lora, "vera_r256": {CHILD: falling, DIALECT: falling}}, rates)
    assert driver.run_stage("lr_search", [], driver.Budget(None), 3) == 0
    final, waiting = driver.search_state("lr_search")
    assert waiting == {}
    assert {key: entry["lr"] for key, entry in final[TOY, CHILD].items()} == {"lora r=4 alpha=8": 0.003, "vera r=256": 0.001}


@pytest.mark.parametrize("point, rates", [("vera_r512", "0.01,0.03"), ("vera_r256", "0.01,fast"), ("vera_r256", "-0.01,0.03")])
def test_rates_for_a_point_the_grid_does_not_have_or_that_are_no_rates_are_refused(driver, monkeypatch, tmp_path, point, rates):
    from asr_peft.errors import ConfigError

    (tmp_path / "point_rates.yaml").write_text(f"lr_search:\n  {point}: {rates}\n")
    monkeypatch.setattr(driver, "POINT_RATES", tmp_path / "point_rates.yaml")
    driver.stage_grid.cache_clear()
    try:
        with pytest.raises(ConfigError, match=f"point_rates.yaml: lr_search.{point} must be a point of .* with positive rates"):
            driver.stage_grid("lr_search")
    finally:
        driver.stage_grid.cache_clear()


def test_a_search_finishes_a_data_set_edges_included_and_writes_its_rates_before_the_next(driver, monkeypatch, tmp_path):
    """The child grid's best rate sits at its low edge: 3e-4 is tried (and loses) before any dialect run, and the
    child rate is in the rates file by the time the first dialect run trains, so the child comparison can start
    while the dialect search goes on."""
    wer = {CHILD: {3e-4: 0.35, 1e-3: 0.3, 3e-3: 0.4, 1e-2: 0.5}, DIALECT: {1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.45}}
    tables = Tables(driver, monkeypatch, tmp_path, wer)
    order, written_then = [], []

    def train(stage, overrides, extra):
        order.append((overrides["data"], overrides["optimizer.lr"]))
        if overrides["data"] == DIALECT and not written_then:
            written_then.append(tables.written())
        return Tables.train(tables, stage, overrides, extra)

    monkeypatch.setattr(driver, "train", train)
    assert driver.run_stage("lr_search", [], driver.Budget(None), 3) == 0
    assert order[:4] == [(CHILD, "0.001"), (CHILD, "0.003"), (CHILD, "0.01"), (CHILD, "0.0003")]
    assert written_then == [{CHILD: 0.001}] and tables.written() == {CHILD: 0.001, DIALECT: 0.003}


@pytest.mark.parametrize(
    "search, stage, point, data",
    [
        ("lr_search", "comparison", "ssvd_p0.4", "synth_child"),
        ("lr_search", "comparison", "svft_banded8", "synth_dialect"),
        ("lr_search", "comparison", "full", "synth_child"),
        ("lr_search_scale", "scale", "lora_r4", "synth_child"),
    ],
)
def test_a_stage_trains_what_its_lr_search_trained_at_the_same_seed_and_rate(driver, search, stage, point, data):
    """The sweep files as they are: a comparison (scale) run and its LR search's run of the same point, seed
    and rate differ only in how they are scored (test sets, secondary decodes, baseline), so the search's
    checkpoints can be scored instead of training the same again; the rate, the validation decode or the
    schedule are training's."""
    from asr_peft.training.naming import training_differences

    run = {"data": data, "+point": point, "seed": "1"}
    trained = driver.resolved_config(search, {**run, "optimizer.lr": "0.001", "hydra.run.dir": "'/a'"}, [])
    assert trained["data"]["test"] is None and trained["evaluation"]["baseline"] is False  # the search scores no test set
    scored = driver.resolved_config(stage, {**run, "hydra.run.dir": "'/b'"}, ["optimizer.lr=0.001"])
    assert scored["data"]["test"] and scored["evaluation"]["baseline"] is True
    assert training_differences(scored, trained) == []
    other = driver.resolved_config(
        stage,
        {**run, "hydra.run.dir": "'/b'"},
        ["optimizer.lr=0.003", "evaluation.validation_decode=ctc_greedy", "callbacks.early_stopping.patience=3"],
    )
    assert sorted(training_differences(other, trained)) == [
        "callbacks.early_stopping.patience",
        "evaluation.validation_decode",
        "optimizer.lr",
    ]


def test_a_run_the_lr_search_trained_is_scored_from_its_checkpoints_not_trained_again(driver, monkeypatch, tmp_path):
    """`comparison` seeds 0 and 1 at the chosen rate are the search's runs: their checkpoints are copied into the
    comparison's run directory (train.py then scores them; tests/test_resume.py), never over a run's own. A seed
    or rate the search did not train, or an override that changes training, trains."""
    import shutil

    searched = {"data": "synth_child", "+point": "lora_r4", "seed": "1", "optimizer.lr": "0.001"}
    config = driver.resolved_config("lr_search", {**searched, "hydra.run.dir": "'/elsewhere'"}, [])
    records = {driver.run_name(searched): {"status": "completed", "seed": 1, "config": config}}
    monkeypatch.setattr(driver, "ROOT", tmp_path)
    monkeypatch.setattr(driver, "read_records", lambda stage: records if stage == "lr_search" else {})
    monkeypatch.setattr(driver, "table_runs", lambda directory: set())
    monkeypatch.setattr(driver, "run_child", lambda command, log: 1)
    source = tmp_path / "outputs" / "lr_search" / driver.run_name(searched) / "checkpoints"
    source.mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):
        (source / name).write_text(name)

    def copied(seed: str, extra: list[str]) -> dict[str, str]:
        run = {"seed": seed, "data": "synth_child", "+point": "lora_r4"}
        run_dir = tmp_path / "outputs" / "comparison" / driver.run_name(run)
        shutil.rmtree(run_dir, ignore_errors=True)
        driver.train("comparison", run, extra)
        return {path.name: path.read_text() for path in (run_dir / "checkpoints").glob("*")}

    assert copied("1", ["optimizer.lr=0.001"]) == {"best.ckpt": "best.ckpt", "last.ckpt": "last.ckpt"}
    assert copied("1", ["optimizer.lr=0.001", "evaluation.beam.beam_size=2"]) == {
        "best.ckpt": "best.ckpt",
        "last.ckpt": "last.ckpt",
    }
    assert copied("0", ["optimizer.lr=0.001"]) == {}
    assert copied("1", ["optimizer.lr=0.003"]) == {}
    assert copied("1", ["optimizer.lr=0.001", "optimizer.weight_decay=0.01"]) == {}
    records[driver.run_name(searched)]["status"] = "failed"
    assert copied("1", ["optimizer.lr=0.001"]) == {}
    records[driver.run_name(searched)]["status"] = "completed"
    run_dir = tmp_path / "outputs" / "comparison" / "seed=1,data=synth_child,point=lora_r4"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_text("its own")
    driver.train("comparison", {"seed": "1", "data": "synth_child", "+point": "lora_r4"}, ["optimizer.lr=0.001"])
    assert {path.name: path.read_text() for path in (run_dir / "checkpoints").glob("*")} == {"last.ckpt": "its own"}
