"""`make bench`: speed and memory ratios of the adapters, measured side by side in one run.

1. Layer level (d=384, k=153, T=1000 tokens, the spec's "Efficient computation" setting): a training
   step (forward + backward) of each SSVD formulation and LoRA r=32, relative to a frozen layer.
2. Model level, OWSM v3.1 base architecture (random weights, 2 x 10 s, CPU): training-step time, peak
   resident memory and the step's own memory (activations, gradients, optimizer state: peak minus the
   set-up's resident memory) of every method relative to LoRA r=32, in fp32 (one fresh process per
   method and round; a ratio is the median over rounds of the ratio within a round, so drifts of a
   shared machine cancel) and under bf16 autocast (one round; relative to LoRA under bf16 autocast).
3. Inference (encoder, 2 x 10 s): merged and unmerged SSVD relative to the base model, the three
   timed in rotating order in one process (median of per-round ratios).
4. Memory at OWSM's real input (OWSM-base, a batch of 8 x 30 s, fp32, one step after a warm-up): the
   step's memory of SSVD (W' kept for the backward pass, the default; recomputed; with activation
   checkpointing) and LoRA, with the saved W' counted from the layer calls that form it.
5. SVD set-up of SSVD p=0.4 for every adapted OWSM-1B layer (owsm_all targets), cold and from the
   on-disk cache.

Ratios are what count: absolute times on a shared machine are noise. Results: outputs/bench/<time>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ROUNDS = 3  # each method timed once per round; ratios are taken within a round
METHODS = {
    "lora r=32": {"name": "lora", "r": 32, "alpha": 64, "embedding_targets": ["decoder.embed.0"]},
    "ssvd p=0.4": {"name": "ssvd"},
    "ssvd p=0.4 (reference: rebuild W')": {"name": "ssvd", "formulation": "reference"},
    "ssvd p=0.4 (activation path)": {"name": "ssvd", "formulation": "activation"},
    "ssvd p=0.4 (recompute W')": {"name": "ssvd", "recompute_weight": True},
    "dora r=32": {"name": "dora", "r": 32, "alpha": 64, "embedding_targets": ["decoder.embed.0"]},
    "pissa r=32": {"name": "pissa", "r": 32, "alpha": 32, "embedding_targets": ["decoder.embed.0"]},
    "vera r=256": {"name": "vera", "r": 256},
    "svft plain": {"name": "svft"},
    "full": {"name": "full"},
}
# Section 4: (method, activation checkpointing) at a batch of 8 x 30 s, as OWSM pads its input.
MEMORY_RUNS = {
    "lora r=32": (METHODS["lora r=32"], False),
    "ssvd p=0.4 (W' kept, default)": (METHODS["ssvd p=0.4"], False),
    "ssvd p=0.4 (recompute W')": (METHODS["ssvd p=0.4 (recompute W')"], False),
    "lora r=32 + activation checkpointing": (METHODS["lora r=32"], True),
    "ssvd p=0.4 + activation checkpointing": (METHODS["ssvd p=0.4"], True),
}
SECTIONS = ("layer", "train", "inference", "memory", "svd")


def timed(step, repeats: int = 7) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layer_level() -> dict[str, float]:
    from asr_peft.adapters.lora import LoRALinear
    from asr_peft.adapters.ssvd import SSVDLinear
    from asr_peft.adapters.svd import thin_svds

    torch.manual_seed(0)
    d, tokens = 384, 1000
    x = torch.randn(tokens, d)
    base = nn.Linear(d, d)
    svd = thin_svds([base.weight])[0]
    layers = {"frozen": base, "lora r=32": LoRALinear(nn.Linear(d, d), r=32, alpha=64)}
    for formulation in ("efficient", "activation", "reference"):
        layers[f"ssvd {formulation}"] = SSVDLinear(nn.Linear(d, d), svd, p=0.4, formulation=formulation)
    layers["ssvd efficient, recompute W'"] = SSVDLinear(nn.Linear(d, d), svd, p=0.4, recompute_weight=True)
    for layer in layers.values():
        layer.requires_grad_(layer is not base)
    def step(layer):
        inputs = x.clone().requires_grad_(True)  # as inside a network: the input gradient is needed
        return lambda: layer(inputs).sum().backward()
    times = {name: timed(step(layer), repeats=30) for name, layer in layers.items()}
    return {name: value / times["frozen"] for name, value in times.items()}


def step_process(method: dict, mode: str, repeats: int, *options: str) -> dict:
    """bench/step.py for one method in a fresh process, so that its peak memory is its own."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "step.py"), "--method", json.dumps(method), "--mode", mode,
                          "--seconds", "10", "--repeats", str(repeats), *options],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{method}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def training_steps(rounds: int, repeats: int = 2, *options: str) -> dict[str, list[dict]]:
    """Every method once per round, in an order rotated each round; returns each method's runs by round."""
    names = list(METHODS)
    runs: dict[str, list[dict]] = {name: [None] * rounds for name in names}
    for round_ in range(rounds):
        shift = round_ * len(names) // rounds  # each method meets the machine at a different time
        for name in names[shift:] + names[:shift]:
            runs[name][round_] = step_process(METHODS[name], "train", repeats, *options)
    return runs


