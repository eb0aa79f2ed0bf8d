"""How adapters meet low-precision models: autocast (`bf16-mixed`, `16-mixed`) or half-precision frozen
weights (`bf16-true`, `16-true`). Three rules, used by every adapter:

- Activations: an adapter computes in the dtype its frozen layer computes in (`compute_dtype`: the
  autocast dtype inside an autocast region of the input's device, else the input's dtype), casts its
  own factors to it, and returns its output in it, so the next layer sees what the frozen model would.
- Parameter-side math (rotations including the Cayley solve, ΔW, W') runs in fp32 (fp64 for an fp64
  model) outside autocast (`parameter_math`), whatever dtype the model is stored in, and is cast once.
  `torch.linalg.solve` has no bf16 kernel, and a bf16 W + ΔW rounds away a quarter of a typical ΔW.
- Merging adds W + ΔW in that same precision and rounds once (`add_delta`).

Adapter parameters themselves stay fp32 (master weights) when Lightning casts the model to half
precision; `training/trainer.py` does that, since it is what casts the model.
"""

from __future__ import annotations

import contextlib

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a frozen `nn.Linear` would compute in for input `x` here (autocast's, or x's own)."""
    device_type = x.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def master_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision parameter-side math runs in: fp32, or fp64 for an fp64 model."""
    return torch.promote_types(dtype, torch.float32)


@contextlib.contextmanager
def parameter_math(device: torch.device):
    """Autocast off for the block: the caller computes in the dtypes it chooses (fp32 for factors)."""
    if torch.amp.is_autocast_available(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield


def add_delta(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """W + ΔW added in fp32 (or better) and rounded once to the weight's dtype."""
    dtype = master_dtype(weight.dtype)
    return (weight.to(dtype) + delta.to(dtype)).to(weight.dtype)
