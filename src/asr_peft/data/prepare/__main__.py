"""python -m asr_peft.data.prepare {myst,cgn} CORPUS_DIR OUT_DIR [options]

Writes train.jsonl, dev.jsonl, test.jsonl and summary.json into OUT_DIR (the names configs/data/myst.yaml
and cgn.yaml read); an existing non-empty output is only replaced with --overwrite.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from asr_peft.cli import one_line_errors
from asr_peft.data.prepare.cgn import prepare_cgn
from asr_peft.data.prepare.myst import prepare_myst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m asr_peft.data.prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="{myst,cgn}")
    myst = corpora.add_parser("myst", help="MyST children's speech (LDC2021S05)")
    cgn = corpora.add_parser("cgn", help="Corpus Gesproken Nederlands 2.0 (time-aligned segments)")
    for sub in (myst, cgn):
        sub.add_argument("corpus_dir", type=Path, help="the corpus root (holding data/)")
        sub.add_argument("out_dir", type=Path, help="where the manifests and summary.json go (created)")
        sub.add_argument("--max-duration", type=float, default=30.0, help="drop utterances longer than this (s)")
        sub.add_argument("--strict", action="store_true", help="stop at the first unreadable file, not skip it")
        sub.add_argument("--overwrite", action="store_true", help="replace existing manifests and summary.json")
    myst.add_argument(
        "--keep-list",
        type=Path,
        help="test utterance ids to keep, one per line, kept whatever the word and duration limits "
        "(ESPnet's egs2/myst/asr1/conf/file_list/test.list: the papers' test_filter)",
    )
    myst.add_argument("--min-words", type=int, default=3, help="drop utterances with fewer words after normalisation")
    cgn.add_argument("--components", default="o,k,m", help="comma-separated components a..o (default: o,k,m)")
    cgn.add_argument("--regions", default="vl", help="vl (Flanders), nl (the Netherlands) or vl,nl (default: vl)")
    cgn.add_argument(
        "--annotation",
        choices=("ort", "awd"),
        default="ort",
        help="ort: one utterance per transcribed chunk; awd: word alignments grouped at pauses",
    )
    cgn.add_argument("--split-pause", type=float, default=0.5, help="awd: a pause this long (s) starts a new utterance")
    cgn.add_argument("--keep-overlap", action="store_true", help="keep utterances overlapped by another speaker")
    cgn.add_argument("--dev-fraction", type=float, default=0.1, help="share of the speech for dev.jsonl")
    cgn.add_argument("--test-fraction", type=float, default=0.1, help="share of the speech for test.jsonl")
    cgn.add_argument("--seed", type=int, default=0, help="seed of the split by recording")
    for split in ("train", "dev", "test"):
        cgn.add_argument(
            f"--{split}-list", type=Path, help=f"recording ids for {split}.jsonl, one per line (replaces the random split)"
        )
    return parser


@one_line_errors
def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.corpus == "myst":
        summary = prepare_myst(
            args.corpus_dir,
            args.out_dir,
            keep_list=args.keep_list,
            max_duration=args.max_duration,
            min_words=args.min_words,
            strict=args.strict,
            overwrite=args.overwrite,
        )
    else:
        summary = prepare_cgn(
            args.corpus_dir,
            args.out_dir,
            components=args.components,
            regions=args.regions,
            annotation=args.annotation,
            dev_fraction=args.dev_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            max_duration=args.max_duration,
            split_pause=args.split_pause,
            keep_overlap=args.keep_overlap,
            strict=args.strict,
            overwrite=args.overwrite,
            split_lists={"train": args.train_list, "dev": args.dev_list, "test": args.test_list},
        )
    for split, stats in summary["splits"].items():
        print(
            f"{args.out_dir / stats['manifest']}: {stats['utterances']} utterances, {stats['hours']:.2f} h, "
            f"{stats['speakers']} speakers"
        )
    return summary


if __name__ == "__main__":
    main()
