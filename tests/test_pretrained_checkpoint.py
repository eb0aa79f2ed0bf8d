"""The shipped small pretrained checkpoint: intact, loadable, and it recognises fresh source-domain speech."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from asr_peft.data.normalizers import get_normalizer
from asr_peft.models.owsm_decoding import ctc_greedy_decode
from asr_peft.evaluation.wer import error_rates
from asr_peft.models import load_owsm
from asr_peft.models.checksums import verify_checksums
from omegaconf import OmegaConf

from conftest import ROOT, compose_config

CHECKPOINT = ROOT / "checkpoints" / "owsm_tiny_pretrained"


def test_checkpoint_matches_its_checksums_and_carries_its_documents():
    assert verify_checksums(CHECKPOINT) == []
    for name in (
        "meta.yaml",
        "data_card.json",
        "training_summary.json",
        "data/token_list/bpe.model",
        "exp/s2t_stats/train/feats_stats.npz",
    ):
        assert (CHECKPOINT / name).is_file(), name
    summary = json.loads((CHECKPOINT / "training_summary.json").read_text())
    assert summary["metrics"]["source"]["wer"] < summary["metrics"]["child"]["wer"]
    assert summary["metrics"] == summary["decoding"][summary["decode"]]
    assert set(summary["decoding"]) == {"ctc_greedy", "beam_ctc0.0", "beam_ctc0.3"}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make install installs it)")
def test_the_decoder_starts_a_transcript_where_the_beam_search_primes_it(tmp_path):
    """ESPnet's target is <sos> <eng> <asr> <notimestamps> words: the decoder must put the language token,
    not sentencepiece's lone "▁", after <sos>, and a transcript's first word piece after that primer."""
    import soundfile

    from asr_peft.data.manifest import Utterance
    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render
    from asr_peft.models.pretrain_tiny import first_token_probabilities

    bundle = load_owsm({"path": str(CHECKPOINT)})
    rng = __import__("numpy").random.default_rng(7)
    utterances = []
    for i, sentence in enumerate(
        [
            "the children played in the park",
            "she wrote a letter to her mother",
            "we waited for the train",
            "a cold wind blew from the north",
        ]
    ):
        soundfile.write(str(tmp_path / f"{i}.wav"), render(draw("source", sentence, rng)), 16000)
        utterances.append(Utterance(str(i), tmp_path / f"{i}.wav", sentence))
    probabilities = first_token_probabilities(bundle, utterances)
    # Stage 3 (the leading "▁" learned): p(▁ | <sos>) ~ 0.9. The shipped stage 4: 0.004 and p(<lang> | <sos>) 0.87.
    assert probabilities["p(<lang> | <sos>)"] > 0.8 and probabilities["p(▁ | <sos>)"] < 0.05, probabilities
    assert probabilities["p(first piece | primer)"] > 0.5, probabilities


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make install installs it)")
def test_checkpoint_loads_and_transcribes_fresh_source_speech():
    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render

    model = compose_config("train", ["model=owsm_tiny_pretrained"]).model
    bundle = load_owsm(OmegaConf.to_container(model, resolve=True))
    assert bundle.source.startswith("dir:") and bundle.s2t_config["normalize"] == "global_mvn"
    rng = __import__("numpy").random.default_rng(12345)
    sentences = [
        "the children played in the park",
        "he was a good man",
        "she wrote a letter to her mother",
        "the house was very old",
        "we waited for the train",
    ]
    speech = [torch.from_numpy(render(draw("source", s, rng))) for s in sentences]
    lengths = torch.tensor([len(s) for s in speech])
    batch = torch.nn.utils.rnn.pad_sequence(speech, batch_first=True)
    hypotheses = ctc_greedy_decode(bundle, batch, lengths)
    rates = error_rates(sentences, hypotheses, get_normalizer("whisper_basic"))
    # The shipped checkpoint scores 21% WER / 6.8% CER on the source test set (1 error in these 125
    # characters when exported); the margin covers other espeak-ng builds and BLAS rounding.
    assert rates["cer"] < 0.12 and rates["wer"] < 0.3, (rates, hypotheses)


def test_meta_device_plan_of_a_local_checkpoint_reads_no_weights():
    model = compose_config("train", ["model=owsm_tiny_pretrained"]).model
    bundle = load_owsm(OmegaConf.to_container(model, resolve=True), device="meta")
    parameters = list(bundle.model.parameters())
    assert all(p.is_meta for p in parameters) and sum(p.numel() for p in parameters) == 3_761_884
