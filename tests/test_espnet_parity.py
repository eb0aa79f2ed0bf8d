"""What a real OWSM fine-tuning run here feeds the model, how its LR moves and how it decodes, against
ESPnet's own classes: `S2TPreprocessor` + `CommonCollateFn` (built as `S2TTask` builds them, from the
model's config), `ESPnetS2TModel`'s loss, `PiecewiseLinearWarmupLR` stepped as ESPnet's trainer steps
it, `UnsortedBatchSampler`, and stock `Speech2Text`.

The models: the shipped tiny checkpoint as it is (unpadded input), the same checkpoint padded to 30 s
(an OWSM-format model: sentencepiece BPE, 30 s window), and OWSM v3.1 base's real architecture built
from its config (character token list, 30 s; meta device where only its config and tokenizer matter).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_peft.data.dataset import Collate, model_dataset
from asr_peft.data.manifest import Utterance
from asr_peft.models.owsm_text import TIMESTAMP_AUGMENTATION_OFF, OWSMPreprocessor
from asr_peft.data.sampler import DurationBucketSampler, unsorted_batches
from asr_peft.models import load_owsm
from conftest import ROOT, compose_config, model_config, write_tone

CHECKPOINT = ROOT / "checkpoints" / "owsm_tiny_pretrained"
CONFIG = CHECKPOINT / "exp" / "s2t_train" / "config.yaml"
TRANSCRIPTS = ["the cat sat on the mat", "a dog ran", "she reads a good book every day"]
TARGETS = ("text", "text_prev", "text_ctc")


def espnet_task():
    from asr_peft.models.owsm import s2t_task

    return s2t_task()  # ESPnet's S2TTask (imported quietly)


def espnet_args_from_checkpoint(**preprocessor_conf) -> argparse.Namespace:
    """The checkpoint's config.yaml as ESPnet reads it (`S2TTask.build_model_from_file`: a Namespace)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["bpemodel"] = str(CHECKPOINT / config["bpemodel"])  # recipe-relative in ESPnet's export
    config["preprocessor_conf"] = {**config["preprocessor_conf"], **preprocessor_conf}
    return argparse.Namespace(**config)


def espnet_batch(args: argparse.Namespace, utterances: list[Utterance], *, train: bool = False, language: str = "eng"):
    """ESPnet's batch: its preprocessor on OWSM-format data (text = `<lang><asr><notimestamps> ...`),
    then its collate function."""
    import soundfile

    task = espnet_task()
    preprocess = task.build_preprocess_fn(args, train=train)
    items = []
    for utt in utterances:
        speech, _ = soundfile.read(str(utt.audio), dtype="float32")
        data = {
            "speech": speech,
            "text": f"<{language}><asr><notimestamps> {utt.text}",
            "text_prev": "<na>",
            "text_ctc": utt.text,
        }
        items.append((utt.id, preprocess(utt.id, data)))
    return task.build_collate_fn(args, train=train)(items)[1]


@pytest.fixture(scope="module")
def utterances(tmp_path_factory) -> list[Utterance]:
    root = tmp_path_factory.mktemp("parity")
    return [
        Utterance(f"u{i}", write_tone(root / f"u{i}.wav", seconds, frequency=180 + 40 * i, seed=i), text, seconds)
        for i, (seconds, text) in enumerate(zip((0.7, 1.3, 2.1), TRANSCRIPTS))
    ]


@pytest.fixture(scope="module")
def shipped():
    return load_owsm({"path": str(CHECKPOINT)})


@pytest.fixture(scope="module")
def shipped_padded():
    """The same weights with OWSM's 30 s input window: an OWSM-format model that pads."""
    return load_owsm({"path": str(CHECKPOINT), "speech_length": 30})


def our_batch(bundle, utterances, *, train: bool = False, language: str = "eng") -> dict:
    dataset = model_dataset(bundle, utterances, default_language=language, train=train)
    return Collate(bundle.collate)([dataset[i] for i in range(len(dataset))])


def assert_targets_equal(ours: dict, espnet: dict) -> None:
    for key in TARGETS:
        assert torch.equal(ours[key], espnet[key]), key
        assert torch.equal(ours[f"{key}_lengths"], espnet[f"{key}_lengths"]), key


# --- batches -------------------------------------------------------------------------------------------


