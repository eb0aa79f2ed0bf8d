"""What a config asks of this machine's hardware, checked before anything is loaded, and where scoring runs.

`validate_hardware(cfg)` checks `trainer.accelerator`, `trainer.strategy`, `trainer.devices` and
`trainer.precision` (and `evaluation.device` / `evaluation.precision`) against this machine and against
each other, and raises a one-line `ConfigError` that names the key. It imports only torch, so it
answers within seconds: Lightning finds most of these only when the Trainer is built, after data,
model and baseline have loaded (30 s to minutes), and one it does not report at all (it trains
`16-mixed` on the CPU as `bf16-mixed`).

`scoring_target(trainer, evaluation)`: the device and precision test sets are scored in. By default the
training accelerator (its first device; the baseline, the post-training test and `evaluate.py` alike)
and the precision validation ran in (`trainer.precision`); `evaluation.device` / `evaluation.precision`
name others.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from asr_peft.errors import ConfigError

ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
PRECISIONS = ("32-true", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")  # Lightning's names
PRECISION_ALIASES = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
HALF_PRECISIONS = ("bf16-true", "16-true")
KNOWN_STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "single_device")
NO_GPU = "this machine has no CUDA GPU (torch.cuda.is_available() is False)"


def unified_precision(value: Any) -> str | None:
    """Lightning's canonical name for a precision setting, or None if it is not one this project runs."""
    name = PRECISION_ALIASES.get(str(value), str(value))
    return name if name in PRECISIONS else None


def validate_hardware(cfg: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for a hardware setting this machine or Lightning cannot run."""
    trainer = cfg.get("trainer")
    evaluation = cfg.get("evaluation") or {}
    if trainer is None:  # evaluate.py: the run's own trainer config is read later; explicit choices now
        if evaluation.get("device"):
            _device(evaluation["device"], "evaluation.device")
        if evaluation.get("precision"):
            _precision(evaluation["precision"], "evaluation.precision")
        return
    strategy = strategy_name(trainer.get("strategy", "auto"))
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator={accelerator} is not one this project runs on; choose from {', '.join(ACCELERATORS)}"
        )
    device_type = accelerator_device_type(accelerator)
    if strategy.startswith("fsdp") and (device_type != "cuda" or not torch.cuda.is_available()):
        reason = NO_GPU if device_type == "cuda" else f"trainer.accelerator={accelerator}"
        raise ConfigError(
            f"trainer.strategy={strategy}: Lightning's FSDP runs on CUDA GPUs only, and {reason}; "
            "for several CPU processes use trainer=ddp trainer.accelerator=cpu"
        )
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: {NO_GPU}; use trainer=cpu "
            "(or trainer.accelerator=cpu, e.g. with trainer=ddp for several CPU processes)"
        )
    if strategy.startswith("deepspeed"):
        raise ConfigError(f"trainer.strategy={strategy}: DeepSpeed is not installed in this environment; use ddp or fsdp")
    if strategy not in KNOWN_STRATEGIES and strategy not in _registered_strategies():
        raise ConfigError(f"trainer.strategy={strategy} is not a Lightning strategy; use trainer=ddp or trainer=fsdp")
    _devices(trainer.get("devices", "auto"), device_type)
    precision = _precision(trainer.get("precision", "32-true"), "trainer.precision", device_type)
    if precision in HALF_PRECISIONS and strategy.startswith("fsdp"):
        raise ConfigError(
            f"trainer.precision={precision} with FSDP: FSDP flattens each wrapped block's parameters "
            "into one tensor of one dtype, so fp32 adapters cannot sit beside half-precision weights; "
            "use bf16-mixed"
        )
    if strategy.startswith("fsdp") and not ((cfg.get("callbacks") or {}).get("model_checkpoint")):
        raise ConfigError(
            "trainer=fsdp without callbacks.model_checkpoint: each process holds a shard of the trained "
            "model, so the test scores a copy rebuilt from the checkpoint; keep the checkpoint callback"
        )
    if precision in HALF_PRECISIONS and (cfg.get("method") or {}).get("name") == "full":
        raise ConfigError(
            f"trainer.precision={precision} with method=full would train half-precision weights whose "
            "updates fall below their rounding step; use bf16-mixed (fp32 master weights)"
        )
    scored_in = scoring_target(trainer, evaluation)[1]
    if scored_in in HALF_PRECISIONS and scored_in != precision:
        raise ConfigError(
            f"evaluation.precision={scored_in} with trainer.precision={precision}: scoring the baseline "
            f"in {scored_in} casts the model before it trains; use it with trainer.precision={scored_in}, "
            "or rescore the trained run with evaluate.py"
        )


def _registered_strategies() -> list[str]:
    # Importing Lightning takes seconds to tens of seconds; only an unusual strategy name needs its registry.
    from lightning.pytorch.strategies import StrategyRegistry

    return StrategyRegistry.available_strategies()


def strategy_name(strategy: Any) -> str:
    """`ddp`, `fsdp`, ... for a strategy string or a `_target_` config of a Lightning strategy class."""
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", "")).rsplit(".", 1)[-1]
        return {
            "DDPStrategy": "ddp",
            "FSDPStrategy": "fsdp",
            "DeepSpeedStrategy": "deepspeed",
            "SingleDeviceStrategy": "single_device",
        }.get(target, target)
    return str(strategy)


def accelerator_device_type(accelerator: str) -> str:
    """`cuda` or `cpu` for a Lightning accelerator name (`auto`: what this machine has)."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def _device_indices(devices: Any) -> list[int] | None:
    """The device indices of a `trainer.devices` list (also as a string "0,1"); None for a count or auto."""
    if isinstance(devices, str):
        return [int(d) for d in devices.split(",") if d.strip()] if "," in devices else None
    if isinstance(devices, int):
        return None
    return [int(d) for d in devices]


def _devices(devices: Any, device_type: str) -> None:
    """`trainer.devices`: auto, -1, a count, or a list of device indices."""
    if str(devices) in ("auto", "-1"):
        return
    available = torch.cuda.device_count() if device_type == "cuda" else None
    try:
        indices = _device_indices(devices)
        count = len(indices) if indices is not None else int(devices)
    except (TypeError, ValueError):
        raise ConfigError(f"trainer.devices={devices} must be auto, a count or a list of device indices") from None
    if count < 1:
        raise ConfigError(f"trainer.devices={devices} must be at least 1 (or auto)")
    if available is not None and (count > available or indices and max(indices) >= available):
        raise ConfigError(f"trainer.devices={devices}: this machine has {available} CUDA device(s)")


def _device(name: Any, key: str) -> torch.device:
    """A scoring device (`cpu`, `cuda`, `cuda:1`, `gpu`) that exists here."""
    try:
        device = torch.device("cuda" if str(name) == "gpu" else str(name))
    except RuntimeError:
        raise ConfigError(f"{key}={name} is not a device; use cpu, cuda or cuda:<index>") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}={name} is not a device this project scores on; use cpu, cuda or cuda:<index>")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name}: {NO_GPU}; set {key}=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _precision(value: Any, key: str, device_type: str | None = None) -> str:
    precision = unified_precision(value)
    if precision is None:
        raise ConfigError(f"{key}={value} is not a precision this project runs; choose from {', '.join(PRECISIONS)}")
    if device_type == "cpu" and precision == "16-mixed":
        raise ConfigError(
            f"{key}=16-mixed: Lightning has no fp16 autocast on the CPU (it would quietly run bf16-mixed); use bf16-mixed"
        )
    if device_type == "cuda" and precision.startswith("bf16") and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError(f"{key}={precision}: this GPU ({torch.cuda.get_device_name()}) has no bf16 arithmetic; use 16-mixed")
    return precision


