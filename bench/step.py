"""One method's training-step time and peak memory on the OWSM v3.1 base architecture (random weights).

Run by bench/run.py in a fresh process per method, so that peak resident memory belongs to one method.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
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
    from asr_peft.data.owsm_text import OWSMTextEncoder

    generator = torch.Generator().manual_seed(0)
    encoder = OWSMTextEncoder(bundle)
    text = "the quick brown fox jumps over the lazy dog " * 4
    items = [{"utt_id": str(i), "transcript": text, **encoder.encode(text),
              "speech": (0.1 * torch.randn(int(seconds * 16000), generator=generator)).numpy()} for i in range(size)]
    return {k: v for k, v in collate(items).items() if k not in ("utt_id", "transcript")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True, help="JSON of the method config")
    parser.add_argument("--p", type=float, default=0.4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["train", "infer-merged", "infer-unmerged", "infer-base"], default="train")
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundle = base_model()
    method = json.loads(args.method)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    if args.mode != "infer-base":
        apply_method(bundle.model, method, {"p": args.p, "targets": targets})
    inputs = batch(bundle, args.seconds, args.batch)
    model = bundle.model
    times = []
    if args.mode == "train":
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        for i in range(args.repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            model(**inputs)[0].backward()
            optimizer.step()
            if i:  # the first step warms up allocators and caches
                times.append(time.perf_counter() - start)
    else:
        if args.mode == "infer-merged":
            merge_adapters(model)
        model.eval()
        with torch.inference_mode():
            for i in range(args.repeats + 1):
                start = time.perf_counter()
                model.encode(inputs["speech"], inputs["speech_lengths"])
                if i:
                    times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": statistics.median(times), "trainable": trainable_parameter_count(model),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
