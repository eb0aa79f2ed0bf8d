"""python -m asr_peft.data.synthetic --out DIR [--seed N] [--scale F] [--workers N] [--no-flite]

Generates the synthetic domain-shift corpus into DIR (manifests <DIR>/<split>.jsonl, audio, CARD.md),
or does nothing when DIR already holds it for the same settings.
"""

import argparse
import logging
import sys
from pathlib import Path

from asr_peft.data.synthetic.corpus import ensure_corpus
from asr_peft.errors import AsrPeftError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m asr_peft.data.synthetic",
                                     description="Generate the offline synthetic domain-shift corpus (cached).")
    parser.add_argument("--out", type=Path, required=True, help="corpus directory (created)")
    parser.add_argument("--seed", type=int, default=0, help="fixes every random choice (default 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every split's size (default 1.0)")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    parser.add_argument("--no-flite", dest="flite", action="store_false",
                        help="espeak-ng voices only, for machines without flite (a different corpus)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_corpus(args.out, seed=args.seed, scale=args.scale, workers=args.workers, flite=args.flite))
    except AsrPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
