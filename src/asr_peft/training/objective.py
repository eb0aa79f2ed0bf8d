"""What a Hydra sweeper (e.g. Optuna's learning-rate search) minimises: validation WER, never a test set.

The value is the validation WER of the checkpoint the run tests (`evaluation.checkpoint`): the lowest
one of its validation history for `best`, the last one for `last` (never the step-0 validation before
adaptation, which no checkpoint holds). Test-set metrics are never read, so
a hyperparameter chosen by a sweep leaves every test number unbiased.
"""

from __future__ import annotations

from typing import Any


def validation_objective(record: dict[str, Any]) -> float | None:
    """Validation WER of the tested checkpoint from a run record; None when the run never validated."""
    history = [
        h
        for h in record.get("validation_history") or []
        if isinstance(h, dict) and h.get("val_wer") is not None and h.get("step") != 0  # step 0: before adaptation
    ]
    if not history:
        return None
    which = ((record.get("config") or {}).get("evaluation") or {}).get("checkpoint", "best")
    return float(history[-1]["val_wer"]) if which == "last" else float(min(h["val_wer"] for h in history))
