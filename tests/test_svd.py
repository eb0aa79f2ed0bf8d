"""Truncated SVDs from the Gram matrix, checked against LAPACK's SVD; the on-disk cache and its prefixes."""

from __future__ import annotations

import pytest
import torch

from asr_peft.adapters.svd import thin_svds, truncated_svd, weight_key


def vector_errors(U, S, Vh, reference, rank) -> tuple[float, float, float]:
    """Max deviation of the top-`rank` triplets from the float64 reference (singular vectors up to sign)."""
    U_ref, S_ref, Vh_ref = reference
    signs = torch.sign((U[:, :rank].double() * U_ref[:, :rank]).sum(0))
    return (float((S[:rank].double() - S_ref[:rank]).abs().max()),
            float((U[:, :rank].double() * signs - U_ref[:, :rank]).abs().max()),
            float((Vh[:rank].double() * signs[:, None] - Vh_ref[:rank]).abs().max()))


def assert_matches_lapack(weight: torch.Tensor, rank: int) -> None:
    """As accurate as LAPACK's float32 SVD (within 3x, or 1e-6), both measured against a float64 SVD."""
    svd = truncated_svd(weight, rank)
    assert svd.U.shape == (weight.shape[0], rank) and svd.Vh.shape == (rank, weight.shape[1])
    reference = torch.linalg.svd(weight.double(), full_matrices=False)
    ours = vector_errors(svd.U, svd.S, svd.Vh, reference, rank)
    lapack32 = vector_errors(*torch.linalg.svd(weight, full_matrices=False), reference, rank)
    for error, baseline in zip(ours, lapack32):
        assert error <= max(3 * baseline, 1e-6), (ours, lapack32)


@pytest.mark.parametrize("shape", [(40, 40), (24, 64), (64, 24)])
@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_gram_factorisation_equals_lapack_svd(shape, fraction):
    torch.manual_seed(0)
    weight = torch.randn(*shape) / shape[1] ** 0.5
    assert_matches_lapack(weight, max(1, int(fraction * min(shape))))


def test_a_decaying_spectrum_is_factorised_in_float64_where_float32_would_lose_the_tail():
    # σ_i = exp(-i/8): at rank 40, σ_rank/σ_max ≈ 7e-3, where a float32 Gram matrix gives vectors off by ~1e-3.
    generator = torch.Generator().manual_seed(4)
    left = torch.linalg.qr(torch.randn(64, 64, generator=generator, dtype=torch.float64))[0]
    right = torch.linalg.qr(torch.randn(96, 64, generator=generator, dtype=torch.float64))[0]
    weight = ((left * torch.exp(-torch.arange(64.0, dtype=torch.float64) / 8)) @ right.T).float()
    assert_matches_lapack(weight, 40)
    assert_matches_lapack(weight, 10)  # σ_10/σ_max ≈ 0.3: the float32 path


def test_full_rank_reconstructs_the_weight_and_rank_deficient_weights_fall_back_to_lapack():
    torch.manual_seed(1)
    weight = torch.randn(30, 50)
    full = truncated_svd(weight)
    assert torch.allclose(full.U @ torch.diag(full.S) @ full.Vh, weight, atol=1e-5)
    assert torch.allclose(full.U.T @ full.U, torch.eye(30), atol=1e-5)
    assert torch.allclose(full.Vh @ full.Vh.T, torch.eye(30), atol=1e-5)
    low_rank = torch.randn(30, 3) @ torch.randn(3, 50)  # σ_4.. are zero: W^T u / σ is undefined there
    svd = truncated_svd(low_rank)
    assert torch.allclose(svd.Vh @ svd.Vh.T, torch.eye(30), atol=1e-5)
    assert torch.allclose(svd.U @ torch.diag(svd.S) @ svd.Vh, low_rank, atol=1e-4)
    with pytest.raises(ValueError, match="rank 31"):
        truncated_svd(weight, 31)


def test_cache_is_keyed_by_the_weight_serves_prefixes_and_survives_a_corrupt_file(tmp_path):
    torch.manual_seed(2)
    weights = [torch.randn(8, 6), torch.randn(8, 6), torch.randn(5, 7)]
    first = thin_svds(weights, tmp_path, ranks=[6, 3, 5])
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    assert [svd.rank for svd in first] == [6, 3, 5]
    prefix = thin_svds(weights, tmp_path, ranks=2)  # read from the files: a prefix of what is stored
    assert all(torch.equal(p.U, f.U[:, :2]) and torch.equal(p.Vh, f.Vh[:2]) for p, f in zip(prefix, first))
    more = thin_svds([weights[1]], tmp_path, ranks=[6])[0]  # more than the file holds: recomputed, stored
    assert more.rank == 6 and torch.allclose(more.U @ torch.diag(more.S) @ more.Vh, weights[1], atol=1e-5)
    assert torch.equal(thin_svds([weights[1]], tmp_path)[0].S, more.S)
    (tmp_path / f"{weight_key(weights[0])}.safetensors").write_bytes(b"torn")
    recovered = thin_svds(weights, tmp_path)
    assert torch.allclose(recovered[0].U @ torch.diag(recovered[0].S) @ recovered[0].Vh, weights[0], atol=1e-5)
    assert not list(tmp_path.glob("*.tmp"))
    assert weight_key(weights[0]) != weight_key(weights[0] + 1e-7)
    assert weight_key(weights[0]) != weight_key(weights[0].double())


def test_parallel_and_serial_factorisations_agree():
    torch.manual_seed(3)
    weights = [torch.randn(32, 48) for _ in range(4)]
    serial = thin_svds(weights, workers=1, ranks=12)
    parallel = thin_svds(weights, workers=2, ranks=12)
    assert all(torch.equal(a.S, b.S) and torch.equal(a.U, b.U) for a, b in zip(serial, parallel))
