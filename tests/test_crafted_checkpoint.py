"""A crafted checkpoint runs nothing: every load is `weights_only=True` (or safetensors).

The payload, unpickled with `weights_only=False`, would create a marker file; `evaluate.py` /
`export.py --checkpoint` (load_trained_run) and a resumed training run (Lightning's own load) must
refuse the file with the marker never appearing, also where the environment turns torch's default
off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 overrides only loads that leave weights_only unset).
"""

from __future__ import annotations

import os

import pytest
import torch
from omegaconf import OmegaConf

from asr_peft.errors import ModelLoadError
from conftest import compose_config
from test_train_e2e import FAST, run_in_process


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def crafted_checkpoint(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "global_step": 1, "payload": Payload(marker)}, path)
    return path


def test_the_payload_would_run_if_unpickled(tmp_path):
    """The check that the file is dangerous: a load that leaves weights_only to the environment runs it."""
    path = crafted_checkpoint(tmp_path / "evil.ckpt", tmp_path / "marker")
    torch.load(path)
    assert (tmp_path / "marker").is_dir()


@pytest.fixture(autouse=True)
def unsafe_default(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def test_evaluate_and_export_refuse_a_crafted_checkpoint_without_running_it(tmp_path):
    from asr_peft.evaluation.checkpoint import load_trained_run

    run_dir = tmp_path / "run"
    cfg = compose_config("train", [*FAST, "method=lora", f"paths.output_dir={run_dir}"])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")
    path = crafted_checkpoint(tmp_path / "evil.ckpt", tmp_path / "marker")
    with pytest.raises(Exception) as refused:
        load_trained_run(run_dir, str(path))
    assert not (tmp_path / "marker").exists()  # the payload did not run
    assert isinstance(refused.value, ModelLoadError) and str(refused.value) == (
        f"cannot read checkpoint {path}: it holds more than tensors and plain data (os.makedirs), refused unread"
    )


def test_resuming_from_a_crafted_last_checkpoint_runs_nothing(tiny_corpus, tmp_path, caplog):
    """The crafted `last.ckpt` is refused in one line (without torch's advice to load it with
    weights_only=False) and the run starts afresh: there is no other checkpoint to resume from."""
    run_dir = tmp_path / "run"
    last = crafted_checkpoint(run_dir / "checkpoints" / "last.ckpt", tmp_path / "marker")
    record = run_in_process(
        [
            "method=lora",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "evaluation.baseline=false",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
        ],
        run_dir,
    )
    assert not (tmp_path / "marker").exists()  # the payload did not run
    assert record["status"] == "completed" and record["resumed_from"] is None and record["global_step"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "asr_peft.training.resume"]
    assert warnings == [
        f"cannot read checkpoint {last}: it holds more than tensors and plain data (os.makedirs), "
        "refused unread; starting afresh instead"
    ]


def lora_run_dir(run_dir, r):
    cfg = compose_config("train", [*FAST, "method=lora", f"method.r={r}", f"paths.output_dir={run_dir}"])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save({k: v for k, v in cfg.items() if k != "hydra"}, run_dir / ".hydra" / "config.yaml")
    return cfg


def test_unusable_checkpoints_are_one_line_naming_the_file(tmp_path):
    """Issue 28, case 7: another budget's checkpoint gave a 146-line size-mismatch RuntimeError, a file
    without state_dict a KeyError, a list a TypeError."""
    from asr_peft.adapters import apply_method
    from asr_peft.evaluation.checkpoint import load_trained_run
    from asr_peft.models import load_owsm

    cfg = lora_run_dir(tmp_path / "run", r=8)
    torch.manual_seed(0)
    other = load_owsm(OmegaConf.to_container(cfg.model, resolve=True))
    budget4 = compose_config("train", [*FAST, "method=lora", "method.r=4"]).method
    apply_method(other.model, OmegaConf.to_container(budget4, resolve=True), OmegaConf.to_container(cfg.adapt, resolve=True))
    trainable = {f"model.{name}": p.detach() for name, p in other.model.named_parameters() if p.requires_grad}
    first = next(iter(trainable))  # the first tensor the check meets
    cases = {
        "budget.ckpt": (
            {"state_dict": trainable, "global_step": 1},
            "{path} was trained with another method budget or model: its %s is %s, this run's is %s"
            % (
                first.removeprefix("model."),
                tuple(trainable[first].shape),
                tuple(trainable[first].shape[:-1]) + (8,)
                if trainable[first].shape[-1] == 4
                else (8,) + tuple(trainable[first].shape[1:]),
            ),
        ),
        "weights.ckpt": (
            {"model.x": torch.zeros(1)},
            "{path} is not a training checkpoint (a dictionary with a state_dict of tensors; it holds a dictionary without one)",
        ),
        "list.ckpt": (
            [torch.zeros(1)],
            "{path} is not a training checkpoint (a dictionary with a state_dict of tensors; it holds list)",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        torch.save(content, path)
        with pytest.raises(ModelLoadError) as refused:
            load_trained_run(tmp_path / "run", str(path))
        assert str(refused.value) == message.format(path=path)


def test_a_crafted_model_weights_file_is_refused_without_torchs_advice(tmp_path):
    """Issue 28, case 7: the model.pth refusal relayed torch's advice to load with weights_only=False."""
    import shutil

    from asr_peft.models import load_owsm
    from conftest import ROOT

    exported = shutil.copytree(ROOT / "checkpoints" / "owsm_tiny_pretrained", tmp_path / "model")
    weights = exported / "exp" / "s2t_train" / "model.pth"
    torch.save({"payload": Payload(tmp_path / "marker")}, weights)
    with pytest.raises(ModelLoadError) as refused:
        load_owsm({"name": "crafted", "path": str(exported)})
    assert not (tmp_path / "marker").exists()
    assert str(refused.value) == (
        f"cannot read weights {weights}: it holds more than tensors and plain data (os.makedirs), refused unread"
    )
