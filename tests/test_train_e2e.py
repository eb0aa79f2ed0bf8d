"""The whole pipeline on owsm_tiny and a handful of generated utterances: train, validate, test, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from asr_peft.errors import ConfigError, DataError, ModelLoadError
from asr_peft.training.results import read_results
from conftest import ROOT, compose_config

PYTHON = sys.executable
FAST = [
    "model=owsm_tiny",
    "logger=csv",
    "evaluation.progress=false",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "optimizer.warmup_steps=0",
    "optimizer.lr=1e-3",
]


def train_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([PYTHON, str(ROOT / "train.py"), *args], capture_output=True, text=True, env=env, timeout=600, **kwargs)


def run_in_process(overrides: list[str], run_dir: Path):
    from asr_peft.training.run import run

    cfg = compose_config("train", [*FAST, f"paths.output_dir={run_dir}", *overrides])
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra")
    return run(cfg, run_dir)


def test_cli_trains_validates_tests_and_writes_results(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            *FAST,
            "method=full",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 6
    assert set(record["metrics"]) == {"test"} and 0.0 <= record["metrics"]["test"]["wer"] <= 2.0
    assert record["baseline_metrics"]["test"]["num_utterances"] == 2
    assert record["parameters"]["trainable"] == record["parameters"]["total"] == 1_461_388
    assert [h["step"] for h in record["validation_history"]] == [3, 6]
    assert record["packages"]["espnet"] == "202511" and record["config"]["method"]["name"] == "full"
    assert record["peak_memory_mb"] > 0 and record["train_time_s"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "decode" / "test" / "hyp.trn").read_text().count("\n") == 2
    subspace = json.loads((run_dir / "subspace.json").read_text())
    assert subspace["overall"]["layers"] == 2 * 11 + 2 * 10 + 2  # owsm_all on 2 + 2 blocks, embed.out, output layer
    assert "adapted" in result.stdout and "WER" in result.stdout
    # evaluate.py rescoring the run's best checkpoint reproduces the run's own test WER, in trn files too.
    # Real run directories are named after their overrides; the documented command takes them unquoted.
    named_like_a_run = tmp_path / "method=full,seed=0"
    named_like_a_run.symlink_to(run_dir)
    rescored = subprocess.run(
        [PYTHON, str(ROOT / "evaluate.py"), f"run_dir={named_like_a_run}", "evaluation.progress=false"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ASR_PEFT_ROOT": str(ROOT)},
    )
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    evaluation = json.loads(next((run_dir / "eval").glob("*/eval.json")).read_text())
    assert evaluation["metrics"]["test"]["wer"] == pytest.approx(record["metrics"]["test"]["wer"])
    assert next((run_dir / "eval").glob("*/test/ref.trn")).read_text() == (run_dir / "decode" / "test" / "ref.trn").read_text()
    # The same command again shows the recorded run and touches none of its results (Hydra itself
    # rewrites .hydra/ with the same composed config and appends to the log).
    recorded = {
        path: path.stat().st_mtime_ns
        for path in run_dir.rglob("*")
        if path.is_file() and ".hydra" not in path.parts and path.suffix != ".log"
    }
    results_text = (run_dir / "results.json").read_text()
    again = train_cli(
        [
            *FAST,
            "method=full",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds this completed run" in again.stdout
    assert f"adapted {100 * record['metrics']['test']['wer']:5.1f}%" in again.stdout
    assert (run_dir / "results.json").read_text() == results_text
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in recorded.items())


@pytest.mark.slow  # 3 processes, ~3.5 min on 2 cores; the fast suite keeps test_resume.py (SIGTERM, resume equality)
def test_interrupted_runs_are_recorded_and_resume_from_last_checkpoint(tiny_corpus, tmp_path):
    # No hydra.run.dir: the same command must find its own run directory by its name.
    args = [
        *FAST,
        "method=ssvd",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        "trainer.max_steps=40",
        "trainer.val_check_interval=2",
        "evaluation.baseline=false",
        "~callbacks.early_stopping",
        f"paths.log_dir={tmp_path}",
    ]
    env = {**os.environ, "ASR_PEFT_ROOT": str(ROOT)}

    def start_and_stop_after_a_checkpoint(stop: signal.Signals) -> subprocess.Popen:
        before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("train/*/checkpoints/last.ckpt")}
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "train.py"), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 300
        while (
            time.time() < deadline
            and process.poll() is None
            and not any(before.get(p) != p.stat().st_mtime_ns for p in tmp_path.glob("train/*/checkpoints/last.ckpt"))
        ):
            time.sleep(0.05)
        time.sleep(0.5)  # let the checkpoint file be complete
        process.send_signal(stop)
        process.wait(timeout=300)
        return process

    # SIGTERM (a scheduler's stop): the record is written first, then a non-zero exit.
    assert start_and_stop_after_a_checkpoint(signal.SIGTERM).returncode == 128 + signal.SIGTERM
    (last,) = tmp_path.glob("train/*/checkpoints/last.ckpt")
    run_dir = last.parents[1]
    assert run_dir.name.startswith("ssvd_p=0.4,manifest,owsm_tiny,seed=0,data.corpus_dir=")
    record = read_results(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("SIGTERM")
    # SIGKILL: no chance to write anything; the record left behind reads as killed.
    assert start_and_stop_after_a_checkpoint(signal.SIGKILL).returncode == -signal.SIGKILL
    assert read_results(run_dir)["status"] == "killed"
    resumed = train_cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["resumed_from"].endswith("last.ckpt")
    assert record["global_step"] == 40
    history = [h["step"] for h in record["validation_history"]]
    assert history == list(range(2, 41, 2))  # kept across both restarts, no step repeated
    assert sorted(json.loads(p.read_text())["status"] for p in run_dir.glob("results.*-*.json")) == ["failed", "killed"]
    assert [p.name for p in (tmp_path / "train").iterdir()] == [run_dir.name]


def test_dry_run_plans_owsm_1b_without_weights(tmp_path):
    result = train_cli(["method=ssvd", "model=owsm_1b", "adapt.p=0.4", "dry_run=true", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["trainable"] == 31_861_480 and "31.86M" in result.stdout


def test_every_config_group_composes_and_the_1b_job_config_prints():
    result = train_cli(["model=owsm_1b", "method=full", "--cfg", "job"])
    assert result.returncode == 0 and "hf_id: espnet/owsm_v3.1_ebf" in result.stdout
    groups = {
        g: sorted(p.stem for p in (ROOT / "configs" / g).glob("*.yaml"))
        for g in (
            "model",
            "method",
            "adapt",
            "data",
            "trainer",
            "logger",
            "callbacks",
            "optimizer",
            "evaluation",
            "paths",
            "experiment",
        )
    }
    for group, options in groups.items():
        for option in options:
            overrides = [f"experiment={option}"] if group == "experiment" else [f"{group}={option}"]
            cfg = compose_config("train", overrides)
            OmegaConf.to_container(cfg.model, resolve=True)
            OmegaConf.to_container(cfg.method, resolve=True)
    assert "owsm_tiny" in groups["model"] and "ssvd" in groups["method"] and "ddp" in groups["trainer"]


@pytest.mark.parametrize("path", ["outputs/train/method=ssvd,seed=0", "runs/it's=here", "plain/dir"])
def test_run_dir_paths_reach_hydra_verbatim(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from asr_peft.cli import quote_path_overrides

    args = quote_path_overrides([f"run_dir={path}", "data=synth_child", "run_dir='already=quoted'"], ("run_dir",))
    parsed = OverridesParser.create().parse_overrides(args)
    assert [o.value() for o in parsed] == [path, "synth_child", "already=quoted"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["method=nope"], "Could not find 'method/nope'"),
        (["adapt.q=1"], "adapt.q"),
        (["trainer=tpu"], "trainer/tpu"),
    ],
)
def test_unknown_config_values_give_one_line_errors(args, expected):
    result = train_cli(args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]


def test_bad_inputs_fail_before_training_and_name_the_culprit(tiny_corpus, tmp_path):
    valid = (tiny_corpus / "valid.jsonl").read_text()
    (tiny_corpus / "valid.jsonl").write_text('{"id": "x", "audio": "audio/missing.wav", "text": "hi"}\n')
    with pytest.raises(DataError, match="missing.wav does not exist"):
        run_in_process(["method=full", "data=manifest", f"data.corpus_dir={tiny_corpus}"], tmp_path / "a")
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "failed"
    (tiny_corpus / "valid.jsonl").write_text(valid)
    with pytest.raises(ModelLoadError, match="model.path"):
        run_in_process(["model=owsm_0.1b", "data=manifest", f"data.corpus_dir={tiny_corpus}"], tmp_path / "b")
    with pytest.raises(ConfigError, match="adapt.p"):
        run_in_process(
            [
                "method=ssvd",
                "adapt.p=1.5",
                "data=manifest",
                f"data.corpus_dir={tiny_corpus}",
                "data.on_error=skip",
                "evaluation.baseline=false",
            ],
            tmp_path / "c",
        )


def test_skipped_utterances_are_counted_in_results_and_training_reads_the_rest(tiny_corpus, tmp_path):
    import numpy as np
    import soundfile

    soundfile.write(str(tiny_corpus / "audio" / "nan.wav"), np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    audio = tiny_corpus / "audio" / "train0.wav"
    with (tiny_corpus / "train.jsonl").open("a") as handle:
        handle.write(
            '{"id": "gone", "audio": "audio/gone.wav", "text": "x"}\n{"id": "blank", "audio": "audio/train0.wav", "text": " "}\n'
            '{"id": "nan", "audio": "audio/nan.wav", "text": "x"}\n{"id": "neg", "audio": "audio/train0.wav", "text": "x", "start": -1}\n'
            '{"id": "dots", "audio": "audio/train0.wav", "text": "..."}\n{"id": "null", "audio": "audio/train0.wav", "text": null}\n'
            '{"id": "klingon", "audio": "audio/train0.wav", "text": "x", "language": "tlh"}\n'
        )
    (tiny_corpus / "train.jsonl").write_bytes(
        (tiny_corpus / "train.jsonl").read_bytes() + b'{"id": "latin1", "audio": "x", "text": "caf\xe9"}\n'
    )
    record = run_in_process(
        [
            "method=ssvd",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "data.on_error=skip",
            "evaluation.baseline=false",
            "evaluation.subspace=false",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
        ],
        tmp_path / "run",
    )
    assert audio.is_file() and record["status"] == "completed" and record["global_step"] == 4
    assert record["skipped"] == {
        "missing_audio": 1,
        "empty_transcript": 1,
        "non_finite_audio": 1,
        "bad_segment": 1,
        "empty_after_normalisation": 1,
        "invalid_manifest_line": 2,
        "unknown_language": 1,
    }
    assert json.loads((tmp_path / "run" / "results.json").read_text())["skipped"] == record["skipped"]


def test_baseline_scores_are_cached_by_the_weights_and_test_data_not_by_the_paths(tiny_bundle_factory, tiny_corpus, tmp_path):
    from asr_peft.models.export import export_espnet_dir

    model_dir = tmp_path / "model"
    common = [
        "method=frozen",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        f"model.path={model_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer.max_steps=1",
        "evaluation.subspace=false",
    ]
    export_espnet_dir(tiny_bundle_factory(0), model_dir)
    first = run_in_process(common, tmp_path / "a")["baseline_metrics"]
    assert run_in_process(common, tmp_path / "b")["baseline_metrics"] == first
    assert not (tmp_path / "b" / "decode_baseline").exists()  # served from the cache
    export_espnet_dir(tiny_bundle_factory(1), model_dir, overwrite=True)  # other weights, same path
    run_in_process(common, tmp_path / "c")
    assert (tmp_path / "c" / "decode_baseline").is_dir()  # scored afresh
    test = tiny_corpus / "test.jsonl"
    test.write_text(test.read_text().splitlines()[0] + "\n")  # a corpus regenerated in place
    assert run_in_process(common, tmp_path / "d")["baseline_metrics"]["test"]["num_utterances"] == 1