def test_padded_owsm_batch_equals_espnets_preprocessor_and_collate(shipped_padded, utterances):
    ours, espnet = our_batch(shipped_padded, utterances), espnet_batch(espnet_args_from_checkpoint(), utterances)
    assert_targets_equal(ours, espnet)
    assert espnet["speech"].shape == (3, 480000, 1)  # ESPnet keeps a channel axis; the frontend drops it
    assert torch.equal(ours["speech"], espnet["speech"][..., 0])
    assert torch.equal(ours["speech_lengths"], espnet["speech_lengths"]) and set(ours["speech_lengths"].tolist()) == {480000}


def test_the_decoder_target_starts_at_the_language_token(shipped, utterances):
    """ESPnet drops sentencepiece's lone "▁" before <eng>: the target is <eng> <asr> <notimestamps> ..., the
    sequence the beam search is primed with after <sos>."""
    batch = our_batch(shipped, utterances)
    tokens = shipped.converter.ids2tokens
    for row, length, transcript in zip(batch["text"], batch["text_lengths"], TRANSCRIPTS):
        ids = row[:length].tolist()
        assert tokens(ids)[:4] == ["<eng>", "<asr>", "<notimestamps>", shipped.tokenizer.text2tokens(transcript)[0]]
        assert shipped.ids_to_text(ids) == transcript
    assert shipped.tokenizer.text2tokens("<eng><asr><notimestamps> x")[0] == "▁"  # what is dropped


def test_unpadded_tiny_batch_is_espnets_without_the_30s_window(shipped, utterances):
    """The shipped tiny model was trained on unpadded input (config: pad_input_to_speech_length false):
    the same targets, the waveform without ESPnet's zeros."""
    ours, espnet = our_batch(shipped, utterances), espnet_batch(espnet_args_from_checkpoint(), utterances)
    assert_targets_equal(ours, espnet)
    lengths = [int(u.duration * 16000) for u in utterances]
    assert ours["speech_lengths"].tolist() == lengths and ours["speech"].shape == (3, max(lengths))
    for row, length, reference in zip(ours["speech"], lengths, espnet["speech"][..., 0]):
        assert torch.equal(row[:length], reference[:length]) and not reference[length:].any()


def test_the_owsm_base_char_model_keeps_its_language_token_where_espnet_would_drop_it():
    """ESPnet's rule drops the first token of `text`; a character tokenizer emits no "▁" there, so stock
    ESPnet would drop <eng> itself. Ours gives it a leading space to drop instead: the rest is ESPnet's."""
    bundle = load_owsm(model_config("owsm_0.1b") | {"init": "random"}, device="meta")
    assert bundle.speech_length == 30 and bundle.s2t_config["token_type"] == "char"
    ours = OWSMPreprocessor(bundle).encode("hi you")
    from asr_peft.models.owsm import full_espnet_config

    stock = espnet_task().build_preprocess_fn(argparse.Namespace(**full_espnet_config(bundle.s2t_config)), train=False)
    espnet = stock("u", {"text": "<eng><asr><notimestamps> hi you", "text_prev": "<na>", "text_ctc": "hi you"})
    tokens = bundle.converter.ids2tokens
    assert tokens(ours["text"])[:4] == ["<eng>", "<asr>", "<notimestamps>", "<space>"]
    assert ours["text"][1:].tolist() == espnet["text"].tolist()
    assert ours["text_ctc"].tolist() == espnet["text_ctc"].tolist() and tokens(ours["text_prev"]) == ["<na>"]


def test_train_mode_places_each_utterance_as_espnet_does_under_a_seed(shipped_padded, utterances):
    """Training: ESPnet's random offset inside the 30 s window (up to speech_init_silence) and its text_prev
    draw, from NumPy's global generator; the same seed gives ESPnet's batch exactly."""
    np.random.seed(7)
    ours = our_batch(shipped_padded, utterances * 3, train=True)
    np.random.seed(7)
    espnet = espnet_batch(espnet_args_from_checkpoint(**TIMESTAMP_AUGMENTATION_OFF), utterances * 3, train=True)
    assert_targets_equal(ours, espnet)
    assert torch.equal(ours["speech"], espnet["speech"][..., 0])
    silence = shipped_padded.s2t_config["preprocessor_conf"].get("speech_init_silence", 1.0)
    offsets = [int(torch.nonzero(row)[0]) for row in ours["speech"]]
    assert len(set(offsets)) > 1 and max(offsets) <= silence * 16000  # placed, not always at 0
    np.random.seed(7)
    assert not our_batch(shipped_padded, utterances, train=False)["speech"][:, 0].eq(0).any()  # eval: at 0


