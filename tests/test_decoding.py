"""Greedy CTC against a hand-built posterior; beam search equal to stock ESPnet Speech2Text."""

from __future__ import annotations

import os
import re

import pytest
import torch

from asr_peft.errors import ConfigError
from asr_peft.models.owsm_decoding import BeamSearchDecoder, ctc_greedy_decode, decode
from asr_peft.models.export import export_espnet_dir
from asr_peft.models.owsm import PAD_INPUT_KEY


def without_specials(text: str) -> str:
    """Stock Speech2Text's full text minus <eng><asr><notimestamps>-style symbols (its `text_nospecial`
    also drops char models' <space> tokens, so it is not the comparable form)."""
    return re.sub(r"<[^>]*>", "", text).strip()


def test_greedy_ctc_collapses_repeats_and_drops_blanks(tiny_bundle, monkeypatch):
    ids = tiny_bundle.converter.token2id
    h, i, blank = ids["h"], ids["i"], ids["<blank>"]
    path = torch.tensor([[blank, h, h, blank, i, i, i, blank, blank]])
    monkeypatch.setattr(tiny_bundle.model.ctc, "argmax", lambda encoded: path.expand(encoded.shape[0], -1))
    tiny_bundle.model.train()
    texts = ctc_greedy_decode(tiny_bundle, torch.randn(1, 16000), torch.tensor([16000]))
    assert texts == ["hi"]
    assert tiny_bundle.model.training, "decoding must give back the caller's train mode"


def test_unknown_decode_method_names_the_key(tiny_bundle):
    with pytest.raises(ConfigError, match="evaluation.decode"):
        decode(tiny_bundle, torch.randn(1, 800), torch.tensor([800]), method="viterbi")


def test_beam_search_matches_stock_speech2text(tiny_bundle, tmp_path):
    from espnet2.bin.s2t_inference import Speech2Text

    export_espnet_dir(tiny_bundle, tmp_path / "model")
    speech = torch.randn(12000) * 0.1
    # Stock Speech2Text pads every input to preprocessor_conf.speech_length; decode ours the same way.
    tiny_bundle.speech_length = tiny_bundle.s2t_config["preprocessor_conf"]["speech_length"] = 2
    export_espnet_dir(tiny_bundle, tmp_path / "padded")
    ours = BeamSearchDecoder(tiny_bundle, beam_size=3, ctc_weight=0.3, maxlenratio=0.3)(speech)
    cwd = os.getcwd()
    os.chdir(tmp_path / "padded")  # ESPnet's exported paths are relative to the model directory
    try:
        stock = Speech2Text(
            s2t_train_config="exp/s2t_train/config.yaml",
            s2t_model_file="exp/s2t_train/model.pth",
            beam_size=3,
            ctc_weight=0.3,
            maxlenratio=0.3,
            lang_sym="<eng>",
            task_sym="<asr>",
        )
        text, tokens, *_ = stock(speech.numpy())[0]
    finally:
        os.chdir(cwd)
        tiny_bundle.speech_length = None
    assert len(tokens) > 3  # the primer's <eng><asr><notimestamps> plus what was decoded
    assert ours == without_specials(text)


def test_merged_export_of_an_adapted_model_decodes_identically_in_stock_espnet(tiny_bundle_factory, tmp_path):
    """SSVD-adapted tiny model -> merged ESPnet export -> stock Speech2Text gives our beam-search transcript."""
    from espnet2.bin.s2t_inference import Speech2Text

    from asr_peft.adapters import adapter_modules, apply_method, merged_copy
    from asr_peft.models import load_owsm

    bundle = tiny_bundle_factory(1)
    apply_method(bundle.model, {"name": "ssvd"}, {"p": 0.4, "targets": ["attn.linear_q", "feed_forward.w_1"]})
    with torch.no_grad():
        for _, module in adapter_modules(bundle.model):
            for _, p in module.named_adapter_parameters():
                p.add_(0.05 * torch.randn_like(p))
    # Pad to 2 s, as stock Speech2Text always pads to preprocessor_conf.speech_length.
    bundle.speech_length = bundle.s2t_config["preprocessor_conf"]["speech_length"] = 2
    bundle.s2t_config[PAD_INPUT_KEY] = True
    export_espnet_dir(bundle, tmp_path / "merged", model=merged_copy(bundle.model))
    speech = torch.randn(9000) * 0.1
    ours = BeamSearchDecoder(bundle, beam_size=3, maxlenratio=0.3)(speech)
    reloaded = load_owsm({"path": str(tmp_path / "merged")})
    assert BeamSearchDecoder(reloaded, beam_size=3, maxlenratio=0.3)(speech) == ours
    cwd = os.getcwd()
    os.chdir(tmp_path / "merged")
    try:
        stock = Speech2Text(
            s2t_train_config="exp/s2t_train/config.yaml",
            s2t_model_file="exp/s2t_train/model.pth",
            beam_size=3,
            ctc_weight=0.3,
            maxlenratio=0.3,
        )
        text = stock(speech.numpy())[0][0]
    finally:
        os.chdir(cwd)
    assert ours == without_specials(text)


@pytest.mark.parametrize("maxlenratio", [0.0, 5.0])
def test_beam_search_never_outgrows_the_ctc_frames(tiny_bundle, maxlenratio, monkeypatch):
    """A hypothesis that does not end (an untrained model on a short input) stops at what CTC can align:
    ESPnet's CTC prefix scorer indexes past the frames once primer + tokens outgrow them, which stock
    maxlen (the frame count when maxlenratio=0) allows."""
    speech = torch.randn(3000) * 0.1
    with torch.no_grad():
        frames = tiny_bundle.model.encode(speech[None], torch.tensor([3000]))[0].shape[1]
    decoder = BeamSearchDecoder(tiny_bundle, beam_size=2, ctc_weight=0.3, maxlenratio=maxlenratio)
    never_ending = tiny_bundle.model.decoder.batch_score

    def batch_score_without_eos(ys, states, xs, *args, **kwargs):
        scores, states = never_ending(ys, states, xs, *args, **kwargs)
        scores[:, tiny_bundle.model.eos] = -1e10
        return scores, states

    monkeypatch.setattr(tiny_bundle.model.decoder, "batch_score", batch_score_without_eos)
    text = decoder(speech)
    assert len(decoder.bundle.text_to_ids(text)) <= frames
