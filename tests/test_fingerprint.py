"""A reloaded adapter is the trained model, whatever rebuilt its SVD basis; otherwise a one-line error naming the layer."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from safetensors import safe_open

from asr_peft.adapters import adapter_modules, apply_method, load_adapter, save_adapter
from asr_peft.adapters import model as adapters_model
from asr_peft.adapters import svd as svd_module
from asr_peft.adapters.fingerprint import (
    FINGERPRINT_KEY,
    TOLERANCE,
    check_fingerprint,
    fingerprint,
    probe_vectors,
    relative_difference,
    tensor_fingerprint,
)
from asr_peft.adapters.svd import ThinSVD, weight_key
from asr_peft.errors import ModelLoadError
from test_adapters_owsm import adapt_config, batch, encoder_output, loss, method_config  # noqa: F401 (fixture)


def train_stand_in(model, scale: float = 0.02) -> None:
    """Adapter parameters as after some training: non-zero rotations, spectrum shifts and gate."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, module in adapter_modules(model):
            for _, p in module.named_adapter_parameters():
                p.add_(scale * torch.randn(p.shape, generator=generator))


def outputs(model, batch):
    return encoder_output(model, batch), loss(model, batch).detach()


@pytest.fixture
def trained_ssvd(tiny_bundle_factory, batch, tmp_path):
    """An SSVD adapter 'trained' on the tiny model with an SVD cache, saved, and its outputs."""
    model = tiny_bundle_factory(0).model
    apply_method(model, method_config("ssvd"), adapt_config(), svd_cache_dir=tmp_path / "svd")
    base = outputs(tiny_bundle_factory(0).model, batch)[0]
    train_stand_in(model)
    trained = outputs(model, batch)
    assert (trained[0] - base).norm() > 0.1 * base.norm(), "the adapter must change the model for the test to mean anything"
    save_adapter(model, tmp_path / "adapter", method_config("ssvd"), adapt_config())
    return tmp_path / "adapter", trained


@pytest.mark.parametrize(
    "intruder", [method_config("svft"), method_config("ssvd", formulation="reference")], ids=["svft", "ssvd-reference"]
)
def test_an_adapter_reloads_as_trained_after_another_method_replaced_the_svd_cache(
    intruder, trained_ssvd, tiny_bundle_factory, batch, tmp_path
):
    """The issue's reproduction: SSVD trains on top-k factorisations; SVFT (or SSVD's reference formulation) on the
    same base replaces each cache entry by a full-rank one; the reload reads a prefix of that."""
    directory, trained = trained_ssvd
    apply_method(tiny_bundle_factory(0).model, intruder, adapt_config(), svd_cache_dir=tmp_path / "svd")
    weight = tiny_bundle_factory(0).model.decoder.output_layer.weight
    with safe_open(tmp_path / "svd" / f"{weight_key(weight)}.safetensors", framework="pt") as handle:
        assert handle.get_slice("S").get_shape()[0] == min(weight.shape)  # the full spectrum now, not SSVD's top k
    fresh = tiny_bundle_factory(0).model
    load_adapter(fresh, directory, svd_cache_dir=tmp_path / "svd")
    reloaded = outputs(fresh, batch)
    assert torch.equal(reloaded[0], trained[0]) and torch.equal(reloaded[1], trained[1])


