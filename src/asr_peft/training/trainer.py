"""The Lightning Trainer a config describes, and the checkpoint whose weights are tested after training."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    """`cfg.trainer` with the configured callbacks and loggers, writing below `run_dir`."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir))


def load_tested_checkpoint(module: pl.LightningModule, trainer: pl.Trainer, which: str) -> tuple[str | None, int | None]:
    """Put the trainable weights of the best (or last) checkpoint back into the model for testing.

    Returns the checkpoint's path and the training step it was saved at (None, None without one).
    """
    callback = trainer.checkpoint_callback
    path = None
    if callback is not None:
        path = callback.best_model_path if which == "best" else callback.last_model_path
    if not path or not Path(path).is_file():
        return None, None
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return path, checkpoint.get("global_step")
