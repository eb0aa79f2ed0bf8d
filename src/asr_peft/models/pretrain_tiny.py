"""Recipe for the small pretrained OWSM-architecture checkpoint shipped in `checkpoints/owsm_tiny_pretrained`.

    python -m asr_peft.models.pretrain_tiny prepare            # tokenizer + feature statistics
    python train.py experiment=pretrain_tiny                   # stage 1: the framework's own Lightning loop
    python -m asr_peft.models.pretrain_tiny export <stage-1 run dir> --out data/generated/pretrain_tiny/stage1
    python train.py experiment=pretrain_tiny_stage2            # stage 2: on from stage 1, speed-perturbed
    python -m asr_peft.models.pretrain_tiny export <stage-2 run dir> --out data/generated/pretrain_tiny/stage2
    python train.py experiment=pretrain_tiny_stage3            # stage 3: 500 low-lr steps on from stage 2
    python -m asr_peft.models.pretrain_tiny export <stage-3 run dir>   # fp16 ESPnet export + card + checksums

`make pretrained-checkpoint` runs these steps. The model is pretrained on the synthetic corpus's
`source` domain only (adult, standard-accent voices), so that the child and dialect domains are
shifts it has never heard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from asr_peft.data.manifest import load_utterances
from asr_peft.models.export import export_espnet_dir, write_checksums
from asr_peft.models.feats_stats import compute_feats_stats
from asr_peft.models.tokenizer import train_bpe

ROOT = Path(os.environ.get("ASR_PEFT_ROOT", Path(__file__).resolve().parents[3]))
PREPARED = ROOT / "data" / "generated" / "pretrain_tiny"
CHECKPOINT = ROOT / "checkpoints" / "owsm_tiny_pretrained"
VOCAB_SIZE = 300
STATS_UTTERANCES = 1500


def prepare(corpus_dir: Path, out_dir: Path = PREPARED) -> None:
    """Train the BPE tokenizer on the source training text and measure global feature statistics."""
    train = load_utterances(corpus_dir / "source_train.jsonl")
    bpe_model, token_list = train_bpe([u.text for u in train], out_dir, vocab_size=VOCAB_SIZE)
    (out_dir / "tokens.txt").write_text("\n".join(token_list) + "\n", encoding="utf-8")
    from espnet2.asr.frontend.default import DefaultFrontend

    model_cfg = OmegaConf.load(ROOT / "configs" / "model" / "owsm_0.1b.yaml")
    frontend = DefaultFrontend(**OmegaConf.to_container(model_cfg.s2t_config.frontend_conf))
    step = max(1, len(train) // STATS_UTTERANCES)
    compute_feats_stats(frontend, train[::step], out_dir / "feats_stats.npz")
    print(f"prepared {bpe_model} ({len(token_list)} tokens) and {out_dir / 'feats_stats.npz'}")


def export(run_dir: Path, out_dir: Path = CHECKPOINT) -> None:
    """Export the run's best checkpoint in fp16, score the exported model, and add its card and summary."""
    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.evaluation.checkpoint import load_trained_run
    from asr_peft.evaluation.scoring import score_test_sets
    from asr_peft.models.owsm import load_exported

    bundle, run_cfg, checkpoint = load_trained_run(run_dir, "best")
    staging = out_dir.with_name(out_dir.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    export_espnet_dir(bundle, staging, half=True)
    data = OmegaConf.to_container(run_cfg.data, resolve=True)
    shipped = load_exported(staging)  # what users get: the fp16 weights, loaded back
    metrics = score_test_sets(shipped, data, {"decode": "ctc_greedy", "progress": False},
                              get_normalizer(data["normalizer"]), out_dir=None)
    shutil.copyfile(Path(data["corpus_dir"]) / "card.json", staging / "data_card.json")
    state = __import__("torch").load(checkpoint, map_location="cpu", weights_only=True)
    summary = {"metrics": metrics, "decode": "ctc_greedy", "global_step": state.get("global_step"),
               "validation_history": state.get("validation_history", []), "checkpoint": Path(checkpoint).name,
               "parameters": sum(p.numel() for p in shipped.model.parameters()),
               "model": OmegaConf.to_container(run_cfg.model, resolve=True),
               "optimizer": OmegaConf.to_container(run_cfg.optimizer, resolve=True),
               "trainer": {k: v for k, v in OmegaConf.to_container(run_cfg.trainer, resolve=True).items() if k != "_target_"}}
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_checksums(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # the checkpoint is a build product of this recipe; git keeps its history
    staging.rename(out_dir)
    print(f"exported {out_dir}: " + ", ".join(f"{k} WER {100 * v['wer']:.1f}%" for k, v in metrics.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "generated" / "synth")
    e = sub.add_parser("export")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.corpus)
    else:
        export(args.run_dir, args.out)


if __name__ == "__main__":
    main()
