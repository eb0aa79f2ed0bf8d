"""One method's training-step time and peak memory on the OWSM v3.1 base architecture (random weights).

Run by bench/run.py in a fresh process per method, so that peak resident memory belongs to one method.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import time

import torch
from omegaconf import OmegaConf

from asr_peft.adapters import apply_method, merge_adapters, trainable_parameter_count
from asr_peft.models import load_owsm

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def base_model():
    cfg = OmegaConf.load(ROOT / "configs" / "model" / "owsm_0.1b.yaml")
    cfg.init, cfg.speech_length = "random", None
    cfg.s2t_config.specaug = None  # identical inputs for every method
    for key in ("dropout_rate", "positional_dropout_rate", "attention_dropout_rate"):
        cfg.s2t_config.encoder_conf[key] = 0.0
    torch.manual_seed(0)
    return load_owsm(OmegaConf.to_container(cfg, resolve=True))


def batch(bundle, seconds: float, size: int):
    from asr_peft.data.dataset import collate
    from asr_peft.data.owsm_text import OWSMPreprocessor

    generator = torch.Generator().manual_seed(0)
    encoder = OWSMPreprocessor(bundle)
    text = "the quick brown fox jumps over the lazy dog " * 4
    items = [{"utt_id": str(i), "transcript": text, "language": "eng", **encoder.encode(text),
              "speech": (0.1 * torch.randn(int(seconds * 16000), generator=generator)).numpy()} for i in range(size)]
    return {k: v for k, v in collate(items).items() if k not in ("utt_id", "transcript", "language")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True, help="JSON of the method config")
    parser.add_argument("--p", type=float, default=0.4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundle = base_model()
    method = json.loads(args.method)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    inputs = batch(bundle, args.seconds, args.batch)
    if args.mode == "infer":
        print(json.dumps(inference_ratios(bundle.model, method, targets, args.p, inputs, args.repeats)))
        return
    model = bundle.model
    apply_method(model, method, {"p": args.p, "targets": targets})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(**inputs)[0].backward()
        optimizer.step()
        if i:  # the first step warms up allocators and caches
            times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times), "trainable": trainable_parameter_count(model),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def inference_ratios(base, method: dict, targets: list[str], p: float, inputs: dict, repeats: int) -> dict[str, float]:
    """Encoder time of the adapted model, unmerged and merged, relative to the base model.

    The three models live side by side and are timed in rotating order every round; the ratio is the
    median of the per-round ratios, so drifts in the machine's speed cancel out.
    """
    unmerged = copy.deepcopy(base)
    apply_method(unmerged, method, {"p": p, "targets": targets})
    merged = copy.deepcopy(unmerged)
    merge_adapters(merged)
    models = {"base": base, "unmerged": unmerged, "merged": merged}
    ratios: dict[str, list[float]] = {"unmerged": [], "merged": []}
    with torch.inference_mode():
        for model in models.values():
            model.eval()
            model.encode(inputs["speech"], inputs["speech_lengths"])  # warm-up
        for round_ in range(repeats):
            seconds = {}
            names = list(models)
            for name in names[round_ % 3:] + names[:round_ % 3]:
                start = time.perf_counter()
                models[name].encode(inputs["speech"], inputs["speech_lengths"])
                seconds[name] = time.perf_counter() - start
            for name in ratios:
                ratios[name].append(seconds[name] / seconds["base"])
    return {name: statistics.median(values) for name, values in ratios.items()}


if __name__ == "__main__":
    main()
