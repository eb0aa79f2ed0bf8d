"""Learning rates chosen on dev data: the LR search's trials -> sweeps/tuned_lr.yaml -> the comparison sweep."""

from __future__ import annotations

import json

import pytest
import yaml
from omegaconf import OmegaConf

from asr_peft.errors import ConfigError
from asr_peft.training.tuned_lr import choose_learning_rates, read_trial_records, tuned_lr, write_tuned_lr
from conftest import compose_config


def trial(lr: float, val_wers: list[float], test_wer: float, *, method="lora", data="synth_child", status="completed"):
    return {
        "status": status,
        "configuration": f"{method} r=4",
        "validation_history": [{"step": 50 * (i + 1), "val_wer": w} for i, w in enumerate(val_wers)],
        "metrics": {"child": {"wer": test_wer}},
        "config": {
            "optimizer": {"lr": lr},
            "method": {"name": method},
            "data": {"name": data},
            "evaluation": {"checkpoint": "best"},
        },
    }


def test_the_chosen_rate_is_the_lowest_validation_wer_never_the_lowest_test_wer():
    records = [
        trial(1e-3, [0.50, 0.40], test_wer=0.10),  # best on the test set
        trial(3e-3, [0.45, 0.30], test_wer=0.60),  # best on dev: the one chosen
        trial(1e-2, [0.20], test_wer=0.05, status="failed"),
        trial(2e-3, [0.35], test_wer=0.30, method="ssvd"),
        trial(5e-4, [0.25], test_wer=0.30, data="synth_dialect"),
    ]
    chosen = choose_learning_rates(records)
    assert chosen["synth_child"]["lora"] == {
        "lr": 3e-3,
        "val_wer": 0.30,
        "configuration": "lora r=4",
        "edge": "highest",
        "trials": [[1e-3, 0.40], [3e-3, 0.30]],
    }
    assert chosen["synth_child"]["ssvd"]["lr"] == 2e-3 and chosen["synth_dialect"]["lora"]["lr"] == 5e-4


def test_a_rate_chosen_at_the_edge_of_those_tried_is_flagged():
    def edge(wers: list[float]) -> str | None:
        records = [trial(lr, [wer], 0.5) for lr, wer in zip([3e-4, 1e-3, 3e-3, 1e-2], wers)]
        return choose_learning_rates(records)["synth_child"]["lora"]["edge"]

    assert edge([0.2, 0.3, 0.4, 0.5]) == "lowest" and edge([0.5, 0.4, 0.3, 0.2]) == "highest"
    assert edge([0.5, 0.2, 0.3, 0.4]) is None
    assert choose_learning_rates([trial(1e-3, [0.3], 0.5)])["synth_child"]["lora"]["edge"] is None  # one rate: no range


def test_the_file_is_merged_and_read_back_by_the_resolver(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_PEFT_ROOT", str(tmp_path))
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "tuned_lr.yaml"
    with pytest.raises(ConfigError, match=r"^optimizer.lr: no learning rate tuned for method=lora on data=synth_child"):
        tuned_lr("lora", "synth_child")
    write_tuned_lr(choose_learning_rates([trial(3e-3, [0.3], 0.5)]), path)
    write_tuned_lr(choose_learning_rates([trial(2e-3, [0.3], 0.5, method="ssvd")]), path)  # another method: kept both
    assert (tuned_lr("lora", "synth_child"), tuned_lr("ssvd", "synth_child")) == (3e-3, 2e-3)
    assert set(yaml.safe_load(path.read_text())["synth_child"]) == {"lora", "ssvd"}
    with pytest.raises(ConfigError, match="method=dora on data=synth_child"):
        tuned_lr("dora", "synth_child")


def test_trial_records_are_read_from_the_search_directories(tmp_path):
    for i, lr in enumerate([1e-3, 3e-3]):
        (tmp_path / f"t{i}").mkdir()
        (tmp_path / f"t{i}" / "results.json").write_text(json.dumps(trial(lr, [0.4 - i / 10], 0.2)))
    assert choose_learning_rates(read_trial_records([tmp_path]))["synth_child"]["lora"]["lr"] == 3e-3


def test_the_sweep_files_compose_the_search_without_test_sets_and_the_comparison_at_the_tuned_rate(tmp_path, monkeypatch):
    search = compose_config("train", ["+sweep=lr_search", "+point=lora_r4", "data=synth_child"])
    assert search.data.test is None and search.hydra.sweeper._target_.endswith("OptunaSweeper")
    # A grid over the range, every rate once: TPE's start-up with few trials left whole decades untried.
    assert search.hydra.sweeper.sampler._target_ == "optuna.samplers.GridSampler"
    rates = [float(r) for r in search.hydra.sweeper.params["optimizer.lr"].removeprefix("choice(").rstrip(")").split(",")]
    assert search.hydra.sweeper.n_trials == len(rates) and max(rates) / min(rates) >= 30
    write_tuned_lr({"synth_dialect": {"lora": {"lr": 0.0042}}}, tmp_path / "tuned_lr.yaml")
    monkeypatch.setattr("asr_peft.training.tuned_lr.tuned_lr_path", lambda: tmp_path / "tuned_lr.yaml")
    comparison = compose_config("train", ["+sweep=comparison", "+point=lora_r4", "data=synth_dialect"])
    assert OmegaConf.select(comparison, "optimizer.lr") == 0.0042
    points = comparison.hydra.sweeper.params["+point"].split(",")
    for method in ("ssvd", "svft", "lora", "dora", "pissa", "vera"):  # three or more budgets per method
        assert sum(p.split("_")[0] == method for p in points) >= 3, method
    assert "full" in points
