"""`make bench`: speed and memory ratios of the adapters, measured side by side in one run.

1. Layer level (d=384, k=153, T=1000 tokens, the spec's "Efficient computation" setting): a training
   step (forward + backward) of each SSVD formulation and LoRA r=32, relative to a frozen layer.
2. Model level, OWSM v3.1 base architecture (random weights, 2 x 10 s, CPU): training-step time and
   peak resident memory of every method relative to LoRA r=32 (one fresh process per method and round;
   a ratio is the median over rounds of the ratio within a round, so drifts of a shared machine cancel).
3. Inference (encoder, 2 x 10 s): merged and unmerged SSVD relative to the base model, the three
   timed in rotating order in one process (median of per-round ratios).
4. SVD set-up of SSVD p=0.4 for every adapted OWSM-1B layer (owsm_all targets), cold and from the
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
    "dora r=32": {"name": "dora", "r": 32, "alpha": 64, "embedding_targets": ["decoder.embed.0"]},
    "pissa r=32": {"name": "pissa", "r": 32, "alpha": 32, "embedding_targets": ["decoder.embed.0"]},
    "vera r=256": {"name": "vera", "r": 256},
    "svft plain": {"name": "svft"},
    "full": {"name": "full"},
}


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
    for layer in layers.values():
        layer.requires_grad_(layer is not base)
    def step(layer):
        inputs = x.clone().requires_grad_(True)  # as inside a network: the input gradient is needed
        return lambda: layer(inputs).sum().backward()
    times = {name: timed(step(layer), repeats=30) for name, layer in layers.items()}
    return {name: value / times["frozen"] for name, value in times.items()}


def step_process(method: dict, mode: str, repeats: int) -> dict:
    """bench/step.py for one method in a fresh process, so that its peak memory is its own."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "step.py"), "--method", json.dumps(method), "--mode", mode,
                          "--seconds", "10", "--repeats", str(repeats)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{method}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def training_steps(rounds: int, repeats: int = 2) -> dict[str, list[dict]]:
    """Every method once per round, in an order rotated each round; returns each method's runs by round."""
    names = list(METHODS)
    runs: dict[str, list[dict]] = {name: [None] * rounds for name in names}
    for round_ in range(rounds):
        shift = round_ * len(names) // rounds  # each method meets the machine at a different time
        for name in names[shift:] + names[:shift]:
            runs[name][round_] = step_process(METHODS[name], "train", repeats)
    return runs


def ratio_over_rounds(runs: dict[str, list[dict]], name: str, baseline: str) -> float:
    return statistics.median(a["seconds"] / b["seconds"] for a, b in zip(runs[name], runs[baseline]))


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
    parser.add_argument("--skip-svd", action="store_true", help="leave out section 4 (builds OWSM-1B: ~4 GB, minutes)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    report: dict = {"when": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__}
    print("1. layer level (d=384, k=153, T=1000): training step relative to a frozen layer")
    report["layer_vs_frozen"] = layer_level()
    for name, ratio in report["layer_vs_frozen"].items():
        print(f"   {name:<24} {ratio:5.2f}x")
    print(f"2. OWSM-base training step (2 x 10 s, CPU), relative to LoRA r=32 (median over {TRAINING_ROUNDS} rounds)")
    runs = training_steps(TRAINING_ROUNDS)
    report["train_step"] = {name: {"step_vs_lora": ratio_over_rounds(runs, name, "lora r=32"),
                                   "seconds_by_round": [run["seconds"] for run in method_runs],
                                   "trainable": method_runs[0]["trainable"],
                                   "peak_rss_mb": max(run["peak_rss_mb"] for run in method_runs)}
                            for name, method_runs in runs.items()}
    print(f"   {'method':<38} {'step/LoRA':>9} {'trainable':>12} {'peak RSS MB':>12}")
    for name, values in report["train_step"].items():
        print(f"   {name:<38} {values['step_vs_lora']:9.2f} {values['trainable']:>12,} {values['peak_rss_mb']:>12.0f}")
    report["ssvd_vs_reference"] = ratio_over_rounds(runs, "ssvd p=0.4", "ssvd p=0.4 (reference: rebuild W')")
    print(f"   SSVD / reference formulation: {report['ssvd_vs_reference']:.2f}x")
    print("3. inference (encoder, 2 x 10 s), SSVD p=0.4 relative to the base model, timed side by side")
    report["inference"] = step_process({"name": "ssvd"}, "infer", repeats=9)
    for name, ratio in report["inference"].items():
        print(f"   ssvd {name:<11} {ratio:5.2f}x")
    if not args.skip_svd:
        print("4. SVD set-up, every adapted OWSM-1B layer (owsm_all)")
        report["svd_owsm_1b"] = svd_setup_owsm_1b()
        for name, values in report["svd_owsm_1b"].items():
            print(f"   {name:<20} {values['layers']} layers: cold {values['cold_s']:.1f} s, cached {values['cached_s']:.1f} s")
    out = ROOT / "outputs" / "bench" / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
