"""Thin SVDs of pretrained weights in one canonical basis: computed once per weight, only as far as needed, cached on disk.

Route. For W (d_out×d_in) with m = min(d_out, d_in), the eigendecomposition of the m×m Gram matrix
(W Wᵀ or Wᵀ W) gives the singular values and the singular vectors of the smaller side; the other
side's top-`rank` vectors follow as Wᵀu/σ (or Wv/σ). That is several times faster than LAPACK's SVD
of the rectangular matrix. Squaring W squares its condition number, so the route works in float64:
in float32 its vectors were off by up to 1e-3 on a 384×1024 layer (4-10× LAPACK float32's error, and
far more down a decaying spectrum), in float64 they are within float32 rounding (≤ 1e-8) of a float64
LAPACK SVD on every spectrum tested (random, power-law and exponential decay, σ_rank/σ_max down to
1e-4; tests/test_svd.py). It stays so until σ_rank/σ_max ≈ 2e-5, so below `GRAM_FLOOR` (a (nearly)
rank-deficient weight) LAPACK's float64 SVD is used instead. Either way the result is rounded to float32 once.

Canonical basis. A singular pair (u_j, v_j) is defined up to a common sign, and which sign an
algorithm returns depends on the algorithm, the rank asked for, the BLAS and the thread count. Every
route here returns the pair whose right singular vector v_j has its largest-magnitude entry positive
(the first such entry on an exact tie), decided in float64 before rounding. So a top-k factorisation
is the prefix of a full one, and the cache, a fresh computation, another thread count or machine give
the same factors up to float32 rounding. What no sign rule fixes: singular values that are repeated,
or closer than float64 can resolve (~1e-13·σ_max; the null space of a rank-deficient weight is the
common case), span a subspace in which any orthonormal basis is a valid answer. An adapter trained in
such a basis may be rebuilt in another one; the fingerprint (`adapters/fingerprint.py`) recorded with
every adapter file and checkpoint then refuses it rather than letting it act on other directions.

Layers are spread over a thread pool with one BLAS thread each, because the tridiagonal reduction
inside `eigh` is memory-bound and scales better across matrices than across threads; cache reads
and their checks go through the same pool.

Cache. The key is a hash of the weight's bytes (with dtype and shape), so a factorisation is reused
for the same weights whatever the run, method or `p`, and never for different weights. A file holds
the leading `r` canonical singular triplets, rows first (`Ut`: r×d_out, `S`, `Vh`: r×d_in), so that any
smaller rank is a contiguous prefix read from the memory-mapped file; a request for more than is
stored recomputes and replaces the entry. Its metadata names the cache format and the weight's key,
and what is read is checked against the weight itself (shapes, a descending finite spectrum, the
sign convention, and W·Vᵀ = U·diag(S) on probe combinations of a few rows): a file that fails (unreadable, written
without the canonical convention by an earlier version, or holding another weight's factors) is
ignored, recomputed and replaced.
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

from asr_peft.adapters.fingerprint import full_float32_matmul, probe_vectors

log = logging.getLogger(__name__)

# The float64 Gram route factorises accurately while σ_rank ≥ GRAM_FLOOR·σ_max (see the docstring).
GRAM_FLOOR = 1e-3
CACHE_FORMAT = "2"  # 1: no sign convention (earlier versions); 2: canonical basis, weight key in the metadata
# A stored factorisation must satisfy W·Vᵀ = U·diag(S), on probe combinations of CACHE_CHECK_ROWS
# rows, to this relative accuracy (float32 factors of the right weight: ~1e-6; another weight's: ~1).
CACHE_CHECK_ROWS = 16
CACHE_CHECK_TOLERANCE = 1e-4


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
    digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def canonical(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor) -> ThinSVD:
    """Flip each pair (u_j, v_j) so that v_j's largest-magnitude entry is positive; then round to float32."""
    largest = Vh.gather(1, Vh.abs().argmax(dim=1, keepdim=True))  # argmax: the first on a tie
    signs = torch.where(largest < 0, -1.0, 1.0).to(Vh.dtype)
    return ThinSVD((U * signs.T).float().contiguous(), S.float().contiguous(), (Vh * signs).float().contiguous())


def truncated_svd(weight: torch.Tensor, rank: int | None = None) -> ThinSVD:
    """The top-`rank` (default: all) canonical singular triplets of `weight`, in float32 on its device."""
    d_out, d_in = weight.shape
    m = min(d_out, d_in)
    rank = m if rank is None else rank
    if not 0 < rank <= m:
        raise ValueError(f"rank {rank} is outside [1, {m}] for a {d_out}x{d_in} weight")
    W = weight.detach().double()
    svd = _gram_svd(W, rank)
    if svd is not None:
        return svd
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return canonical(U[:, :rank], S[:rank], Vh[:rank])


