"""Generating the offline synthetic corpus:

    python -m asr_peft.data.synthetic --out data/generated/synth [--splits NAME ... | all] [--seed 0] [--scale 1.0] [--workers N]

Without --splits: every split of the child and dialect tasks (adaptation, dev and test sets), not the
16,500-utterance source pretraining split, which only `make pretrained-checkpoint` needs (--splits all).
"""

import argparse
import logging
from pathlib import Path

from asr_peft.data.synthetic.corpus import PRETRAINING_SPLITS, SPLITS, ensure_corpus
from asr_peft.errors import AsrPeftError, report_error


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m asr_peft.data.synthetic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="corpus directory (created)")
    parser.add_argument(
        "--splits",
        nargs="+",
        metavar="NAME",
        choices=[*SPLITS, "all"],
        help=f"splits to generate, or all (default: all but {', '.join(PRETRAINING_SPLITS)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink or grow every split")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    args = parser.parse_args()
    if args.splits is None:
        splits = [split for split in SPLITS if split not in PRETRAINING_SPLITS]
    else:
        splits = None if "all" in args.splits else args.splits
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_corpus(args.out, seed=args.seed, scale=args.scale, workers=args.workers, splits=splits))
    except AsrPeftError as err:
        report_error(err)


if __name__ == "__main__":
    main()
