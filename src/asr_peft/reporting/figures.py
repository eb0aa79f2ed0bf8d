"""Static figures: WER vs trainable parameters with the Pareto frontier, and validation convergence."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd

from asr_peft.reporting.pareto import pareto_frontier


def method_colours(methods) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {m: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, m in enumerate(sorted(set(methods)))}


def pareto_figure(summary: pd.DataFrame, path: Path) -> Path:
    """One panel per (model, data, test set): mean ± std WER over seeds, log x, frontier dashed."""
    panels = list(summary.groupby(["model", "data", "test_set"]))
    columns = min(3, max(1, len(panels)))
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.0 * rows), squeeze=False)
    colours = method_colours(summary["method"]) if not summary.empty else {}
    for axis, ((model, data, test_set), panel) in zip(axes.flat, panels):
        panel = panel[panel["trainable"] > 0]
        for method, points in panel.groupby("method"):
            axis.errorbar(points["trainable"], 100 * points["wer_mean"], yerr=100 * points["wer_std"], fmt="o",
                          capsize=3, color=colours[method], label=method)
        front = pareto_frontier(panel["trainable"].tolist(), panel["wer_mean"].tolist())
        frontier = panel.iloc[front]
        axis.step(frontier["trainable"], 100 * frontier["wer_mean"], where="post", color="black", linestyle="--",
                  linewidth=1, label="Pareto frontier")
        axis.set_xscale("log")
        axis.set_title(f"{model} · {data} · test={test_set}", fontsize=10)
        axis.set_xlabel("trainable parameters")
        axis.set_ylabel("WER (%)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no completed runs", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def convergence_figure(records: list[dict], path: Path) -> Path:
    """Validation WER against training step, one line per run, coloured by method."""
    figure, axis = plt.subplots(figsize=(7, 4.2))
    colours = method_colours((r.get("method") or {}).get("name", "?") for r in records)
    seen = set()
    for record in records:
        history = record.get("validation_history") or []
        if not history:
            continue
        method = (record.get("method") or {}).get("name", "?")
        axis.plot([h["step"] for h in history], [100 * h["val_wer"] for h in history], marker=".", alpha=0.8,
                  color=colours[method], label=None if method in seen else method)
        seen.add(method)
    axis.set_xlabel("training step")
    axis.set_ylabel("validation WER (%)")
    axis.grid(alpha=0.3)
    if seen:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
