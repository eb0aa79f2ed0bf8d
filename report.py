"""Aggregate runs into a report:

    python report.py <run or sweep dirs or results.json files...> --out <dir> [--overwrite] [--test-set NAME] [--wandb [--wandb-group G]]

Finds every results.json below the given paths (failed runs included, unreadable files listed) and
writes results.csv (a row per run and test set), summary.csv (mean ± std over seeds), significance.csv
(each configuration against the lowest-WER one and before adaptation: hierarchical paired bootstrap over
seeds and utterances), claims.csv (the SSVD papers' claims: evidence, effect with its 95% interval,
Holm-adjusted p over the whole table, verdict), convergence.csv (where runs stopped, how many hit the
update cap), pareto.png (per target domain, % of the model on a log axis), forgetting.png (source-domain
WER change), tradeoff.png (forgetting against target WER, SSVD both sides vs the paper's side), convergence.png,
subspace.png/subspace.csv (runs with subspace.json), report.md and report.html (a self-contained dashboard).
--wandb also logs the tables and figures to an offline W&B run in <dir>/wandb,
in the W&B group of the sweep the runs came from (--wandb-group to choose).
"""

from __future__ import annotations

import argparse

from asr_peft.errors import AsrPeftError, report_error
from asr_peft.reporting.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run directories, sweep directories or results.json files")
    parser.add_argument("--out", required=True, help="report directory (must be new or empty unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace the report files in an existing --out")
    parser.add_argument(
        "--test-set",
        action="append",
        dest="test_sets",
        metavar="NAME",
        help="draw Pareto panels for this test set only (repeatable; default: every test set)",
    )
    parser.add_argument("--wandb", action="store_true", help="also log the tables and figures to W&B (offline by default)")
    parser.add_argument(
        "--wandb-group",
        metavar="GROUP",
        help="the W&B group of the report's run (default: the sweep the runs came from, when they share one)",
    )
    args = parser.parse_args()
    try:
        summary = build_report(
            args.paths,
            args.out,
            overwrite=args.overwrite,
            wandb=args.wandb,
            test_sets=args.test_sets,
            wandb_group=args.wandb_group,
        )
    except AsrPeftError as err:
        report_error(err)
    runs = ", ".join(f"{count} {status}" for status, count in summary["runs"].items()) or "none"
    print(f"runs: {runs}")
    if summary["unreadable"]:
        print(f"unreadable: {len(summary['unreadable'])} file(s), left out:")
        for problem in summary["unreadable"]:
            print(f"  {problem}")
    print(
        f"report: {summary['out_dir']}/report.html  (results.csv, summary.csv, significance.csv, claims.csv, pareto.png, forgetting.png, ...)"
    )
    if summary["wandb_dir"]:
        group = summary["wandb_group"]
        if group:
            where = f"in group {group!r}"
        elif summary["sweep_groups"]:
            where = f"in no group: the runs come from {len(summary['sweep_groups'])} sweeps (--wandb-group names one)"
        else:
            where = "in no group: the runs record none (--wandb-group names one)"
        print(f"wandb: {summary['wandb_dir']}  {where} (upload with `wandb sync` on that run directory)")


if __name__ == "__main__":
    main()
