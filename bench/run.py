"""`make bench`: speed and memory ratios of the adapters, measured side by side in one run.

1. Layer level (d=384, k=153, T=1000 tokens, the spec's "Efficient computation" setting): a training
   step (forward + backward) of each SSVD formulation and LoRA r=32, relative to a frozen layer.
2. Model level, OWSM v3.1 base architecture (random weights, 2 x 10 s, CPU): the training-step time of
   every method relative to LoRA r=32, side by side in one process. Every method's model is built once;
   each round times one AdamW step of every method, in an order rotated each round, and a ratio is the
   median over rounds of the ratio within a round (so drifts of a shared machine cancel), printed with
   its spread (lowest and highest round). In fp32, and under bf16 autocast when the CPU computes bf16
   natively (avx512_bf16 or amx_bf16; elsewhere bf16 is emulated, many times slower, and the column is
   left out unless --bf16 asks for it). Peak memory per method needs a process of its own: section 4.
3. Inference (encoder, 2 x 10 s): merged and unmerged SSVD relative to the base model, the three
   timed in rotating order in one process (median of per-round ratios).
4. Memory at OWSM's real input (OWSM-base, a batch of 8 x 30 s, fp32, one step after a warm-up): the
   step's memory of SSVD (W' kept for the backward pass, the default; recomputed; with activation
   checkpointing) and LoRA, with the saved W' counted from the layer calls that form it.
5. Validation pass of the shipped toy OWSM model (a dev batch of 13 x 4 s, attention greedy decoding):
   `validate`, whose decode takes the loss pass's encoding, relative to the loss and the decode run apart.
6. SVD set-up of SSVD p=0.4 for every adapted OWSM-1B layer (owsm_all targets), cold and from the
   on-disk cache.
7. Memory layout of the 2-D convolutions: a LoRA r=4 training step of the shipped toy OWSM model (12 x 5 s)
   with its Conv2d weights channels-last, as `models/owsm.py` builds every OWSM model, relative to the
   same model in PyTorch's default layout, side by side (median of per-round ratios).

Ratios are what count: absolute times on a shared machine are noise. Results: outputs/bench/<time>.json.
The default sections are layer, train, inference, validate, layout and svd; memory is opt-in (minutes and ~9 GB per configuration).
"""

from __future__ import annotations

import copy
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
TRAINING_ROUNDS = 5  # each method timed once per round; ratios are taken within a round
BF16_ROUNDS = 3
LAYOUT_ROUNDS = 9
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
SECTIONS = ("layer", "train", "inference", "validate", "layout", "memory", "svd")
DEFAULT_SECTIONS = ("layer", "train", "inference", "validate", "layout", "svd")


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
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "step.py"),
            "--method",
            json.dumps(method),
            "--mode",
            mode,
            "--seconds",
            "10",
            "--repeats",
            str(repeats),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{method}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def native_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (x86 flags in /proc/cpuinfo); elsewhere autocast emulates it."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.is_file() else []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_side_by_side(
    rounds: int, precision: str, model_name: str = "owsm_0.1b", seconds: float = 10.0
) -> dict[str, list[float]]:
    """Seconds of one AdamW step of every method, per round, all methods' models in this process (random
    weights of `model_name`, a batch of 2 x `seconds` of audio)."""
    from omegaconf import OmegaConf
    from step import base_model, batch

    from asr_peft.adapters import apply_method

    bundle = base_model(model_name)
    inputs = batch(bundle, seconds, 2)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    autocast = precision == "bf16-mixed"
    models, optimizers = {}, {}
    for name, method in METHODS.items():
        # Each copy gets its own Parameter objects (requires_grad is the method's) over the base model's storage,
        # so ten models take little more memory than one; the values a step writes there do not change its time.
        shared = {id(p): nn.Parameter(p.data, requires_grad=p.requires_grad) for p in bundle.model.parameters()}
        model = copy.deepcopy(bundle.model, memo=shared)
        apply_method(model, method, {"p": 0.4, "targets": targets})
        models[name] = model.train()
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    return steps_side_by_side(models, optimizers, inputs, rounds, autocast=autocast)


