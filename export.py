"""Export a trained run: `python export.py <run dir> --out <dir> [--dtype float32|float16|bfloat16]
[--adapter-only | --peft] [--checkpoint best|last]`.

Default: the adapters merged into plain ESPnet modules (W + ΔW added in fp32, rounded once to
`--dtype`), written in ESPnet's exported layout, which stock
`espnet2.bin.s2t_inference.Speech2Text(s2t_train_config=..., s2t_model_file=...)` loads (run it from
the export directory: ESPnet's paths are recipe-relative) and `model.path=<dir>` loads here. The
command names the dtype it writes and how much of the adapters' update ΔW that dtype rounds away,
with a warning from 1% on.
`--adapter-only`: just the adapter tensors (safetensors, fp32) and their JSON config, for `load_adapter`.
`--peft`: the adapters as a Hugging Face PEFT directory (LoRA, DoRA, PiSSA, VeRA), which
`PeftModel.from_pretrained(<the stock pretrained model>, <dir>)` loads (a Whisper run's stock model:
`WhisperForConditionalGeneration.from_pretrained`).
The merged export of a Whisper run is a transformers directory that `from_pretrained` and
`pipeline("automatic-speech-recognition")` load; of an OWSM run, ESPnet's layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from asr_peft.cli import setup_environment
from asr_peft.errors import AsrPeftError, report_error

DTYPES = ("float32", "float16", "bfloat16")
LOST_WARNING = 0.01  # a stored dtype that gets 1% of ΔW wrong or more is worth a warning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best", help="best | last | a .ckpt path")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--adapter-only", action="store_true")
    kind.add_argument("--peft", action="store_true", help="a PEFT adapter directory (LoRA, DoRA, PiSSA, VeRA)")
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float32",
        help="floating-point storage of the merged weights (default: float32, ΔW kept whole)",
    )
    args = parser.parse_args()
    setup_environment()
    import torch

    from asr_peft.adapters import merged_copy, save_adapter
    from asr_peft.adapters.peft_export import save_peft_adapter
    from asr_peft.evaluation.checkpoint import load_pretrained, load_trained_run
    from asr_peft.models.export import delta_rounding

    try:
        bundle, run_cfg, checkpoint = load_trained_run(args.run_dir, args.checkpoint)
        if args.peft:
            save_peft_adapter(
                bundle.model,
                load_pretrained(run_cfg).model,
                args.out,
                OmegaConf.to_container(run_cfg.method, resolve=True),
                base_model_name=run_cfg.model.get("hf_id") or run_cfg.model.get("path"),
            )
        elif args.adapter_only:
            save_adapter(
                bundle.model,
                args.out,
                OmegaConf.to_container(run_cfg.method, resolve=True),
                OmegaConf.to_container(run_cfg.adapt, resolve=True),
            )
        else:
            dtype = getattr(torch, args.dtype)
            rounding = delta_rounding(bundle.model, dtype)
            bundle.export(args.out, model=merged_copy(bundle.model), dtype=dtype)
    except AsrPeftError as err:
        report_error(err)
    if args.adapter_only or args.peft:
        print(f"exported {checkpoint} -> {args.out} ({'PEFT adapter' if args.peft else 'adapter tensors'}, float32)")
        return
    print(f"exported {checkpoint} -> {args.out} (weights stored as {args.dtype})")
    if rounding.layers:
        measured = (
            f"storing {args.dtype} rounds away {100 * rounding.lost:.1f}% of the adapters' update dW "
            f"(||stored W' - (W + dW)|| / ||dW|| over {rounding.layers} adapted layers; "
            f"worst {rounding.worst_layer}: {100 * rounding.worst_lost:.1f}%)"
        )
        if rounding.lost >= LOST_WARNING:
            print(f"warning: {measured}; --dtype float32 keeps it whole", file=sys.stderr)
        else:
            print(measured)


if __name__ == "__main__":
    main()
