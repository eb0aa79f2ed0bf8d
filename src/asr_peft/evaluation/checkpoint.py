"""Rebuilding a trained run's model: pretrained weights, the run's method, the checkpoint's tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf

from asr_peft.adapters import adapter_modules, apply_method
from asr_peft.adapters.fingerprint import FINGERPRINT_KEY, check_fingerprint
from asr_peft.adapters.ssvd import current_method
from asr_peft.config.resolve import plain
from asr_peft.errors import ConfigError, ModelLoadError, torch_load_problem
from asr_peft.models import load_model


def read_run_config(run_dir: Path) -> DictConfig:
    """The composed config a training run saved (`.hydra/config.yaml`)."""
    config_file = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"run_dir={run_dir} is not a training run directory (no {config_file})")
    config = OmegaConf.load(config_file)
    if not isinstance(config, DictConfig):
        raise ConfigError(f"{config_file} is not a mapping of settings (a training run's saved config)")
    if isinstance(config.get("method"), DictConfig):  # written before today's keys: read in them
        method = OmegaConf.to_container(config.method, resolve=False)
        config.method = current_method(cast(dict[str, Any], method), trained_in=str(run_dir))
    return config


def checkpoint_path(run_dir: Path, checkpoint: str = "best") -> Path:
    """`best` / `last` of the run, or a path to a .ckpt file; it must exist."""
    path = Path(checkpoint) if checkpoint not in ("best", "last") else Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist (checkpoint=best|last|<path>)")
    return path


def read_checkpoint(path: Path, *, map_location: torch.device | str = "cpu", mmap: bool = False) -> dict:
    """A Lightning checkpoint's contents, loaded as data only; anything else is one line naming the file."""
    try:  # weights_only: a checkpoint is data; a crafted pickle must not run code
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises several types for a damaged file
        raise ModelLoadError(f"cannot read checkpoint {path}: {torch_load_problem(err)}") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        holds = "a dictionary without one" if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ModelLoadError(f"{path} is not a training checkpoint (a dictionary with a state_dict of tensors; it holds {holds})")
    return checkpoint


def load_pretrained(run_cfg: DictConfig, *, device: torch.device | str = "cpu"):
    """The run's model before adaptation, as training loaded it."""
    # A random-init model's frozen weights are those training drew right after seeding with the run's
    # seed (training/run.py); drawn from another state they would be another model (the fingerprint says so).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(run_cfg.seed))
        return load_model(
            plain(run_cfg.model),
            device=str(device),
            cache_dir=run_cfg.paths.get("model_cache_dir"),
        )


def rebuild_trained_model(run_cfg: DictConfig, path: Path, *, device: torch.device | str = "cpu"):
    """The pretrained model with the run's method applied and the checkpoint's trainable tensors, on `device`."""
    bundle = load_pretrained(run_cfg, device=device)
    apply_method(bundle.model, plain(run_cfg.method), plain(run_cfg.adapt), svd_cache_dir=Path(run_cfg.paths.cache_dir) / "svd")
    checkpoint_dict = read_checkpoint(path, map_location=device)
    state = checkpoint_dict["state_dict"]
    prefix = "model."
    tensors = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    missing = {n for n, p in bundle.model.named_parameters() if p.requires_grad} - set(tensors)
    if missing:
        raise ModelLoadError(f"{path} lacks trainable tensor(s) of the run's method, e.g. {sorted(missing)[0]}")
    shapes = bundle.model.state_dict()
    for name, tensor in tensors.items():
        if name in shapes and tuple(getattr(tensor, "shape", ())) != tuple(shapes[name].shape):
            raise ModelLoadError(
                f"{path} was trained with another method budget or model: its {name} is "
                f"{tuple(getattr(tensor, 'shape', ()))}, this run's is {tuple(shapes[name].shape)}"
            )
    bundle.model.load_state_dict(tensors, strict=False)
    check_fingerprint(adapter_modules(bundle.model), checkpoint_dict.get(FINGERPRINT_KEY), str(path))
    bundle.model.eval()
    return bundle


def load_trained_run(run_dir: Path, checkpoint: str = "best", *, device: torch.device | str = "cpu"):
    """(bundle with the trained weights on `device`, the run's config, the checkpoint path used)."""
    run_cfg = read_run_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    return rebuild_trained_model(run_cfg, path, device=device), run_cfg, str(path)