def ratio_over_rounds(runs: dict[str, list[dict]], name: str, baseline: str, key: str = "seconds") -> float:
    return statistics.median(a[key] / b[key] for a, b in zip(runs[name], runs[baseline]))


def training_table(runs: dict[str, list[dict]]) -> dict[str, dict]:
    return {name: {"step_vs_lora": ratio_over_rounds(runs, name, "lora r=32"),
                   "seconds_by_round": [run["seconds"] for run in method_runs],
                   "trainable": method_runs[0]["trainable"],
                   "peak_rss_mb": max(run["peak_rss_mb"] for run in method_runs),
                   "peak_rss_vs_lora": ratio_over_rounds(runs, name, "lora r=32", "peak_rss_mb"),
                   "step_mb": statistics.median(run["step_mb"] for run in method_runs),
                   "step_memory_vs_lora": ratio_over_rounds(runs, name, "lora r=32", "step_mb")}
            for name, method_runs in runs.items()}


def memory_at_owsm_input() -> dict[str, dict]:
    """Section 4: one fresh process per configuration, a batch of 8 x 30 s, one step after a warm-up."""
    results = {}
    for name, (method, checkpointing) in MEMORY_RUNS.items():
        options = ["--seconds", "30", "--batch", "8", *(["--activation-checkpointing"] if checkpointing else [])]
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "step.py"), "--method", json.dumps(method),
                              "--repeats", "1", *options], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise RuntimeError(f"{name}: {out.stderr[-2000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    lora = results["lora r=32"]["step_mb"]
    for values in results.values():
        values["step_memory_vs_lora"] = values["step_mb"] / lora
    return results


def svd_setup_owsm_1b() -> dict[str, dict[str, float]]:
    from omegaconf import OmegaConf

    from asr_peft.adapters.injection import match_modules
    from asr_peft.adapters.registry import METHODS
    from asr_peft.adapters.svd import thin_svds
    from asr_peft.models import build_model
    from asr_peft.models.owsm import random_init_config

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / "owsm_0.1b.yaml"))
    cfg["s2t_config"]["encoder_conf"].update(output_size=1024, attention_heads=16, cgmlp_linear_units=4096,
                                             linear_units=4096, num_blocks=18)
    cfg["s2t_config"]["decoder_conf"].update(attention_heads=16, linear_units=4096, num_blocks=18)
    model = build_model(random_init_config(cfg))
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    modules = [module for _, _, module in match_modules(model, targets)]
    weights = [module.weight.detach() for module in modules]
    # What SSVD p=0.4 asks for (the top k = floor(0.4 * min(d_out, d_in)) triplets, as apply_method
    # computes them), and the whole spectrum (SVFT, SSVD's reference formulation).
    requests = {"ssvd p=0.4 (top-k)": [METHODS["ssvd"].svd_rank(m, {"name": "ssvd"}, {"p": 0.4}) for m in modules],
                "full spectrum": None}
    results = {}
    for name, ranks in requests.items():
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            thin_svds(weights, cache, ranks)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            thin_svds(weights, cache, ranks)
            results[name] = {"layers": len(weights), "cold_s": cold, "cached_s": time.perf_counter() - start}
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="which sections to run (default: all; svd builds OWSM-1B: ~4 GB, minutes; memory "
                             "takes ~9 GB and a minute or more per step)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    report: dict = {"when": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__}
    if "layer" in args.sections:
        print("1. layer level (d=384, k=153, T=1000): training step relative to a frozen layer")
        report["layer_vs_frozen"] = layer_level()
        for name, ratio in report["layer_vs_frozen"].items():
            print(f"   {name:<30} {ratio:5.2f}x")
    if "train" in args.sections:
        print(f"2. OWSM-base training step (2 x 10 s, CPU), relative to LoRA r=32 (fp32: median over {TRAINING_ROUNDS} "
              "rounds; bf16 autocast: one round, relative to LoRA under bf16 autocast)")
        runs = training_steps(TRAINING_ROUNDS)
        report["train_step"] = training_table(runs)
        report["train_step_bf16"] = training_table(training_steps(1, 2, "--precision", "bf16-mixed"))
        print(f"   {'method':<38} {'step/LoRA':>9} {'trainable':>12} {'peak RSS MB':>12} {'RSS/LoRA':>9} "
              f"{'step MB':>8} {'step mem/LoRA':>13} | bf16: {'step/LoRA':>9} {'step MB':>8} {'mem/LoRA':>8}")
        for name, values in report["train_step"].items():
            bf16 = report["train_step_bf16"][name]
            print(f"   {name:<38} {values['step_vs_lora']:9.2f} {values['trainable']:>12,} {values['peak_rss_mb']:>12.0f} "
                  f"{values['peak_rss_vs_lora']:9.2f} {values['step_mb']:8.0f} {values['step_memory_vs_lora']:13.2f} | "
                  f"      {bf16['step_vs_lora']:9.2f} {bf16['step_mb']:8.0f} {bf16['step_memory_vs_lora']:8.2f}")
        report["ssvd_vs_reference"] = ratio_over_rounds(runs, "ssvd p=0.4", "ssvd p=0.4 (reference: rebuild W')")
        print(f"   SSVD / reference formulation: {report['ssvd_vs_reference']:.2f}x")
    if "inference" in args.sections:
        print("3. inference (encoder, 2 x 10 s), SSVD p=0.4 relative to the base model, timed side by side")
        report["inference"] = step_process({"name": "ssvd"}, "infer", repeats=9)
        for name, ratio in report["inference"].items():
            print(f"   ssvd {name:<11} {ratio:5.2f}x")
    if "memory" in args.sections:
        print("4. memory at OWSM's input (OWSM-base, 8 x 30 s, fp32): the step's own memory")
        report["memory_owsm_input"] = memory_at_owsm_input()
        kept = "W' kept MB"
        print(f"   {'configuration':<40} {'step MB':>8} {'vs LoRA':>8} {kept:>10} {'step s':>7}")
        for name, values in report["memory_owsm_input"].items():
            print(f"   {name:<40} {values['step_mb']:8.0f} {values['step_memory_vs_lora']:8.2f} "
                  f"{values['saved_weight_mb']:10.0f} {values['seconds']:7.1f}")
    if "svd" in args.sections:
        print("5. SVD set-up, every adapted OWSM-1B layer (owsm_all)")
        report["svd_owsm_1b"] = svd_setup_owsm_1b()
        for name, values in report["svd_owsm_1b"].items():
            print(f"   {name:<20} {values['layers']} layers: cold {values['cold_s']:.1f} s, cached {values['cached_s']:.1f} s")
    out = ROOT / "outputs" / "bench" / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
