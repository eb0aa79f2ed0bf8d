"""The Trainer a config builds: a short run validates (and so has a checkpoint to test) at its last batch."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from asr_peft.training.trainer import build_trainer, final_validation_batch
from conftest import compose_config


@pytest.mark.parametrize(
    "trainer, expected",
    [
        ({"max_steps": 4, "val_check_interval": 50}, 4),  # the default interval, a short run
        ({"max_steps": 4, "val_check_interval": 50, "accumulate_grad_batches": 4}, 16),  # batches, not updates
        ({"max_steps": 100, "val_check_interval": 50}, None),  # reached: left alone
        ({"max_steps": 10, "val_check_interval": 40, "accumulate_grad_batches": 4}, None),
        ({"max_steps": 4, "val_check_interval": 0.5}, None),  # a fraction of an epoch
        ({"max_steps": 4, "val_check_interval": 50, "check_val_every_n_epoch": 1}, None),
        ({"max_steps": -1, "max_epochs": 3, "val_check_interval": 50}, None),
    ],
)
def test_the_final_validation_batch(trainer, expected):
    assert final_validation_batch(OmegaConf.create(trainer)) == expected


def test_a_four_step_run_validates_at_its_fourth_step(tmp_path):
    trainer = compose_config("train", ["trainer.max_steps=4"]).trainer
    assert trainer.val_check_interval == 50
    cfg = OmegaConf.create({"trainer": OmegaConf.to_container(trainer, resolve=True)})  # no callbacks or loggers
    assert build_trainer(cfg, tmp_path).val_check_interval == 4
