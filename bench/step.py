"""One method's training-step time and memory on the OWSM v3.1 base architecture (random weights).

Run by bench/run.py (and bench/gpu_check.py) in a fresh process per method, so that peak memory
belongs to one method. Prints one JSON line:

- `seconds`: median step time after a warm-up step;
- `peak_rss_mb`: the process's peak resident memory (model, runtime and step together);
- `step_mb`: the step's own memory, the peak resident memory during the steps (Linux VmHWM, reset
  after set-up) minus the resident memory once model, adapters and batch are set up: activations,
  gradients, optimizer state (on CUDA: peak allocated minus allocated);
- `saved_weight_mb`: what the efficient SSVD step keeps of W' for the backward pass (d_out·d_in per layer
  call that forms W', in the compute dtype), counted from the calls of the first step.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr_peft.adapters import apply_method, merge_adapters, trainable_parameter_count
from asr_peft.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def model_config(name: str):
    """A configs/model entry composed as Hydra does (owsm_tiny inherits from owsm_0.1b)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs" / "model"), version_base="1.3"):
        return compose(config_name=name)


def validation_side_by_side(bundle, inputs: dict, languages: list[str], method: str, rounds: int = 3) -> dict:
    """A dev batch through `bundle.validate` against `loss` then `transcribe` run apart, alternately, after
    a warm-up round: seconds per round and the median ratio of a round (validate / apart)."""
    from asr_peft.models.base import eval_mode

    def apart():
        with eval_mode(bundle.model):
            bundle.loss(inputs)
        bundle.transcribe(inputs, method=method, languages=languages, options={})

    calls = {"validate": lambda: bundle.validate(inputs, method=method, languages=languages), "loss + transcribe": apart}
    timings: dict[str, list[float]] = {label: [] for label in calls}
    for repeat in range(rounds + 1):
        for label, call in calls.items():
            started = time.perf_counter()
            call()
            if repeat:
                timings[label].append(time.perf_counter() - started)
    ratios = [v / a for v, a in zip(timings["validate"], timings["loss + transcribe"])]
    return {"seconds": timings, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def base_model(name: str = "owsm_0.1b", device: str = "cpu"):
    cfg = model_config(name)
    cfg.init, cfg.path, cfg.speech_length = "random", None, None
    cfg.s2t_config.specaug = None  # identical inputs for every method
    for key in ("dropout_rate", "positional_dropout_rate", "attention_dropout_rate"):
        cfg.s2t_config.encoder_conf[key] = 0.0
    torch.manual_seed(0)
    return load_model(OmegaConf.to_container(cfg, resolve=True), device=device)


def batch(bundle, seconds: float, size: int, device: str = "cpu"):
    """`size` utterances of noise with a real text target, made and collated by the model's own rules."""
    from asr_peft.data.dataset import ITEM_INFO, Collate

    generator = torch.Generator().manual_seed(0)
    preprocessor = bundle.preprocessor(default_language="eng", train=False)
    text = "the quick brown fox jumps over the lazy dog " * 4
    items = [
        {
            "utt_id": str(i),
            "transcript": text,
            "language": "eng",
            **preprocessor(str(i), (0.1 * torch.randn(int(seconds * 16000), generator=generator)).numpy(), text, "eng"),
        }
        for i in range(size)
    ]
    return {k: v.to(device) for k, v in Collate(bundle.collate)(items).items() if k not in ITEM_INFO}


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: its peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (the bench measures memory on Linux)")


def reset_peak_resident() -> None:
    """Restart VmHWM from the current resident size (Linux), so the peak is the step's, not the set-up's."""
    Path("/proc/self/clear_refs").write_text("5")


def saved_weight_counter(model):
    """Forward pre-hooks on every efficient SSVD layer, counting the W' it forms (and keeps) per call."""
    from asr_peft.adapters.ssvd import SSVDLinear, activation_path_is_cheaper

    counted = {"elements": 0}

    def hook(module, args):
        x = args[0]
        rows = x.numel() // x.shape[-1]
        if not module.recompute_weight and not activation_path_is_cheaper(
            rows, module.out_features, module.in_features, module.k
        ):
            counted["elements"] += module.out_features * module.in_features

    handles = [
        m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, SSVDLinear) and m.formulation == "efficient"
    ]
    return counted, handles


def train_steps(model, inputs: dict, repeats: int, precision: str, device: str, lr: float = 1e-5) -> dict:
    """A warm-up step and `repeats` timed steps of AdamW on one batch, with their losses and memory."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "16-mixed")
    counted, handles = saved_weight_counter(model)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_resident()
    before = torch.cuda.memory_allocated() / 2**20 if cuda else status_mb("VmRSS")
    times, losses = [], []
    for i in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.split(":")[0], dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = model(**inputs)[0]
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        losses.append(float(loss))
        if i == 0:  # the first step warms up allocators and caches, and is the one whose W' calls are counted
            for handle in handles:
                handle.remove()
        else:
            times.append(time.perf_counter() - start)
    element_bytes = torch.finfo(dtype or torch.float32).bits // 8
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else status_mb("VmHWM")
    return {
        "seconds": statistics.median(times),
        "losses": losses,
        "trainable": trainable_parameter_count(model),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_mb": peak - before,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "saved_weight_mb": counted["elements"] * element_bytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", required=True, help="JSON of the method config")
    parser.add_argument("--model", default="owsm_0.1b", help="a configs/model name, built with random weights")
    parser.add_argument("--p", type=float, default=0.4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"], default="32-true")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = base_model(args.model, args.device)
    method = json.loads(args.method)
    targets = list(OmegaConf.load(ROOT / "configs" / "adapt" / "owsm_all.yaml").targets)
    inputs = batch(bundle, args.seconds, args.batch, args.device)
    if args.mode == "infer":
        print(json.dumps(inference_ratios(bundle.model, method, targets, args.p, inputs, args.repeats)))
        return
    model = bundle.model
    apply_method(model, method, {"p": args.p, "targets": targets})
    if args.activation_checkpointing:
        from asr_peft.models.checkpointing import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model.train()
    print(json.dumps(train_steps(model, inputs, args.repeats, args.precision, args.device)))


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
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                start = time.perf_counter()
                models[name].encode(inputs["speech"], inputs["speech_lengths"])
                seconds[name] = time.perf_counter() - start
            for name in ratios:
                ratios[name].append(seconds[name] / seconds["base"])
    return {name: statistics.median(values) for name, values in ratios.items()}


if __name__ == "__main__":
    main()
