"""Aggregation of hand-written results.json records: rows, mean ± std over seeds, configurations,
failed and malformed records, and the Pareto frontier on hand-made points."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from asr_peft.errors import ConfigError
from asr_peft.reporting.aggregate import (
    collect,
    configuration_label,
    configuration_labels,
    ordered_test_sets,
    subspace_frame,
    summarise,
    to_frame,
)
from asr_peft.reporting.pareto import pareto_frontier


def record(
    method: dict,
    seed: int,
    wers: dict[str, float],
    trainable: int,
    *,
    status: str = "completed",
    p: float = 0.4,
    lr: float = 1e-4,
    baseline: dict[str, float] | None = None,
) -> dict:
    return {
        "status": status,
        "error": None if status == "completed" else "RuntimeError: loss is NaN at step 40",
        "run_dir": "/elsewhere/outputs/train/x",
        "method": method,
        "adapt": {"p": p, "targets": ["attn.linear_q"]},
        "model": {"name": "owsm_tiny"},
        "data": {"name": "synth_child"},
        "seed": seed,
        "metrics": {k: {"wer": v, "cer": v / 2} for k, v in wers.items()},
        "baseline_metrics": {k: {"wer": v, "cer": v / 2} for k, v in (baseline or {}).items()},
        "parameters": {"trainable": trainable, "total": 10**6},
        "train_time_s": 12.5,
        "peak_memory_mb": 900.0,
        "global_step": 200,
        "validation_history": [{"step": 100, "val_wer": 0.5}, {"step": 200, "val_wer": 0.4}],
        "config": {
            "optimizer": {"lr": lr, "betas": [0.9, 0.98]},
            "trainer": {"max_steps": 200},
            "evaluation": {"decode": "ctc_greedy", "progress": True},
        },
    }


def write(directory: Path, content) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.json"
    path.write_bytes(
        content if isinstance(content, bytes) else (content if isinstance(content, str) else json.dumps(content)).encode()
    )
    return path


SSVD, LORA = (
    {"name": "ssvd", "rotation": "approx"},
    {"name": "lora", "r": 4, "alpha": 8, "embedding_targets": ["decoder.embed.0"]},
)


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun"
    before = {"source": 0.10, "child": 0.60}
    write(root / "ssvd_s0", record(SSVD, 0, {"source": 0.12, "child": 0.30}, 5000, baseline=before))
    write(root / "ssvd_s1", record(SSVD, 1, {"source": 0.14, "child": 0.34}, 5000, baseline=before))
    write(root / "ssvd_s2", record(SSVD, 2, {"source": 0.13, "child": 0.35}, 5000, baseline=before))
    write(root / "ssvd_p0.2", record(SSVD, 0, {"source": 0.11, "child": 0.45}, 1200, p=0.2, baseline=before))
    write(root / "lora_s0", record(LORA, 0, {"source": 0.20, "child": 0.40}, 20000, p=0.1))
    write(root / "nested" / "deeper" / "lora_s1", record(LORA, 1, {"source": 0.22, "child": 0.38}, 20000, p=0.2))
    failed = record({"name": "dora", "r": 4, "alpha": 8}, 0, {}, 21000, status="failed")
    failed.update(metrics=None, parameters=None, train_time_s=None)  # failed early: little is known
    write(root / "dora_s0", failed)
    write(root / "broken", "{not json")
    write(root / "a_list", "[1, 2]")
    write(root / "no_status", {"method": {"name": "lora"}})
    write(root / "binary", b"\xff\xfe\x00garbage")
    (root / "ssvd_s0" / "results.failed-20260101-000000.json").write_text("{}")  # an earlier attempt, kept aside
    return root


def test_collect_reads_every_record_and_names_each_unreadable_file(sweep):
    collection = collect([sweep])
    assert sorted(run.directory.name for run in collection.runs) == [
        "dora_s0",
        "lora_s0",
        "lora_s1",
        "ssvd_p0.2",
        "ssvd_s0",
        "ssvd_s1",
        "ssvd_s2",
    ]
    assert sorted(Path(u.split(":")[0]).parent.name for u in collection.unreadable) == ["a_list", "binary", "broken", "no_status"]
    assert all(u.startswith(str(sweep)) for u in collection.unreadable)
    # A results.json given directly is read on its own; a missing path is a one-line error naming it.
    assert len(collect([sweep / "ssvd_s0" / "results.json"]).runs) == 1
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        collect([sweep / "nowhere"])


def test_rows_per_run_and_test_set_with_the_failed_run_kept(sweep):
    frame = to_frame(collect([sweep]).runs)
    assert len(frame) == 6 * 2 + 1  # six completed runs x two test sets; the failed run keeps one row
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and failed.iloc[0]["error"] == "RuntimeError: loss is NaN at step 40"
    assert failed.iloc[0]["method"] == "dora" and pd.isna(failed.iloc[0]["test_set"]) and pd.isna(failed.iloc[0]["trainable"])
    row = frame[(frame["run"] == "ssvd_s1") & (frame["test_set"] == "child")].iloc[0]
    assert (row["wer"], row["cer"], row["baseline_wer"], row["p"], row["trainable"], row["total"]) == (
        0.34,
        0.17,
        0.60,
        0.4,
        5000,
        10**6,
    )
    assert row["method.rotation"] == "approx" and row["train_time_s"] == 12.5 and row["peak_memory_mb"] == 900.0
    assert row["run_dir"] == str(sweep / "ssvd_s1")  # where the record was found, not where it was written
    lora = frame[frame["method"] == "lora"]
    assert lora["p"].isna().all()  # LoRA ignores adapt.p, so the table does not pretend otherwise
    assert ordered_test_sets(frame) == ["source", "child"]


def test_mean_and_std_over_seeds(sweep):
    summary = summarise(to_frame(collect([sweep]).runs)).set_index(["configuration", "test_set"])
    ssvd = summary.loc[("ssvd p=0.4", "child")]
    # child WERs 0.30, 0.34, 0.35: mean 0.33, sample std sqrt(((-.03)^2 + .01^2 + .02^2) / 2) = sqrt(0.0007)
    assert ssvd["wer_mean"] == pytest.approx(0.33) and ssvd["wer_std"] == pytest.approx(0.0007**0.5)
    assert ssvd["cer_mean"] == pytest.approx(0.165) and ssvd["seeds"] == 3 and ssvd["baseline_wer"] == pytest.approx(0.60)
    assert summary.loc[("ssvd p=0.2", "child"), "seeds"] == 1
    lora = summary.loc[("lora r=4", "source")]  # adapt.p differs between these runs but LoRA ignores it
    assert lora["wer_mean"] == pytest.approx(0.21) and lora["seeds"] == 2 and lora["trainable"] == 20000
    assert not any(c.startswith("dora") for c, _ in summary.index)  # failed runs have no mean


def test_single_seed_has_zero_std(tmp_path):
    write(tmp_path / "one", record(SSVD, 0, {"child": 0.3}, 10))
    summary = summarise(to_frame(collect([tmp_path]).runs))
    assert summary.iloc[0]["wer_std"] == 0.0 and summary.iloc[0]["seeds"] == 1


def test_settings_that_differ_between_runs_split_configurations(tmp_path):
    # A learning-rate search: the same method at two learning rates must not be averaged as seeds.
    write(tmp_path / "a", record(SSVD, 0, {"child": 0.30}, 10, lr=1e-3))
    write(tmp_path / "b", record(SSVD, 1, {"child": 0.40}, 10, lr=1e-3))
    write(tmp_path / "c", record(SSVD, 0, {"child": 0.50}, 10, lr=1e-4))
    summary = summarise(to_frame(collect([tmp_path]).runs)).set_index("configuration")
    assert summary.loc["ssvd p=0.4 optimizer.lr=0.001", "wer_mean"] == pytest.approx(0.35)
    assert summary.loc["ssvd p=0.4 optimizer.lr=0.0001", "wer_mean"] == pytest.approx(0.50)
    frame = to_frame(collect([tmp_path]).runs)
    assert set(frame["optimizer.lr"]) == {1e-3, 1e-4} and "evaluation.progress" not in frame


def test_configuration_labels_name_what_tells_runs_apart():
    records = [
        record({"name": "ssvd", "rotation": "cayley", "formulation": "efficient"}, 0, {}, 1, p=0.2),
        record({"name": "ssvd", "rotation": "approx", "formulation": "efficient"}, 0, {}, 1, p=0.2),
        record({"name": "ssvd", "rotation": "approx", "formulation": "efficient"}, 0, {}, 1, p=0.4),
        record(LORA, 0, {}, 1, p=0.2),
        record({**LORA, "r": 16}, 0, {}, 1, p=0.4),
        record({"name": "vera", "r": 64, "projection_seed": 0}, 0, {}, 1),
        record({"name": "full"}, 0, {}, 1),
    ]
    assert configuration_labels(records) == [
        "ssvd p=0.2 rotation=cayley",
        "ssvd p=0.2 rotation=approx",
        "ssvd p=0.4 rotation=approx",
        "lora r=4",
        "lora r=16",
        "vera r=64",
        "full",
    ]
    records[-1]["config"]["trainer"]["max_steps"] = 300  # a setting outside the method differs: every label names it
    assert configuration_labels(records)[-2:] == ["vera r=64 trainer.max_steps=200", "full trainer.max_steps=300"]
    assert (
        configuration_label({"name": "svft", "pattern": "banded", "off_diag": 2}, {"p": 0.4}, {"optimizer.lr": 1e-3})
        == "svft banded d=2 optimizer.lr=0.001"
    )


def test_every_label_names_the_budget_and_an_object_counts_by_its_class():
    """The method's budget shows even when every run shares it (the demo's `lora r=16`), and a run on
    another Lightning strategy reads `trainer.strategy=DDPStrategy`, not each of the strategy's arguments."""
    lora = record({**LORA, "r": 16, "alpha": 32}, 0, {}, 1)
    assert configuration_labels([lora, lora]) == ["lora r=16", "lora r=16"]
    ddp = record(SSVD, 0, {}, 1)
    ddp["config"]["trainer"]["strategy"] = {
        "_target_": "lightning.pytorch.strategies.DDPStrategy",
        "find_unused_parameters": False,
    }
    single = record(SSVD, 0, {}, 1)
    single["config"]["trainer"]["strategy"] = None
    assert configuration_labels([ddp, single]) == ["ssvd p=0.4 trainer.strategy=DDPStrategy", "ssvd p=0.4 trainer.strategy=null"]


