"""OWSM models: building from a config, loading ESPnet-exported checkpoints and hub models."""

from asr_peft.models.owsm import OWSMBundle, build_model, load_exported, load_owsm

__all__ = ["OWSMBundle", "build_model", "load_exported", "load_owsm"]
