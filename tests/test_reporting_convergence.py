"""Convergence in the report: updates to 90% of the dev gain by hand, where runs stopped and how many hit the
update cap, the dev-WER-vs-updates figure per method, and the second decode's column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asr_peft.reporting import figures
from asr_peft.reporting.aggregate import collect, convergence_frame, summarise, to_frame
from asr_peft.reporting.convergence import cap_line, convergence_summary, run_convergence, updates_to_gain
from asr_peft.reporting.report import build_report
from test_reporting_claims import SSVD, write_run


def test_updates_to_90_percent_of_the_gain_by_hand():
    # 0.60 before adaptation, best 0.40: gain 0.20, 90% of it reached at dev WER 0.42.
    assert updates_to_gain([{"step": 0, "val_wer": 0.6}, {"step": 25, "val_wer": 0.5}, {"step": 50, "val_wer": 0.42},
                            {"step": 75, "val_wer": 0.4}]) == pytest.approx(50)  # fmt: skip
    # Between validations, linearly: 0.5 at 25, 0.4 at 50; 0.42 lies 80% of the way: 25 + 0.8 · 25 = 45.
    assert updates_to_gain(
        [{"step": 25, "val_wer": 0.5}, {"step": 0, "val_wer": 0.6}, {"step": 50, "val_wer": 0.4}]
    ) == pytest.approx(45)
    # The best point need not be the last: 0.60 → 0.30 (gain 0.30, goal 0.33) → 0.35: 0.6 to 0.3 over 0..40, goal at 36.
    assert updates_to_gain(
        [{"step": 0, "val_wer": 0.6}, {"step": 40, "val_wer": 0.3}, {"step": 80, "val_wer": 0.35}]
    ) == pytest.approx(36)
    assert updates_to_gain([{"step": 25, "val_wer": 0.5}, {"step": 50, "val_wer": 0.4}]) is None  # no step 0
    assert updates_to_gain([{"step": 0, "val_wer": 0.4}, {"step": 50, "val_wer": 0.5}]) is None  # no gain
    assert updates_to_gain(None) is None and updates_to_gain([{"step": "x"}]) is None


def test_where_runs_stopped_and_how_many_hit_the_cap(tmp_path):
    errors = {"child": [2] * 4}
    history = [(0, 0.6), (25, 0.5), (50, 0.42), (75, 0.4)]
    for seed, stop in enumerate((75, 100, 60)):  # early stopping at 75 and 60, the cap of 100 between
        write_run(
            tmp_path, "ssvd", method=SSVD, p=0.4, trainable=50, seed=seed, errors=errors, history=history, steps=(stop, 100)
        )
    write_run(tmp_path, "lora", method={"name": "lora", "r": 4}, p=None, trainable=60, seed=0, errors=errors, history=history)
    write_run(tmp_path, "frozen", method={"name": "frozen"}, p=None, trainable=0, seed=0, errors=errors, steps=(0, 100))
    runs = collect([tmp_path]).runs
    frame = to_frame(runs)
    convergence = run_convergence(runs, frame)
    assert cap_line(convergence) == "2 of 4 runs hit the update cap (trainer.max_steps)"  # frozen runs take no update
    stops = convergence_summary(convergence).set_index("method")
    assert stops.loc["ssvd", "stopped_median"] == 75 and stops.loc["ssvd", "at_cap"] == 1 and stops.loc["ssvd", "seeds"] == 3
    assert (
        stops.loc["ssvd", "to_gain_median"] == pytest.approx(50)
        and stops.loc["lora", "at_cap"] == 1
        and "frozen" not in stops.index
    )

    build_report([tmp_path], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "2 of 4 runs hit the update cap (trainer.max_steps)." in report
    assert "| owsm_tiny · synth_child | ssvd p=0.4 | 3 | 75 | 100 | 1 of 3 | 50 |" in report
    assert pd.read_csv(tmp_path / "report" / "convergence.csv")["at_cap"].sum() == 2
    assert "2 of 4 runs hit the update cap" in (tmp_path / "report" / "report.html").read_text()


def test_the_convergence_figure_has_a_panel_per_model_and_data_and_a_line_colour_per_method(tmp_path, monkeypatch):
    for model in ("small", "large"):
        for name, method, p in (("ssvd1", SSVD, 0.1), ("ssvd4", SSVD, 0.4), ("lora", {"name": "lora", "r": 4}, None)):
            for seed in (0, 1):
                write_run(tmp_path, name, method=method, p=p, trainable=50 + 10 * (p or 1), seed=seed, model=model,
                          errors={"child": [2] * 4}, history=[(0, 0.6), (25, 0.5), (50, 0.4 + 0.01 * seed)],
                          steps=(50, 100))  # fmt: skip
    runs = collect([tmp_path]).runs
    frame = to_frame(runs)
    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)
    colours = figures.method_colours(["ssvd", "lora"])
    stops = convergence_summary(run_convergence(runs, frame))
    figures.convergence_figure(convergence_frame(runs, frame), stops, tmp_path / "convergence.png", colours)
    panels = [axis for axis in closed[0].axes if axis.has_data()]
    assert len(panels) == 2 and {axis.get_title().split(" · ")[0] for axis in panels} == {"small", "large"}
    (legend,) = closed[0].legends
    assert [text.get_text() for text in legend.get_texts()] == ["ssvd", "lora"]  # one entry per method
    curves = [line for line in panels[0].lines if len(line.get_xdata()) > 1]
    assert len(curves) == 3 and list(curves[0].get_xdata()) == [0, 25, 50]
    assert list(curves[0].get_ydata()) == pytest.approx([60, 50, 40.5])  # mean over the two seeds, in %


def test_a_second_decode_gets_its_own_column_and_none_without_one(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        run_dir = write_run(root, "ssvd", method=SSVD, p=0.4, trainable=50, seed=seed, errors={"child": [2] * 4})
        record = (run_dir / "results.json").read_text()
        secondary = f'"secondary": {{"ctc_greedy": {{"wer": {0.3 + 0.1 * seed}, "cer": 0.1}}}}, '
        (run_dir / "results.json").write_text(record.replace('"child": {', '"child": {' + secondary, 1))
    frame = to_frame(collect([root]).runs)
    summary = summarise(frame)
    assert summary["secondary.ctc_greedy.wer_mean"].tolist() == pytest.approx([0.35])
    build_report([root], tmp_path / "report")
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    assert (
        "| front | configuration | trainable | % of model | WER % (mean ± std) | WER % ctc_greedy | seeds | source WER change |"
        in lines
    )
    assert any(line.startswith("| 1 | ssvd p=0.4 | 50 |") and "| 35.0 ± 7.1 |" in line for line in lines)  # 0.3, 0.4
    assert "WER child (ctc_greedy)" in (tmp_path / "report" / "report.html").read_text()

    plain = tmp_path / "plain"
    write_run(plain, "ssvd", method=SSVD, p=0.4, trainable=50, seed=0, errors={"child": [2] * 4})
    build_report([plain], tmp_path / "plain_report")
    assert "ctc_greedy" not in (tmp_path / "plain_report" / "report.md").read_text()
    assert not any(c.startswith("secondary.") for c in summarise(to_frame(collect([plain]).runs)).columns)


def test_the_trade_off_figure_draws_both_curves_at_their_mean_points(tmp_path, monkeypatch):
    for side, points in {"smaller": [(0.2, 6, 1), (0.4, 2, 5)], "both": [(0.14, 5, 1), (0.28, 3, 1)]}.items():
        for p, target, source in points:
            method = {**SSVD, "side": side, **({"p_out": p} if side == "both" else {})}
            write_run(tmp_path, f"{side}_{p}", method=method, p=p, trainable=int(p * 1000), seed=0,
                      errors={"source": np.full(4, source), "child": np.full(4, target)}, baseline={"source": 0.05})  # fmt: skip
    frame = to_frame(collect([tmp_path]).runs)
    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)
    figures.tradeoff_figure(frame, summarise(frame), tmp_path / "tradeoff.png")
    (axis,) = [a for a in closed[0].axes if a.has_data()]
    lines = {
        line.get_color(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.lines if len(line.get_xdata()) > 1
    }
    # x: target WER in %, by target WER; y: source WER change against 5% before adaptation, in points
    assert sorted(lines.values()) == [([20.0, 60.0], pytest.approx([45.0, 5.0])), ([30.0, 50.0], pytest.approx([5.0, 5.0]))]
