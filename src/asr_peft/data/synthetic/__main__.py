"""python -m asr_peft.data.synthetic --out data/generated/synth [--seed 0] [--scale 1.0] [--workers N]"""

import argparse
import logging
import sys
from pathlib import Path

from asr_peft.data.synthetic.corpus import ensure_corpus
from asr_peft.errors import AsrPeftError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m asr_peft.data.synthetic", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="corpus directory (created)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink or grow every split")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(ensure_corpus(args.out, seed=args.seed, scale=args.scale, workers=args.workers))
    except AsrPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
