"""Truncated thin SVDs of pretrained weights: computed once per weight, only as far as needed, cached on disk.

How: for W (d_out×d_in) with m = min(d_out, d_in), the eigendecomposition of the m×m Gram matrix
(W Wᵀ or Wᵀ W) gives the singular values and the singular vectors of the smaller side; the other
side's top-`rank` vectors follow as Wᵀu/σ (or Wv/σ). That is several times faster than LAPACK's SVD
of the rectangular matrix. Squaring W squares its condition number, so the precision is chosen by
how far down the spectrum the requested rank reaches (measured on OWSM-sized weights against a
float64 SVD, see tests/test_svd.py):

- σ_rank ≥ 0.1·σ_max: float32, as accurate as LAPACK's float32 SVD (what the factors are stored in);
- σ_rank ≥ 1e-6·σ_max: float64, better than float32 working precision;
- below (a rank-deficient weight): LAPACK's SVD itself.

Layers are spread over a thread pool with one BLAS thread each, because the tridiagonal reduction
inside `eigh` is memory-bound and scales better across matrices than across threads.

The cache key is a hash of the weight's bytes (with dtype and shape), so a factorisation is reused
for the same weights whatever the run, method or `p`, and never for different weights. A file holds
the leading `r` singular triplets, rows first (`Ut`: r×d_out, `S`, `Vh`: r×d_in), so that any smaller
rank is a contiguous prefix read from the memory-mapped file; a request for more than is stored
recomputes and replaces the entry. A file that cannot be read is ignored and recomputed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import xxhash
from safetensors import safe_open
from safetensors.torch import save_file

log = logging.getLogger(__name__)

# (precision, smallest σ_rank / σ_max it factorises accurately), tried in order
GRAM_PRECISIONS = ((torch.float32, 0.1), (torch.float64, 1e-6))


@dataclass
class ThinSVD:
    """The leading r singular triplets: U d_out×r, S (r, descending), Vh r×d_in; r ≤ min(d_out, d_in)."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor

    @property
    def rank(self) -> int:
        return self.S.shape[0]


def weight_key(weight: torch.Tensor) -> str:
    data = weight.detach().contiguous().cpu()
    digest = xxhash.xxh3_128()
    digest.update(f"{tuple(data.shape)}:{data.dtype}".encode())
    digest.update(data.view(torch.uint8).numpy())
    return digest.hexdigest()


def truncated_svd(weight: torch.Tensor, rank: int | None = None) -> ThinSVD:
    """The top-`rank` (default: all) singular triplets of `weight`, in float32 on the weight's device."""
    d_out, d_in = weight.shape
    m = min(d_out, d_in)
    rank = m if rank is None else rank
    if not 0 < rank <= m:
        raise ValueError(f"rank {rank} is outside [1, {m}] for a {d_out}x{d_in} weight")
    for dtype, floor in GRAM_PRECISIONS:
        svd = _gram_svd(weight.detach().to(dtype), rank, floor)
        if svd is not None:
            return svd
    U, S, Vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return ThinSVD(U[:, :rank].contiguous(), S[:rank].contiguous(), Vh[:rank].contiguous())


def _gram_svd(W: torch.Tensor, rank: int, floor: float) -> ThinSVD | None:
    """The SVD from the Gram matrix in W's precision, or None if σ_rank < floor·σ_max."""
    wide = W.shape[0] <= W.shape[1]  # then the Gram matrix lives on the output side
    eigenvalues, eigenvectors = torch.linalg.eigh(W @ W.T if wide else W.T @ W)
    S = eigenvalues.flip(0)[:rank].clamp_min(0).sqrt()
    if S[-1] < floor * S[0] or S[0] == 0:
        return None
    smaller_side = eigenvectors.flip(1)[:, :rank]
    other_side = ((W.T if wide else W) @ smaller_side) / S
    U, V = (smaller_side, other_side) if wide else (other_side, smaller_side)
    return ThinSVD(U.float().contiguous(), S.float(), V.T.float().contiguous())


def _read(path: Path, rank: int, device: torch.device) -> ThinSVD | None:
    """The leading `rank` triplets from a cache file, or None if it holds fewer or cannot be read."""
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            stored = handle.get_slice("S").get_shape()[0]
            if stored < rank:
                return None
            Ut, S, Vh = (handle.get_slice(name)[:rank] for name in ("Ut", "S", "Vh"))
        return ThinSVD(Ut.T.contiguous().to(device), S.to(device), Vh.contiguous().to(device))
    except Exception as err:  # a torn or foreign file: recompute rather than fail
        log.warning("ignoring unreadable SVD cache file %s (%s)", path, err)
        return None


def _write(path: Path, svd: ThinSVD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({"Ut": svd.U.T.contiguous().cpu(), "S": svd.S.cpu(), "Vh": svd.Vh.cpu()}, tmp)
    tmp.replace(path)  # atomic: a reader never sees a half-written file


def thin_svds(weights: Sequence[torch.Tensor], cache_dir: str | Path | None = None,
              ranks: Sequence[int | None] | int | None = None, workers: int | None = None) -> list[ThinSVD]:
    """Top-`ranks` SVD of every weight (None: all min(d_out, d_in) triplets), from the cache when possible."""
    ranks = list(ranks) if isinstance(ranks, Sequence) else [ranks] * len(weights)
    ranks = [min(w.shape) if r is None else r for w, r in zip(weights, ranks)]
    cache = Path(cache_dir) if cache_dir else None
    paths = [cache / f"{weight_key(w)}.safetensors" if cache else None for w in weights]
    results = [_read(path, rank, w.device) if path is not None and path.is_file() else None
               for w, rank, path in zip(weights, ranks, paths)]
    pending = [i for i, svd in enumerate(results) if svd is None]

    def compute(index: int) -> ThinSVD:
        svd = truncated_svd(weights[index], ranks[index])
        if paths[index] is not None:
            _write(paths[index], svd)
        return svd

    if pending:
        workers = workers or min(len(pending), torch.get_num_threads())
        previous = torch.get_num_threads()
        if workers > 1:
            torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for index, svd in zip(pending, pool.map(compute, pending)):
                    results[index] = svd
        finally:
            torch.set_num_threads(previous)
    return results
