"""Subspace diagnostics: how an adaptation moved each weight's principal singular subspaces.

For every adapted layer, with the pretrained weight W0 and the adapted (merged) weight W', both
d_out × d_in and `y = x Wᵀ`:

- output side: principal angles between the top-r left singular subspaces of W0 and W' (span of U_r),
- input side: principal angles between the top-r right singular subspaces (span of V_r),
- the singular values of ΔW = W' − W0 (the head of the spectrum, its effective rank, ‖ΔW‖_F / ‖W0‖_F).

r = max(1, floor(rank_fraction · min(d_out, d_in))). A rotation *within* a top-k subspace leaves that
subspace (and so its angles at r = k) unchanged; SSVD rotates the top-k input directions with
k = floor(p · min(d_out, d_in)), so the default fraction 0.05 stays below k for every p ≥ 0.07 in the
sweeps and the angles show which side a method turned. Angles are only well defined where
σ_r > σ_{r+1}; near-degenerate spectra give large angles for small changes.

Layers are aggregated per layer type: the module name without block indices (`encoders`, `decoders`
and digits dropped), e.g. `encoder.attn.linear_q` for every `encoder.encoders.<i>.attn.linear_q`.

`subspace.json` (written next to a run's results.json by `write_subspace_diagnostics`) holds the
dict `compute_subspace_diagnostics` returns; angles are in degrees:

    {"format": 1, "rank_fraction": 0.05, "spectrum_head": 32,
     "overall": {"layers": 120, "input_angle_mean_deg": 3.1, "output_angle_mean_deg": 0.4,
                 "delta_relative_norm": 0.02, "delta_effective_rank": 11.5},
     "layer_types": {"encoder.attn.linear_q": {
         "layers": 6, "shape": [144, 144], "rank": 7,
         "input_angle_mean_deg": 4.0, "input_angle_max_deg": 9.5,      # mean over layers of each
         "output_angle_mean_deg": 0.1, "output_angle_max_deg": 0.3,    # layer's mean / max angle
         "input_angles_deg": [9.5, 3.2, ...], "output_angles_deg": [...],  # r angles, descending, mean over layers
         "delta_relative_norm": 0.02, "delta_effective_rank": 11.0,
         "delta_spectrum": [0.8, 0.5, ...]}},                          # top singular values of ΔW, mean over layers
     "layers": {"encoder.encoders.0.attn.linear_q": {"type": "encoder.attn.linear_q", "shape": [144, 144],
         "rank": 7, "input_angle_mean_deg": ..., "input_angle_max_deg": ..., "output_angle_mean_deg": ...,
         "output_angle_max_deg": ..., "delta_relative_norm": ..., "delta_effective_rank": ...}}}
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import scipy.linalg
import torch
from torch import nn

from asr_peft.adapters.model import ADAPTER_TYPES
from asr_peft.adapters.injection import match_modules, module_type
from asr_peft.adapters.svd import thin_svds
from asr_peft.errors import ConfigError

SUBSPACE_FILE = "subspace.json"
FORMAT = 1
WeightSource = nn.Module | Mapping[str, torch.Tensor]


def _weight(source: WeightSource, name: str, *, adapted: bool) -> torch.Tensor:
    """The (adapted) weight of module `name`; an unmerged adapter's weight is formed as W + ΔW."""
    role = "adapted" if adapted else "base"
    if isinstance(source, nn.Module):
        try:
            module = source.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"the {role} model has no module {name}") from None
        if isinstance(module, ADAPTER_TYPES):
            if not adapted:
                raise ConfigError(f"the base model's {name} carries an adapter; pass the pretrained model")
            with torch.no_grad():
                return module.base_layer.weight if module.merged else module.base_layer.weight + module.delta_weight()
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ConfigError(f"module {name} of the {role} model has no weight matrix")
        return weight.detach()
    key = f"{name}.weight"
    if key not in source:
        if f"{name}.base_layer.weight" in source:
            raise ConfigError(
                f"the {role} state dict holds an unmerged adapter at {name}; pass a merged one (asr_peft.adapters.merged_copy)"
            )
        raise ConfigError(f"the {role} state dict has no {key}")
    return source[key].detach()


def principal_angles_deg(basis_a: torch.Tensor, basis_b: torch.Tensor) -> np.ndarray:
    """Principal angles (degrees, descending) between the column spans of two bases."""
    # scipy's implementation switches to sines for small angles, which arccos of cosines cannot resolve.
    angles = scipy.linalg.subspace_angles(basis_a.double().cpu().numpy(), basis_b.double().cpu().numpy())
    return np.degrees(angles)


