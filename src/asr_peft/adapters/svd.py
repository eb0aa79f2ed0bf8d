"""Thin SVDs of pretrained weights: computed once, batched where shapes repeat, cached on disk.

The cache key is a hash of the weight's bytes (and dtype/shape), so a factorisation is reused for the
same weights whatever the run, method or `p`, and can never be reused for different weights. A cache
file that cannot be read is ignored and recomputed. Factors are stored with safetensors.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)


@dataclass
class ThinSVD:
    """W = U diag(S) Vh with U: d_out×r, S: r (descending), Vh: r×d_in, r = min(d_out, d_in)."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


def weight_key(weight: torch.Tensor) -> str:
    data = weight.detach().contiguous().cpu()
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{tuple(data.shape)}:{data.dtype}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.dtype != torch.uint8 else data.numpy().tobytes())
    return digest.hexdigest()


def _read(path: Path) -> ThinSVD | None:
    try:
        tensors = load_file(path)
        return ThinSVD(tensors["U"], tensors["S"], tensors["Vh"])
    except Exception as err:  # a torn or foreign file: recompute rather than fail
        log.warning("ignoring unreadable SVD cache file %s (%s)", path, err)
        return None


def thin_svds(weights: list[torch.Tensor], cache_dir: str | Path | None = None) -> list[ThinSVD]:
    """Thin SVD of every weight (fp32, on the weight's device), from the cache when possible."""
    cache = Path(cache_dir) if cache_dir else None
    keys = [weight_key(w) for w in weights] if cache else [None] * len(weights)
    results: list[ThinSVD | None] = [None] * len(weights)
    pending: dict[tuple, list[int]] = defaultdict(list)
    for index, (weight, key) in enumerate(zip(weights, keys)):
        path = cache / f"{key}.safetensors" if cache else None
        if path is not None and path.is_file():
            results[index] = _read(path)
        if results[index] is None:
            pending[(tuple(weight.shape), weight.device)].append(index)
    for (_, _), indices in pending.items():
        # One batched LAPACK call per shape: OWSM repeats the same few shapes in every block.
        stacked = torch.stack([weights[i].detach().float() for i in indices])
        U, S, Vh = torch.linalg.svd(stacked, full_matrices=False)
        for position, index in enumerate(indices):
            results[index] = ThinSVD(U[position].contiguous(), S[position].contiguous(), Vh[position].contiguous())
            if cache is not None:
                cache.mkdir(parents=True, exist_ok=True)
                target = cache / f"{keys[index]}.safetensors"
                tmp = target.with_suffix(".tmp")
                save_file({"U": results[index].U.cpu(), "S": results[index].S.cpu(), "Vh": results[index].Vh.cpu()}, tmp)
                tmp.replace(target)
    device_results = []
    for weight, svd in zip(weights, results):
        device_results.append(ThinSVD(svd.U.to(weight.device), svd.S.to(weight.device), svd.Vh.to(weight.device)))
    return device_results