def _gram_svd(W: torch.Tensor, rank: int) -> ThinSVD | None:
    """The SVD from W's Gram matrix, or None if σ_rank < GRAM_FLOOR·σ_max (then the route loses accuracy)."""
    wide = W.shape[0] <= W.shape[1]  # then the Gram matrix lives on the output side
    eigenvalues, eigenvectors = torch.linalg.eigh(W @ W.T if wide else W.T @ W)
    S = eigenvalues.flip(0)[:rank].clamp_min(0).sqrt()
    if S[0] == 0 or S[-1] < GRAM_FLOOR * S[0]:
        return None
    smaller_side = eigenvectors.flip(1)[:, :rank]
    other_side = ((W.T if wide else W) @ smaller_side) / S
    U, V = (smaller_side, other_side) if wide else (other_side, smaller_side)
    return canonical(U, S, V.T)


def cache_entry_problem(svd: ThinSVD, weight: torch.Tensor) -> str | None:
    """Why `svd` (read from the cache) is not the canonical factorisation of `weight`, or None.

    Cheap next to reading the entry: a pass over U, two over Vh for the sign convention and one for
    W·Vᵀc = U·(S∘c) on CACHE_CHECK_ROWS rows of W, with c two fixed probe vectors."""
    d_out, d_in = weight.shape
    if svd.U.shape[0] != d_out or svd.Vh.shape[1] != d_in:
        return f"its factors are {svd.U.shape[0]}x{svd.Vh.shape[1]}, the weight {d_out}x{d_in}"
    if not torch.isfinite(svd.U.sum()):  # unit vectors: no overflow (S and Vh are covered below)
        return "it holds non-finite numbers"
    if (svd.S[1:] > svd.S[:-1]).any() or (svd.S < 0).any():
        return "its singular values are not descending and non-negative"
    # The convention, up to float32 rounding of a float64 decision: max(v_j) ≥ −min(v_j).
    if (svd.Vh.amax(dim=1) < -(1 - 1e-5) * svd.Vh.amin(dim=1)).any():
        return "it is not in the canonical sign convention"
    mix = probe_vectors(svd.rank, count=2).to(device=weight.device, dtype=torch.float32)  # 2 × r
    rows = torch.linspace(0, d_out - 1, min(d_out, CACHE_CHECK_ROWS), device=weight.device).long()
    with full_float32_matmul():
        expected = weight.detach()[rows].float() @ (mix @ svd.Vh).T
        rebuilt = svd.U[rows] @ (svd.S[:, None] * mix.T)
    if not torch.linalg.vector_norm(expected - rebuilt) <= CACHE_CHECK_TOLERANCE * torch.linalg.vector_norm(expected):
        return "its factors are not those of this weight (or hold non-finite numbers)"
    return None


def _read(path: Path, key: str, rank: int, weight: torch.Tensor) -> ThinSVD | None:
    """The leading `rank` triplets of `weight` from its cache file, or None if the file holds fewer or fails a check."""
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != CACHE_FORMAT:
                log.info("recomputing SVD cache file %s: written by an earlier version, without the canonical basis", path)
                return None
            if metadata.get("weight") != key:
                log.warning("ignoring SVD cache file %s: it was written for another weight (%s)", path, metadata.get("weight"))
                return None
            if handle.get_slice("S").get_shape()[0] < rank:
                return None
            Ut, S, Vh = (handle.get_slice(name)[:rank] for name in ("Ut", "S", "Vh"))
    except Exception as err:  # a torn or foreign file: recompute rather than fail
        log.warning("ignoring unreadable SVD cache file %s (%s)", path, err)
        return None
    svd = ThinSVD(Ut.T.contiguous().to(weight.device), S.to(weight.device), Vh.contiguous().to(weight.device))
    problem = cache_entry_problem(svd, weight)
    if problem:
        log.warning("ignoring SVD cache file %s: %s", path, problem)
        return None
    return svd


def _write(path: Path, key: str, svd: ThinSVD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(
        {"Ut": svd.U.T.contiguous().cpu(), "S": svd.S.cpu(), "Vh": svd.Vh.cpu()},
        tmp,
        metadata={"format": CACHE_FORMAT, "weight": key},
    )
    tmp.replace(path)  # atomic: a reader never sees a half-written file


def thin_svds(
    weights: Sequence[torch.Tensor],
    cache_dir: str | Path | None = None,
    ranks: Sequence[int | None] | int | None = None,
    workers: int | None = None,
) -> list[ThinSVD]:
    """Top-`ranks` SVD of every weight (None: all min(d_out, d_in) triplets), from the cache when possible."""
    asked = list(ranks) if isinstance(ranks, Sequence) else [ranks] * len(weights)
    sizes = [min(w.shape) if r is None else r for w, r in zip(weights, asked)]
    cache = Path(cache_dir) if cache_dir else None

    def obtain(index: int) -> ThinSVD:
        weight, rank = weights[index], sizes[index]
        if cache is None:
            return truncated_svd(weight, rank)
        key = weight_key(weight)
        path = cache / f"{key}.safetensors"
        svd = _read(path, key, rank, weight) if path.is_file() else None
        if svd is None:
            svd = truncated_svd(weight, rank)
            _write(path, key, svd)
        return svd

    workers = workers or min(len(weights), torch.get_num_threads()) or 1
    previous = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(obtain, range(len(weights))))
    finally:
        torch.set_num_threads(previous)
