"""A fingerprint of what each adapter layer was trained in, so that a reloaded adapter is the same model or an error.

Adapter files and checkpoints hold only what trains (parameters). What an adapter's numbers *mean*
is rebuilt on load from the base weight: SSVD's and SVFT's numbers are coordinates in the basis of
its singular vectors (`adapters/svd.py`), VeRA's scale random projections drawn from a seed, PiSSA's
base holds the residual of an SVD, PEFT's PSOFT caches factors of its own SVD. Those rebuilt tensors
are the base weight and the adapter's buffers. If they came out differently on load (another sign of
a singular vector, a (nearly) repeated singular value resolved another way, a different base model,
another version of the code), the trained numbers would act on other directions: a different model,
silently.

The fingerprint records, per adapted layer, for each rebuilt tensor (`rebuilt_tensors`) its Frobenius
norm and `PROBES` bilinear sketches aᵢᵀ T bᵢ (a 1-d tensor: tᵀ bᵢ), with probe vectors from a
counter-based hash (`probe_vectors`), so they are the same on every machine and torch version.
Loading rebuilds the layers, recomputes the fingerprint and compares.

Tolerance. With probes uniform on [−1, 1], the sketch of a difference E has the scale ‖E‖_F / 3, so
3·rms(sketch differences) estimates ‖T₁ − T₂‖_F; a tensor differs when that, or the difference of the
norms, exceeds `TOLERANCE` · ‖T‖_F. Thread counts, BLAS and the SVD routes agree to ~1e-7 (the factors
are computed in float64 and rounded once; tests/test_fingerprint.py); one flipped singular vector
among k changes a factor by 2/√k (3% at k = 4096); a corrupted factor or another base weight by
however much they differ. A fingerprint is ~20 numbers per layer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from asr_peft.errors import ModelLoadError

log = logging.getLogger(__name__)

PROBES = 4
TOLERANCE = 1e-4
BASE_WEIGHT = "base_layer.weight"
FINGERPRINT_KEY = "adapter_fingerprint"  # its key in a training checkpoint


@functools.lru_cache(maxsize=64)
def probe_vectors(length: int, count: int = PROBES, stream: int = 0) -> torch.Tensor:
    """`count` × `length` numbers uniform on [−1, 1), a fixed function of (length, count, stream),
    the same on every machine (cached and shared: never modify the result)."""
    state = np.arange(count * length, dtype=np.uint64) + np.uint64(stream << 40)
    # splitmix64's finaliser: a bijective mix of the counter, exact integer arithmetic everywhere
    z = state + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0  # [−1, 1) from the top 53 bits
    return torch.from_numpy(uniform.reshape(count, length))


@contextlib.contextmanager
def full_float32_matmul():
    """float32 matmuls in float32 precision: a set-up may allow TF32 (GPU) or bf16 (CPU) for them, whose
    1e-3 round-off would blur a 1e-4 comparison."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def tensor_fingerprint(tensor: torch.Tensor) -> dict[str, Any]:
    """{"norm": ‖T‖_F, "sketch": [aᵢᵀ T bᵢ for PROBES probe pairs]} as plain floats."""
    values = tensor.detach()
    # A vector (σ's, λ's: small) in float64; a matrix in float32, one pass, its row norms combined in float64
    # (a float32 norm of millions of entries is off by ~1e-4).
    values = values.double().reshape(1, -1) if values.dim() < 2 else values.float().reshape(values.shape[0], -1)
    rows, cols = values.shape
    with full_float32_matmul():
        projected = (values @ probe_vectors(cols, stream=1).to(values).T).double()  # rows × PROBES
    if rows == 1:
        sketch = projected[0]
    else:
        sketch = (probe_vectors(rows, stream=2).to(projected).T * projected).sum(0)
    norm = torch.linalg.vector_norm(values, dim=1).double().square().sum().sqrt()
    return {"norm": float(norm), "sketch": sketch.tolist()}


def rebuilt_tensors(layer: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The frozen base weight (as before any merge) and every buffer outside it: adapter files and
    checkpoints store parameters only, so buffers are rebuilt on load (SSVD's and SVFT's factors,
    VeRA's projections, the SVD caches of PEFT's PSOFT)."""
    yield BASE_WEIGHT, layer._unmerged_weight if layer.merged else layer.base_layer.weight
    for prefix, module in layer.named_modules():
        if module is layer.base_layer:
            continue
        for name, buffer in module.named_buffers(recurse=False):
            yield f"{prefix}.{name}" if prefix else name, buffer


def fingerprint(layers: Iterable[tuple[str, nn.Module]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{layer name: {tensor name: tensor_fingerprint}} for the adapter layers given (`adapter_modules(model)`)."""
    # One CPU thread: these are hundreds of small memory-bound products, for which a thread team's
    # synchronisation costs more than it saves (5.8 s instead of 0.15 s for the tiny model on a busy machine).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return {name: {key: tensor_fingerprint(t) for key, t in rebuilt_tensors(layer)} for name, layer in layers}
    finally:
        torch.set_num_threads(previous)


def relative_difference(recorded: dict[str, Any], current: dict[str, Any]) -> float:
    """Estimated ‖T_recorded − T_current‖_F / ‖T_recorded‖_F (see the module docstring)."""
    scale = max(recorded["norm"], current["norm"])
    if scale == 0:
        return 0.0
    sketch = np.asarray(current["sketch"]) - np.asarray(recorded["sketch"])
    spread = 3 * math.sqrt(float(np.mean(sketch**2))) if sketch.size else 0.0
    return max(abs(current["norm"] - recorded["norm"]), spread) / scale


def _describe(tensor: str) -> str:
    if tensor == BASE_WEIGHT:
        return "the base weight differs from the one it was trained on (another base model?)"
    return (
        f"`{tensor}`, rebuilt from the base weight (SVD factors, random projections), differs from the one it "
        "was trained in (an SVD cache from another version, or a (nearly) repeated singular value resolved another way)"
    )


def check_fingerprint(layers: Iterable[tuple[str, nn.Module]], recorded: dict | None, source: str) -> None:
    """Refuse (ModelLoadError, one line naming `source` and the layer) a model whose adapter layers were
    rebuilt differently from the recorded fingerprint; warn when there is no record (files from before)."""
    layers = list(layers)
    if recorded is None:
        if layers:
            log.warning(
                "%s holds no adapter fingerprint (written by an earlier version): the SVD bases and random "
                "projections its adapters were trained in cannot be checked, and SSVD, SVFT and VeRA layers "
                "rebuilt by this version may differ from them",
                source,
            )
        return
    current = fingerprint(layers)
    if set(current) != set(recorded):
        extra, missing = sorted(set(current) - set(recorded)), sorted(set(recorded) - set(current))
        raise ModelLoadError(
            f"{source}: the adapted layers differ from the recorded ones (here only: {extra[:3]}, recorded only: {missing[:3]})"
        )
    mismatches = []
    for layer, tensors in current.items():
        if set(tensors) != set(recorded[layer]):
            mismatches.append(f"layer {layer}: it rebuilds {sorted(tensors)}, the record has {sorted(recorded[layer])}")
            continue
        for tensor, values in tensors.items():
            difference = relative_difference(recorded[layer][tensor], values)
            if not difference <= TOLERANCE:  # also NaN
                mismatches.append(f"layer {layer}: {_describe(tensor)}: relative difference {difference:.1e} > {TOLERANCE:.0e}")
                break
    if mismatches:
        more = f" (and {len(mismatches) - 1} more layer(s))" if len(mismatches) > 1 else ""
        raise ModelLoadError(f"{source}: {mismatches[0]}{more}")