def scoring_target(trainer: Mapping[str, Any], evaluation: Mapping[str, Any]) -> tuple[torch.device, str]:
    """(device, precision) test sets are scored in; checked against this machine and the decoder."""
    if evaluation.get("device"):
        device = _device(evaluation["device"], "evaluation.device")
    else:
        accelerator = str(trainer.get("accelerator", "auto"))
        device_type = accelerator_device_type(accelerator)
        if device_type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"evaluation.device: the run trained with trainer.accelerator={accelerator} and {NO_GPU}; "
                "set evaluation.device=cpu to score on the CPU"
            )
        indices = _device_indices(trainer.get("devices", "auto"))
        device = torch.device(f"cuda:{indices[0] if indices else 0}" if device_type == "cuda" else "cpu")
    key = "evaluation.precision" if evaluation.get("precision") else "trainer.precision"
    precision = _precision(evaluation.get("precision") or trainer.get("precision", "32-true"), key, device.type)
    decodes = {
        "evaluation.decode": [evaluation.get("decode")],
        "evaluation.secondary_decodes": evaluation.get("secondary_decodes") or [],
    }
    beam_keys = [name for name, methods in decodes.items() if "beam" in methods]
    if beam_keys and precision in ("16-mixed", "16-true"):
        # ESPnet's CTC prefix scorer fills its tables with -1e10 in the encoder's dtype; fp16 cannot hold it.
        raise ConfigError(
            f"{key}={precision} with beam in {beam_keys[0]}: ESPnet's CTC prefix scorer overflows in "
            "fp16; set evaluation.precision=32-true (or bf16-mixed)"
        )
    return device, precision
