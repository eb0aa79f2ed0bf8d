"""What the report concludes, end to end on runs with hand-made per-utterance errors: claims.csv and the
claims table with verdicts computed by hand, no "better" where the interval holds zero, and the Pareto
plot's axis (trainable parameters as % of the model, log scale)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asr_peft.reporting import figures
from asr_peft.reporting.aggregate import collect, summarise, to_frame
from asr_peft.reporting.report import build_report
from test_reporting_claims import write_run

TOTAL = 4_000_000  # write_run's model size
SSVD = {"name": "ssvd", "rotation": "approx", "side": "smaller"}


def _rows(page: str, table_id: str) -> list[str]:
    body = page[page.index(f'id="{table_id}"') :]
    return body[: body.index("</table>")].split("<tr")[2:]  # the header row aside


def _write_lora_and_ssvd(root: Path) -> None:
    """LoRA r=4 (40,000 trainable) and SSVD p=0.4 (4,000) of a 4,000,000-parameter model, seeds 0 and 1, four
    utterances of 10 words: child 3 + seed (LoRA) and 4 + seed (SSVD) errors per utterance, so WER 30/40% and
    40/50%; source 1 and 2 errors, 10% and 20%; before adaptation 5% (source) and 60% (child)."""
    for seed, shift in ((0, 0), (1, 1)):
        write_run(
            root,
            "lora",
            method={"name": "lora", "r": 4},
            p=None,
            trainable=40_000,
            seed=seed,
            errors={"child": [3 + shift] * 4, "source": [1] * 4},
            baseline={"source": 0.05, "child": 0.6},
        )
        write_run(
            root,
            "ssvd",
            method=SSVD,
            p=0.4,
            trainable=4_000,
            seed=seed,
            errors={"child": [4 + shift] * 4, "source": [2] * 4},
            baseline={"source": 0.05, "child": 0.6},
        )


def test_claims_csv_and_table_with_verdicts_computed_by_hand(tmp_path):
    # Five utterances of 10 words, the same errors on every seed: every bootstrap replicate draws the same
    # per-utterance difference, so each ΔWER and its interval are exact: (errors_A - errors_B) / 10 words.
    approx, free, cayley, frozen = [1, 0, 2, 1, 1], [3, 2, 4, 3, 3], [4, 3, 5, 4, 4], [6, 5, 7, 6, 6]
    for seed in (0, 1):
        write_run(tmp_path, "frozen", method={"name": "frozen"}, p=None, trainable=0, seed=seed, errors={"child": frozen})
        write_run(tmp_path, "approx", method=SSVD, p=0.4, trainable=50_000, seed=seed, errors={"child": approx})
        write_run(
            tmp_path, "free", method={**SSVD, "rotation": "free"}, p=0.28, trainable=52_000, seed=seed, errors={"child": free}
        )
        write_run(
            tmp_path,
            "cayley",
            method={**SSVD, "rotation": "cayley"},
            p=0.4,
            trainable=50_000,
            seed=seed,
            errors={"child": cayley},
        )
    build_report([tmp_path], tmp_path / "report")
    claims = pd.read_csv(tmp_path / "report" / "claims.csv").set_index("claim")

    # SSVD approx (50k) against the best configuration with no more parameters (frozen, 0): -5 errors per utterance.
    front = claims.loc["front"]
    assert front["verdict"] == "reproduced" and front["system"] == "ssvd p=0.4 rotation=approx"
    assert front["reference"] == "frozen" and front["seeds"] == "0,1 vs 0,1" and bool(front["paired_seeds"])
    assert (front["effect"], front["ci_low"], front["ci_high"], front["unit"]) == (-50.0, -50.0, -50.0, "WER points")
    # Every replicate below zero: p = 2 (1 + 0) / (B + 1), never 0. The family: the 3 SSVD configurations the front
    # row compares, unconstrained and strict (one-sided, (1 + 0) / (B + 1): the smallest, Holm's factor 5); the
    # front's three tie at the next ranks, factor 4.
    assert front["p_value"] == pytest.approx(2 / 100_001, rel=1e-3) and front["p_adjusted"] == pytest.approx(4 * 2e-5)
    assert front["difference"] == "better" and front["utterances"] == 5 and front["tests"] == 3
    assert front["system_trainable"] == 50_000 and front["reference_trainable"] == 0
    # Free against approx at a matched budget (52k vs 50k, within 10%): +2 errors per utterance, worse: reproduced;
    # at a matched rank there is no approx run at free's p=0.28: not tested.
    free_rows = claims.loc["unconstrained_worse"].set_index("matched_by")
    free_row = free_rows.loc["trainable count"]
    assert free_row["verdict"] == "reproduced" and free_row["effect"] == 20.0 and free_row["difference"] == "worse"
    assert free_rows.loc["rank (same p)", "verdict"] == "not tested"
    # Cayley against approx at the same p: +3 errors per utterance, 30 points, wholly beyond ±1.18 points: refuted.
    strict = claims.loc["strict_vs_approx"]
    assert strict["verdict"] == "refuted" and (strict["ci_low"], strict["ci_high"]) == (30.0, 30.0)
    # The scale row needs a rival of another method: frozen runs train nothing.
    # One model size, no side=both runs, no validation history: not tested, with the reason.
    assert claims.loc["model_size", "verdict"] == "not tested"
    assert "no model with SSVD runs and runs of another method" in claims.loc["scale", "reason"]
    assert claims.loc["both_sides", "verdict"] == "not tested" and "side=both" in claims.loc["both_sides", "reason"]
    assert claims.loc["converges_faster", "verdict"] == "not tested"
    assert "owsm_tiny-synth_child-approx-seed0; owsm_tiny-synth_child-approx-seed1 vs " in front["runs"]
    # Every SSVD configuration the front verdict weighed, each against its best rival with no more parameters.
    weighed = front["comparisons"].split("; ")
    assert len(weighed) == 3 and all(" vs frozen: better, " in item for item in weighed)

    page = (tmp_path / "report" / "report.html").read_text()
    rows = {re.search(r"<b>(\w+)</b>", row).group(1): row for row in _rows(page, "claims")}
    assert set(rows) == {
        "front",
        "strict_vs_approx",
        "unconstrained_worse",
        "both_sides",
        "both_sides_forgetting",
        "converges_faster",
        "scale",
        "model_size",
    }
    assert (
        '<span class="pill completed">reproduced</span>' in rows["front"]
        and "-50.00 [-50.00, -50.00] WER points" in rows["front"]
    )
    # the comparisons and the 4 runs (2 seeds of each system) are folded lists, one item each
    assert "<summary>every comparison weighed (3)</summary>" in rows["front"] and "<summary>runs (4)</summary>" in rows["front"]
    assert rows["front"].count("<li>") == 3 + 4
    assert '<span class="pill failed">refuted</span>' in rows["strict_vs_approx"]
    assert '<span class="pill untested">not tested</span>' in rows["model_size"]
    assert "Statistical procedure" in page and "100,000 replicates" in page and "two-sided" in page
    assert "all 5 tests behind this table" in page  # the family, stated


def test_no_pair_whose_interval_holds_zero_is_called_better(tmp_path):
    # 20 utterances of 10 words. lora r=4 and r=8 make their errors on alternate utterances: their difference
    # is +-2 per utterance, one error apart in all (ΔWER 0.5 points): the interval holds zero. Against the
    # frozen model (6 errors everywhere) both are far ahead; vera is 1 error ahead of frozen in all: within noise.
    lora4 = np.tile([2, 0], 10)
    lora4[0] += 1
    lora8, vera, frozen = np.tile([0, 2], 10), np.tile([7, 5], 10), np.full(20, 6)
    vera[1] -= 1
    baseline = {"child": 0.6}  # the change against before adaptation that the old table coloured without a test
    for name, method, trainable, errors in [
        ("frozen", {"name": "frozen"}, 0, frozen),
        ("lora4", {"name": "lora", "r": 4}, 60_000, lora4),
        ("lora8", {"name": "lora", "r": 8}, 120_000, lora8),
        ("vera", {"name": "vera", "r": 64}, 9_000, vera),
    ]:
        for seed in (0, 1):
            write_run(
                tmp_path, name, method=method, p=None, trainable=trainable, seed=seed, errors={"child": errors}, baseline=baseline
            )
    build_report([tmp_path], tmp_path / "report")
    ranking = pd.read_csv(tmp_path / "report" / "significance.csv")
    row = lambda configuration, against: ranking[
        (ranking["configuration"] == configuration)  # noqa: E731
        & (ranking["against"] == against)
    ].iloc[0]
    assert row("lora r=4", "lowest WER")["difference"] == "no significant difference"
    assert row("lora r=4", "lowest WER")["delta_wer_points"] == 0.5
    assert row("lora r=8", "lowest WER")["difference"] == "lowest WER"
    assert row("lora r=4", "before adaptation")["difference"] == "better"
    assert row("vera r=64", "before adaptation")["difference"] == "no significant difference"
    tested = ranking.dropna(subset=["ci_low_points"])
    holds_zero = (tested["ci_low_points"] <= 0) & (tested["ci_high_points"] >= 0)
    assert holds_zero.sum() >= 2 and (tested.loc[holds_zero, "difference"] == "no significant difference").all()

    page = (tmp_path / "report" / "report.html").read_text()
    for table_id in ("ranking", "claims"):
        for html_row in _rows(page, table_id):
            interval = re.search(r"([+-]\d+\.\d+) \[([+-]\d+\.\d+), ([+-]\d+\.\d+)\]", html_row)
            if interval and float(interval.group(2)) <= 0 <= float(interval.group(3)):
                assert "better" not in html_row and "worse" not in html_row, html_row
    assert sum("better" in r for r in _rows(page, "ranking")) == 2  # lora r=4 and r=8 against before adaptation
    # The summary: both LoRAs share the lowest WER (bold); only they are coloured against before adaptation.
    summary = {re.search(r'<td class="text wrap name">([^<]+)</td>', r).group(1): r for r in _rows(page, "summary")}
    assert 'class="best"' in summary["lora r=4"] and 'class="best"' in summary["lora r=8"]
    assert 'class="best"' not in summary["vera r=64"] and 'class="delta better"' not in summary["vera r=64"]
    assert 'class="delta better"' in summary["lora r=4"] and "-0.5" in summary["vera r=64"]  # printed, not coloured


def test_plot_labels_leave_out_only_outside_settings_every_point_of_the_method_shares():
    points = pd.DataFrame(
        {
            "method": ["ssvd", "ssvd", "ssvd", "lora", "lora"],
            "configuration": [
                "ssvd p=0.4 rotation=approx optimizer.lr=0.001",
                "ssvd p=0.4 rotation=cayley optimizer.lr=0.001",
                "ssvd p=0.8 rotation=approx optimizer.lr=0.001",
                "lora r=4 optimizer.lr=0.003",
                "lora r=4 optimizer.lr=0.01",
            ],
        }
    )
    assert list(figures.short_labels(points)) == [
        "ssvd p=0.4 rotation=approx",
        "ssvd p=0.4 rotation=cayley",
        "ssvd p=0.8 rotation=approx",
        "lora r=4 optimizer.lr=0.003",
        "lora r=4 optimizer.lr=0.01",
    ]


def test_number_labels_do_not_cover_each_other():
    figure, axis = figures.plt.subplots(figsize=(3, 2))
    xs, ys = pd.Series([50.0, 50.2, 50.4, 50.6]), pd.Series([5.0, 5.0, 5.1, 5.0])  # four points in one spot
    axis.scatter([*xs, 0, 100], [*ys, 0, 10])
    figures._label_points(axis, xs, ys, pd.Series(["10", "11", "12", "13"]))
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in axis.texts]
    assert len(boxes) == 4 and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    figures.plt.close(figure)


def test_pareto_plot_draws_percent_of_the_model_on_a_log_axis(tmp_path, monkeypatch):
    _write_lora_and_ssvd(tmp_path)
    frame = to_frame(collect([tmp_path]).runs)
    summary = summarise(frame)
    closed = []
    monkeypatch.setattr(figures.plt, "close", closed.append)  # keep the figures to look at their axes
    figures.pareto_figure(summary, frame, tmp_path / "pareto.png", {"lora": "#f00", "ssvd": "#00f"})
    (axis, *_) = closed[0].axes
    assert len([a for a in closed[0].axes if a.has_data()]) == 1  # one target domain: child
    assert axis.get_xscale() == "log" and "% of the model" in axis.get_xlabel() and "child" in axis.get_title()
    # Per-seed points: 40,000 / 4,000,000 = 1% and 4,000 / 4,000,000 = 0.1%, two seeds each, WER in %.
    seeds = axis.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(seeds).round(6))) == [(0.1, 40.0), (0.1, 50.0), (1.0, 30.0), (1.0, 40.0)]
    assert axis.collections[0].get_alpha() < 1
    # Means with error bars (sample std over the two seeds: 10 points / sqrt(2)); the front through the means.
    means = {tuple(c.lines[0].get_xdata()): c.lines[0].get_ydata() for c in axis.containers}
    assert means[(1.0,)] == pytest.approx([35.0]) and means[(0.1,)] == pytest.approx([45.0])
    (bar,) = [c for c in axis.containers if tuple(c.lines[0].get_xdata()) == (1.0,)]
    (segment,) = bar.lines[2][0].get_segments()
    assert segment[1, 1] - segment[0, 1] == pytest.approx(2 * 10 / np.sqrt(2))
    (front,) = [line for line in axis.lines if line.get_label().startswith("Pareto frontier")]
    assert list(front.get_xdata()) == pytest.approx([0.1, 1.0]) and list(front.get_ydata()) == pytest.approx([45.0, 35.0])
    # The front's points are numbered at their means, fewest parameters first, and named in a key below the axis.
    numbers = {t.get_text(): t.xy for t in axis.texts if t.get_text().isdigit()}
    assert (
        numbers.keys() == {"1", "2"} and numbers["1"] == pytest.approx((0.1, 45.0)) and numbers["2"] == pytest.approx((1.0, 35.0))
    )
    assert [t.get_text() for t in axis.texts if not t.get_text().isdigit()] == [
        "on the frontier, fewest parameters first:\n1  ssvd p=0.4\n2  lora r=4"
    ]

    closed.clear()
    figures.forgetting_figure(summary, frame, tmp_path / "forgetting.png", {"lora": "#f00", "ssvd": "#00f"})
    (axis, *_) = closed[0].axes
    assert axis.get_xscale() == "log" and "source" in axis.get_title()
    assert "source WER change" in axis.get_ylabel()
    # source WER 10% (lora) and 20% (ssvd) against 5% before adaptation: +5 and +15 points, at 1% and 0.1%.
    means = {tuple(c.lines[0].get_xdata()): c.lines[0].get_ydata() for c in axis.containers}
    assert means[(1.0,)] == pytest.approx([5.0]) and means[(0.1,)] == pytest.approx([15.0])


def test_report_md_tabulates_each_configuration_and_the_claims_by_hand_computed_values(tmp_path):
    runs = tmp_path / "runs"
    _write_lora_and_ssvd(runs)
    build_report([runs], tmp_path / "report")
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    # child WER per seed 40/50% (ssvd) and 30/40% (lora): mean ± sample std 45.0/35.0 ± 7.1; source 20%/10%
    # against 5% before adaptation: +15.0/+5.0; 4,000 and 40,000 of 4,000,000 parameters: 0.1% and 1%.
    assert "Before adaptation: 60.0% WER." in lines
    assert "| 1 | ssvd p=0.4 | 4,000 | 0.1 | 45.0 ± 7.1 | 2 | +15.0 |" in lines
    assert "| 2 | lora r=4 | 40,000 | 1 | 35.0 ± 7.1 | 2 | +5.0 |" in lines
    claims = lines[lines.index("## Claims") :]
    assert any(line.startswith("| front | synth_child | ssvd p=0.4 ") for line in claims)
