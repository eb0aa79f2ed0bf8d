"""report.html: a self-contained comparison dashboard (plotly's JavaScript inlined; no network at view time).

A sortable table of every run (one WER column per test set, failed runs with their error) and an
interactive WER-vs-trainable-parameters plot per (model, data, test set) with the Pareto frontier.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from asr_peft.reporting.figures import method_colours
from asr_peft.reporting.pareto import pareto_frontier

SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, column) => th.addEventListener('click', () => {
  const table = th.closest('table'), body = table.tBodies[0];
  const ascending = th.dataset.order !== 'asc';
  table.querySelectorAll('th').forEach(h => delete h.dataset.order);
  th.dataset.order = ascending ? 'asc' : 'desc';
  const key = row => { const text = row.cells[column].dataset.value ?? row.cells[column].textContent;
                       const number = parseFloat(text); return isNaN(number) ? text : number; };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * (ascending ? 1 : -1); }).forEach(row => body.appendChild(row));
}));
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f6; cursor: pointer; position: sticky; top: 0; }
th[data-order=asc]::after { content: ' ▲'; } th[data-order=desc]::after { content: ' ▼'; }
td.text { text-align: left; } tr.failed td { color: #a11; background: #fff3f3; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } .note { color: #666; font-size: 0.85rem; }
"""


def run_table(frame: pd.DataFrame) -> str:
    """One row per run; WER per test set as columns."""
    keys = ["run_dir"]
    info = frame.drop_duplicates("run_dir").set_index("run_dir")
    pivot = frame.pivot_table(index=keys, columns="test_set", values="wer", aggfunc="first") if frame["test_set"].notna().any() else pd.DataFrame(index=info.index)
    test_sets = list(pivot.columns)
    header = ["configuration", "model", "data", "seed", "trainable", "status"] + [f"WER {t}" for t in test_sets] + ["run"]
    rows = []
    for run_dir, row in info.iterrows():
        cells = [f'<td class="text">{html.escape(str(row["configuration"]))}</td>',
                 f'<td class="text">{html.escape(str(row["model"]))}</td>',
                 f'<td class="text">{html.escape(str(row["data"]))}</td>', f'<td>{row["seed"]}</td>',
                 f'<td data-value="{row["trainable"] or 0}">{int(row["trainable"]):,}</td>' if pd.notna(row["trainable"]) else "<td></td>",
                 f'<td class="text" title="{html.escape(str(row["error"] or ""))}">{row["status"]}'
                 + (f': {html.escape(str(row["error"])[:80])}' if row["status"] != "completed" and row["error"] else "") + "</td>"]
        for test_set in test_sets:
            value = pivot.loc[run_dir, test_set] if run_dir in pivot.index else None
            cells.append(f'<td data-value="{value}">{100 * value:.2f}</td>' if pd.notna(value) else '<td data-value="1e9"></td>')
        cells.append(f'<td class="text">{html.escape(Path(str(run_dir)).name)}</td>')
        css = ' class="failed"' if row["status"] != "completed" else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def pareto_plots(summary: pd.DataFrame) -> str:
    colours = method_colours(summary["method"]) if not summary.empty else {}
    parts = []
    for (model, data, test_set), panel in summary.groupby(["model", "data", "test_set"]):
        panel = panel[panel["trainable"] > 0]
        figure = go.Figure()
        for method, points in panel.groupby("method"):
            figure.add_trace(go.Scatter(
                x=points["trainable"], y=100 * points["wer_mean"], mode="markers", name=method,
                marker={"color": colours[method], "size": 10},
                error_y={"type": "data", "array": 100 * points["wer_std"], "visible": True},
                text=points["configuration"] + " (" + points["seeds"].astype(str) + " seeds)",
                hovertemplate="%{text}<br>%{x:,} parameters<br>WER %{y:.2f}%<extra></extra>"))
        front = panel.iloc[pareto_frontier(panel["trainable"].tolist(), panel["wer_mean"].tolist())]
        figure.add_trace(go.Scatter(x=front["trainable"], y=100 * front["wer_mean"], mode="lines", name="Pareto frontier",
                                    line={"color": "black", "dash": "dash", "shape": "hv"}, hoverinfo="skip"))
        figure.update_layout(title=f"{model} · {data} · test={test_set}", xaxis={"type": "log", "title": "trainable parameters"},
                             yaxis={"title": "WER (%)"}, width=560, height=420, margin={"l": 50, "r": 10, "t": 40, "b": 40})
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False))
    return f'<div class="plots">{"".join(parts)}</div>' if parts else "<p>No completed runs yet.</p>"


def write_dashboard(frame: pd.DataFrame, summary: pd.DataFrame, path: Path, *, unreadable: list[str]) -> Path:
    failed = frame.drop_duplicates("run_dir")["status"].ne("completed").sum() if not frame.empty else 0
    notes = f"{frame['run_dir'].nunique() if not frame.empty else 0} runs, {failed} not completed"
    if unreadable:
        notes += f"; {len(unreadable)} unreadable record(s): " + html.escape("; ".join(unreadable[:5]))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>asr-peft report</title>
<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head>
<body><h1>asr-peft: WER against trainable parameters</h1><p class="note">{notes}</p>
<h2>Pareto plots (mean ± std over seeds)</h2>{pareto_plots(summary)}
<h2>Runs (click a column to sort)</h2>{run_table(frame) if not frame.empty else "<p>No runs.</p>"}
<script>{SORT_SCRIPT}</script></body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
