"""The Lightning Trainer a config describes, and the checkpoint whose weights are tested after training.

Under `bf16-true`/`16-true` the adapters' own tensors stay fp32 (`models/precision.py`). Checkpoints
are written by `AtomicCheckpointIO`: Lightning's own writes a temporary file in the system's temp
directory and moves it across file systems, which a full run disk tears (a half `last.ckpt`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from asr_peft.files import write_atomically
from asr_peft.models.precision import HalfPrecisionName, HalfPrecisionWithFP32Adapters
from asr_peft.training.datamodule import SamplerEpochs
from asr_peft.training.hardware import HALF_PRECISIONS, unified_precision
from asr_peft.training.resume import RandomState, StoppedStaysStopped
from asr_peft.training.results import aside_path

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the checkpoint, then a rename (`asr_peft.files`)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda file: torch.save(checkpoint, file))


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    """`cfg.trainer` with the configured callbacks and loggers, writing below `run_dir`."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # the switch wins over a configured progress bar
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # A new batch order every epoch; resumed runs draw as uninterrupted ones, and stay stopped once stopped.
    callbacks += [SamplerEpochs(), RandomState(), StoppedStaysStopped()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    keep_earlier_csv_metrics(loggers)
    overrides: dict[str, Any] = {"plugins": [AtomicCheckpointIO()]}
    precision = unified_precision(cfg.trainer.get("precision"))
    if precision in HALF_PRECISIONS:  # Lightning's own plugin, with the adapters left in fp32
        overrides = {
            "precision": None,
            "plugins": [*overrides["plugins"], HalfPrecisionWithFP32Adapters(cast(HalfPrecisionName, precision))],
        }
    last_batch = final_validation_batch(cfg.trainer)
    if last_batch is not None:
        log.info(
            "trainer.val_check_interval=%s is past the last training batch (%d): validating there instead, so "
            "that the run has a checkpoint to test",
            cfg.trainer.val_check_interval,
            last_batch,
        )
        overrides["val_check_interval"] = last_batch
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir), **overrides)


def keep_earlier_csv_metrics(loggers: list) -> None:
    """Lightning's CSVLogger deletes the `metrics.csv` it finds when it starts writing: the rows of a resumed
    run's interrupted attempt would be lost. They are kept beside it, as `metrics.earlier-<time>.csv`."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            metrics = Path(logger.log_dir) / "metrics.csv"  # read before `.experiment`, which deletes it
            if metrics.is_file():
                metrics.rename(aside_path(metrics, "earlier"))


def final_validation_batch(trainer: DictConfig) -> int | None:
    """The last training batch, when a step-counted validation interval would never be reached before it
    (a short run, e.g. `trainer.max_steps=4` with the default interval of 50): validation then runs once,
    at the end. `val_check_interval` counts batches, `max_steps` optimizer updates."""
    interval, max_steps = trainer.get("val_check_interval"), trainer.get("max_steps", -1)
    if not isinstance(interval, int) or trainer.get("check_val_every_n_epoch") is not None or max_steps <= 0:
        return None
    batches = max_steps * int(trainer.get("accumulate_grad_batches") or 1)
    return batches if interval > batches else None


def tested_checkpoint_path(trainer: pl.Trainer, which: str) -> str | None:
    """The best (or last) checkpoint the trainer wrote, if any."""
    callback = trainer.checkpoint_callback
    path = None
    if isinstance(callback, ModelCheckpoint):
        path = callback.best_model_path if which == "best" else callback.last_model_path
    return path if path and Path(path).is_file() else None


def load_tested_checkpoint(module: pl.LightningModule, trainer: pl.Trainer, which: str) -> tuple[str | None, int | None]:
    """Put the trainable weights of the best (or last) checkpoint back into the model for testing.

    Returns the checkpoint's path and the training step it was saved at (None, None without one).
    """
    path = tested_checkpoint_path(trainer, which)
    if path is None:
        return None, None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return path, checkpoint.get("global_step")
