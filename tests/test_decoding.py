"""Greedy CTC against a hand-built posterior; beam search equal to stock ESPnet Speech2Text; batched greedy
attention decoding equal to ESPnet's beam search with beam 1 and no CTC."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

import pytest
import torch

from asr_peft.errors import ConfigError
from asr_peft.evaluation.wer import error_rates
from asr_peft.models.base import eval_mode
from asr_peft.models.owsm_decoding import BeamSearchDecoder, ctc_greedy_decode, decode, encode
from asr_peft.models.export import export_espnet_dir
from asr_peft.models.owsm import PAD_INPUT_KEY
from conftest import ROOT


def without_specials(text: str) -> str:
    """Stock Speech2Text's full text minus <eng><asr><notimestamps>-style symbols (its `text_nospecial`
    also drops char models' <space> tokens, so it is not the comparable form)."""
    return re.sub(r"<[^>]*>", "", text).strip()


def stock_decode(model_dir: Path, speech: torch.Tensor, **options) -> tuple:
    """Stock ESPnet Speech2Text, built from an exported model directory with `options`, on `speech`: the best
    hypothesis (text, tokens, token ids, ...). ESPnet's exported paths are relative to that directory."""
    from espnet2.bin.s2t_inference import Speech2Text

    with contextlib.chdir(model_dir):
        stock = Speech2Text(s2t_train_config="exp/s2t_train/config.yaml", s2t_model_file="exp/s2t_train/model.pth", **options)
        return stock(speech.numpy())[0]


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
    export_espnet_dir(tiny_bundle, tmp_path / "model")
    speech = torch.randn(12000) * 0.1
    # Stock Speech2Text pads every input to preprocessor_conf.speech_length; decode ours the same way.
    tiny_bundle.speech_length = tiny_bundle.s2t_config["preprocessor_conf"]["speech_length"] = 2
    export_espnet_dir(tiny_bundle, tmp_path / "padded")
    try:
        ours = BeamSearchDecoder(tiny_bundle, beam_size=3, ctc_weight=0.3, maxlenratio=0.3)(speech)
    finally:
        tiny_bundle.speech_length = None
    text, tokens, *_ = stock_decode(
        tmp_path / "padded", speech, beam_size=3, ctc_weight=0.3, maxlenratio=0.3, lang_sym="<eng>", task_sym="<asr>"
    )
    assert len(tokens) > 3  # the primer's <eng><asr><notimestamps> plus what was decoded
    assert ours == without_specials(text)


def test_merged_export_of_an_adapted_model_decodes_identically_in_stock_espnet(tiny_bundle_factory, tmp_path):
    """SSVD-adapted tiny model -> merged ESPnet export -> stock Speech2Text gives our beam-search transcript."""
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
    text = stock_decode(tmp_path / "merged", speech, beam_size=3, ctc_weight=0.3, maxlenratio=0.3)[0]
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


# --- greedy attention decoding of the shipped checkpoint, against ESPnet's own search ---------------------

CHECKPOINT = ROOT / "checkpoints" / "owsm_tiny_pretrained"
# (domain, sentence, language the decoder is primed with): 0.7-2.7 s of speech, one utterance primed in Dutch.
SPOKEN = [
    ("child", "the cat sat", "eng"),
    ("source", "she wrote a letter to her mother yesterday evening", "eng"),
    ("child", "we waited for the train", "nld"),
    ("dialect", "a cold wind blew from the north over the hills and the river", "eng"),
    ("child", "he was a good man", "eng"),
]


@pytest.fixture(scope="module")
def shipped():
    from asr_peft.models import load_owsm

    return load_owsm({"path": str(CHECKPOINT)})


@pytest.fixture(scope="module")
def spoken_batch() -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Rendered speech (the synthetic corpus's voices) of different lengths, zero-padded into one batch."""
    import numpy as np

    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install installs it)")
    rng = np.random.default_rng(5)
    speech = [torch.from_numpy(render(draw(domain, sentence, rng))) for domain, sentence, _ in SPOKEN]
    lengths = torch.tensor([len(s) for s in speech])
    batch = torch.nn.utils.rnn.pad_sequence(speech, batch_first=True)
    return batch, lengths, [language for *_, language in SPOKEN], [sentence for _, sentence, _ in SPOKEN]


