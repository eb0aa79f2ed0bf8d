"""Learning rates chosen on dev data: the LR search's trials -> sweeps/tuned_lr.yaml -> the comparison sweep."""

from __future__ import annotations

import json

import pytest
import yaml
from omegaconf import OmegaConf

from asr_peft.errors import ConfigError
from asr_peft.training.tuned_lr import choose_learning_rates, read_trial_records, tuned_lr, tuning_key, write_tuned_lr
from conftest import compose_config

LORA_R4 = {"name": "lora", "r": 4, "alpha": 8, "embedding_targets": ["decoder.embed.0?"]}


def trial(
    lr, val_wers, test_wer, *, seed=0, method=LORA_R4, data="synth_child", model="owsm_tiny_pretrained", status="completed"
):
    return {
        "status": status,
        "validation_history": [{"step": 25 * (i + 1), "val_wer": w} for i, w in enumerate(val_wers)],
        "metrics": {"child": {"wer": test_wer}},
        "config": {
            "seed": seed,
            "optimizer": {"lr": lr},
            "method": method,
            "adapt": {"p": 0.4},
            "model": {"name": model},
            "data": {"name": data},
            "evaluation": {"checkpoint": "best"},
        },
    }


def test_a_rate_is_tuned_per_configuration_budget_tier_and_ablation_variant():
    """The key is the method, its budget and its settings that differ from configs/method/<name>.yaml."""
    assert tuning_key(LORA_R4, {"p": 0.4}) == "lora r=4 alpha=8"
    ssvd = {"name": "ssvd", "rotation": "approx", "side": "smaller", "formulation": "efficient"}
    assert tuning_key(ssvd, {"p": 0.1}) == "ssvd p=0.1"
    # a record written with method.orientation keys as the side rotating the same vectors
    assert tuning_key({**ssvd, "side": "input", "orientation": "reference"}, {"p": 0.1}) == "ssvd p=0.1"
    assert tuning_key({**ssvd, "side": "output", "orientation": "reference"}, {"p": 0.1}) == "ssvd p=0.1 side=larger"
    assert tuning_key({**ssvd, "rotation": "free"}, {"p": 0.1}) == "ssvd p=0.1 rotation=free"
    assert tuning_key({**ssvd, "side": "both", "p_out": 0.14}, {"p": 0.14}) == "ssvd p=0.14 side=both p_out=0.14"


def test_the_chosen_rate_has_the_lowest_mean_dev_wer_over_seeds_never_the_lowest_test_wer():
    records = [
        trial(1e-3, [0.50, 0.40], test_wer=0.10),  # best on the test set
        trial(1e-3, [0.38], test_wer=0.10, seed=1),
        trial(3e-3, [0.45, 0.30], test_wer=0.60),  # best seed on dev, but its mean over seeds is worse
        trial(3e-3, [0.50], test_wer=0.60, seed=1),
        trial(1e-2, [0.20], test_wer=0.05, status="failed"),
        trial(2e-3, [0.35], test_wer=0.30, data="synth_dialect"),
        trial(5e-4, [0.25], test_wer=0.30, model="whisper_tiny_en"),
    ]
    chosen = choose_learning_rates(records)
    assert chosen["owsm_tiny_pretrained"]["synth_child"]["lora r=4 alpha=8"] == {
        "lr": 1e-3,
        "val_wer": 0.39,
        "seeds": [0, 1],
        "edge": "lowest",
        "trials": [[1e-3, 0.39, [0.4, 0.38]], [3e-3, 0.4, [0.3, 0.5]]],
    }
    assert chosen["owsm_tiny_pretrained"]["synth_dialect"]["lora r=4 alpha=8"]["lr"] == 2e-3
    assert chosen["whisper_tiny_en"]["synth_child"]["lora r=4 alpha=8"]["lr"] == 5e-4


