"""Adapter directories as a user may find them: every malformed one is refused in one line naming the file."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from asr_peft.adapters import apply_method, load_adapter, save_adapter
from asr_peft.errors import ModelLoadError
from test_adapters_owsm import adapt_config, batch, encoder_output, method_config  # noqa: F401 (fixture)
from test_fingerprint import train_stand_in

CONFIG, WEIGHTS = "adapter_config.json", "adapter.safetensors"


def edit_config(directory, edit):
    path = directory / CONFIG
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def rewrite_tensors(directory, edit_tensors=lambda t: t, edit_metadata=lambda m: m):
    path = directory / WEIGHTS
    with safe_open(path, framework="pt") as handle:
        tensors, metadata = {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()
    save_file(edit_tensors(tensors), path, metadata=edit_metadata(metadata))


def with_nan(tensors):
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    return tensors


CASES = {  # what was done to the directory, the file the error must name, and what it must say
    "no config": (lambda d: (d / CONFIG).unlink(), CONFIG, "does not exist"),
    "invalid JSON": (lambda d: (d / CONFIG).write_text('{"format": 2, "method": '), CONFIG, "is not valid JSON"),
    "not UTF-8": (lambda d: (d / CONFIG).write_bytes(b'{"format": \xff}'), CONFIG, "is not UTF-8"),
    "a JSON list": (lambda d: (d / CONFIG).write_text("[]"), CONFIG, "holds a JSON list"),
    "no method key": (lambda d: edit_config(d, lambda c: c.pop("method")), CONFIG, "has no `method`"),
    "format 99": (lambda d: edit_config(d, lambda c: c.update(format=99)), CONFIG, "format 99 is not one this version reads"),
    "rotation approx -> cayley": (
        lambda d: edit_config(d, lambda c: c["method"].update(rotation="cayley")),
        CONFIG,
        "method.rotation='cayley' where the tensors were trained with 'approx'",
    ),
    "p edited": (lambda d: edit_config(d, lambda c: c["adapt"].update(p=0.2)), CONFIG, "adapt.p=0.2 where"),
    "no tensors": (lambda d: (d / WEIGHTS).unlink(), WEIGHTS, "does not exist"),
    "truncated tensors": (
        lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:-100]),
        WEIGHTS,
        "is not a readable safetensors file",
    ),
    "garbage tensors": (lambda d: (d / WEIGHTS).write_bytes(b"\x00" * 64), WEIGHTS, "is not a readable safetensors file"),
    "NaN tensor": (lambda d: rewrite_tensors(d, with_nan), WEIGHTS, "holds non-finite values"),
    "tensors without the record": (
        lambda d: rewrite_tensors(d, edit_metadata=lambda m: None),
        WEIGHTS,
        "lacks the record of its method and fingerprint",
    ),
    "a tensor missing": (
        lambda d: rewrite_tensors(d, lambda t: dict(sorted(t.items())[1:])),
        WEIGHTS,
        "does not fit this model's adapters",
    ),
    "unknown method": (
        lambda d: (
            edit_config(d, lambda c: c["method"].update(name="nope")),
            rewrite_tensors(d, edit_metadata=lambda m: {**m, "method": json.dumps({**json.loads(m["method"]), "name": "nope"})}),
        ),
        CONFIG,
        "method.name='nope' is unknown",
    ),
}


@pytest.fixture(scope="module")
def saved_adapter(tiny_bundle_factory, tmp_path_factory):
    model = tiny_bundle_factory(0).model
    apply_method(model, method_config("ssvd"), adapt_config())
    train_stand_in(model)
    directory = tmp_path_factory.mktemp("adapter") / "ssvd"
    save_adapter(model, directory, method_config("ssvd"), adapt_config())
    return directory


@pytest.mark.parametrize("case", CASES)
def test_a_tampered_adapter_directory_is_refused_in_one_line_naming_the_file(case, saved_adapter, tiny_bundle_factory, tmp_path):
    tamper, culprit, expected = CASES[case]
    directory = tmp_path / "adapter"
    directory.mkdir()
    for name in (CONFIG, WEIGHTS):
        (directory / name).write_bytes((saved_adapter / name).read_bytes())
    tamper(directory)
    with pytest.raises(ModelLoadError) as error:
        load_adapter(tiny_bundle_factory(0).model, directory)
    message = str(error.value)
    assert "\n" not in message and str(directory / culprit) in message and expected in message, message


def test_an_untampered_copy_loads_and_a_format_1_directory_loads_with_a_warning(
    saved_adapter, tiny_bundle_factory, batch, tmp_path, caplog
):
    reference = tiny_bundle_factory(0).model
    load_adapter(reference, saved_adapter)
    directory = tmp_path / "old"
    directory.mkdir()
    (directory / WEIGHTS).write_bytes((saved_adapter / WEIGHTS).read_bytes())
    (directory / CONFIG).write_bytes((saved_adapter / CONFIG).read_bytes())
    edit_config(directory, lambda c: c.update(format=1))
    rewrite_tensors(directory, edit_metadata=lambda m: None)  # as earlier versions wrote it: no record
    old = tiny_bundle_factory(0).model
    with caplog.at_level(logging.WARNING):
        load_adapter(old, directory)
    assert f"{directory / WEIGHTS} holds no adapter fingerprint" in caplog.text
    assert torch.equal(encoder_output(old, batch), encoder_output(reference, batch))