@pytest.mark.parametrize("steered", [None, "no eos", "timestamps favoured"])
def test_att_greedy_is_espnets_beam_search_with_beam_1_and_no_ctc(shipped, spoken_batch, steered, monkeypatch):
    """ESPnet's BatchBeamSearch with beam 1 and CTC weight 0 (the decoder and Speech2Text's score filter alone)
    is greedy attention decoding: run on each utterance's own frames of the batch's encoding, primed with
    that utterance's language, it gives att_greedy's transcripts of the padded batch. The decoder's scores
    are steered (in both) to reach what the trained model rarely does: with <eos> impossible every
    utterance runs to its length limit, which must be the beam search's; with timestamp tokens favoured,
    Speech2Text's score filter must keep them out."""
    speech, lengths, languages, _ = spoken_batch
    step = shipped.model.decoder.forward_one_step
    timestamps = [i for i, token in enumerate(shipped.token_list) if re.fullmatch(r"<\d+\.\d+>", token)]
    primed, steps = [], []

    def steered_step(tgt, *args, **kwargs):
        if tgt.shape[1] == 4:  # the primer, before any token is decoded
            primed.append(tgt[:, 1].tolist())
        steps.append(tgt.shape[0])
        scores, cache = step(tgt, *args, **kwargs)
        if steered == "no eos":
            scores[:, shipped.model.eos] = -1e10
        elif steered == "timestamps favoured":
            scores[:, timestamps] += 30.0
        return scores, cache

    monkeypatch.setattr(shipped.model.decoder, "forward_one_step", steered_step)  # ESPnet's batch_score calls it too
    ours = decode(shipped, speech, lengths, method="att_greedy", languages=languages)
    assert primed[0] == [shipped.converter.token2id[f"<{language}>"] for language in languages]
    batch_steps = list(steps)

    search = BeamSearchDecoder(shipped, beam_size=1, ctc_weight=0.0)
    assert set(search.search.scorers) == {"decoder", "scorefilter"}  # ESPnet drops the weight-0 CTC scorer and bonus
    with eval_mode(shipped.model):
        encoded, frames = encode(shipped.model, speech, lengths)
    assert len(set(frames.tolist())) == len(SPOKEN)  # a padded batch: every utterance has its own length
    espnet = [search.decode_encoded(encoded[i, :n], f"<{lang}>") for i, (n, lang) in enumerate(zip(frames.tolist(), languages))]
    assert ours == espnet
    assert sum(len(text.split()) for text in ours) >= 3 * len(SPOKEN)  # transcripts, not empty strings
    if steered == "no eos":  # step k decodes the utterances whose limit is k or more
        limits = [search.max_tokens(n) for n in frames.tolist()]
        assert batch_steps == [sum(limit > k for limit in limits) for k in range(max(limits))]


def test_att_greedy_of_a_fixed_window_model_equals_espnets_search_per_utterance(spoken_batch):
    """A model that pads every input to its window (OWSM: 30 s; here the shipped weights with a 3 s window)
    encodes an utterance alike alone and in a batch: att_greedy of the batch gives, utterance by utterance,
    ESPnet's beam-1, CTC-0 search run on each one alone (`BeamSearchDecoder`, as Speech2Text)."""
    from asr_peft.models import load_owsm

    speech, lengths, languages, _ = spoken_batch
    windowed = load_owsm({"path": str(CHECKPOINT), "speech_length": 3})
    ours = decode(windowed, speech, lengths, method="att_greedy", languages=languages)
    search = BeamSearchDecoder(windowed, beam_size=1, ctc_weight=0.0)
    alone = [search(s[:n], f"<{language}>") for s, n, language in zip(speech, lengths.tolist(), languages)]
    assert ours == alone and all(alone)


def test_att_greedy_under_bf16_autocast_on_the_cpu(shipped, spoken_batch):
    """bf16 autocast (validation and scoring under `bf16-mixed`): the decoder runs in bf16 and gives the fp32
    transcripts, near enough. bf16 keeps 8 bits of mantissa, so a near-tie between two tokens may flip: on
    the first 100 child test utterances 17 transcripts differed from fp32 and the WER moved 0.2 points. So
    at most 2 of these 5 may differ (3.8% likely at that rate, on another CPU's kernels), and the CER by
    less than 3 points."""
    speech, lengths, languages, references = spoken_batch
    fp32 = decode(shipped, speech, lengths, method="att_greedy", languages=languages)
    dtypes = set()
    hook = shipped.model.decoder.output_layer.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = decode(shipped, speech, lengths, method="att_greedy", languages=languages)
    finally:
        hook.remove()
    assert dtypes == {torch.bfloat16}
    assert sum(a != b for a, b in zip(fp32, bf16)) <= 2, (fp32, bf16)
    assert abs(error_rates(references, bf16, str)["cer"] - error_rates(references, fp32, str)["cer"]) < 0.03


