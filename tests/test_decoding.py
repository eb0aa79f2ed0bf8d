"""Greedy CTC against a hand-built posterior; beam search equal to stock ESPnet Speech2Text."""

from __future__ import annotations

import os

import pytest
import torch

from asr_peft.errors import ConfigError
from asr_peft.evaluation.decoding import BeamSearchDecoder, ctc_greedy_decode, decode
from asr_peft.models.export import export_espnet_dir


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
        stock = Speech2Text(s2t_train_config="exp/s2t_train/config.yaml", s2t_model_file="exp/s2t_train/model.pth",
                            beam_size=3, ctc_weight=0.3, maxlenratio=0.3, lang_sym="<eng>", task_sym="<asr>")
        _, tokens, _, text_without_specials, _ = stock(speech.numpy())[0]
    finally:
        os.chdir(cwd)
        tiny_bundle.speech_length = None
    assert len(tokens) > 3  # the primer's <eng><asr><notimestamps> plus what was decoded
    assert ours == text_without_specials.strip()
