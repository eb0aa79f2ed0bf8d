"""The Lightning Trainer a config describes, and the checkpoint whose weights are tested after training.

Under `trainer.precision=bf16-true|16-true` Lightning casts the whole model to half precision; here the
adapters' own tensors are left out of that cast, untouched (not rounded and cast back: a resumed
adapter would lose its precision), before DDP or the optimizer see them, so their small updates are not
rounded away while the frozen weights and activations run in half precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import HalfPrecision
from omegaconf import DictConfig
from torch import nn

from asr_peft.adapters.model import adapter_modules


def cast_keeping_adapters(model: nn.Module, cast: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """`cast(model)` (a dtype conversion) with every adapter's own parameters and buffers (not the wrapped
    frozen layer's) left exactly as they were."""
    owned = []
    for _, adapter in adapter_modules(model):
        frozen = {id(t) for t in (*adapter.base_layer.parameters(), *adapter.base_layer.buffers())}
        for owner in adapter.modules():
            for table in (owner._parameters, owner._buffers):
                owned += [(table, key, t, t.data) for key, t in table.items() if t is not None and id(t) not in frozen]
    model = cast(model)
    for table, key, tensor, data in owned:
        tensor.data = data    # a parameter keeps its identity through the cast: the optimizer's and DDP's
        table[key] = tensor   # a buffer was replaced by its cast copy: the original goes back
    return model


class HalfPrecisionWithFP32Adapters(HalfPrecision):
    """Lightning's `bf16-true`/`16-true`, with fp32 master copies of the adapter parameters."""

    def convert_module(self, module: nn.Module) -> nn.Module:
        return cast_keeping_adapters(module, super().convert_module)


def build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    """`cfg.trainer` with the configured callbacks and loggers, writing below `run_dir`."""
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    overrides = {}
    if str(cfg.trainer.get("precision")) in ("bf16-true", "16-true"):
        overrides = {"precision": None, "plugins": [HalfPrecisionWithFP32Adapters(str(cfg.trainer.precision))]}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir),
                       **overrides)


def load_tested_checkpoint(module: pl.LightningModule, trainer: pl.Trainer, which: str) -> str | None:
    """Put the trainable weights of the best (or last) checkpoint back into the model for testing."""
    callback = trainer.checkpoint_callback
    path = None
    if callback is not None:
        path = callback.best_model_path if which == "best" else callback.last_model_path
    if not path or not Path(path).is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state, strict=False)
    return path