def test_timestamp_augmentation_is_off_because_espnets_rule_would_double_notimestamps(shipped_padded, utterances):
    """Untimed targets: with the config's time_apply_prob ESPnet inserts a second <notimestamps> into some
    targets (its rule expects timestamps); ours never carry one."""
    notime = shipped_padded.converter.token2id["<notimestamps>"]
    np.random.seed(0)
    espnet = espnet_batch(espnet_args_from_checkpoint(time_apply_prob=0.5), utterances * 4, train=True)
    assert any((row == notime).sum() == 2 for row in espnet["text"])
    np.random.seed(0)
    ours = our_batch(shipped_padded, utterances * 4, train=True)
    assert all((row == notime).sum() == 1 for row in ours["text"])


# --- loss ----------------------------------------------------------------------------------------------


def test_training_loss_equals_espnet_models_loss_on_espnets_batch(shipped_padded, utterances):
    from asr_peft.training.module import SpeechLitModule

    module = SpeechLitModule(shipped_padded, optimizer={"lr": 1e-4}, normalizer=str)
    module.log = lambda *args, **kwargs: None  # no Trainer attached
    model = shipped_padded.model
    model.train()  # SpecAugment on, as in training: the same torch seed draws the same masks
    torch.manual_seed(3)
    ours = module.training_step(our_batch(shipped_padded, utterances), 0)
    torch.manual_seed(3)
    reference, stats, _ = model(**espnet_batch(espnet_args_from_checkpoint(), utterances))
    model.eval()
    assert torch.isfinite(ours) and ours.item() == pytest.approx(reference.item(), rel=1e-6)


# --- batching ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count, batch_size", [(1, 8), (7, 8), (8, 8), (15, 8), (16, 8), (100, 8), (35, 4)])
def test_fixed_size_batches_are_espnets_unsorted_batches(tmp_path, count, batch_size):
    espnet_task()
    from espnet2.samplers.unsorted_batch_sampler import UnsortedBatchSampler

    keys = [f"utt{i:04d}" for i in range(count)]
    (tmp_path / "shape").write_text("".join(f"{key} 1\n" for key in keys), encoding="utf-8")
    reference = [[keys.index(k) for k in batch] for batch in UnsortedBatchSampler(batch_size, str(tmp_path / "shape"))]
    assert unsorted_batches(count, batch_size) == reference
    sampler = DurationBucketSampler([30.0] * count, batch_size=batch_size, max_batch_seconds=60.0, shuffle=False)
    assert sampler.batches == reference  # batch_size wins over the seconds limit


def test_scoring_batches_never_exceed_the_batch_size():
    assert unsorted_batches(19, 8, spread_remainder=False) == [list(range(8)), list(range(8, 16)), [16, 17, 18]]


# --- schedule ------------------------------------------------------------------------------------------


def recipe_optimizer() -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config("train", ["optimizer=adamw"]).optimizer, resolve=True)


def test_recipe_schedule_at_every_update_is_espnets_warmup_then_inverse_sqrt_decay():
    """optimizer=adamw builds ESPnet's PiecewiseLinearWarmupLR with the recipe's values; the LR of each of
    the 7,500 updates against the formula: linear to 1e-4 at update 1,500, then 1e-4 * sqrt(1500 / n)."""
    from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR

    from asr_peft.training.module import build_scheduler

    cfg = recipe_optimizer()
    assert (cfg["lr"], cfg["betas"], cfg["eps"], cfg["weight_decay"]) == (1e-4, [0.9, 0.98], 1e-6, 0.0)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    scheduler = build_scheduler(optimizer, cfg, total_steps=7500)
    assert isinstance(scheduler, PiecewiseLinearWarmupLR)
    for update in range(1, 7501):  # the LR the update-th optimizer step uses
        expected = 1e-4 * update / 1500 if update <= 1500 else 1e-4 * (1500 / update) ** 0.5
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9), update
        optimizer.step()
        scheduler.step()
    assert expected == pytest.approx(4.47e-5, rel=1e-3)


