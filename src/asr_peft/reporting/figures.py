"""Static figures (PNG): WER against trainable parameters (% of the model) with the Pareto frontier per
target domain, source-domain forgetting against the same axis, the forgetting trade-off curves of both-sided
against the paper's (side=smaller) SSVD, dev WER against updates, and the subspace diagnostics (mean principal angle, input
vs output side).

Colours are fixed per method (registry order), so a method looks the same in every figure and
report; configurations of one method are lighter shades of its colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from asr_peft.adapters.registry import METHODS
from asr_peft.reporting.aggregate import SOURCE_TEST_SET, method_order, target_test_set
from asr_peft.reporting.claims import systems, tradeoff_curves
from asr_peft.reporting.pareto import pareto_frontier

PALETTE = [matplotlib.colors.to_hex(rgba) for rgba in plt.get_cmap("tab10")(range(10))]
DPI = 130


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """A fixed colour per method: registry order first, then any other name alphabetically."""
    present = set(methods)
    slots = {m: i for i, m in enumerate(list(METHODS) + sorted(present - set(METHODS)))}
    return {m: PALETTE[slots[m] % len(PALETTE)] for m in present}


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
            shades[configuration] = matplotlib.colors.to_hex(tuple(base + (1 - base) * mix))
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
        placement = (
            {"loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "ncol": min(len(legend), 10)}
            if where == "top"
            else {"loc": "center left", "bbox_to_anchor": (1.0, 0.5), "ncol": 1}
        )
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
    return " · ".join(
        str(part) for part in (model, data, f"test: {test_set}" if test_set is not None else None) if part is not None
    )


def reference_wer(panel: pd.DataFrame) -> float | None:
    """WER before adaptation: the frozen runs' mean, else the runs' recorded baseline."""
    frozen = panel.loc[panel["method"] == "frozen", "wer_mean"]
    if not frozen.empty:
        return float(frozen.mean())
    baseline = panel["baseline_wer"].dropna()
    return float(baseline.mean()) if not baseline.empty else None


def share_percent(rows: pd.DataFrame) -> pd.Series:
    """Trainable parameters as a percentage of the model's parameters."""
    return 100 * rows["trainable"] / rows["total"]