def test_an_adapter_reloads_as_trained_under_another_thread_count_and_another_svd_route(
    tiny_bundle_factory, batch, tmp_path, monkeypatch
):
    """Stand-ins for another machine: factorised with 1 thread, reloaded with 2 and then through LAPACK's SVD instead
    of the Gram route (no cache: everything recomputed)."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model = tiny_bundle_factory(0).model
        apply_method(model, method_config("ssvd"), adapt_config())
        train_stand_in(model)
        trained = outputs(model, batch)
        save_adapter(model, tmp_path / "adapter", method_config("ssvd"), adapt_config())
        torch.set_num_threads(2)
        # one layer at a time, so each factorisation runs on 2 BLAS threads (the pool would give each 1)
        monkeypatch.setattr(adapters_model, "thin_svds", functools.partial(adapters_model.thin_svds, workers=1))
        two_threads = tiny_bundle_factory(0).model
        load_adapter(two_threads, tmp_path / "adapter")
        monkeypatch.setattr(svd_module, "GRAM_FLOOR", float("inf"))  # every layer through LAPACK's float64 SVD
        lapack = tiny_bundle_factory(0).model
        load_adapter(lapack, tmp_path / "adapter")
        for reloaded in (outputs(two_threads, batch), outputs(lapack, batch)):
            torch.testing.assert_close(reloaded[0], trained[0], rtol=1e-5, atol=1e-5 * float(trained[0].abs().max()))
            torch.testing.assert_close(reloaded[1], trained[1], rtol=1e-5, atol=0)
    finally:
        torch.set_num_threads(previous)


def _serve_altered_factors(monkeypatch, layer_index: int, alter) -> None:
    """Make the SVD return altered factors for one adapted layer (another basis, or a corrupted one)."""
    original = adapters_model.thin_svds

    def altered(weights, *args, **kwargs):
        svds = original(weights, *args, **kwargs)
        svd = svds[layer_index]
        svds[layer_index] = ThinSVD(*alter(svd.U.clone(), svd.S.clone(), svd.Vh.clone()))
        return svds

    monkeypatch.setattr(adapters_model, "thin_svds", altered)


def _flip_pair(U, S, Vh, j=7):
    U[:, j], Vh[j] = -U[:, j], -Vh[j]  # still an SVD of the weight: the basis a repeated σ could give
    return U, S, Vh


def _corrupt(U, S, Vh):
    Vh[3] += 1e-3 * torch.randn(Vh.shape[1], generator=torch.Generator().manual_seed(0))
    return U, S, Vh


@pytest.mark.parametrize("alter, what", [(_flip_pair, "`left`"), (_corrupt, "`right`")], ids=["flipped-pair", "corrupted"])
def test_a_factor_other_than_the_trained_one_is_refused_naming_the_layer(
    alter, what, trained_ssvd, tiny_bundle_factory, monkeypatch
):
    directory, _ = trained_ssvd
    fresh = tiny_bundle_factory(0).model
    names = [name for name, _, _ in adapters_model.match_modules(fresh, adapt_config()["targets"])]
    _serve_altered_factors(monkeypatch, 4, alter)
    with pytest.raises(ModelLoadError) as error:
        load_adapter(fresh, directory)  # no cache: the factors are recomputed (and altered)
    message = str(error.value)
    assert "\n" not in message and str(directory / "adapter.safetensors") in message
    assert f"layer {names[4]}: {what}" in message and "differs from the one it was trained in" in message


@pytest.mark.parametrize("method", [method_config("ssvd"), method_config("lora", r=4, alpha=8)], ids=["ssvd", "lora"])
def test_a_different_base_weight_is_refused_naming_the_layer(method, tiny_bundle_factory, tmp_path):
    model = tiny_bundle_factory(0).model
    apply_method(model, method, adapt_config())
    train_stand_in(model)
    save_adapter(model, tmp_path / "adapter", method, adapt_config())
    other_base = tiny_bundle_factory(0).model
    with torch.no_grad():  # a slightly different base model: one layer moved by 1e-3 of its norm
        weight = other_base.encoder.encoders[1].feed_forward.w_1.weight
        weight.add_(1e-3 * weight.norm() / weight.numel() ** 0.5 * torch.randn_like(weight))
    with pytest.raises(ModelLoadError, match=r"layer encoder\.encoders\.1\.feed_forward\.w_1: the base weight differs"):
        load_adapter(other_base, tmp_path / "adapter")


def test_checkpoints_record_the_fingerprint_and_a_resume_checks_it(tiny_bundle_factory):
    from asr_peft.training.module import SpeechLitModule

    bundle = tiny_bundle_factory(0)
    apply_method(bundle.model, method_config("ssvd"), adapt_config())
    module = SpeechLitModule(bundle, optimizer={"lr": 1e-3}, normalizer=str)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert set(checkpoint[FINGERPRINT_KEY]) == {name for name, _ in adapter_modules(bundle.model)}
    module.on_load_checkpoint(checkpoint)  # the same model: accepted
    layer = next(iter(checkpoint[FINGERPRINT_KEY]))
    checkpoint[FINGERPRINT_KEY][layer]["left"]["sketch"][0] += 0.1
    with pytest.raises(ModelLoadError, match=f"checkpoint .*layer {layer}: `left`"):
        module.on_load_checkpoint(checkpoint)


def test_files_without_a_fingerprint_load_with_a_warning(tiny_bundle_factory, caplog):
    model = tiny_bundle_factory(0).model
    apply_method(model, method_config("ssvd"), adapt_config())
    with caplog.at_level(logging.WARNING):
        check_fingerprint(adapter_modules(model), None, "old.ckpt")
    assert "old.ckpt holds no adapter fingerprint" in caplog.text
    caplog.clear()
    check_fingerprint([], None, "full-fine-tuning.ckpt")  # nothing rebuilt, nothing to warn about
    assert not caplog.text


def test_the_tolerance_accepts_round_off_and_refuses_one_flipped_vector_among_many():
    """3·rms(sketch differences) estimates ‖ΔT‖_F: float32 round-off passes by orders of magnitude; a sign flip of one
    of k = 1024 unit vectors (‖ΔT‖_F/‖T‖_F = 2/32) fails by orders of magnitude."""
    generator = torch.Generator().manual_seed(8)
    factor = torch.linalg.qr(torch.randn(4096, 1024, generator=generator, dtype=torch.float64))[0]
    recorded = tensor_fingerprint(factor.float())
    rounded = tensor_fingerprint(
        (factor * (1 + 1e-7 * torch.randn(factor.shape, generator=generator, dtype=torch.float64))).float()
    )
    flipped = factor.clone()
    flipped[:, 500] *= -1
    assert relative_difference(recorded, rounded) < TOLERANCE / 100
    estimate = relative_difference(recorded, tensor_fingerprint(flipped.float()))
    assert 2 / 32 / 3 < estimate < 2 / 32 * 3  # the estimate is within a factor 3 of the truth (4 probes)
    # the probes are a fixed function of their shape, not of torch's random state
    torch.manual_seed(123)
    assert torch.equal(probe_vectors(10, 2, 1), probe_vectors(10, 2, 1))
    assert probe_vectors(100000, 1).abs().max() <= 1 and abs(float(probe_vectors(100000, 1).mean())) < 0.01
    assert fingerprint([]) == {}
