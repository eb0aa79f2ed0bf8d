"""`report.md`: the report's results as Markdown tables, to paste into a README or a paper's notes.

Per target panel of `pareto.png` (the same panels and frontier numbers), every configuration by
trainable parameters: its share of the model, WER mean ± std over seeds (and a second decode's WER where
the runs scored one), the source-domain WER change (forgetting) and its number on the frontier; then
convergence (how many runs hit the update cap; per configuration the update its runs stopped at and
their updates to 90% of the dev gain); then the claims table, each verdict with its effect, interval,
p-value and Holm-adjusted p-value, and the reason, under the statistics it rests on (the procedure, the
family of the correction, the equivalence margin with its derivation and the Monte-Carlo error).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from asr_peft.reporting.aggregate import SECONDARY, SOURCE_TEST_SET
from asr_peft.reporting.claims import EQUIVALENCE_MARGIN, MARGIN_DERIVATION, family_size
from asr_peft.reporting.verdicts import FRAGILE_ERRORS
from asr_peft.reporting.convergence import GAIN_FRACTION, cap_line, convergence_summary
from asr_peft.reporting.selection import selection_line
from asr_peft.reporting.figures import pareto_points, panel_title, reference_wer, target_panels
from asr_peft.reporting.replicates import Bootstrap
from asr_peft.reporting.significance import format_p


def _points(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.1f}"


def _source_change(summary: pd.DataFrame, model, data, configuration) -> str:
    """Forgetting as `forgetting.png` draws it: source WER against `reference_wer` of the source panel."""
    source = summary[(summary["model"] == model) & (summary["data"] == data) & (summary["test_set"] == SOURCE_TEST_SET)]
    rows, reference = source[source["configuration"] == configuration], reference_wer(source)
    if rows.empty or reference is None:
        return ""
    return f"{100 * (rows['wer_mean'].iloc[0] - reference):+.1f}"


def _second_decodes(panel: pd.DataFrame) -> list[str]:
    """The second decodes with a WER in this panel (`secondary.<decode>.wer_mean` columns of the summary)."""
    prefix, suffix = f"{SECONDARY}.", ".wer_mean"
    return [
        c[len(prefix) : -len(suffix)]
        for c in panel.columns
        if c.startswith(prefix) and c.endswith(suffix) and panel[c].notna().any()
    ]


def _mean_std(mean, std) -> str:
    if pd.isna(mean):
        return ""
    return f"{_points(mean)} ± {_points(std)}" if not pd.isna(std) else _points(mean)


def panel_table(summary: pd.DataFrame, key: tuple, panel: pd.DataFrame) -> list[str]:
    """The Markdown lines of one target panel: a row per configuration, fewest trainable parameters first."""
    model, data, test_set = key
    points, front = pareto_points(panel)
    numbers = {index: n for n, index in enumerate(front.index, start=1)}
    baseline = panel["baseline_wer"].dropna()
    second = _second_decodes(panel)
    lines = [f"### {panel_title(model, data, test_set)}", ""]
    if not baseline.empty:
        lines += [f"Before adaptation: {_points(baseline.mean())}% WER.", ""]
    lines += [
        "| front | configuration | trainable | % of model | WER % (mean ± std) | "
        + "".join(f"WER % {decode} | " for decode in second)
        + "seeds | source WER change |",
        "|---:|---|---:|---:|---:|" + "---:|" * len(second) + "---:|---:|",
    ]
    for index, row in points.sort_values(["share", "wer_mean"]).iterrows():
        extra = "".join(
            f"{_mean_std(row[f'{SECONDARY}.{decode}.wer_mean'], row[f'{SECONDARY}.{decode}.wer_std'])} | " for decode in second
        )
        lines.append(
            f"| {numbers.get(index, '')} | {row['configuration']} | {row['trainable']:,.0f} | {row['share']:.3g} "
            f"| {_points(row['wer_mean'])} ± {_points(row['wer_std'])} | {extra}{row['seeds']} "
            f"| {_source_change(summary, model, data, row['configuration'])} |"
        )
    return lines + [""]


def convergence_table(convergence: pd.DataFrame) -> list[str]:
    """The cap line, then a row per trained configuration: where its runs stopped and how fast they gained."""
    stops = convergence_summary(convergence)
    if stops.empty:
        return ["No trained runs.", ""]
    lines = [
        f"{cap_line(convergence)}.",
        "",
        "| model · data | configuration | seeds | stopped at (median update) | cap | runs at the cap | "
        f"updates to {100 * GAIN_FRACTION:g}% of the dev gain (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    number = lambda value: "" if pd.isna(value) else f"{value:,.0f}"  # noqa: E731
    for row in stops.itertuples():
        lines.append(
            f"| {row.model} · {row.data} | {row.configuration} | {row.seeds} | {number(row.stopped_median)} "
            f"| {number(row.max_steps)} | {row.at_cap} of {row.seeds} | {number(row.to_gain_median)} |"
        )
    return lines + [""]


def selection_table(selection: pd.DataFrame) -> list[str]:
    """`selection.selection_line`, then a row per configuration: the choosing seeds' test WER against the fresh ones'."""
    lines = [
        f"{selection_line(selection)}",
        "",
        "| model · data | test set | configuration | choosing seeds: WER | fresh seeds: WER | difference (points) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in selection.itertuples():
        lines.append(
            f"| {row.model} · {row.data} | {row.test_set} | {row.configuration} | {row.choosing_seeds}: "
            f"{100 * row.choosing_wer:.2f}% | {row.fresh_seeds}: {100 * row.fresh_wer:.2f}% | {100 * row.difference:+.2f} |"
        )
    return lines + [""]


def statistics_lines(claims: pd.DataFrame, bootstrap: Bootstrap = Bootstrap()) -> list[str]:
    """What the claims table's verdicts rest on: the procedure, the correction's family, the equivalence margin
    and the Monte-Carlo error of this table's p-values and interval ends."""
    tested = claims[pd.to_numeric(claims["tests"], errors="coerce").fillna(0) > 0] if not claims.empty else claims
    p_errors = pd.to_numeric(tested.get("p_mc_error", pd.Series(dtype=float)), errors="coerce").dropna()
    interval_errors = (
        tested[tested["unit"] == "WER points"]["ci_mc_error"].dropna() if not tested.empty else pd.Series(dtype=float)
    )
    lines = [
        f"Every test is a hierarchical paired bootstrap with the seed as the unit: each of {bootstrap.replicates:,} "
        "replicates draws each configuration's seeds (jointly where both ran the same seeds) and then the test "
        "utterances (one draw for every seed of both systems). Verdicts use Holm-adjusted p-values at "
        f"α = {bootstrap.alpha:g} over one family: all {family_size(claims)} tests behind this table (each row's "
        "test, and each SSVD configuration's comparison that a `front` row weighs). Equivalence margin of "
        f"`strict_vs_approx`: ±{100 * EQUIVALENCE_MARGIN:.2f} WER points, {MARGIN_DERIVATION}.",
        "",
    ]
    if not p_errors.empty:
        adjusted = pd.to_numeric(tested["p_adjusted"], errors="coerce")
        raw = pd.to_numeric(tested["p_value"], errors="coerce")
        errors = pd.to_numeric(tested["p_mc_error"], errors="coerce") * (adjusted / raw.where(raw > 0)).fillna(1.0)
        distance = (adjusted - bootstrap.alpha).abs()
        fragile = int((distance < FRAGILE_ERRORS * errors).sum())
        nearest = distance.idxmin()
        near, near_error = tested.loc[nearest], float(errors[nearest])
        refined = int((pd.to_numeric(tested["replicates"], errors="coerce") > bootstrap.replicates).sum())
        lines += [
            f"Monte-Carlo error ({bootstrap.replicates:,} replicates): a p-value's standard error is at most "
            f"{format_p(float(p_errors.max()))}"
            + (f", an interval end's at most {float(interval_errors.max()):.3f} WER points" if not interval_errors.empty else "")
            + f"; the adjusted p nearest α is {format_p(float(adjusted[nearest]))} ± {near_error:.2g} ({near['claim']}, "
            + f"{near['data']}, {int(near['replicates']):,} replicates)"
            + (f"; {refined} test(s) near α were refined with more replicates" if refined else "")
            + "; "
            + (
                f"{fragile} verdict(s) still lie within {FRAGILE_ERRORS} standard errors of α (their rows say so)."
                if fragile
                else f"no adjusted p lies within {FRAGILE_ERRORS} standard errors of α."
            ),
            "",
        ]
    return lines


