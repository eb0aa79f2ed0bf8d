"""Export a trained run: `python export.py <run dir> --out <dir> [--adapter-only] [--checkpoint best|last]`.

Default: the adapters merged into plain ESPnet modules, written in ESPnet's exported layout, which
stock `espnet2.bin.s2t_inference.Speech2Text(s2t_train_config=..., s2t_model_file=...)` loads (run it
from the export directory: ESPnet's paths are recipe-relative) and `model.path=<dir>` loads here.
`--adapter-only`: just the adapter tensors (safetensors) and their JSON config, for `load_adapter`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from asr_peft.cli import setup_environment
from asr_peft.errors import AsrPeftError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--checkpoint", default="best", help="best | last | a .ckpt path")
    parser.add_argument("--adapter-only", action="store_true")
    parser.add_argument("--half", action="store_true", help="store weights in fp16")
    args = parser.parse_args()
    setup_environment()
    from asr_peft.adapters import merged_copy, save_adapter
    from asr_peft.evaluation.checkpoint import load_trained_run
    from asr_peft.models.export import export_espnet_dir

    try:
        bundle, run_cfg, checkpoint = load_trained_run(args.run_dir, args.checkpoint)
        if args.adapter_only:
            save_adapter(bundle.model, args.out, OmegaConf.to_container(run_cfg.method, resolve=True),
                         OmegaConf.to_container(run_cfg.adapt, resolve=True))
        else:
            export_espnet_dir(bundle, args.out, model=merged_copy(bundle.model), half=args.half)
    except AsrPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"exported {checkpoint} -> {args.out}")


if __name__ == "__main__":
    main()