def test_subspace_rows_per_layer_type(tmp_path):
    write(tmp_path / "r", record(SSVD, 0, {"child": 0.3}, 10))
    (tmp_path / "r" / "subspace.json").write_text(
        json.dumps(
            {
                "format": 1,
                "overall": {"layers": 2, "input_angle_mean_deg": 3.0, "output_angle_mean_deg": 0.5},
                "layer_types": {
                    "encoder.attn.linear_q": {"layers": 2, "input_angle_mean_deg": 3.0, "output_angle_mean_deg": 0.5}
                },
            }
        )
    )
    write(tmp_path / "s", record(LORA, 0, {"child": 0.3}, 10))
    (tmp_path / "s" / "subspace.json").write_text("{truncated")
    collection = collect([tmp_path])
    rows = subspace_frame(collection.runs, to_frame(collection.runs))
    assert list(rows["layer_type"]) == ["all layers", "encoder.attn.linear_q"]
    assert list(rows["input_angle_mean_deg"]) == [3.0, 3.0] and rows.iloc[0]["configuration"] == "ssvd p=0.4"
    assert len(collection.unreadable) == 1 and "s/subspace.json" in collection.unreadable[0]


def test_pareto_frontier_on_hand_made_points():
    parameters = [10, 20, 20, 5, 100, 50, 5, 200]
    errors = [0.5, 0.3, 0.4, 0.6, 0.1, 0.3, 0.6, 0.1]
    # (5, .6) twice is the cheapest (ties kept); (10, .5), (20, .3), (100, .1) each improve on everything cheaper;
    # (20, .4) and (50, .3) and (200, .1) are dominated (as good for more parameters, or worse for as many).
    assert pareto_frontier(parameters, errors) == [3, 6, 0, 1, 4]
    assert pareto_frontier([7], [0.2]) == [0]
    assert pareto_frontier([1, 2, 3], [0.3, 0.2, 0.1]) == [0, 1, 2]  # a trade-off all the way: all on the frontier
    assert pareto_frontier([1, 2, 3], [0.1, 0.2, 0.3]) == [0]  # the cheapest is also the best
    assert pareto_frontier([], []) == []
