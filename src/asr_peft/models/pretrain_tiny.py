"""Recipe for the small pretrained OWSM-architecture checkpoint shipped in `checkpoints/owsm_tiny_pretrained`.

    python -m asr_peft.models.pretrain_tiny prepare            # tokenizer + feature statistics
    python train.py experiment=pretrain_tiny                   # stage 1: the framework's own Lightning loop
    python -m asr_peft.models.pretrain_tiny export <stage-1 run dir> --out data/generated/pretrain_tiny/stage1
    python train.py experiment=pretrain_tiny_stage2            # stage 2: on from stage 1, speed-perturbed
    python -m asr_peft.models.pretrain_tiny export <stage-2 run dir> --out data/generated/pretrain_tiny/stage2
    python train.py experiment=pretrain_tiny_stage3            # stage 3: 500 low-lr steps on from stage 2
    python -m asr_peft.models.pretrain_tiny export <stage-3 run dir>   # into checkpoints/owsm_tiny_pretrained
    python train.py experiment=pretrain_tiny_stage4            # stage 4: ESPnet's decoder target, on from stage 3
    python -m asr_peft.models.pretrain_tiny export <stage-4 run dir>   # fp16 ESPnet export + card + checksums

`make pretrained-checkpoint` runs these steps. The model is pretrained on the synthetic corpus's
`source` domain only (adult, standard-accent voices), so that the child and dialect domains are
shifts it has never heard. The export scores the exported model with greedy CTC and with ESPnet's
beam search (ctc_weight 0.0 and 0.3) and records how its decoder starts a transcript.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
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


# How the export is scored: the offline default (configs/evaluation/default.yaml) and the alternatives
# it was chosen against; ESPnet's beam search as stock Speech2Text runs it (beam 5, no length bonus).
DEFAULT_DECODE = "ctc_greedy"
DECODES = {
    "ctc_greedy": {"decode": "ctc_greedy"},
    "beam_ctc0.0": {"decode": "beam", "beam": {"beam_size": 5, "ctc_weight": 0.0, "penalty": 0.0, "maxlenratio": 0.0}},
    "beam_ctc0.3": {"decode": "beam", "beam": {"beam_size": 5, "ctc_weight": 0.3, "penalty": 0.0, "maxlenratio": 0.0}},
}
PROBE_UTTERANCES = 100


def first_token_probabilities(bundle, utterances) -> dict[str, float]:
    """Mean decoder probabilities where a transcript starts: of "▁" and of the language token right after
    <sos>, and of the transcript's first word piece after the beam-search primer
    <sos> <lang> <asr> <notimestamps> (ESPnet's target puts the language token first)."""
    import torch

    from asr_peft.data.audio import read_audio
    from asr_peft.models.owsm_text import OWSMPreprocessor
    from asr_peft.models.base import eval_mode

    model, ids = bundle.model, bundle.converter.token2id
    primer = [model.sos, *OWSMPreprocessor(bundle).encode("x")["text"][:3].tolist()]  # <sos> <lang> <asr> <notimestamps>
    totals = {"p(▁ | <sos>)": 0.0, "p(<lang> | <sos>)": 0.0, "p(first piece | primer)": 0.0}
    with eval_mode(model):
        for utt in utterances:
            speech = torch.from_numpy(read_audio(utt.audio))[None]
            encoded, lengths = model.encode(speech, torch.tensor([speech.shape[1]]))
            logits, _ = model.decoder(encoded, lengths, torch.tensor([primer]), torch.tensor([len(primer)]))
            probabilities = logits[0].softmax(-1)
            first_piece = ids[bundle.tokenizer.text2tokens(utt.text)[0]]
            totals["p(▁ | <sos>)"] += float(probabilities[0, ids["▁"]])
            totals["p(<lang> | <sos>)"] += float(probabilities[0, primer[1]])
            totals["p(first piece | primer)"] += float(probabilities[-1, first_piece])
    return {key: round(value / len(utterances), 4) for key, value in totals.items()}


def export(run_dir: Path, out_dir: Path = CHECKPOINT) -> None:
    """Export the run's tested checkpoint (evaluation.checkpoint: best or last) in fp16, score the exported
    model with each decoding of DECODES, and add its card and summary."""
    from asr_peft.data.manifest import load_utterances
    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.evaluation.checkpoint import load_trained_run
    from asr_peft.evaluation.scoring import score_test_sets
    from asr_peft.models.owsm import load_exported

    bundle, run_cfg, checkpoint = load_trained_run(run_dir, run_cfg_checkpoint(run_dir))
    staging = out_dir.with_name(out_dir.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    export_espnet_dir(bundle, staging, dtype=torch.float16)
    data = OmegaConf.to_container(run_cfg.data, resolve=True)
    shipped = load_exported(staging)  # what users get: the fp16 weights, loaded back
    decoding = {}
    for name, settings in DECODES.items():
        decoding[name] = score_test_sets(
            shipped, data, {**settings, "progress": False}, get_normalizer(data["normalizer"]), out_dir=None
        )
        print(f"{name}: " + ", ".join(f"{k} WER {100 * v['wer']:.1f}%" for k, v in decoding[name].items()), flush=True)
    metrics = decoding[DEFAULT_DECODE]
    probe = load_utterances(data["test"]["source"])[:PROBE_UTTERANCES]
    shutil.copyfile(Path(data["corpus_dir"]) / "card.json", staging / "data_card.json")
    state = __import__("torch").load(checkpoint, map_location="cpu", weights_only=True)
    summary = {
        "metrics": metrics,
        "decode": DEFAULT_DECODE,
        "decoding": decoding,
        "first_token": first_token_probabilities(shipped, probe),
        "global_step": state.get("global_step"),
        "validation_history": state.get("validation_history", []),
        "checkpoint": Path(checkpoint).name,
        "parameters": sum(p.numel() for p in shipped.model.parameters()),
        "model": OmegaConf.to_container(run_cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(run_cfg.optimizer, resolve=True),
        "trainer": {k: v for k, v in OmegaConf.to_container(run_cfg.trainer, resolve=True).items() if k != "_target_"},
    }
    (staging / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_checksums(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # the checkpoint is a build product of this recipe; git keeps its history
    staging.rename(out_dir)
    print(f"exported {out_dir}: " + ", ".join(f"{k} WER {100 * v['wer']:.1f}%" for k, v in metrics.items()))


def run_cfg_checkpoint(run_dir: Path) -> str:
    """The checkpoint a run tests (its evaluation.checkpoint), which is the one exported."""
    config = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
    return str(config.get("evaluation", {}).get("checkpoint", "best"))


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
