"""Static figures (PNG): WER against trainable parameters with the Pareto frontier, validation
convergence, and the subspace diagnostics (mean principal angle, input vs output side).

Colours are fixed per method (registry order), so a method looks the same in every figure and
report; configurations of one method are lighter shades of its colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from asr_peft.adapters.registry import METHODS
from asr_peft.reporting.aggregate import method_order
from asr_peft.reporting.pareto import pareto_frontier

PALETTE = plt.get_cmap("tab10").colors
DPI = 130


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """A fixed colour per method: registry order first, then any other name alphabetically."""
    present = set(methods)
    slots = {m: i for i, m in enumerate(list(METHODS) + sorted(present - set(METHODS)))}
    return {m: matplotlib.colors.to_hex(PALETTE[slots[m] % len(PALETTE)]) for m in present}


def configuration_colours(pairs: Iterable[tuple[str, str]], colours: dict[str, str]) -> dict[str, str]:
    """(method, configuration) -> its method's colour, lightened for each further configuration."""
    by_method: dict[str, list[str]] = {}
    for method, configuration in dict.fromkeys(pairs):
        by_method.setdefault(method, []).append(configuration)
    shades = {}
    for method, configurations in by_method.items():
        base = np.array(matplotlib.colors.to_rgb(colours[method]))
        for i, configuration in enumerate(configurations):
            mix = 0.55 * i / max(1, len(configurations) - 1)
            shades[configuration] = matplotlib.colors.to_hex(base + (1 - base) * mix)
    return shades