def test_a_rate_chosen_at_the_edge_of_those_tried_is_flagged():
    def edge(wers):
        records = [trial(lr, [wer], 0.5) for lr, wer in zip([3e-4, 1e-3, 3e-3, 1e-2], wers)]
        return choose_learning_rates(records)["owsm_tiny_pretrained"]["synth_child"]["lora r=4 alpha=8"]["edge"]

    assert edge([0.2, 0.3, 0.4, 0.5]) == "lowest" and edge([0.5, 0.4, 0.3, 0.2]) == "highest"
    assert edge([0.5, 0.2, 0.3, 0.4]) is None


def test_the_file_is_merged_and_read_back_by_the_resolver(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_PEFT_ROOT", str(tmp_path))
    (tmp_path / "configs" / "method").mkdir(parents=True)
    path = tmp_path / "sweeps" / "tuned_lr.yaml"
    config = trial(1e-3, [0.3], 0.5)["config"]
    with pytest.raises(
        ConfigError,
        match=r"^optimizer.lr: no learning rate tuned for 'lora r=4 alpha=8' with model=owsm_tiny_pretrained on data=synth_child",
    ):
        tuned_lr(config)
    write_tuned_lr(choose_learning_rates([trial(3e-3, [0.3], 0.5)]), path)
    write_tuned_lr(choose_learning_rates([trial(2e-3, [0.3], 0.5, method={"name": "ssvd"})]), path)  # another one: both kept
    assert tuned_lr(config) == 3e-3
    assert set(yaml.safe_load(path.read_text())["owsm_tiny_pretrained"]["synth_child"]) == {"lora r=4 alpha=8", "ssvd p=0.4"}


def test_trial_records_are_read_from_the_search_directories(tmp_path):
    for i, lr in enumerate([1e-3, 3e-3]):
        (tmp_path / f"t{i}").mkdir()
        (tmp_path / f"t{i}" / "results.json").write_text(json.dumps(trial(lr, [0.4 - i / 10], 0.2)))
    chosen = choose_learning_rates(read_trial_records([tmp_path]))
    assert chosen["owsm_tiny_pretrained"]["synth_child"]["lora r=4 alpha=8"]["lr"] == 3e-3


def test_the_sweep_files_compose_the_search_without_test_sets_and_the_comparison_at_the_tuned_rate(tmp_path, monkeypatch):
    search = compose_config("train", ["+sweep=lr_search", "+point=lora_r4", "data=synth_child"])
    assert search.data.test is None and search.trainer.val_check_interval == 25
    seeds, rates = search.hydra.sweeper.params["seed"].split(","), search.hydra.sweeper.params["optimizer.lr"].split(",")
    assert len(seeds) == 2 and len(rates) >= 3 and max(map(float, rates)) / min(map(float, rates)) >= 10  # + edges
    chosen = choose_learning_rates([trial(0.0042, [0.3], 0.5, data="synth_dialect")])
    write_tuned_lr(chosen, tmp_path / "tuned_lr.yaml")
    monkeypatch.setattr("asr_peft.training.tuned_lr.tuned_lr_path", lambda: tmp_path / "tuned_lr.yaml")
    comparison = compose_config("train", ["+sweep=comparison", "+point=lora_r4", "data=synth_dialect"])
    assert OmegaConf.select(comparison, "optimizer.lr") == 0.0042
    points = comparison.hydra.sweeper.params["+point"].split(",")
    for method in ("ssvd", "svft", "lora", "dora", "pissa", "vera"):  # a small and a large budget per method
        assert sum(p.split("_")[0] == method for p in points) >= 2, method
    assert "full" in points and set(search.hydra.sweeper.params["+point"].split(",")) == set(points)
    assert len(comparison.hydra.sweeper.params["seed"].split(",")) >= 5


def test_the_search_table_shows_each_rates_mean_and_seeds_and_the_edge():
    from asr_peft.training.tuned_lr import choose_learning_rates, search_table

    records = [trial(lr, [wer], 0.5, seed=seed) for lr, seed, wer in ((1e-3, 0, 0.30), (1e-3, 1, 0.34), (3e-3, 0, 0.40))]
    table = search_table(choose_learning_rates(records)).splitlines()
    assert len(table) == 3
    assert table[2].endswith("| 3 | 0.001: 32.0% [30.0, 34.0]; 0.003: 40.0% [40.0] | 0.001 | lowest |")