def _cell(value, fmt: str = "{}") -> str:
    return "" if value is None or pd.isna(value) else fmt.format(value)


def claims_table(claims: pd.DataFrame) -> list[str]:
    lines = [
        "| claim | data | system vs reference | matched by | effect [95% CI] | p | Holm p | verdict | reason |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in claims.itertuples():
        versus = row.system if pd.isna(row.reference) or row.reference is None else f"{row.system} vs {row.reference}"
        effect = "" if pd.isna(row.effect) else f"{row.effect:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}] {row.unit}"
        cells = [
            row.claim,
            _cell(row.data),
            _cell(versus),
            _cell(row.matched_by),
            effect,
            "" if pd.isna(row.p_value) else format_p(row.p_value),
            "" if pd.isna(row.p_adjusted) else format_p(row.p_adjusted),
            row.verdict,
            row.reason,
        ]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return lines + [""]


def write_digest(
    path: Path,
    summary: pd.DataFrame,
    claims: pd.DataFrame,
    test_sets: list[str] | None = None,
    *,
    convergence: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
) -> Path:
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
    if convergence is not None:
        lines += ["## Convergence", ""] + convergence_table(convergence)
    if selection is not None and not selection.empty:
        lines += ["## Rate selection", ""] + selection_table(selection)
    lines += ["## Claims", ""]
    lines += statistics_lines(claims) + claims_table(claims) if not claims.empty else ["No claim could be checked.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
