"""`report.md`: the report's results as Markdown tables, to paste into a README or a paper's notes.

Per target panel of `pareto.png` (the same panels and frontier numbers), every configuration by
trainable parameters: its share of the model, WER mean ± std over seeds, the source-domain WER change
(forgetting) and its number on the frontier; then the claims table, each verdict with its effect,
interval and p-value, and the reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from asr_peft.reporting.aggregate import SOURCE_TEST_SET
from asr_peft.reporting.figures import pareto_points, panel_title, reference_wer, target_panels


def _points(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.1f}"


def _source_change(summary: pd.DataFrame, model, data, configuration) -> str:
    """Forgetting as `forgetting.png` draws it: source WER against `reference_wer` of the source panel."""
    source = summary[(summary["model"] == model) & (summary["data"] == data) & (summary["test_set"] == SOURCE_TEST_SET)]
    rows, reference = source[source["configuration"] == configuration], reference_wer(source)
    if rows.empty or reference is None:
        return ""
    return f"{100 * (rows['wer_mean'].iloc[0] - reference):+.1f}"


def panel_table(summary: pd.DataFrame, key: tuple, panel: pd.DataFrame) -> list[str]:
    """The Markdown lines of one target panel: a row per configuration, fewest trainable parameters first."""
    model, data, test_set = key
    points, front = pareto_points(panel)
    numbers = {index: n for n, index in enumerate(front.index, start=1)}
    baseline = panel["baseline_wer"].dropna()
    lines = [f"### {panel_title(model, data, test_set)}", ""]
    if not baseline.empty:
        lines += [f"Before adaptation: {_points(baseline.mean())}% WER.", ""]
    lines += [
        "| front | configuration | trainable | % of model | WER % (mean ± std) | seeds | source WER change |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for index, row in points.sort_values(["share", "wer_mean"]).iterrows():
        lines.append(
            f"| {numbers.get(index, '')} | {row['configuration']} | {row['trainable']:,.0f} | {row['share']:.3g} "
            f"| {_points(row['wer_mean'])} ± {_points(row['wer_std'])} | {row['seeds']} "
            f"| {_source_change(summary, model, data, row['configuration'])} |"
        )
    return lines + [""]


def claims_table(claims: pd.DataFrame) -> list[str]:
    lines = [
        "| claim | data | system vs reference | ΔWER points [95% CI] | p | verdict | reason |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for row in claims.itertuples():
        versus = row.system if pd.isna(row.reference) or row.reference is None else f"{row.system} vs {row.reference}"
        effect = (
            ""
            if pd.isna(row.delta_wer_points)
            else f"{row.delta_wer_points:+.2f} [{row.ci_low_points:+.2f}, {row.ci_high_points:+.2f}]"
        )
        p_value = "" if pd.isna(row.p_value) else f"{row.p_value:.4f}"
        cells = [
            row.claim,
            "" if pd.isna(row.data) else row.data,
            "" if pd.isna(versus) else versus,
            effect,
            p_value,
            row.verdict,
            row.reason,
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return lines + [""]


def write_digest(path: Path, summary: pd.DataFrame, claims: pd.DataFrame, test_sets: list[str] | None = None) -> Path:
    lines = [
        "# Results",
        "",
        "WER on each target domain, fewest trainable parameters first; `front`: the configuration's "
        "number on the WER-per-parameter frontier of `pareto.png`; source WER change: points against the model "
        "before adaptation (+ is forgetting).",
        "",
    ]
    for key, panel in target_panels(summary, test_sets):
        lines += panel_table(summary, key, panel)
    lines += ["## Claims", ""] + (claims_table(claims) if not claims.empty else ["No claim could be checked.", ""])
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