def effective_rank(singular_values: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values (Roy & Vetterli, 2007); 0 for a zero matrix."""
    total = singular_values.sum()
    if total <= 0:
        return 0.0
    p = singular_values / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _layer_diagnostics(W0: torch.Tensor, W1: torch.Tensor, svd0, svd1, rank: int, spectrum_head: int) -> dict[str, Any]:
    output_angles = principal_angles_deg(svd0.U[:, :rank], svd1.U[:, :rank])
    input_angles = principal_angles_deg(svd0.Vh[:rank].T, svd1.Vh[:rank].T)
    spectrum = torch.linalg.svdvals(W1.float() - W0.float())
    base_norm = float(torch.linalg.matrix_norm(W0.float()))
    return {
        "shape": list(W0.shape),
        "rank": rank,
        "input_angle_mean_deg": float(input_angles.mean()),
        "input_angle_max_deg": float(input_angles.max()),
        "output_angle_mean_deg": float(output_angles.mean()),
        "output_angle_max_deg": float(output_angles.max()),
        "input_angles_deg": input_angles.tolist(),
        "output_angles_deg": output_angles.tolist(),
        "delta_relative_norm": float(torch.linalg.vector_norm(spectrum)) / base_norm if base_norm > 0 else 0.0,
        "delta_effective_rank": effective_rank(spectrum),
        "delta_spectrum": spectrum[:spectrum_head].tolist(),
    }


def _mean_lists(lists: list[list[float]]) -> list[float]:
    length = min(len(values) for values in lists)
    return np.mean([values[:length] for values in lists], axis=0).tolist()


SCALARS = (
    "input_angle_mean_deg",
    "input_angle_max_deg",
    "output_angle_mean_deg",
    "output_angle_max_deg",
    "delta_relative_norm",
    "delta_effective_rank",
)
PROFILES = ("input_angles_deg", "output_angles_deg", "delta_spectrum")


def pretrained_target_weights(cfg, model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the pretrained weights of the modules a run adapts, taken before its method is applied,
    for the diagnostics at the end (none when `evaluation.subspace` is off or nothing is adapted)."""
    if not cfg.evaluation.get("subspace", False) or cfg.method.name == "frozen":
        return {}
    return {
        f"{name}.weight": module.weight.detach().clone()
        for name, _, module in match_modules(model, cfg.adapt.targets)
        if isinstance(module, nn.Linear)
    }


def compute_subspace_diagnostics(
    base_model: WeightSource,
    adapted_model: WeightSource,
    module_names: Iterable[str],
    *,
    rank_fraction: float = 0.05,
    spectrum_head: int = 32,
    svd_cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Principal angles (input and output side) and the ΔW spectrum for every named layer, per layer type.

    `base_model` / `adapted_model`: the pretrained and the adapted model, as `nn.Module`s or state dicts
    (`<module name>.weight` keys). An unmerged adapter module is read as W + ΔW; an adapted *state
    dict* must be merged (`asr_peft.adapters.merged_copy(model).state_dict()`). `module_names`: the
    adapted modules (e.g. `AdaptationReport.adapted_modules`). `svd_cache_dir`: the SVD cache the
    adapters use (pretrained weights are then not factorised again). Returns the `subspace.json` dict
    described in the module docstring.
    """
    if not 0.0 < rank_fraction <= 1.0:
        raise ConfigError(f"rank_fraction={rank_fraction} must be in (0, 1]")
    names = list(module_names)
    base = [_weight(base_model, name, adapted=False) for name in names]
    adapted = [_weight(adapted_model, name, adapted=True) for name in names]
    for name, W0, W1 in zip(names, base, adapted):
        if W0.dim() != 2 or W0.shape != W1.shape:
            raise ConfigError(
                f"{name}: base weight {tuple(W0.shape)} and adapted weight {tuple(W1.shape)} are not matrices of one shape"
            )
    ranks = [max(1, math.floor(rank_fraction * min(W0.shape))) for W0 in base]
    with torch.no_grad():
        svds0 = thin_svds(base, svd_cache_dir, ranks) if names else []
        svds1 = thin_svds([W1.to(W0.device) for W0, W1 in zip(base, adapted)], ranks=ranks) if names else []
        layers = {}
        for name, W0, W1, svd0, svd1, rank in zip(names, base, adapted, svds0, svds1, ranks):
            layers[name] = {
                "type": module_type(name),
                **_layer_diagnostics(W0, W1.to(W0.device), svd0, svd1, rank, spectrum_head),
            }
    grouped: dict[str, list[dict]] = defaultdict(list)
    for entry in layers.values():
        grouped[entry["type"]].append(entry)
    layer_types = {}
    for kind, entries in sorted(grouped.items()):
        layer_types[kind] = {
            "layers": len(entries),
            "shape": entries[0]["shape"],
            "rank": entries[0]["rank"],
            **{key: float(np.mean([e[key] for e in entries])) for key in SCALARS},
            **{key: _mean_lists([e[key] for e in entries]) for key in PROFILES},
        }
    overall = {
        "layers": len(layers),
        **{
            key: float(np.mean([e[key] for e in layers.values()])) if layers else None
            for key in ("input_angle_mean_deg", "output_angle_mean_deg", "delta_relative_norm", "delta_effective_rank")
        },
    }
    for entry in layers.values():  # per-layer profiles are summarised by type; keep the file small
        for key in PROFILES:
            del entry[key]
    return {
        "format": FORMAT,
        "rank_fraction": rank_fraction,
        "spectrum_head": spectrum_head,
        "overall": overall,
        "layer_types": layer_types,
        "layers": layers,
    }


def write_subspace_diagnostics(run_dir: str | Path, diagnostics: Mapping[str, Any]) -> Path:
    """Write `subspace.json` into the run directory atomically."""
    path = Path(run_dir) / SUBSPACE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(diagnostics, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path
