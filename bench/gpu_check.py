"""`make gpu-check`: what a CUDA machine does with every method, measured in one run of at most 10 minutes.

Per model (OWSM v3.1 base, `model=owsm_0.1b model.init=random`; then OWSM v3.1 1B when the GPU has
room for it), on one batch of 8 x 30 s (OWSM pads every input to 30 s), under bf16-mixed autocast:

- every method trains for 20 AdamW updates on that batch (lr 1e-3; full fine-tuning 1e-4): the loss
  must be finite at every update and falling (the mean of the last three below the first three's);
  `ok` says whether it was, and the script exits 1 if any was not;
- step time relative to LoRA r=32 (median of the 19 updates after the first);
- peak CUDA memory: the step's own (peak allocated minus the allocation once model and batch are set
  up) and the peak overall;
- merged against unmerged outputs after training: the encoder's output of the model with its adapters
  merged, max |difference| relative to max |output|, in fp32 and under bf16 autocast;
- SVD set-up of all adapted layers (owsm_all targets) on the GPU, cold: SSVD p=0.4's top-k and the
  full spectrum (SVFT, PiSSA's residual, SSVD's reference formulation);
- beam-search decoding speed: ESPnet's attention + CTC beam search (beam 5) on 30 s of audio, under
  bf16 autocast, in seconds per utterance and per output token (capped at 64 tokens: a random model
  never ends on its own).

Then Whisper (transformers), tiny.en and base, and large-v3 for memory: random weights of the real
architectures (the offline weights are larger than what travels to a lent machine; step time, memory and
stability do not depend on the values), a batch of 8 x 30 s of log-mel features with 40-token labels,
every method on `whisper_all` targets (large-v3: LoRA, SSVD and full fine-tuning), the same checks
(loss finite and falling, step time against LoRA, memory, merged against unmerged encoder output).

Writes outputs/gpu_check/<time>.json and prints a table. What does not fit in the time budget
(`--budget-s`, default 540 s, model building included) is recorded as skipped rather than run late.
`--smoke`: the same code on the CPU with the tiny model (batch of 2 x 1 s, 2 updates, LoRA and SSVD
only, 4 beam tokens), run by the fast test suite so that this script cannot rot; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step import ROOT, base_model, batch, train_steps  # noqa: E402  (bench/step.py, beside this script)

from asr_peft.adapters import apply_method, merge_adapters  # noqa: E402
from asr_peft.adapters.svd import thin_svds  # noqa: E402

METHODS = {
    "lora r=32": {"name": "lora", "r": 32, "alpha": 64, "embedding_targets": ["decoder.embed.0"]},
    "ssvd p=0.4": {"name": "ssvd"},
    "ssvd p=0.4 (recompute W')": {"name": "ssvd", "recompute_weight": True},
    "ssvd p=0.4 (cayley)": {"name": "ssvd", "rotation": "cayley"},
    "dora r=32": {"name": "dora", "r": 32, "alpha": 64, "embedding_targets": ["decoder.embed.0"]},
    "pissa r=32": {"name": "pissa", "r": 32, "alpha": 32, "embedding_targets": ["decoder.embed.0"]},
    "vera r=256": {"name": "vera", "r": 256},
    "svft plain": {"name": "svft"},
    "peft PSOFT r=32": {"name": "peft", "peft_config": {"peft_type": "PSOFT", "r": 32}},
    "full": {"name": "full"},
}
SMOKE_METHODS = ("lora r=32", "ssvd p=0.4")
LR = {"full": 1e-4}  # adapters 1e-3: enough to see the loss fall on one batch in 20 updates


def targets(preset: str = "owsm_all") -> list[str]:
    return list(OmegaConf.load(ROOT / "configs" / "adapt" / f"{preset}.yaml").targets)


def owsm_encoder(model, inputs: dict) -> torch.Tensor:
    return model.encode(inputs["speech"], inputs["speech_lengths"])[0]


def whisper_encoder(model, inputs: dict) -> torch.Tensor:
    return model.model.encoder(inputs["input_features"]).last_hidden_state


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def merged_vs_unmerged(model, inputs: dict, device: str, encoder=owsm_encoder) -> dict[str, float]:
    """Max |encoder output difference| / max |output| between the unmerged and the merged model."""
    model.eval()
    outputs = {}
    with torch.inference_mode():
        for autocast in (False, True):
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
                outputs[autocast] = [encoder(model, inputs).float()]
        merge_adapters(model)
        for autocast in (False, True):
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
                outputs[autocast].append(encoder(model, inputs).float())
    return {("bf16" if autocast else "fp32"): float((a - b).abs().max() / a.abs().max()) for autocast, (a, b) in outputs.items()}


def check_method(
    base, method: dict, inputs: dict, updates: int, device: str, preset: str = "owsm_all", encoder=owsm_encoder
) -> dict:
    model = copy.deepcopy(base)
    apply_method(model, method, {"p": 0.4, "targets": targets(preset)})
    model.train()
    result = train_steps(model, inputs, updates - 1, "bf16-mixed", device, lr=LR.get(method["name"], 1e-3))
    losses = result["losses"]
    k = max(1, min(3, len(losses) // 2))  # the first and last three updates (one each in the smoke mode)
    result["ok"] = all(math.isfinite(x) for x in losses) and sum(losses[-k:]) < sum(losses[:k])
    if method["name"] != "full":
        result["merged_vs_unmerged"] = merged_vs_unmerged(model, inputs, device, encoder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def svd_setup(model, device: str) -> dict[str, float]:
    from asr_peft.adapters.injection import match_modules
    from asr_peft.adapters.registry import METHODS as REGISTRY

    modules = [module for _, _, module in match_modules(model, targets())]
    weights = [module.weight.detach() for module in modules]
    requests = {
        "ssvd p=0.4 (top-k)": [REGISTRY["ssvd"].svd_rank(m, {"name": "ssvd"}, {"p": 0.4}) for m in modules],
        "full spectrum": None,
    }
    seconds = {"layers": len(weights)}
    for name, ranks in requests.items():
        synchronize(device)
        start = time.perf_counter()
        thin_svds(weights, None, ranks)
        synchronize(device)
        seconds[name] = time.perf_counter() - start
    return seconds


def beam_speed(bundle, device: str, seconds: float, utterances: int, max_tokens: int) -> dict[str, float]:
    from asr_peft.models.owsm_decoding import BeamSearchDecoder

    decoder = BeamSearchDecoder(bundle, beam_size=5, maxlenratio=-max_tokens)
    generator = torch.Generator().manual_seed(1)
    audio = [(0.1 * torch.randn(int(seconds * 16000), generator=generator)).to(device) for _ in range(utterances)]
    tokens = 0
    synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
        for speech in audio:
            tokens += len(bundle.text_to_ids(decoder(speech))) or 1
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {
        "seconds_per_utterance": elapsed / utterances,
        "audio_seconds": seconds,
        "seconds_per_token": elapsed / tokens,
        "utterances": utterances,
    }


def check_model(name: str, device: str, args, deadline: float) -> dict:
    started = time.perf_counter()
    bundle = base_model(name, device)
    bundle.speech_length = args.seconds  # OWSM pads its input; the check's batch is padded the same way
    report = {"model": name, "build_s": time.perf_counter() - started, "methods": {}}
    inputs = batch(bundle, args.seconds, args.batch, device)
    report["svd_setup_s"] = svd_setup(bundle.model, device)
    for label in args.methods:
        if time.perf_counter() > deadline:
            report["methods"][label] = {"skipped": "time budget"}
            continue
        report["methods"][label] = check_method(bundle.model, METHODS[label], inputs, args.updates, device)
    lora = report["methods"].get("lora r=32", {}).get("seconds")
    for values in report["methods"].values():
        if lora and "seconds" in values:
            values["step_vs_lora"] = values["seconds"] / lora
    if time.perf_counter() < deadline:
        report["beam"] = beam_speed(bundle, device, args.seconds, args.beam_utterances, args.beam_tokens)
    return report


WHISPER_METHODS = {"whisper_large_v3": ("lora r=32", "ssvd p=0.4", "full")}  # the rest: every method


def whisper_model(name: str, device: str, architecture: dict | None = None):
    """Whisper of the model config's architecture with random weights (no tokenizer or weights needed)."""
    from hydra import compose, initialize_config_dir
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from asr_peft.cli import setup_environment

    setup_environment()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        shipped = OmegaConf.to_container(compose(config_name="train", overrides=[f"model={name}"]).model.architecture)
    config = WhisperConfig(**{**shipped, **(architecture or {})})
    torch.manual_seed(0)
    with torch.device(device):
        return WhisperForConditionalGeneration(config), config


