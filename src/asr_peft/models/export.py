"""Writing a model in ESPnet's exported layout, the one OWSM checkpoints are published in.

```
<out>/meta.yaml                                   espnet_model_zoo's index of the files below
<out>/exp/s2t_train/config.yaml                   ESPnet S2T config; file paths relative to <out>
<out>/exp/s2t_train/model.pth                     state dict (fp32 by default; fp16 or bf16 on request)
<out>/data/token_list/bpe.model                   the tokenizer, when the model uses BPE
<out>/exp/s2t_stats/train/feats_stats.npz         global MVN statistics, when the model uses them
<out>/SHA256SUMS                                  checksums of every file above
```

Stock ESPnet reads it with `Speech2Text(s2t_train_config=..., s2t_model_file=...)` when run from
`<out>` (ESPnet's paths are recipe-relative); `asr_peft.models.load_exported` reads it from anywhere.

Storing half precision rounds the merged weights W' = W + ΔW, and a fine-tuning update is small
against W (‖ΔW‖/‖W‖ ≈ 1e-2 on the shipped checkpoint's layers): `delta_rounding` measures, before
writing, how much of the adapters' ΔW the stored dtype gets wrong (there: bf16 ~18%, fp16 ~2%).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from asr_peft.adapters.model import adapter_modules
from asr_peft.errors import ConfigError
from asr_peft.models.checksums import write_checksums
from asr_peft.models.owsm import full_espnet_config

CONFIG = Path("exp/s2t_train/config.yaml")
WEIGHTS = Path("exp/s2t_train/model.pth")
BPE_MODEL = Path("data/token_list/bpe.model")
STATS = Path("exp/s2t_stats/train/feats_stats.npz")


@dataclass
class DeltaRounding:
    """How much of the adapters' update ΔW a stored dtype gets wrong: ‖stored(W + ΔW) − (W + ΔW)‖ / ‖ΔW‖."""

    dtype: torch.dtype
    lost: float  # over all adapted layers together
    worst_layer: str | None = None
    worst_lost: float = 0.0
    layers: int = 0


def delta_rounding(model: torch.nn.Module, dtype: torch.dtype) -> DeltaRounding:
    """Measure, for an (unmerged) adapted model, what storing W' = W + ΔW in `dtype` does to ΔW."""
    lost_sq = delta_sq = 0.0
    worst_layer, worst_lost, layers = None, 0.0, 0
    with torch.no_grad():
        for name, module in adapter_modules(model):
            if module.merged:
                continue
            delta = module.delta_weight().double()
            exact = module.base_layer.weight.double() + delta
            error = float((exact.to(dtype).double() - exact).norm())
            size = float(delta.norm())
            lost_sq, delta_sq, layers = lost_sq + error**2, delta_sq + size**2, layers + 1
            if size > 0 and error / size > worst_lost:
                worst_layer, worst_lost = name, error / size
    return DeltaRounding(dtype, math.sqrt(lost_sq / delta_sq) if delta_sq > 0 else 0.0, worst_layer, worst_lost, layers)


def export_espnet_dir(
    bundle,
    out_dir: str | Path,
    *,
    model: torch.nn.Module | None = None,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
) -> Path:
    """Export `model` (default: the bundle's) with the bundle's config and tokenizer files, floating-point
    tensors stored in `dtype` (rounded once, from the model's own precision).

    `model` must be a plain ESPnet S2T model (adapters merged): its state dict keys are ESPnet's.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"export directory {out_dir} is not empty; choose another one")
    model = model if model is not None else bundle.model
    config = full_espnet_config(bundle.s2t_config)
    (out_dir / CONFIG.parent).mkdir(parents=True, exist_ok=True)
    if config.get("bpemodel"):
        (out_dir / BPE_MODEL).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config["bpemodel"], out_dir / BPE_MODEL)
        config["bpemodel"] = str(BPE_MODEL)
    stats_file = (config.get("normalize_conf") or {}).get("stats_file")
    if stats_file:
        (out_dir / STATS).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stats_file, out_dir / STATS)
        config["normalize_conf"]["stats_file"] = str(STATS)
    # In PyTorch's default layout, as ESPnet writes it (the model's convolutions are channels-last: owsm.py).
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().clone(memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }
    torch.save(state, out_dir / WEIGHTS)
    (out_dir / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    meta = {
        "files": {"s2t_model_file": str(WEIGHTS)},
        "yaml_files": {"s2t_train_config": str(CONFIG)},
        "python": "3.11",
        "torch": str(torch.__version__),
    }
    (out_dir / "meta.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    write_checksums(out_dir)
    return out_dir
