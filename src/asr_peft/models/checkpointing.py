"""Activation checkpointing (`activation_checkpointing=true`) through ESPnet's own mechanism.

ESPnet's E-Branchformer encoder and Transformer decoders re-run the blocks listed in their
`gradient_checkpoint_layers` during the backward pass (`torch.utils.checkpoint`, non-reentrant, so
autocast and RNG state are replayed) instead of keeping those blocks' activations: activation memory
falls to about one block's worth, at the price of a second forward pass through the blocks. The
list is a constructor argument, which a loaded model's own config.yaml decides, so it is set here on
the built model: every block, and the encoder's input subsampling (ESPnet's layer 0).

An encoder or decoder without ESPnet's mechanism (OWLS's Transformer encoder) is refused rather
than silently left as it is.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from asr_peft.errors import ConfigError


def enable_activation_checkpointing(model: nn.Module) -> dict[str, list[int]]:
    """Checkpoint every encoder and decoder block of an ESPnet S2T model; returns the layer lists set."""
    layers = {}
    for part, blocks, first in (("encoder", "encoders", 0), ("decoder", "decoders", 1)):
        module: Any = getattr(model, part, None)
        if not hasattr(module, "gradient_checkpoint_layers") or not hasattr(module, blocks):
            raise ConfigError(
                f"activation_checkpointing=true: ESPnet's {type(module).__name__} ({part}) has no "
                "gradient_checkpoint_layers (its E-Branchformer encoder and Transformer decoders do)"
            )
        module.gradient_checkpoint_layers = list(range(first, len(getattr(module, blocks)) + 1))
        layers[part] = module.gradient_checkpoint_layers
    return layers