def test_lightning_steps_the_scheduler_once_per_update_as_espnets_trainer(tmp_path):
    """With gradients accumulated over 4 batches, the LR changes once per optimizer step, and the LR of the
    n-th update is what ESPnet's loop (optimizer.step(); scheduler.step() every accum_grad batches) gives."""
    import lightning.pytorch as pl
    from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR

    from asr_peft.training.module import SpeechLitModule

    conf = {"warmup_steps_list": [0, 5], "warmup_lr_list": [0.0, 1e-2]}
    cfg = {"lr": 1e-2, "betas": [0.9, 0.98], "eps": 1e-6, "scheduler": "piecewiselinearwarmuplr", "scheduler_conf": conf}

    class Probe(SpeechLitModule):
        def __init__(self):
            super().__init__(
                argparse.Namespace(model=torch.nn.Linear(1, 1), check_validation_decode=str), optimizer=cfg, normalizer=str
            )
            self.lrs_per_batch, self.lrs_per_update = [], []

        def training_step(self, batch, batch_idx):
            self.lrs_per_batch.append(self.optimizers().param_groups[0]["lr"])
            return self.model(batch).pow(2).mean()

        def on_before_optimizer_step(self, optimizer):
            self.lrs_per_update.append(optimizer.param_groups[0]["lr"])

    probe = Probe()
    data = torch.utils.data.DataLoader(torch.ones(1000, 1), batch_size=1)
    trainer = pl.Trainer(
        max_steps=12,
        accumulate_grad_batches=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(probe, train_dataloaders=data)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    scheduler = PiecewiseLinearWarmupLR(optimizer, **conf)
    espnet = []
    for _ in range(12):
        espnet.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert probe.lrs_per_update == pytest.approx(espnet) and len(probe.lrs_per_batch) == 48
    assert probe.lrs_per_batch == pytest.approx([lr for lr in espnet for _ in range(4)])


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"scheduler": "nosuchlr"}, "optimizer.scheduler='nosuchlr' is not one of ESPnet's per-update schedulers"),
        ({"scheduler": "steplr", "scheduler_conf": {"step_size": 1}}, "is not one of ESPnet's per-update"),  # per epoch
        ({"scheduler": "warmuplr", "scheduler_conf": {"warmup": 3}}, "optimizer.scheduler_conf does not fit warmuplr"),
        ({"scheduler": "warmuplr", "warmup_steps": 30}, "optimizer.warmup_steps applies only without optimizer.scheduler"),
        ({"schedule": "cosine"}, "optimizer.schedule must be"),
    ],
)
def test_bad_schedules_name_the_key(cfg, message):
    from asr_peft.errors import ConfigError
    from asr_peft.training.module import build_scheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_scheduler(optimizer, cfg, total_steps=10)


def test_adamw_is_espnets_adamw():
    espnet_task()
    from espnet2.tasks.abs_task import optim_classes

    assert optim_classes["adamw"] is torch.optim.AdamW


# --- decoding ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory, shipped) -> tuple[object, Path, list[Utterance]]:
    """The shipped model exported with a 3 s window (stock Speech2Text always pads to the config's
    speech_length; 30 s would make a CPU beam search slow), and real synthetic speech to decode."""
    import shutil

    import soundfile

    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render
    from asr_peft.models.export import export_espnet_dir
    from asr_peft.models.owsm import PAD_INPUT_KEY

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install installs it)")
    root = tmp_path_factory.mktemp("spoken")
    shipped.s2t_config["preprocessor_conf"]["speech_length"] = 3
    shipped.s2t_config[PAD_INPUT_KEY] = True
    try:
        export_espnet_dir(shipped, root / "model")
    finally:
        shipped.s2t_config["preprocessor_conf"]["speech_length"] = 30
        shipped.s2t_config[PAD_INPUT_KEY] = False
    rng = np.random.default_rng(3)
    utterances = []
    for i, sentence in enumerate(["the house was very old", "we waited for the train"]):
        soundfile.write(str(root / f"{i}.wav"), render(draw("source", sentence, rng)), 16000)
        utterances.append(Utterance(str(i), root / f"{i}.wav", sentence))
    return load_owsm({"path": str(root / "model")}), root / "model", utterances


@pytest.mark.parametrize("language, ctc_weight", [("nld", 0.0), ("eng", 0.3)])
def test_beam_search_equals_stock_speech2text_with_the_datas_language(spoken, language, ctc_weight):
    """Beam 5, penalty 0, maxlenratio 0 (Speech2Text's defaults) primed with a language token: the same
    transcript as stock Speech2Text given that lang_sym, and the primer holds that token."""
    from espnet2.bin.s2t_inference import Speech2Text

    from asr_peft.models.owsm_decoding import BeamSearchDecoder

    bundle, model_dir, utterances = spoken
    assert bundle.speech_length == 3
    batch = our_batch(bundle, utterances[:1], language=language)
    speech = batch["speech"][0, : batch["speech_lengths"][0]]
    settings = {"beam_size": 5, "ctc_weight": ctc_weight, "penalty": 0.0, "maxlenratio": 0.0}
    decoder = BeamSearchDecoder(bundle, **settings)
    ours = decoder(speech, f"<{language}>")
    assert decoder.search.hyp_primer[1] == bundle.converter.token2id[f"<{language}>"]
    cwd = os.getcwd()
    os.chdir(model_dir)  # ESPnet's exported paths are relative to the model directory
    try:
        stock = Speech2Text(
            s2t_train_config="exp/s2t_train/config.yaml",
            s2t_model_file="exp/s2t_train/model.pth",
            lang_sym=f"<{language}>",
            **settings,
        )
        text, tokens, *_ = stock(speech.numpy())[0]
    finally:
        os.chdir(cwd)
    assert tokens[0] == f"<{language}>" and ours == re.sub(r"<[^>]*>", "", text).strip()