def steps_side_by_side(
    models: dict[str, nn.Module], optimizers: dict, inputs: dict, rounds: int, *, autocast: bool = False
) -> dict[str, list[float]]:
    """Seconds of one optimizer step of each model on the same batch, per round, after a warm-up step each;
    each round takes the models in an order rotated by the round, so each meets the machine at another time."""

    def step(name: str) -> float:
        start = time.perf_counter()
        optimizers[name].zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = models[name](**inputs)[0]
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for name in models:  # warm-up: allocators, caches, the optimizer's state
        step(name)
    names, seconds = list(models), {name: [] for name in models}
    for round_ in range(rounds):
        shift = round_ * len(names) // rounds
        for name in names[shift:] + names[:shift]:
            seconds[name].append(step(name))
    return seconds


def ratios_to(seconds: dict[str, list[float]], baseline: str) -> dict[str, dict]:
    """Per method: the median over rounds of its time over the baseline's in the same round, and the spread."""
    table = {}
    for name, values in seconds.items():
        ratios = [a / b for a, b in zip(values, seconds[baseline])]
        table[name] = {"ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios), "seconds_by_round": values}
    return table


def memory_at_owsm_input() -> dict[str, dict]:
    """Section 4: one fresh process per configuration, a batch of 8 x 30 s, one step after a warm-up."""
    results = {}
    for name, (method, checkpointing) in MEMORY_RUNS.items():
        options = ["--seconds", "30", "--batch", "8", *(["--activation-checkpointing"] if checkpointing else [])]
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "step.py"), "--method", json.dumps(method), "--repeats", "1", *options],
            capture_output=True,
            text=True,
            timeout=3600,
        )
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
    cfg["s2t_config"]["encoder_conf"].update(
        output_size=1024, attention_heads=16, cgmlp_linear_units=4096, linear_units=4096, num_blocks=18
    )
    cfg["s2t_config"]["decoder_conf"].update(attention_heads=16, linear_units=4096, num_blocks=18)
    model = build_model(random_init_config(cfg))
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    modules = [module for _, _, module in match_modules(model, targets)]
    weights = [module.weight.detach() for module in modules]
    # What SSVD p=0.4 asks for (the top k = floor(0.4 * min(d_out, d_in)) triplets, as apply_method
    # computes them), and the whole spectrum (SVFT, SSVD's reference formulation).
    requests = {
        "ssvd p=0.4 (top-k)": [METHODS["ssvd"].svd_rank(m, {"name": "ssvd"}, {"p": 0.4}) for m in modules],
        "full spectrum": None,
    }
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


