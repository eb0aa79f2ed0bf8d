"""Rebuilding a trained run's model: pretrained weights, the run's method, the checkpoint's tensors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from asr_peft.adapters import apply_method
from asr_peft.errors import ConfigError, ModelLoadError
from asr_peft.models import load_owsm


def load_trained_run(run_dir: Path, checkpoint: str = "best"):
    """(bundle with the trained weights, the run's config, the checkpoint path used)."""
    config_file = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"run_dir={run_dir} is not a training run directory (no {config_file})")
    run_cfg: DictConfig = OmegaConf.load(config_file)
    path = Path(checkpoint) if checkpoint not in ("best", "last") else Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist (checkpoint=best|last|<path>)")
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    bundle = load_owsm(plain(run_cfg.model), cache_dir=run_cfg.paths.get("model_cache_dir"))
    apply_method(bundle.model, plain(run_cfg.method), plain(run_cfg.adapt),
                 svd_cache_dir=Path(run_cfg.paths.cache_dir) / "svd")
    try:  # weights_only: a checkpoint is data; a crafted pickle must not run code
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"unsupported GLOBAL (\S+)", str(err))
        raise ModelLoadError(f"cannot read checkpoint {path}: it holds more than tensors and plain data "
                             f"({unsafe.group(1) if unsafe else 'an object'}), refused unread") from err
    except Exception as err:  # torch raises several types for a damaged file
        raise ModelLoadError(f"cannot read checkpoint {path}: {' '.join(str(err).split())[:200]}") from err
    prefix = "model."
    tensors = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    missing = {n for n, p in bundle.model.named_parameters() if p.requires_grad} - set(tensors)
    if missing:
        raise ModelLoadError(f"{path} lacks trainable tensor(s) of the run's method, e.g. {sorted(missing)[0]}")
    bundle.model.load_state_dict(tensors, strict=False)
    bundle.model.eval()
    return bundle, run_cfg, str(path)
