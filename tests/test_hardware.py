"""Accelerator, strategy, devices and precision are checked against the machine before anything loads.

This machine has no GPU; a GPU machine is simulated by patching torch.cuda's queries (the checks
read nothing else), so both sides of every rule run here.
"""

from __future__ import annotations

import pytest
import torch

from asr_peft.errors import ConfigError
from asr_peft.training.hardware import scoring_target, validate_hardware
from conftest import compose_config
from test_train_e2e import train_cli


@pytest.fixture
def gpus(monkeypatch):
    """Pretend to be a machine with `count` CUDA GPUs (with or without bf16 arithmetic)."""

    def install(count: int = 2, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100" if not bf16 else "H200")

    return install


def config(*overrides: str):
    return compose_config("train", list(overrides))


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["trainer=fsdp", "trainer.accelerator=cpu"], "trainer.strategy=fsdp", "CUDA GPUs only"),
        (["trainer=fsdp"], "trainer.strategy=fsdp", "no CUDA GPU"),
        (["trainer=ddp"], "trainer.accelerator=gpu", "no CUDA GPU"),
        (["trainer=gpu"], "trainer.accelerator=gpu", "no CUDA GPU"),
        (["trainer.accelerator=tpu"], "trainer.accelerator=tpu", "choose from"),
        (["trainer.precision=16-mixed"], "trainer.precision=16-mixed", "quietly run bf16-mixed"),
        (["trainer.precision=fp8"], "trainer.precision=fp8", "choose from"),
        (["trainer.devices=0"], "trainer.devices=0", "at least 1"),
        (["method=full", "trainer.precision=bf16-true"], "trainer.precision=bf16-true", "method=full"),
        (["trainer.precision=16-true", "evaluation.decode=beam"], "trainer.precision=16-true", "overflows in fp16"),
        (
            ["trainer.precision=16-true", "evaluation.secondary_decodes=[ctc_greedy,beam]"],
            "trainer.precision=16-true with beam in evaluation.secondary_decodes",
            "overflows in fp16",
        ),
        (["evaluation.device=cuda"], "evaluation.device=cuda", "no CUDA GPU"),
        (["evaluation.device=tpu"], "evaluation.device=tpu", "cpu, cuda"),
        (["evaluation.precision=16-mixed"], "evaluation.precision=16-mixed", "bf16-mixed"),
        (["evaluation.precision=bf16-true"], "evaluation.precision=bf16-true with trainer.precision=32-true", "evaluate.py"),
    ],
)
def test_impossible_settings_on_this_cpu_machine_fail_in_one_line(overrides, key, says):
    with pytest.raises(ConfigError) as err:
        validate_hardware(config(*overrides))
    message = str(err.value)
    assert message.startswith(key) and says in message and "\n" not in message


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.precision=bf16-mixed"],
        ["trainer.precision=bf16-true"],
        ["trainer.precision=16-true"],
        ["trainer.precision=bf16"],
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"],
        ["evaluation.device=cpu", "evaluation.precision=32-true", "evaluation.decode=beam"],
    ],
)
def test_what_this_cpu_machine_runs_passes(overrides):
    validate_hardware(config(*overrides))


@pytest.mark.parametrize(
    "overrides, key, says",
    [
        (["trainer=gpu", "trainer.devices=3"], "trainer.devices=3", "2 CUDA device(s)"),
        (["trainer=gpu", "trainer.devices=[0,2]"], "trainer.devices=[0, 2]", "2 CUDA device(s)"),
        (["trainer=fsdp", "trainer.precision=bf16-true"], "trainer.precision=bf16-true with FSDP", "one dtype"),
        (["trainer=fsdp", "~callbacks.model_checkpoint"], "trainer=fsdp without callbacks.model_checkpoint", "rebuilt"),
        (["trainer=gpu", "evaluation.device=cuda:2"], "evaluation.device=cuda:2", "2 CUDA device(s)"),
    ],
)
def test_impossible_settings_on_a_two_gpu_machine(gpus, overrides, key, says):
    gpus(2)
    with pytest.raises(ConfigError) as err:
        validate_hardware(config(*overrides))
    assert str(err.value).startswith(key) and says in str(err.value)


def test_bf16_on_a_gpu_without_bf16_names_the_gpu_and_the_alternative(gpus):
    gpus(1, bf16=False)
    with pytest.raises(ConfigError, match="Tesla V100.*use 16-mixed"):
        validate_hardware(config("trainer=gpu"))
    validate_hardware(config("trainer=gpu", "trainer.precision=16-mixed"))


def test_gpu_runs_validate_and_score_on_their_first_device_in_validation_precision(gpus):
    gpus(4)
    for overrides in (["trainer=gpu"], ["trainer=ddp"], ["trainer=fsdp"], ["trainer=gpu", "trainer.devices=[2,3]"]):
        validate_hardware(config(*overrides))
    cfg = config("trainer=gpu", "trainer.devices=[2,3]")
    assert scoring_target(cfg.trainer, cfg.evaluation) == (torch.device("cuda:2"), "bf16-mixed")
    cfg = config("trainer=ddp", "evaluation.device=cpu", "evaluation.precision=32")
    assert scoring_target(cfg.trainer, cfg.evaluation) == (torch.device("cpu"), "32-true")
    cfg = config("trainer=cpu", "trainer.accelerator=auto")
    assert scoring_target(cfg.trainer, cfg.evaluation) == (torch.device("cuda:0"), "32-true")


def test_evaluate_checks_the_scoring_options_it_is_given_before_reading_the_run():
    for evaluation, key in (({"device": "cuda"}, "evaluation.device=cuda"), ({"precision": "fp8"}, "evaluation.precision=fp8")):
        with pytest.raises(ConfigError, match=key):
            validate_hardware({"evaluation": evaluation})
    validate_hardware({"evaluation": {"device": "cpu", "precision": "bf16-true"}})


def test_cpu_runs_score_on_the_cpu_in_their_training_precision():
    cfg = config("trainer.precision=bf16-true")
    assert scoring_target(cfg.trainer, cfg.evaluation) == (torch.device("cpu"), "bf16-true")


def test_rescoring_a_gpu_run_on_a_machine_without_one_says_how():
    """evaluate.py reads the run's trainer config: a GPU run rescored here must name evaluation.device."""
    cfg = config("trainer=gpu")
    with pytest.raises(ConfigError, match="evaluation.device=cpu"):
        scoring_target(cfg.trainer, {})
    assert scoring_target(cfg.trainer, {"device": "cpu"}) == (torch.device("cpu"), "bf16-mixed")


def test_cli_refuses_fsdp_on_the_cpu_before_loading_anything(tmp_path):
    """One line, exit status 2, and nothing loaded: the model path and the corpus given here do not exist,
    and each would fail with its own error had anything been loaded."""
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            "trainer=fsdp",
            "trainer.accelerator=cpu",
            "model.path=/nonexistent/model",
            "data=manifest",
            f"data.corpus_dir={tmp_path / 'no-corpus'}",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: trainer.strategy=fsdp: Lightning's FSDP runs on CUDA GPUs only")
    assert not any("Traceback" in line for line in lines)
    assert not (run_dir / "results.json").exists()