def test_scoring_primes_each_utterance_with_its_own_language(shipped, utterances, monkeypatch):
    """The language of each utterance (its manifest's, else data.language) reaches the beam search."""
    from asr_peft.models import owsm_decoding as decoding

    primed = []
    monkeypatch.setattr(decoding.BeamSearchDecoder, "__call__", lambda self, speech, lang_sym=None: primed.append(lang_sym) or "")
    mixed = [utterances[0], Utterance("nl", utterances[1].audio, "een hond", 1.3, language="nld"), utterances[2]]
    dataset = model_dataset(shipped, mixed, default_language="eng")
    batch = Collate(shipped.collate)([dataset[i] for i in range(3)])
    decoding.decode(shipped, batch["speech"], batch["speech_lengths"], method="beam", languages=batch["language"])
    assert primed == ["<eng>", "<nld>", "<eng>"]


# --- the recipe preset on OWSM-base's real architecture --------------------------------------------------

RECIPE_ON_OWSM_BASE = ["model=owsm_0.1b", "model.init=random", "experiment=espnet_myst_recipe", "data=manifest"]


@pytest.fixture(scope="module")
def recipe_corpus(tmp_path_factory) -> Path:
    """17 short training utterances (two fixed-size batches of 8, ESPnet's rule: 8 and 9), 2 dev, 2 test."""
    import json

    root = tmp_path_factory.mktemp("recipe")
    for offset, (split, count) in enumerate((("train", 17), ("valid", 2), ("test", 2))):
        lines = []
        for i in range(count):  # each split its own noise: a test clip identical to a training one is refused
            audio = write_tone(root / f"{split}{i}.wav", 1.0 + 0.05 * i, frequency=150 + 20 * i, seed=100 * offset + i)
            lines.append(json.dumps({"id": f"{split}{i}", "audio": audio.name, "text": TRANSCRIPTS[i % 3]}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_recipe_preset_feeds_owsm_base_fixed_batches_of_padded_30s_utterances(recipe_corpus):
    from omegaconf import OmegaConf

    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.data.validation import validate_data
    from asr_peft.training.datamodule import SpeechDataModule

    cfg = compose_config("train", [*RECIPE_ON_OWSM_BASE, f"data.corpus_dir={recipe_corpus}", "loader.num_workers=0"])
    assert (cfg.trainer.max_steps, cfg.trainer.accumulate_grad_batches, cfg.trainer.gradient_clip_val) == (7500, 4, 5.0)
    assert (cfg.evaluation.checkpoint, cfg.evaluation.decode, cfg.evaluation.beam.ctc_weight) == ("last", "beam", 0.0)
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    bundle = load_owsm(plain(cfg.model), device="meta")  # the real config and tokenizer; no weights needed here
    data = validate_data(
        plain(cfg.data), normalizer=get_normalizer(cfg.data.normalizer), cache_dir=None, splits=("train", "valid")
    )
    datamodule = SpeechDataModule(plain(cfg.data), plain(cfg.loader), bundle, train=data.train, valid=data.valid, seed=cfg.seed)
    shapes = sorted(tuple(batch["speech"].shape) for batch in datamodule.train_dataloader())
    assert shapes == [(8, 480000), (9, 480000)]


@pytest.mark.slow
def test_recipe_preset_trains_two_updates_of_owsm_base(recipe_corpus, tmp_path):
    """The issue's command: two updates of the real OWSM-base architecture (101M, random weights) with 30 s
    padding and batches of 8 (trainer=cpu: no accumulation), then greedy-CTC scoring of the last checkpoint."""
    from test_train_e2e import run_in_process

    record = run_in_process(
        [
            *RECIPE_ON_OWSM_BASE,
            f"data.corpus_dir={recipe_corpus}",
            "trainer=cpu",
            "trainer.max_steps=2",
            "loader.num_workers=0",
            "evaluation.decode=ctc_greedy",
            "evaluation.baseline=false",
            "method=ssvd",
        ],
        tmp_path / "run",
    )
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["parameters"]["total"] > 100_000_000 and record["config"]["loader"]["batch_size"] == 8
