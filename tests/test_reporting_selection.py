"""The rate-selection check: test WER of the seeds whose LR-search runs chose the rate (scored again, their
records naming `trained_in`) against fresh seeds at that rate, per configuration on its target test set;
hand-computed."""

from __future__ import annotations

import pytest

from asr_peft.reporting.aggregate import collect, to_frame
from asr_peft.reporting.selection import selection_frame, selection_line
from test_reporting_aggregate import LORA, SSVD, record, write


def _write_runs(root, method, wers: dict[int, float], chosen_by: tuple[int, ...], trainable: int) -> None:
    for seed, wer in wers.items():
        run = record(method, seed, {"source": 0.2, "child": wer}, trainable)
        if seed in chosen_by:
            run["trained_in"] = f"/work/outputs/lr_search/{method['name']},seed={seed}/checkpoints"
        write(root / f"{method['name']}_{trainable}_s{seed}", run)


def test_the_choosing_seeds_are_compared_with_the_fresh_ones_per_configuration(tmp_path):
    root = tmp_path / "comparison"
    _write_runs(root, SSVD, {0: 0.30, 1: 0.32, 2: 0.33, 3: 0.35, 4: 0.34}, (0, 1), 5000)  # -3 points
    _write_runs(root, LORA, {0: 0.40, 1: 0.42, 2: 0.40, 3: 0.41, 4: 0.39}, (0, 1), 8000)  # +1 point
    _write_runs(root, {"name": "lora", "r": 16}, {2: 0.30, 3: 0.31}, (), 30000)  # trained again: no choosing seed
    selection = selection_frame(to_frame(collect([root]).runs))
    assert list(selection["configuration"]) == ["ssvd p=0.4", "lora r=4 alpha=8"]
    assert set(selection["test_set"]) == {"child"}  # the target domain, not the source
    assert list(selection["choosing_seeds"]) == [2, 2] and list(selection["fresh_seeds"]) == [3, 3]
    assert selection["difference"].tolist() == pytest.approx([-0.03, 0.01])
    # mean -1 point; sd of (-3, +1) = 2.828, standard error 2.0, t(0.975, 1 df) = 12.706
    assert selection_line(selection) == (
        "Seeds that chose their configuration's learning rate score -1.00 points of test WER against fresh seeds at "
        "that rate (95% interval -26.41 to +24.41), over 2 configurations; negative: the choosing seeds score "
        "better, the optimism of choosing the rate on them."
    )


def test_without_scored_search_runs_there_is_nothing_to_compare(tmp_path):
    root = tmp_path / "sweep"
    _write_runs(root, SSVD, {0: 0.30, 1: 0.32}, (), 5000)
    selection = selection_frame(to_frame(collect([root]).runs))
    assert selection.empty and selection_line(selection) is None


def test_the_report_says_it_beside_the_convergence_section(tmp_path):
    from asr_peft.reporting.report import build_report

    root = tmp_path / "comparison"
    _write_runs(root, SSVD, {0: 0.30, 1: 0.32, 2: 0.33, 3: 0.35, 4: 0.34}, (0, 1), 5000)
    build_report([root], tmp_path / "report")
    digest = (tmp_path / "report" / "report.md").read_text()
    section = digest.split("## Rate selection\n\n")[1].split("## Claims")[0]
    assert section.startswith("Seeds that chose their configuration's learning rate score -3.00 points")
    assert "| owsm_tiny · synth_child | child | ssvd p=0.4 | 2: 31.00% | 3: 34.00% | -3.00 |" in section
    assert (tmp_path / "report" / "selection.csv").is_file()
