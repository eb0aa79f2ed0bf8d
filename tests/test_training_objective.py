"""The sweeper's objective: the tested checkpoint's validation WER, whatever the test sets say."""

from __future__ import annotations

import pytest

from asr_peft.training.objective import validation_objective


def _record(checkpoint: str, test_wer: float) -> dict:
    return {
        "validation_history": [{"step": 50, "val_wer": 0.42}, {"step": 100, "val_wer": 0.37}, {"step": 150, "val_wer": 0.39}],
        "metrics": {"child": {"wer": test_wer}, "source": {"wer": test_wer / 2}},
        "config": {"evaluation": {"checkpoint": checkpoint}},
    }


@pytest.mark.parametrize("checkpoint, expected", [("best", 0.37), ("last", 0.39)])
def test_objective_is_the_tested_checkpoints_validation_wer(checkpoint, expected):
    assert validation_objective(_record(checkpoint, 0.10)) == expected
    # Test-set results do not move it: a search over this value can never tune on a test set.
    assert validation_objective(_record(checkpoint, 0.90)) == expected


def test_a_run_that_never_validated_has_no_objective():
    assert validation_objective({"validation_history": [], "metrics": {"child": {"wer": 0.2}}}) is None


def test_the_validation_before_training_is_never_the_objective():
    """Step 0 (evaluation.validate_before_training) is the model before adaptation, which no checkpoint holds:
    a run whose training only made dev WER worse is judged by its best trained checkpoint, not by the frozen model."""
    record = _record("best", 0.1)
    record["validation_history"].insert(0, {"step": 0, "val_wer": 0.30})
    assert validation_objective(record) == 0.37
