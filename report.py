"""Aggregate runs into a report: `python report.py <run or sweep dirs...> --out <dir> [--wandb]`.

Writes results.csv (a row per run and test set), summary.csv (mean ± std over seeds), pareto.png,
convergence.png and report.html (a self-contained dashboard).
"""

from __future__ import annotations

import argparse
import sys

from asr_peft.errors import AsrPeftError
from asr_peft.reporting.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directories", nargs="+", help="run directories, sweep directories or results.json files")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")
    parser.add_argument("--wandb", action="store_true", help="also log the table and figure to W&B (offline by default)")
    args = parser.parse_args()
    try:
        summary = build_report(args.directories, args.out, overwrite=args.overwrite, wandb=args.wandb)
    except AsrPeftError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"runs: {summary['runs']}")
    for problem in summary["unreadable"]:
        print(f"unreadable: {problem}")
    print(f"report: {summary['out_dir']}/report.html  (figures: pareto.png, convergence.png; table: results.csv)")


if __name__ == "__main__":
    main()