def _grid(count: int, width: float, height: float, columns: int = 3):
    columns = min(columns, max(1, count))
    rows = max(1, -(-count // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    return figure, list(axes.flat)


def _save(figure, path: Path, legend: dict | None = None, *, where: str = "top") -> Path:
    """Save; `legend` (label -> handle) becomes one legend for every panel, above them or to their right."""
    figure.tight_layout()
    if legend:
        placement = ({"loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "ncol": min(len(legend), 10)} if where == "top"
                     else {"loc": "center left", "bbox_to_anchor": (1.0, 0.5), "ncol": 1})
        figure.legend(legend.values(), legend.keys(), fontsize=8.5, frameon=False, **placement)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight" takes the outside legend in
    plt.close(figure)
    return path


def _empty(path: Path, message: str) -> Path:
    figure, axis = plt.subplots(figsize=(6, 2.2))
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center", color="#666")
    return _save(figure, path)


def panel_title(model, data, test_set=None) -> str:
    return " · ".join(str(part) for part in (model, data, f"test: {test_set}" if test_set is not None else None) if part is not None)


def reference_wer(panel: pd.DataFrame) -> float | None:
    """WER before adaptation: the frozen runs' mean, else the runs' recorded baseline."""
    frozen = panel.loc[panel["method"] == "frozen", "wer_mean"]
    if not frozen.empty:
        return float(frozen.mean())
    baseline = panel["baseline_wer"].dropna()
    return float(baseline.mean()) if not baseline.empty else None


def pareto_points(panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plottable points of a panel (trainable > 0: log axis) and those on its Pareto frontier."""
    points = panel[(panel["trainable"] > 0) & panel["wer_mean"].notna()].reset_index(drop=True)
    front = points.iloc[pareto_frontier(points["trainable"].tolist(), points["wer_mean"].tolist())]
    return points, front


def pareto_figure(summary: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path:
    """One panel per (model, data, test set): mean ± std WER over seeds, log x, the frontier dashed."""
    panels = list(summary.groupby(["model", "data", "test_set"], dropna=False, sort=False))
    if not panels:
        return _empty(path, "no completed runs with a WER")
    figure, axes = _grid(len(panels), 5.6, 4.2)
    legend: dict = {}
    for axis, ((model, data, test_set), panel) in zip(axes, panels):
        points, front = pareto_points(panel)
        for method in method_order(points["method"]):
            chosen = points[points["method"] == method]
            axis.errorbar(chosen["trainable"], 100 * chosen["wer_mean"], yerr=100 * chosen["wer_std"], fmt="o", ms=5,
                          capsize=3, color=colours[method], label=method, zorder=3)
        axis.step(front["trainable"], 100 * front["wer_mean"], where="post", color="black", linestyle="--",
                  linewidth=1, label="Pareto frontier", zorder=2)
        for _, row in front.iterrows():
            axis.annotate(row["configuration"], (row["trainable"], 100 * row["wer_mean"]), fontsize=6.5,
                          xytext=(4, 4), textcoords="offset points", color="#333")
        reference = reference_wer(panel)
        if reference is not None:
            axis.axhline(100 * reference, color="#888", linestyle=":", linewidth=1, label="before adaptation")
        if not points.empty:
            axis.set_xscale("log")
        axis.set_title(panel_title(model, data, test_set), fontsize=10)
        axis.set_xlabel("trainable parameters")
        axis.set_ylabel("WER (%)")
        axis.grid(alpha=0.3, which="both")
        handles, labels = axis.get_legend_handles_labels()
        legend.update(zip(labels, handles))
    ordered = {m: legend[m] for m in method_order(summary["method"]) if m in legend}
    ordered.update({k: v for k, v in legend.items() if k not in ordered})
    return _save(figure, path, ordered)


def convergence_figure(history: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path:
    """Validation WER against step, one line per configuration (mean over seeds), a panel per (model, data)."""
    if history.empty:
        return _empty(path, "no validation history in the completed runs")
    panels = list(history.groupby(["model", "data"], dropna=False, sort=False))
    figure, axes = _grid(len(panels), 5.6, 3.8, columns=2)
    shades = configuration_colours(zip(history["method"], history["configuration"]), colours)
    legend: dict = {}
    for axis, ((model, data), panel) in zip(axes, panels):
        for configuration, lines in panel.groupby("configuration", sort=False):  # table order: method, then budget
            mean = lines.groupby("step")["val_wer"].mean()
            legend[configuration], = axis.plot(mean.index, 100 * mean.values, marker=".", color=shades[configuration])
        axis.set_title(panel_title(model, data), fontsize=10)
        axis.set_xlabel("training step")
        axis.set_ylabel("validation WER (%)")
        axis.grid(alpha=0.3)
    return _save(figure, path, legend, where="right")


def subspace_figure(summary: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path:
    """Mean principal angle of the top-r subspaces, input side vs output side, per configuration
    (`aggregate.subspace_summary`), a panel per (model, data)."""
    if summary.empty:
        return _empty(path, "no subspace.json in the completed runs")
    panels = list(summary.groupby(["model", "data"], dropna=False, sort=False))
    figure, axes = _grid(len(panels), max(5.0, 0.55 * summary["configuration"].nunique() + 2), 4.2, columns=1)
    for axis, ((model, data), panel) in zip(axes, panels):
        x = np.arange(len(panel))
        bar_colours = [colours[m] for m in panel["method"]]
        axis.bar(x - 0.2, panel["input_mean"], 0.4, yerr=panel["input_std"], color=bar_colours, capsize=2)
        axis.bar(x + 0.2, panel["output_mean"], 0.4, yerr=panel["output_std"], color=bar_colours, alpha=0.45,
                 hatch="///", edgecolor="white", capsize=2)
        axis.set_xticks(x, panel["configuration"], rotation=35, ha="right", fontsize=7.5)
        axis.set_ylabel("mean principal angle (°)")
        axis.set_title(panel_title(model, data) + " · top-r singular subspaces vs pretrained", fontsize=10)
        axis.grid(alpha=0.3, axis="y")
        axis.legend(handles=[Patch(color="#777", label="input side (right singular vectors)"),
                             Patch(facecolor="#777", alpha=0.45, hatch="///", edgecolor="white",
                                   label="output side (left singular vectors)")], fontsize=7)
    return _save(figure, path)