def check_whisper(name: str, device: str, args, deadline: float, architecture: dict | None = None) -> dict:
    started = time.perf_counter()
    model, config = whisper_model(name, device, architecture)
    report = {"model": f"{name} (random weights)", "build_s": time.perf_counter() - started, "methods": {}}
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_features": torch.randn(args.batch, config.num_mel_bins, 3000, generator=generator).to(device),
        "labels": torch.randint(0, 50000, (args.batch, 40), generator=generator).to(device),
    }
    for label in WHISPER_METHODS.get(name, args.methods):
        if time.perf_counter() > deadline:
            report["methods"][label] = {"skipped": "time budget"}
            continue
        method = {key: value for key, value in METHODS[label].items() if key != "embedding_targets"}
        report["methods"][label] = check_method(model, method, inputs, args.updates, device, "whisper_all", whisper_encoder)
    lora = report["methods"].get("lora r=32", {}).get("seconds")
    for values in report["methods"].values():
        if lora and "seconds" in values:
            values["step_vs_lora"] = values["seconds"] / lora
    return report


def fits_1b(device: str) -> bool:
    """Room for OWSM-1B full fine-tuning: ~16 GB of fp32 weights, gradients and AdamW moments, plus bf16
    activations of 8 x 30 s through 18 + 18 blocks of width 1024 (an estimate: ~20-30 GB)."""
    return device.startswith("cuda") and torch.cuda.get_device_properties(device).total_memory > 48 * 2**30