def pareto_points(panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plottable configurations of a summary panel (trainable > 0: log axis), with their `share` (% of
    the model), and those on its Pareto frontier (fewer parameters and lower mean WER dominate)."""
    points = panel[(panel["trainable"] > 0) & (panel["total"] > 0) & panel["wer_mean"].notna()].reset_index(drop=True)
    points = points.assign(share=share_percent(points))
    front = points.iloc[pareto_frontier(points["share"].tolist(), points["wer_mean"].tolist())]
    return points, front


def seed_points(frame: pd.DataFrame, model, data, test_set) -> pd.DataFrame:
    """The completed runs behind a panel, one point per seed, with their `share` (% of the model)."""
    if frame.empty:
        return frame
    rows = frame[
        (frame["status"] == "completed")
        & frame["wer"].notna()
        & (frame["trainable"] > 0)
        & (frame["total"] > 0)
        & (frame["model"] == model)
        & (frame["data"] == data)
        & (frame["test_set"] == test_set)
    ]
    return rows.assign(share=share_percent(rows))


def target_panels(summary: pd.DataFrame, test_sets: list[str] | None = None) -> list[tuple[tuple, pd.DataFrame]]:
    """((model, data, test set), summary rows) per (model, data) on its target domain (`aggregate.target_test_set`;
    every test set but the source one where the data config names none), or on the chosen `test_sets`."""
    panels = []
    for (model, data), rows in summary.groupby(["model", "data"], dropna=False, sort=False):
        available = list(dict.fromkeys(rows["test_set"]))
        if test_sets:
            chosen = [t for t in available if t in test_sets]
        else:
            target = target_test_set(str(data), available)
            chosen = [target] if target else [t for t in available if t != SOURCE_TEST_SET] or available
        panels += [((model, data, t), rows[rows["test_set"] == t]) for t in chosen]
    return panels


SEED_STYLE = {"s": 14, "alpha": 0.35, "linewidths": 0, "zorder": 2}
ERROR_BARS = "mean ± 1 std over seeds"


def _configuration_means(axis, points: pd.DataFrame, y: pd.Series, colours: dict[str, str]) -> None:
    for method in method_order(points["method"]):
        chosen = points["method"] == method
        axis.errorbar(
            points.loc[chosen, "share"],
            y[chosen],
            yerr=100 * points.loc[chosen, "wer_std"],
            fmt="o",
            ms=5,
            capsize=3,
            color=colours[method],
            label=method,
            zorder=3,
        )


def _share_axis(axis, has_points: bool) -> None:
    if has_points:
        axis.set_xscale("log")
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}%"))
    axis.set_xlabel("trainable parameters (% of the model, log scale)")
    axis.grid(alpha=0.3, which="both")


def _legend(figure, axes_legends: dict, methods: Iterable[str], path: Path) -> Path:
    ordered = {m: axes_legends[m] for m in method_order(methods) if m in axes_legends}
    ordered.update({k: v for k, v in axes_legends.items() if k not in ordered})
    return _save(figure, path, ordered)


def short_labels(points: pd.DataFrame) -> pd.Series:
    """Configuration labels without the settings outside the method (`optimizer.lr=…`) that every point of
    that method in the panel shares, e.g. a learning rate tuned per method: still one label per point."""
    tokens = points["configuration"].str.split(" ")
    shared = {
        method: set.intersection(*(set(t[1:]) for t in tokens[points["method"] == method]))
        for method in points["method"].unique()
    }
    return pd.Series(
        [
            " ".join(t[:1] + [part for part in t[1:] if not ("." in part.split("=")[0] and part in shared[m])])
            for t, m in zip(tokens, points["method"])
        ],
        index=points.index,
    )


KEY_LINE_INCHES = 0.125  # a 7-point line of the frontier's key below each panel
LABEL_OFFSETS = [(3, 3), (3, -10), (3, 11), (3, -18), (3, 19), (3, -26), (3, 27)]  # points from the marker


def _label_points(axis, xs: Iterable[float], ys: Iterable[float], labels: Iterable[str]) -> None:
    """Label each point beside it (to its left where the label would leave the axes), trying the next
    offset in `LABEL_OFFSETS` while a label would cover one already placed. Call it once the figure's
    layout is final: the overlaps are measured on the drawn figure."""
    axis.autoscale_view()  # the limits as drawn: an annotation outside them has no extent to compare
    renderer = axis.figure.canvas.get_renderer()
    frame = axis.get_window_extent(renderer)
    placed: list[Any] = []
    for x, y, label in zip(xs, ys, labels):
        for (dx, dy), side in ((offset, side) for offset in LABEL_OFFSETS for side in ("left", "right")):
            note = axis.annotate(
                label,
                (x, y),
                fontsize=7,
                xytext=(dx if side == "left" else -dx, dy),
                textcoords="offset points",
                ha=side,
                color="#222",
                fontweight="bold",
            )
            box = note.get_window_extent(renderer)
            if frame.x0 <= box.x0 and box.x1 <= frame.x1 and not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:
            axis.add_artist(note)  # every place is taken: the last one, overlapping, rather than no label
        placed.append(box)


def pareto_figure(
    summary: pd.DataFrame, frame: pd.DataFrame, path: Path, colours: dict[str, str], test_sets: list[str] | None = None
) -> Path:
    """One panel per target domain (`target_panels`): WER against trainable parameters as % of the model
    (log x); each seed a small translucent point, each configuration its mean ± 1 std over seeds, the
    Pareto frontier drawn through the means (dashed), the model before adaptation dotted."""
    panels = target_panels(summary, test_sets)
    if not panels:
        return _empty(path, "no completed runs with a WER")
    fronts = [pareto_points(panel) for _, panel in panels]
    figure, axes = _grid(len(panels), 5.6, 4.2 + KEY_LINE_INCHES * (1 + max(len(front) for _, front in fronts)))
    legend: dict = {}
    numbering = []  # (axis, x, y, numbers) per panel, placed once the layout is final
    for axis, ((model, data, test_set), panel), (points, front) in zip(axes, panels, fronts):
        seeds = seed_points(frame, model, data, test_set)
        axis.scatter(seeds["share"], 100 * seeds["wer"], c=[colours[m] for m in seeds["method"]], **SEED_STYLE)
        _configuration_means(axis, points, 100 * points["wer_mean"], colours)
        axis.step(
            front["share"],
            100 * front["wer_mean"],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            label="Pareto frontier (through the means)",
            zorder=2,
        )
        reference = reference_wer(panel)
        if reference is not None:
            axis.axhline(100 * reference, color="#888", linestyle=":", linewidth=1, label="before adaptation")
        _share_axis(axis, not points.empty)
        numbers = [str(i) for i in range(1, len(front) + 1)]
        numbering.append((axis, front["share"], 100 * front["wer_mean"], numbers))
        if numbers:  # the front's configurations by number, below the axis: readable however close they lie
            key = "\n".join(f"{n}  {label}" for n, label in zip(numbers, short_labels(points).loc[front.index]))
            axis.annotate(
                "on the frontier, fewest parameters first:\n" + key,
                (0, 0),
                xytext=(0, -4),
                xycoords=("axes fraction", axis.xaxis.label),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color="#333",
            )
        axis.set_title(panel_title(model, data, test_set) + f"\n{ERROR_BARS}; dots: single seeds", fontsize=9.5)
        axis.set_ylabel("WER (%)")
        handles, names = axis.get_legend_handles_labels()
        legend.update(zip(names, handles))
    figure.tight_layout()
    for panel_numbers in numbering:
        _label_points(*panel_numbers)
    return _legend(figure, legend, summary["method"], path)


def forgetting_figure(summary: pd.DataFrame, frame: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path:
    """One panel per (model, data) adapted away from the source domain: the change of the source-domain
    WER against the model before adaptation (points; positive: forgotten) against trainable parameters
    as % of the model (log x); seeds as translucent points, configurations as mean ± 1 std over seeds."""
    source = summary[summary["test_set"] == SOURCE_TEST_SET]
    panels = [
        (key, panel)
        for key, panel in source.groupby(["model", "data"], dropna=False, sort=False)
        if SOURCE_TEST_SET not in str(key[1]) and reference_wer(panel) is not None
    ]
    if not panels:
        return _empty(path, "no source-domain test set with a WER before adaptation")
    figure, axes = _grid(len(panels), 5.6, 4.2)
    legend: dict = {}
    for axis, ((model, data), panel) in zip(axes, panels):
        reference = reference_wer(panel)
        points, _ = pareto_points(panel)
        seeds = seed_points(frame, model, data, SOURCE_TEST_SET)
        axis.scatter(seeds["share"], 100 * (seeds["wer"] - reference), c=[colours[m] for m in seeds["method"]], **SEED_STYLE)
        _configuration_means(axis, points, 100 * (points["wer_mean"] - reference), colours)
        axis.axhline(0, color="#888", linestyle=":", linewidth=1, label="before adaptation")
        _share_axis(axis, not points.empty)
        axis.set_title(
            panel_title(model, data, SOURCE_TEST_SET) + f" · forgetting\n{ERROR_BARS}; dots: single seeds", fontsize=9.5
        )
        axis.set_ylabel("source WER change (points; + is forgetting)")
        handles, labels = axis.get_legend_handles_labels()
        legend.update(zip(labels, handles))
    return _legend(figure, legend, summary["method"], path)


def convergence_figure(history: pd.DataFrame, stops: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path:
    """Dev WER against updates, a panel per (model, data), a line per configuration in its method's colour
    (lighter for each further configuration of the method; the legend names the methods): the mean over the
    seeds that validated at that update, drawn while at least half of them still ran (early stopping ends
    seeds at different updates), a dot at the median update the seeds stopped at (`stops`:
    `convergence.convergence_summary`)."""
    if history.empty:
        return _empty(path, "no validation history in the completed runs")
    panels = list(history.groupby(["model", "data"], dropna=False, sort=False))
    figure, axes = _grid(len(panels), 5.6, 3.8, columns=2)
    shades = configuration_colours(zip(history["method"], history["configuration"]), colours)
    stopped = {(r.model, r.data, r.configuration): r.stopped_median for r in stops.itertuples()} if not stops.empty else {}
    legend: dict = {}
    for axis, ((model, data), panel) in zip(axes, panels):
        for (method, configuration), lines in panel.groupby(["method", "configuration"], sort=False):  # method, then budget
            seeds = lines["seed"].nunique()
            by_step = lines.groupby("step")["val_wer"].agg(["mean", "count"])
            shown = by_step[by_step["count"] >= seeds / 2]
            (line,) = axis.plot(shown.index, 100 * shown["mean"], marker=".", ms=3, lw=1.2, color=shades[configuration])
            legend.setdefault(method, line)
            stop = stopped.get((model, data, configuration))
            if stop is not None and not pd.isna(stop) and not shown.empty:
                at = shown.index[np.abs(shown.index - stop).argmin()]
                axis.plot([at], [100 * shown.loc[at, "mean"]], "o", ms=4, color=shades[configuration], zorder=3)
        axis.set_title(panel_title(model, data) + "\ndots: median update the seeds stopped at", fontsize=9.5)
        axis.set_xlabel("updates")
        axis.set_ylabel("dev WER (%)")
        axis.grid(alpha=0.3)
    return _legend(figure, legend, history["method"], path)


def tradeoff_figure(frame: pd.DataFrame, summary: pd.DataFrame, path: Path) -> Path:
    """Forgetting against adaptation for the two SSVD trade-off curves of the `both_sides_forgetting` claim, a
    panel per (model, data) with a source test set: each configuration's target WER (x) and source WER change
    against the model before adaptation (y, points; + is forgetting), mean ± 1 std over seeds, joined in
    order of target WER; both sides (p = p_out) against the paper's side (side=smaller) alone."""
    found = systems(frame)
    panels = []
    for (model, data), rows in summary.groupby(["model", "data"], dropna=False, sort=False):
        target = target_test_set(str(data), list(dict.fromkeys(rows["test_set"])))
        source = rows[rows["test_set"] == SOURCE_TEST_SET]
        reference = reference_wer(source) if not source.empty else None
        domain = [s for s in found if (s.model, s.data) == (model, data)]
        both, single = tradeoff_curves(domain)
        if target and target != SOURCE_TEST_SET and reference is not None and (both or single):
            panels.append(((model, data, target), reference, both, single))
    if not panels:
        return _empty(path, "no SSVD side=both or side=smaller runs with a source test set")
    figure, axes = _grid(len(panels), 5.6, 4.2, columns=2)
    legend: dict = {}
    for axis, ((model, data, target), reference, both, single) in zip(axes, panels):
        for name, side, colour, marker in (
            ("both sides (p = p_out)", both, "#c2410c", "s"),
            ("smaller side (the paper's)", single, "#1d4ed8", "o"),
        ):
            if not side:
                continue
            x = [100 * s.wer(target) for s in side]
            y = [100 * (s.wer(SOURCE_TEST_SET) - reference) for s in side]
            x_err = [100 * s.runs(target)["wer"].std(ddof=1) if len(s.runs(target)) > 1 else 0 for s in side]
            y_err = [100 * s.runs(SOURCE_TEST_SET)["wer"].std(ddof=1) if len(s.runs(SOURCE_TEST_SET)) > 1 else 0 for s in side]
            order = np.argsort(x)
            legend[name] = axis.errorbar(
                np.array(x)[order],
                np.array(y)[order],
                xerr=np.array(x_err)[order],
                yerr=np.array(y_err)[order],
                fmt=f"{marker}-",
                ms=5,
                capsize=2,
                lw=1.2,
                color=colour,
            )
            for s, xi, yi in zip(side, x, y):
                axis.annotate(
                    f"p={s.setting['p']:g}", (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points", color="#333"
                )
        axis.set_title(panel_title(model, data, target) + f" · forgetting on {SOURCE_TEST_SET}\n{ERROR_BARS}", fontsize=9.5)
        axis.set_xlabel(f"target WER on {target} (%)")
        axis.set_ylabel("source WER change (points; + is forgetting)")
        axis.grid(alpha=0.3)
    return _save(figure, path, legend)


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
        axis.bar(
            x + 0.2,
            panel["output_mean"],
            0.4,
            yerr=panel["output_std"],
            color=bar_colours,
            alpha=0.45,
            hatch="///",
            edgecolor="white",
            capsize=2,
        )
        axis.set_xticks(x, panel["configuration"], rotation=35, ha="right", fontsize=7.5)
        axis.set_ylabel("mean principal angle (°)")
        axis.set_title(panel_title(model, data) + " · top-r singular subspaces vs pretrained", fontsize=10)
        axis.grid(alpha=0.3, axis="y")
        axis.legend(
            handles=[
                Patch(color="#777", label="input side (right singular vectors)"),
                Patch(facecolor="#777", alpha=0.45, hatch="///", edgecolor="white", label="output side (left singular vectors)"),
            ],
            fontsize=7,
        )
    return _save(figure, path)
