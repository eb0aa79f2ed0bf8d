"""report.html: a self-contained comparison dashboard (no network at view time).

plotly's JavaScript and the PNG figures are inlined, the table sorting and filtering is a few lines
of vanilla JavaScript. Sections: the papers' claims (verdict, reason, effect with its interval, p and
Holm-adjusted p), the cross-domain summary (mean ± std WER over seeds, a column per test set and per second
decode, change against the model before adaptation), the tested ranking per test set, interactive
WER-vs-trainable-parameters plots with the Pareto frontier, the forgetting view and the forgetting
trade-off curves, convergence (dev WER against updates, where the runs stopped, how many hit the update
cap), subspace diagnostics, the statistical procedure, and every run (failed ones with their error).

Whatever the page calls better, worse or tied comes from the paired bootstrap (`reporting.ranking`,
`reporting.claims`), never from comparing two means.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from asr_peft.reporting.aggregate import SECONDARY, method_order, ordered_test_sets
from asr_peft.reporting.claims import SEPARATOR as CLAIM_SEPARATOR
from asr_peft.reporting.verdicts import INCONCLUSIVE, REFUTED, REPRODUCED, SIDES as CLAIM_SIDES
from asr_peft.reporting.convergence import GAIN_FRACTION, cap_line, convergence_summary
from asr_peft.reporting.digest import statistics_lines
from asr_peft.reporting.figures import ERROR_BARS, panel_title, pareto_points, reference_wer, seed_points
from asr_peft.reporting.ranking import BEFORE, LOWEST, NOT_TESTED
from asr_peft.reporting.significance import NO_DIFFERENCE, PROCEDURE, format_p

SCRIPT = """
document.querySelectorAll('table.sortable').forEach(table => {
  table.querySelectorAll('th').forEach((th, column) => th.addEventListener('click', () => {
    const ascending = th.dataset.order !== 'asc';
    table.querySelectorAll('th').forEach(h => delete h.dataset.order);
    th.dataset.order = ascending ? 'asc' : 'desc';
    const key = row => {
      const cell = row.cells[column];
      const text = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
      const number = Number(text);
      return text === '' ? null : (isNaN(number) ? text.toLowerCase() : number);
    };
    const body = table.tBodies[0];
    [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);  // empty cells last either way
      return (x > y ? 1 : x < y ? -1 : 0) * (ascending ? 1 : -1);
    }).forEach(row => body.appendChild(row));
  }));
});
document.querySelectorAll('input.filter').forEach(input => input.addEventListener('input', () => {
  const words = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
  document.querySelectorAll(input.dataset.table + ' tbody tr').forEach(row => {
    const text = row.textContent.toLowerCase();
    row.hidden = !words.every(word => text.includes(word));
  });
}));
"""

STYLE = """
:root { --ink: #1f2430; --muted: #6b7280; --line: #e5e7eb; --head: #f6f7f9; --accent: #2f5d9e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: var(--ink); background: #fbfbfc; }
header { background: #1f2a3c; color: #fff; padding: 1.1rem 2rem; }
header h1 { margin: 0; font-size: 1.35rem; font-weight: 600; }
header p { margin: 0.3rem 0 0; color: #c9d1dd; font-size: 0.85rem; }
main { padding: 0.5rem 2rem 2rem; max-width: 1680px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 0.9rem 1.2rem 1.1rem; margin-top: 1.1rem; }
h2 { font-size: 1.05rem; margin: 0 0 0.2rem; }
.note { color: var(--muted); font-size: 0.82rem; margin: 0 0 0.7rem; }
.pill { display: inline-block; padding: 0.05rem 0.55rem; border-radius: 999px; font-size: 0.78rem; margin-left: 0.3rem; }
.pill.completed { background: #dcf3e3; color: #14532d; } .pill.failed { background: #fde2e2; color: #991b1b; }
.pill.other { background: #fdf1d6; color: #7c4a03; } .pill.untested { background: #eceef2; color: #374151; }
.callout { background: #fff8e6; border: 1px solid #f3d48a; border-radius: 8px; padding: 0.6rem 1rem; margin-top: 1rem; font-size: 0.85rem; }
.callout ul { margin: 0.3rem 0 0; padding-left: 1.2rem; } code { font-size: 0.8rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.82rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.32rem 0.65rem; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--head); cursor: pointer; position: sticky; top: 0; font-weight: 600; user-select: none; }
th:hover { background: #eceef2; }
th[data-order=asc]::after { content: " \\25B2"; font-size: 0.7em; } th[data-order=desc]::after { content: " \\25BC"; font-size: 0.7em; }
td.text, th.text { text-align: left; } td.wrap { white-space: normal; overflow-wrap: anywhere; max-width: 22rem; }
td.claim { min-width: 11rem; } td.name { min-width: 12rem; } td.reason { min-width: 18rem; max-width: 28rem; }
td details summary { cursor: pointer; color: var(--muted); } td details ul { margin: 0.3rem 0 0; padding-left: 1.1rem; }
tbody tr:hover { background: #f7f9fc; }
td.best { font-weight: 700; } .delta { font-size: 0.72rem; margin-left: 0.35rem; }
.better { color: #15803d; } .worse { color: #b91c1c; }
.dot { display: inline-block; width: 0.6rem; height: 0.6rem; border-radius: 50%; margin-right: 0.4rem; vertical-align: baseline; }
tr.failed td { background: #fff5f5; } td.error { color: #991b1b; white-space: normal; min-width: 18rem; text-align: left; font-size: 0.78rem; }
.plots { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.panel { border: 1px solid var(--line); border-radius: 6px; padding-top: 0.4rem; }
.panel-title { font-weight: 600; font-size: 0.85rem; padding: 0 0.8rem; }
img.figure { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
input.filter { padding: 0.35rem 0.6rem; border: 1px solid #cfd4dc; border-radius: 6px; width: 22rem; margin-bottom: 0.6rem; font: inherit; }
"""


def human_count(value) -> str:
    """1,510,000 -> 1.51M; 83,846 -> 83.8k."""
    if value is None or pd.isna(value):
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


def cell(text="", *, value=None, css: str | None = None, title: str | None = None) -> str:
    attributes = "".join(
        [
            f' data-value="{html.escape(str(value))}"' if value is not None else "",
            f' class="{css}"' if css else "",
            f' title="{html.escape(title)}"' if title else "",
        ]
    )
    return f"<td{attributes}>{text}</td>"


def number_cell(value, text: str) -> str:
    """A numeric cell sorted by its value; empty when the value is missing."""
    return cell(text, value=value) if value is not None and pd.notna(value) else cell(value="")


def table(header: list[tuple[str, str]], rows: list[str], *, table_id: str) -> str:
    """header: (label, css class) pairs; rows: `<tr>` strings."""
    head = "".join(f'<th class="{css}">{html.escape(label)}</th>' for label, css in header)
    return (
        f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def method_cell(method, colours: dict[str, str]) -> str:
    colour = colours.get(method, "#999")
    return cell(f'<span class="dot" style="background:{colour}"></span>{html.escape(str(method))}', css="text")


def wer_cell(mean, std=None, baseline=None, *, best: bool = False, tone: str = "", title: str | None = None) -> str:
    """WER in percent, ± std when given (more than one seed), the change against `baseline` in small print,
    coloured by `tone` (`better` / `worse`: what the paired test against the model before adaptation found)."""
    if mean is None or pd.isna(mean):
        return cell(value="")
    text = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None and pd.notna(std) else "")
    if baseline is not None and pd.notna(baseline):
        text += f'<span class="delta {tone}">{100 * (mean - baseline):+.1f}</span>'
    return cell(text, value=f"{mean:.6f}", css="best" if best else None, title=title)


def _tested(ranking: pd.DataFrame) -> dict[tuple, pd.Series]:
    """(model, data, test set, configuration, against) -> the ranking row."""
    return {(r["model"], r["data"], r["test_set"], r["configuration"], r["against"]): r for _, r in ranking.iterrows()}


def _comparison_text(row: pd.Series | None, reference: str) -> str:
    if row is None:
        return ""
    if row["difference"] == LOWEST:
        return "lowest mean WER"
    return f"against {reference} ({row['reference']}): {row['difference']}; {row['note'] or ''}"


def summary_table(summary: pd.DataFrame, test_sets: list[str], colours: dict[str, str], ranking: pd.DataFrame) -> str:
    """A row per (model, data, configuration); WER mean ± std for every test set side by side. Bold: the
    lowest mean WER and every configuration with no significant difference from it; the change against
    the model before adaptation is coloured only where the paired test against the frozen runs finds one."""
    if summary.empty:
        return '<p class="note">No completed runs with a WER yet.</p>'
    keys = ["model", "data", "method", "configuration"]
    tested = _tested(ranking)
    second = _second_columns(summary, test_sets)
    rows = []
    for (model, data, method, configuration), group in summary.groupby(keys, dropna=False, sort=False):
        by_test = group.set_index("test_set")
        first = group.iloc[0]
        share = first["trainable"] / first["total"] if first["total"] else float("nan")
        cells = [
            cell(html.escape(str(configuration)), css="text wrap name"),
            method_cell(method, colours),
            cell(html.escape(str(model)), css="text"),
            cell(html.escape(str(data)), css="text"),
            number_cell(first["trainable"], human_count(first["trainable"])),
            number_cell(share, f"{100 * share:.3g}%"),
            number_cell(group["seeds"].max(), str(group["seeds"].max())),
        ]
        for test_set in test_sets:
            if test_set in by_test.index:
                row = by_test.loc[test_set]
                std = row["wer_std"] if row["seeds"] > 1 else None
                lowest = tested.get((model, data, test_set, configuration, LOWEST))
                before = tested.get((model, data, test_set, configuration, BEFORE))
                best = lowest is not None and lowest["difference"] in (LOWEST, NO_DIFFERENCE)
                tone = before["difference"] if before is not None and before["difference"] in ("better", "worse") else ""
                title = " · ".join(filter(None, [_comparison_text(lowest, "the lowest"), _comparison_text(before, BEFORE)]))
                cells.append(wer_cell(row["wer_mean"], std, row["baseline_wer"], best=best, tone=tone, title=title))
            else:
                cells.append(cell(value=""))
            for decode in second.get(test_set, []):
                row = by_test.loc[test_set] if test_set in by_test.index else None
                mean = None if row is None else row[f"{SECONDARY}.{decode}.wer_mean"]
                spread = None if row is None or row["seeds"] <= 1 else row[f"{SECONDARY}.{decode}.wer_std"]
                cells.append(wer_cell(mean, spread, title=f"{test_set}, second decode: {decode}"))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = [
        ("configuration", "text"),
        ("method", "text"),
        ("model", "text"),
        ("data", "text"),
        ("trainable", ""),
        ("% of model", ""),
        ("seeds", ""),
    ] + [(label, "") for t in test_sets for label in [f"WER {t}", *(f"WER {t} ({d})" for d in second.get(t, []))]]
    return table(header, rows, table_id="summary")


def _second_columns(summary: pd.DataFrame, test_sets: list[str]) -> dict[str, list[str]]:
    """test set -> the second decodes (`secondary.<decode>.wer_mean` of the summary) with a WER on it."""
    decodes = [
        c[len(SECONDARY) + 1 : -len(".wer_mean")]
        for c in summary.columns
        if c.startswith(f"{SECONDARY}.") and c.endswith(".wer_mean")
    ]
    return {
        t: [d for d in decodes if summary.loc[summary["test_set"] == t, f"{SECONDARY}.{d}.wer_mean"].notna().any()]
        for t in test_sets
    }


def runs_table(frame: pd.DataFrame, test_sets: list[str], colours: dict[str, str]) -> str:
    """A row per run: status, configuration, WER per test set, cost; failed runs with their error."""
    info = frame.drop_duplicates("run_dir").set_index("run_dir")
    scored = frame.dropna(subset=["test_set"])
    wer = (
        scored.pivot_table(index="run_dir", columns="test_set", values="wer", aggfunc="first")
        if not scored.empty
        else pd.DataFrame()
    )
    rows = []
    for run_dir, row in info.iterrows():
        status = str(row["status"])
        kind = status if status in ("completed", "failed") else "other"
        cells = [
            cell(f'<span class="pill {kind}">{html.escape(status)}</span>', css="text", value=status),
            cell(html.escape(str(row["run"])), css="text wrap", title=str(run_dir)),
            cell(html.escape(str(row["configuration"])), css="text wrap name"),
            method_cell(row["method"], colours),
            cell(html.escape(str(row["model"])), css="text"),
            cell(html.escape(str(row["data"])), css="text"),
            cell(html.escape(str(row["seed"]))),
            number_cell(row["trainable"], human_count(row["trainable"])),
        ]
        for test_set in test_sets:
            value = wer.loc[run_dir, test_set] if run_dir in wer.index and test_set in wer.columns else None
            cells.append(wer_cell(value))
        for key in ("train_time_s", "peak_memory_mb", "global_step"):
            cells.append(number_cell(row[key], f"{row[key]:,.0f}" if pd.notna(row[key]) else ""))
        error = "" if pd.isna(row["error"]) else str(row["error"])
        cells.append(cell(html.escape(error[:300]), css="error", title=error))
        css = ' class="failed"' if status != "completed" else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    header = (
        [
            ("status", "text"),
            ("run", "text"),
            ("configuration", "text"),
            ("method", "text"),
            ("model", "text"),
            ("data", "text"),
            ("seed", ""),
            ("trainable", ""),
        ]
        + [(f"WER {t}", "") for t in test_sets]
        + [("train time (s)", ""), ("peak memory (MB)", ""), ("steps", ""), ("error", "text")]
    )
    return table(header, rows, table_id="runs")


def pareto_plots(summary: pd.DataFrame, frame: pd.DataFrame, colours: dict[str, str]) -> str:
    """An interactive plotly figure per (model, data, test set): trainable parameters as % of the model
    (log x), each seed a small translucent point, each configuration its mean ± 1 std over seeds."""
    parts = []
    for (model, data, test_set), panel in summary.groupby(["model", "data", "test_set"], dropna=False, sort=False):
        points, front = pareto_points(panel)
        seeds = seed_points(frame, model, data, test_set)
        figure = go.Figure()
        for method in method_order(points["method"]):
            chosen, runs = points[points["method"] == method], seeds[seeds["method"] == method]
            figure.add_trace(
                go.Scatter(
                    x=runs["share"],
                    y=100 * runs["wer"],
                    mode="markers",
                    name=method,
                    legendgroup=method,
                    showlegend=False,
                    marker={"color": colours[method], "size": 5, "opacity": 0.35},
                    customdata=runs[["configuration", "seed"]].to_numpy(),
                    hovertemplate="%{customdata[0]}, seed %{customdata[1]}<br>WER %{y:.2f}%<extra></extra>",
                )
            )
            figure.add_trace(
                go.Scatter(
                    x=chosen["share"],
                    y=100 * chosen["wer_mean"],
                    mode="markers",
                    name=method,
                    legendgroup=method,
                    marker={"color": colours[method], "size": 10, "line": {"width": 1, "color": "white"}},
                    error_y={"type": "data", "array": 100 * chosen["wer_std"], "visible": True, "thickness": 1},
                    customdata=chosen[["configuration", "seeds", "trainable"]].to_numpy(),
                    hovertemplate="<b>%{customdata[0]}</b><br>%{x:.3g}% of the model (%{customdata[2]:,} trainable)<br>"
                    "WER %{y:.2f}% (mean of %{customdata[1]} seeds)<extra></extra>",
                )
            )
        figure.add_trace(
            go.Scatter(
                x=front["share"],
                y=100 * front["wer_mean"],
                mode="lines",
                name="Pareto frontier",
                line={"color": "black", "dash": "dash", "shape": "hv", "width": 1},
                hoverinfo="skip",
            )
        )
        reference = reference_wer(panel)
        if reference is not None:
            figure.add_hline(
                y=100 * reference,
                line={"color": "#888", "dash": "dot", "width": 1},
                annotation_text="before adaptation",
                annotation_font_size=10,
                annotation_font_color="#666",
            )
        figure.update_layout(
            template="plotly_white",
            width=510,
            height=360,
            margin={"l": 55, "r": 15, "t": 30, "b": 45},
            xaxis={"type": "log", "dtick": 1, "ticksuffix": "%", "title": "trainable parameters (% of the model)"},
            yaxis={"title": "WER (%)"},
            legend={"font": {"size": 11}},
        )
        plot = figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        parts.append(
            f'<div class="panel"><div class="panel-title">{html.escape(panel_title(model, data, test_set))}</div>{plot}</div>'
        )
    return f'<div class="plots">{"".join(parts)}</div>' if parts else '<p class="note">No completed runs with a WER yet.</p>'


def difference_pill(difference) -> str:
    kind = {"better": "completed", "worse": "failed", LOWEST: "completed"}.get(difference, "untested")
    return f'<span class="pill {kind}">{html.escape(str(difference))}</span>'


def _interval(row: pd.Series) -> tuple[str, str]:
    if row["delta_wer_points"] is None or pd.isna(row["delta_wer_points"]):
        return cell(value=""), cell(value="")
    return (
        cell(
            f"{row['delta_wer_points']:+.2f} [{row['ci_low_points']:+.2f}, {row['ci_high_points']:+.2f}]",
            value=row["delta_wer_points"],
        ),
        cell(f"{row['p_value']:.4f}", value=row["p_value"]),
    )


def ranking_table(ranking: pd.DataFrame, colours: dict[str, str], methods: dict[str, str]) -> str:
    """A row per configuration, test set and reference (the lowest WER, the model before adaptation)."""
    rows = []
    for _, row in ranking.iterrows():
        delta, p_value = _interval(row)
        rows.append(
            "<tr>"
            + "".join(
                [
                    cell(html.escape(str(row["configuration"])), css="text wrap name"),
                    method_cell(methods.get(row["configuration"]), colours),
                    cell(html.escape(f"{row['model']} · {row['data']}"), css="text"),
                    cell(html.escape(str(row["test_set"])), css="text"),
                    number_cell(row["wer_mean"], f"{100 * row['wer_mean']:.2f}"),
                    cell(
                        html.escape(
                            f"{row['against']}" + ("" if row["reference"] == row["configuration"] else f" ({row['reference']})")
                        ),
                        css="text wrap name",
                    ),
                    cell(difference_pill(row["difference"]), css="text", value=row["difference"]),
                    delta,
                    p_value,
                    cell(
                        ""
                        if row["paired_seeds"] is None or pd.isna(row["paired_seeds"])
                        else ("yes" if row["paired_seeds"] else "no")
                    ),
                    cell(html.escape(str(row["note"])) if row["difference"] == NOT_TESTED else "", css="text wrap"),
                ]
            )
            + "</tr>"
        )
    header = [
        ("configuration", "text"),
        ("method", "text"),
        ("model · data", "text"),
        ("test set", "text"),
        ("WER", ""),
        ("against", "text"),
        ("difference", "text"),
        ("ΔWER (points) [95% CI]", ""),
        ("p", ""),
        ("seeds paired", ""),
        ("note", "text"),
    ]
    return table(header, rows, table_id="ranking")


def folded(items: list[str], what: str) -> str:
    """A list folded under "<what> (n)", so that a claim resting on many comparisons or runs keeps its row
    readable; empty when there are none."""
    if not items:
        return ""
    entries = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return f"<details><summary>{html.escape(what)} ({len(items)})</summary><ul>{entries}</ul></details>"


def listed(value, *, sides: bool = False) -> list[str]:
    """The items of a claims column (`claims.SEPARATOR`; with `sides`, the system's and the reference's, `claims.SIDES`)."""
    if value is None or pd.isna(value) or not str(value):
        return []
    return [item for side in (str(value).split(CLAIM_SIDES) if sides else [str(value)]) for item in side.split(CLAIM_SEPARATOR)]


def _effect_cells(row: pd.Series) -> tuple[str, str, str]:
    """The effect with its interval (in the row's unit), the p-value and the Holm-adjusted p-value."""
    if row["effect"] is None or pd.isna(row["effect"]):
        return cell(value=""), cell(value=""), cell(value="")
    effect = cell(
        f"{row['effect']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}] {html.escape(str(row['unit']))}", value=row["effect"]
    )
    p_values = [
        cell(format_p(row[key]), value=row[key], title=f"Monte-Carlo standard error of p: {row['p_mc_error']}")
        if pd.notna(row[key])
        else cell(value="")
        for key in ("p_value", "p_adjusted")
    ]
    return effect, p_values[0], p_values[1]


def claims_table(claims: pd.DataFrame) -> str:
    """A row per claim (and domain and compared pair): verdict, reason, evidence, effect with its interval."""
    rows = []
    for _, row in claims.iterrows():
        kind = {REPRODUCED: "completed", REFUTED: "failed", INCONCLUSIVE: "other"}.get(row["verdict"], "untested")
        effect, p_value, p_adjusted = _effect_cells(row)
        budgets = " vs ".join(human_count(row[k]) for k in ("system_trainable", "reference_trainable") if pd.notna(row[k]))
        text = lambda key: html.escape("" if row[key] is None or pd.isna(row[key]) else str(row[key]))  # noqa: E731
        rows.append(
            "<tr>"
            + "".join(
                [
                    cell(f"<b>{text('claim')}</b><br>{text('statement')}", css="text wrap claim"),
                    cell(f'<span class="pill {kind}">{text("verdict")}</span>', css="text", value=row["verdict"]),
                    effect,
                    p_value,
                    p_adjusted,  # the effect next to the verdict; the evidence behind it follows
                    cell(text("reason") + folded(listed(row["comparisons"]), "every comparison weighed"), css="text wrap reason"),
                    cell(
                        f"{text('system')}<br>vs {text('reference')}" if pd.notna(row["reference"]) else text("system"),
                        css="text wrap name",
                    ),
                    cell(text("matched_by"), css="text wrap"),
                    cell(html.escape(budgets)),
                    cell(" · ".join(filter(None, [text("model"), text("data"), text("test_set")])), css="text wrap"),
                    cell(text("seeds") + (" (paired)" if row["paired_seeds"] is True else "")),
                    cell(folded(listed(row["runs"], sides=True), "runs"), css="text wrap"),
                ]
            )
            + "</tr>"
        )
    header = [
        ("claim", "text"),
        ("verdict", "text"),
        ("effect [95% CI]", ""),
        ("p", ""),
        ("Holm p", ""),
        ("reason", "text"),
        ("system vs reference", "text"),
        ("matched by", "text"),
        ("trainable", ""),
        ("model · data · test set", "text"),
        ("seeds", ""),
        ("runs", "text"),
    ]
    return table(header, rows, table_id="claims")


def convergence_section(convergence: pd.DataFrame) -> str:
    """How many runs hit the update cap, then per configuration the update its runs stopped at and their
    updates to 90% of the dev gain (convergence.csv)."""
    stops = convergence_summary(convergence)
    if stops.empty:
        return '<p class="note">No trained runs.</p>'
    number = lambda value: number_cell(value, "" if pd.isna(value) else f"{value:,.0f}")  # noqa: E731
    rows = [
        "<tr>"
        + "".join(
            [
                cell(html.escape(str(row.configuration)), css="text wrap name"),
                cell(html.escape(f"{row.model} · {row.data}"), css="text"),
                cell(str(row.seeds)),
                number(row.stopped_median),
                number(row.max_steps),
                cell(f"{row.at_cap} of {row.seeds}", value=row.at_cap),
                number(row.to_gain_median),
            ]
        )
        + "</tr>"
        for row in stops.itertuples()
    ]
    header = [
        ("configuration", "text"),
        ("model · data", "text"),
        ("seeds", ""),
        ("stopped at (median update)", ""),
        ("cap", ""),
        ("runs at the cap", ""),
        (f"updates to {100 * GAIN_FRACTION:g}% of the dev gain (median)", ""),
    ]
    return f'<p class="note"><b>{html.escape(cap_line(convergence))}.</b></p>' + table(header, rows, table_id="convergence")


def subspace_table(subspace: pd.DataFrame, colours: dict[str, str]) -> str:
    rows = []
    for _, row in subspace.iterrows():
        rows.append(
            "<tr>"
            + "".join(
                [
                    cell(html.escape(str(row["configuration"])), css="text"),
                    method_cell(row["method"], colours),
                    cell(html.escape(str(row["model"])), css="text"),
                    cell(html.escape(str(row["data"])), css="text"),
                    cell(f"{row['input_mean']:.2f} ± {row['input_std']:.2f}", value=row["input_mean"]),
                    cell(f"{row['output_mean']:.2f} ± {row['output_std']:.2f}", value=row["output_mean"]),
                    cell(f"{row['relative_norm']:.3g}", value=row["relative_norm"]),
                    cell(f"{row['effective_rank']:.1f}", value=row["effective_rank"]),
                    cell(str(row["seeds"])),
                ]
            )
            + "</tr>"
        )
    header = [
        ("configuration", "text"),
        ("method", "text"),
        ("model", "text"),
        ("data", "text"),
        ("input angle (°)", ""),
        ("output angle (°)", ""),
        ("‖ΔW‖/‖W₀‖", ""),
        ("ΔW effective rank", ""),
        ("seeds", ""),
    ]
    return table(header, rows, table_id="subspace")


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def status_pills(frame: pd.DataFrame) -> str:
    counts = frame.drop_duplicates("run_dir")["status"].value_counts() if not frame.empty else pd.Series(dtype=int)
    return "".join(
        f'<span class="pill {s if s in ("completed", "failed") else "other"}">{n} {html.escape(str(s))}</span>'
        for s, n in counts.items()
    )


def write_dashboard(
    path: Path,
    *,
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    pareto_summary: pd.DataFrame,
    subspace: pd.DataFrame,
    colours: dict[str, str],
    figures: dict[str, Path],
    unreadable: list[str],
    ranking: pd.DataFrame,
    claims: pd.DataFrame,
    convergence: pd.DataFrame,
) -> Path:
    """Write report.html: `summary` for the table, `pareto_summary` (its chosen test sets) for the
    plots, `subspace` from `figures.subspace_summary`, `figures` the PNGs to inline by name, `ranking`
    from `ranking.rank_configurations`, `claims` from `claims.check_claims`, `convergence` from
    `convergence.run_convergence`."""
    methods = dict(zip(summary["configuration"], summary["method"])) if not summary.empty else {}
    test_sets = ordered_test_sets(frame)
    runs = frame["run_dir"].nunique() if not frame.empty else 0
    warning = ""
    if unreadable:
        items = "".join(f"<li><code>{html.escape(problem)}</code></li>" for problem in unreadable)
        warning = f'<div class="callout"><b>{len(unreadable)} unreadable file(s)</b>, left out:<ul>{items}</ul></div>'
    subspace_section = ""
    if not subspace.empty:
        subspace_section = f"""<section><h2>Subspace diagnostics</h2>
<p class="note">Mean principal angle between the top-r singular subspaces of the pretrained and the adapted weights
(r = a fixed fraction of each layer's rank), input side (right singular vectors) vs output side (left), averaged over
the adapted layers; mean ± std over seeds. Per layer type: subspace.csv.</p>
{image(figures["subspace"], "principal angles per configuration")}{subspace_table(subspace, colours)}</section>"""
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>asr-peft report</title><style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head>
<body><header><h1>asr-peft · parameter-efficient adaptation under domain shift</h1>
<p>{runs} run record(s) {status_pills(frame)} · generated {generated}</p></header><main>{warning}
<section><h2>The papers' claims</h2>
<p class="note">Each claim of the SSVD papers checked on these runs (claims.csv): reproduced or refuted (its test ran
and found the claim's effect or the opposite), inconclusive (it ran and found neither), or not tested (its fair test
could not run), with the reason. The effect is the first system's minus the reference's, in the unit shown, with its
95% confidence interval from the hierarchical paired bootstrap (see "Statistical procedure"); the runs and seeds behind
each comparison are listed. Hover a p-value for its Monte-Carlo error.</p>
<p class="note">{html.escape(" ".join(statistics_lines(claims)).replace("`", ""))}</p>
{claims_table(claims) if not claims.empty else '<p class="note">No claims to check.</p>'}</section>
<section><h2>Cross-domain summary</h2>
<p class="note">WER (%) per test set, mean ± std over seeds (completed runs); the small number is the change against
the model before adaptation (negative: fewer errors), coloured only where the paired test against the frozen runs
finds a significant difference, so forgetting on the source domain and transfer to the other target domain show side
by side. Bold: the lowest mean WER of the column for that model and data, and every configuration with no significant
difference from it (paired bootstrap; runs without per-utterance decodes are not tested). Hover a cell for the test.
Click a header to sort.</p>
{summary_table(summary, test_sets, colours, ranking)}</section>
<section><h2>Ranking, tested</h2>
<p class="note">Each configuration against the lowest-WER configuration of its test set and against the model before
adaptation (frozen runs), by the paired bootstrap (significance.csv): "better" or "worse" only when the 95% interval
of ΔWER excludes zero, else "{NO_DIFFERENCE}".</p>
<input class="filter" data-table="#ranking" placeholder="Filter (e.g. child, lora, worse)">
{ranking_table(ranking, colours, methods) if not ranking.empty else '<p class="note">No completed runs with a WER yet.</p>'}</section>
<section><h2>WER against trainable parameters</h2>
<p class="note">Trainable parameters as % of the model, log scale. Small translucent points: single seeds; large points
with error bars: {ERROR_BARS} per configuration; dashed: the Pareto frontier through the means (fewer parameters and
lower mean WER dominate; whether two configurations differ is the ranking's and the claims' paired test, not the
plot's); dotted: before adaptation. Hover a point for its configuration; click legend entries to hide methods.</p>
{pareto_plots(pareto_summary, frame, colours)}
<p class="note">Per target domain (pareto.png) and source-domain forgetting: the change of the source WER against the
model before adaptation, against the same axis (forgetting.png).</p>
{image(figures["pareto"], "WER against trainable parameters per target domain")}
{image(figures["forgetting"], "source-domain WER change against trainable parameters")}
<p class="note">Forgetting against adaptation: source WER change against target WER for first-order SSVD rotating
both sides (p = p_out) and the paper's side (side=smaller) alone, across budgets (tradeoff.png); the both_sides_forgetting claim compares
the two curves at the target WERs both cover.</p>
{image(figures["tradeoff"], "source WER change against target WER, both sides and the paper's side")}</section>
<section><h2>Convergence</h2><p class="note">Dev WER against updates, mean over the seeds still training, a line per
configuration in its method's colour; dots: the median update the seeds stopped at.</p>
{image(figures["convergence"], "dev WER against updates")}
{convergence_section(convergence)}</section>
{subspace_section}
<section><h2>Statistical procedure</h2><p class="note">{html.escape(PROCEDURE)}</p></section>
<section><h2>Runs</h2><p class="note">Every record found, failed runs with their error. Click a header to sort.</p>
<input class="filter" data-table="#runs" placeholder="Filter runs (e.g. failed, lora, synth_child)">
{runs_table(frame, test_sets, colours) if not frame.empty else '<p class="note">No runs.</p>'}</section>
</main><script>{SCRIPT}</script></body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