def table(report: dict) -> str:
    lines = [f"GPU check, {report['device']}, torch {report['torch']}, {report['when']} ({report['wall_s']:.0f} s)"]
    for model in report["models"]:
        svd = model.get("svd_setup_s")
        lines.append(
            f"{model['model']}: built in {model['build_s']:.1f} s"
            + (
                f"; SVD set-up of {svd['layers']} layers {svd['ssvd p=0.4 (top-k)']:.1f} s (top-k) / "
                f"{svd['full spectrum']:.1f} s (full spectrum)"
                if svd
                else ""
            )
        )
        lines.append(
            f"  {'method':<28} {'ok':>3} {'loss first->last':>19} {'step/LoRA':>9} {'step MB':>9} "
            f"{'peak MB':>9} {'merged fp32':>11} {'merged bf16':>11}"
        )
        for label, values in model["methods"].items():
            if "skipped" in values:
                lines.append(f"  {label:<28} skipped ({values['skipped']})")
                continue
            merged = values.get("merged_vs_unmerged", {})
            peak = values["peak_cuda_mb"]
            lines.append(
                f"  {label:<28} {'yes' if values['ok'] else 'NO':>3} "
                f"{values['losses'][0]:9.2f}->{values['losses'][-1]:<9.2f} {values.get('step_vs_lora', 1):9.2f} "
                f"{values['step_mb']:9.0f} {peak if peak is not None else float('nan'):9.0f} "
                f"{merged.get('fp32', float('nan')):11.1e} {merged.get('bf16', float('nan')):11.1e}"
            )
        if "beam" in model:
            beam = model["beam"]
            lines.append(
                f"  beam search (beam 5, {beam['audio_seconds']:.0f} s audio): {beam['seconds_per_utterance']:.2f} s "
                f"per utterance, {1000 * beam['seconds_per_token']:.1f} ms per output token"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, a couple of steps: a check of the script")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget; what does not fit is skipped")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.smoke:
        device, models = "cpu", ["owsm_tiny"]
        whisper = [
            (
                "whisper_tiny_en",
                {
                    "d_model": 64,
                    "encoder_layers": 1,
                    "decoder_layers": 1,
                    "encoder_attention_heads": 2,
                    "decoder_attention_heads": 2,
                    "encoder_ffn_dim": 128,
                    "decoder_ffn_dim": 128,
                },
            )
        ]
        args.methods, args.seconds, args.batch, args.updates = SMOKE_METHODS, 1.0, 2, 2
        args.beam_utterances, args.beam_tokens = 1, 4
        torch.set_num_threads(2)
    else:
        if not torch.cuda.is_available():
            sys.exit(
                "gpu-check: no CUDA device here (torch.cuda.is_available() is False); "
                "`python bench/gpu_check.py --smoke` runs the same code on the CPU"
            )
        device = "cuda"
        models = ["owsm_0.1b", *(["owsm_1b"] if fits_1b(device) else [])]
        whisper = [("whisper_tiny_en", None), ("whisper_base", None), ("whisper_large_v3", None)]
        args.methods, args.seconds, args.batch, args.updates = list(METHODS), 30.0, 8, 20
        args.beam_utterances, args.beam_tokens = 3, 64
    report = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu (smoke mode)",
        "smoke": args.smoke,
        "models": [],
    }
    deadline = started + args.budget_s
    for name in models:
        if time.perf_counter() > deadline:
            report.setdefault("skipped_models", []).append(name)
            continue
        report["models"].append(check_model(name, device, args, deadline))
    for name, architecture in whisper:
        if time.perf_counter() > deadline:
            report.setdefault("skipped_models", []).append(name)
            continue
        report["models"].append(check_whisper(name, device, args, deadline, architecture))
    report["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{dt.datetime.now():%Y%m%d-%H%M%S}{'-smoke' if args.smoke else ''}.json"
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"written: {out}")
    if not all(values.get("ok", True) for model in report["models"] for values in model["methods"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