def owsm_tiny():
    """The shipped toy OWSM model, composed and loaded as train.py does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from asr_peft.cli import setup_environment
    from asr_peft.models import load_model

    setup_environment()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=owsm_tiny_pretrained"])
    return load_model(OmegaConf.to_container(cfg.model, resolve=True))


def validation_owsm_tiny() -> dict:
    from step import batch, validation_side_by_side

    bundle = owsm_tiny()
    return validation_side_by_side(bundle, batch(bundle, 4.0, 13), ["eng"] * 13, "att_greedy", rounds=5)


def layout_owsm_tiny(rounds: int = LAYOUT_ROUNDS) -> dict[str, dict]:
    """Section 7: a LoRA r=4 training step of the toy OWSM model (12 x 5 s) with its Conv2d weights
    channels-last, as models/owsm.py builds them, and in PyTorch's default layout, side by side."""
    from omegaconf import OmegaConf
    from step import batch

    from asr_peft.adapters import apply_method

    bundle = owsm_tiny()
    inputs = batch(bundle, 5.0, 12)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    models, optimizers = {}, {}
    for name, memory_format in (("channels-last", torch.channels_last), ("default layout", torch.contiguous_format)):
        model = copy.deepcopy(bundle.model)
        apply_method(model, {"name": "lora", "r": 4, "alpha": 8}, {"targets": targets})
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=memory_format)
        models[name] = model.train()
        optimizers[name] = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    return ratios_to(steps_side_by_side(models, optimizers, inputs, rounds), "default layout")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(DEFAULT_SECTIONS),
        help="which sections to run (default: all but memory; svd builds OWSM-1B: ~4 GB, minutes; "
        "memory takes ~9 GB and a minute or more per step)",
    )
    parser.add_argument("--rounds", type=int, default=TRAINING_ROUNDS, help="rounds of the fp32 training section")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the training step under bf16 autocast too (default: when the CPU has native bf16)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the comparison's sweep workers use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"when": dt.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__, "threads": args.threads}
    if "layer" in args.sections:
        print("1. layer level (d=384, k=153, T=1000): training step relative to a frozen layer")
        report["layer_vs_frozen"] = layer_level()
        for name, ratio in report["layer_vs_frozen"].items():
            print(f"   {name:<30} {ratio:5.2f}x")
    if "train" in args.sections:
        bf16 = args.bf16 if args.bf16 is not None else native_bf16()
        print(
            f"2. OWSM-base training step (2 x 10 s, CPU), relative to LoRA r=32, all methods side by side in one "
            f"process: median over {args.rounds} rounds [lowest, highest round]"
            + (
                f"; bf16 autocast over {min(BF16_ROUNDS, args.rounds)} rounds"
                if bf16
                else "; bf16 left out: --no-bf16"
                if args.bf16 is False
                else "; bf16 left out: this CPU has no native bf16"
            )
        )
        report["train_step"] = ratios_to(training_side_by_side(args.rounds, "32-true"), "lora r=32")
        if bf16:
            report["train_step_bf16"] = ratios_to(training_side_by_side(min(BF16_ROUNDS, args.rounds), "bf16-mixed"), "lora r=32")
        print(f"   {'method':<38} {'fp32 step/LoRA':>22}" + (f" {'bf16 step/LoRA':>22}" if bf16 else ""))
        for name, values in report["train_step"].items():
            columns = [values] + ([report["train_step_bf16"][name]] if bf16 else [])
            print(f"   {name:<38}" + "".join(f" {v['ratio']:8.2f} [{v['low']:5.2f}, {v['high']:5.2f}]" for v in columns))
        reference = report["train_step"]["ssvd p=0.4 (reference: rebuild W')"]["seconds_by_round"]
        ssvd = ratios_to({"ssvd": report["train_step"]["ssvd p=0.4"]["seconds_by_round"], "reference": reference}, "reference")[
            "ssvd"
        ]
        report["ssvd_vs_reference"] = {key: ssvd[key] for key in ("ratio", "low", "high")}
        print(f"   SSVD / reference formulation: {ssvd['ratio']:.2f}x [{ssvd['low']:.2f}, {ssvd['high']:.2f}]")
    if "inference" in args.sections:
        print("3. inference (encoder, 2 x 10 s), SSVD p=0.4 relative to the base model, timed side by side")
        report["inference"] = step_process({"name": "ssvd"}, "infer", repeats=9)
        for name, ratio in report["inference"].items():
            print(f"   ssvd {name:<11} {ratio:5.2f}x")
    if "validate" in args.sections:
        print("5. validation pass, shipped toy OWSM (13 x 4 s, att_greedy): validate / (loss + transcribe)")
        report["validate_owsm_tiny"] = validation_owsm_tiny()
        v = report["validate_owsm_tiny"]
        print(f"   {v['ratio_median']:.2f}x [{v['ratio_min']:.2f}, {v['ratio_max']:.2f}]")
    if "layout" in args.sections:
        print("7. training step, shipped toy OWSM (LoRA r=4, 12 x 5 s): Conv2d weights channels-last / default layout")
        report["layout_owsm_tiny"] = layout_owsm_tiny()
        v = report["layout_owsm_tiny"]["channels-last"]
        print(f"   {v['ratio']:.2f}x [{v['low']:.2f}, {v['high']:.2f}] over {LAYOUT_ROUNDS} rounds")
    if "memory" in args.sections:
        print("4. memory at OWSM's input (OWSM-base, 8 x 30 s, fp32): the step's own memory")
        report["memory_owsm_input"] = memory_at_owsm_input()
        kept = "W' kept MB"
        print(f"   {'configuration':<40} {'step MB':>8} {'vs LoRA':>8} {kept:>10} {'step s':>7}")
        for name, values in report["memory_owsm_input"].items():
            print(
                f"   {name:<40} {values['step_mb']:8.0f} {values['step_memory_vs_lora']:8.2f} "
                f"{values['saved_weight_mb']:10.0f} {values['seconds']:7.1f}"
            )
    if "svd" in args.sections:
        print("6. SVD set-up, every adapted OWSM-1B layer (owsm_all)")
        report["svd_owsm_1b"] = svd_setup_owsm_1b()
        for name, values in report["svd_owsm_1b"].items():
            print(f"   {name:<20} {values['layers']} layers: cold {values['cold_s']:.1f} s, cached {values['cached_s']:.1f} s")
    out = ROOT / "outputs" / "bench" / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