# --- which decodes scoring and validation run ------------------------------------------------------------


def test_secondary_decodes_score_every_test_set_again_beside_the_primary(tiny_bundle, tiny_corpus, tmp_path):
    """`evaluation.secondary_decodes`: the primary scores and hyp.trn as without it; each secondary method's
    scores (under `secondary.<method>`) and hyp.<method>.trn as that method gives them as the primary one;
    and the record stays valid for the report."""
    from asr_peft.evaluation.scoring import score_test_sets
    from asr_peft.reporting.records import record_problem

    data = {"test": {"test": str(tiny_corpus / "test.jsonl")}}

    def score(name: str, **evaluation) -> dict:
        return score_test_sets(tiny_bundle, data, {"progress": False, **evaluation}, str.lower, tmp_path / name / "decode")

    alone = score("ctc", decode="ctc_greedy")
    att = score("att", decode="att_greedy")
    both = score("both", decode="ctc_greedy", secondary_decodes=["att_greedy"])
    assert set(both["test"]) == {*alone["test"], "secondary"}
    assert {key: value for key, value in both["test"].items() if key != "secondary"} == alone["test"]
    assert both["test"]["secondary"] == {"att_greedy": att["test"]}
    decodes = tmp_path / "both" / "decode" / "test"
    assert sorted(path.name for path in decodes.iterdir()) == ["hyp.att_greedy.trn", "hyp.trn", "ref.trn"]
    assert (decodes / "hyp.trn").read_text() == (tmp_path / "ctc" / "decode" / "test" / "hyp.trn").read_text()
    assert (decodes / "hyp.att_greedy.trn").read_text() == (tmp_path / "att" / "decode" / "test" / "hyp.trn").read_text()
    assert record_problem({"status": "completed", "metrics": both}, tmp_path / "both") is None
    with pytest.raises(ConfigError, match=r"^evaluation.secondary_decodes='greedy' is not a decoding method"):
        score("bad", secondary_decodes=["greedy"])


def test_validation_decodes_with_evaluation_validation_decode(tiny_bundle, monkeypatch):
    from asr_peft.training.module import SpeechLitModule

    def module(validation_decode=None):
        return SpeechLitModule(tiny_bundle, optimizer={"lr": 1e-3}, normalizer=str, validation_decode=validation_decode)

    assert module().validation_decode == tiny_bundle.validation_decode  # null: the family's default
    with pytest.raises(ConfigError, match=r"^evaluation.validation_decode='greedy' is not a decoding method"):
        module("greedy")
    methods = []
    monkeypatch.setattr(tiny_bundle, "loss", lambda batch: (torch.tensor(0.0), {}))
    monkeypatch.setattr(tiny_bundle, "transcribe", lambda batch, *, method, **_: methods.append(method) or ["hi"])
    validating = module("beam")
    validating.validation_step({"utt_id": ["u"], "language": ["eng"], "transcript": ["hi"]}, 0)
    assert methods == ["beam"]


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_validation_encodes_once_with_the_numbers_of_loss_and_transcribe(shipped, spoken_batch, autocast):
    """OWSM's `validate`: the attention decode takes the loss pass's encoding; the dev loss and transcripts
    equal `loss` and `transcribe` run apart, in fp32 and under CPU bf16 autocast, and `encode` is the
    class's own again after."""
    from asr_peft.data.dataset import ITEM_INFO, Collate

    speech, lengths, languages, sentences = spoken_batch
    preprocess = shipped.preprocessor(default_language="eng", train=False)
    items = [
        {"utt_id": str(i), "transcript": t, "language": lang, **preprocess(str(i), s[:n].numpy(), t, lang)}
        for i, (s, n, t, lang) in enumerate(zip(speech, lengths, sentences, languages))
    ]
    batch = {k: v for k, v in Collate(shipped.collate)(items).items() if k not in ITEM_INFO}
    calls = []
    hook = shipped.model.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, hyps = shipped.validate(batch, method="att_greedy", languages=languages)
            assert len(calls) == 1 and "encode" not in vars(shipped.model)
            with torch.inference_mode():
                shipped.model.eval()
                apart = shipped.loss(batch)[0]
            expected = shipped.transcribe(batch, method="att_greedy", languages=languages, options={})
    finally:
        hook.remove()
    assert torch.equal(loss, apart) and hyps == expected
