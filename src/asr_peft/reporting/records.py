"""What `report.py` accepts as a run record: a `results.json` is checked before any table, figure or
claim uses it, and a bad one is left out of all of them with one line naming the file.

A record's values must be of the kinds a run writes: names are strings, the seed an integer, every
WER/CER a finite number >= 0 (a WER may exceed 1: insertions), parameter counts whole numbers with
trainable <= total. A completed record's scores must agree with its own decodes (`decode/<set>/
ref.trn` and `hyp.trn`, where the run kept them): the same number of utterances, and the WER
recomputed from them (the trn files hold the normalised texts).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from asr_peft.evaluation.wer import error_rates

RATES = ("wer", "cer")
WER_TOLERANCE = 1e-6


def record_problem(record: dict[str, Any], run_dir: Path) -> str | None:
    """Why `record` (the results.json of `run_dir`) cannot be reported, in a few words; None when it can."""
    for group in ("model", "data", "method"):
        node = record.get(group)
        if node is not None and (not isinstance(node, dict) or not isinstance(node.get("name", ""), (str, type(None)))):
            return f"{group}.name must be a string, not {_kind(node.get('name') if isinstance(node, dict) else node)}"
    seed = record.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return f"seed must be an integer, not {_kind(seed)}"
    parameters = record.get("parameters")
    if parameters is not None:
        problem = _parameters_problem(parameters)
        if problem:
            return problem
    for key in ("metrics", "baseline_metrics"):
        problem = _metrics_problem(record.get(key), key)
        if problem:
            return problem
    if record.get("status") == "completed":
        return _decodes_problem(record.get("metrics") or {}, Path(run_dir) / "decode")
    return None


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parameters_problem(parameters: Any) -> str | None:
    if not isinstance(parameters, dict):
        return f"parameters must be a mapping, not {_kind(parameters)}"
    counts: dict[str, Any] = {key: parameters.get(key) for key in ("trainable", "total")}
    for key, value in counts.items():
        if not _is_number(value) or value < 0 or value != int(value):
            return f"parameters.{key} must be a whole number >= 0, not {_kind(value)}"
    if counts["trainable"] > counts["total"]:
        return f"parameters.trainable={counts['trainable']} exceeds parameters.total={counts['total']}"
    return None


def _metrics_problem(metrics: Any, key: str) -> str | None:
    if metrics is None:
        return None
    if not isinstance(metrics, dict):
        return f"{key} must be a mapping of test sets, not {_kind(metrics)}"
    for test_set, values in metrics.items():
        if not isinstance(values, dict):
            return f"{key}.{test_set} must be a mapping, not {_kind(values)}"
        for rate in RATES:
            value = values.get(rate)
            if value is not None and (not _is_number(value) or value < 0):
                return f"{key}.{test_set}.{rate} must be a finite number >= 0, not {_kind(value)}"
    return None


def _decodes_problem(metrics: dict[str, Any], decode_dir: Path) -> str | None:
    for test_set, values in metrics.items():
        refs, hyps = decode_dir / test_set / "ref.trn", decode_dir / test_set / "hyp.trn"
        if not (refs.is_file() and hyps.is_file()):
            continue  # decodes not kept: nothing to compare
        references, hypotheses = _trn_texts(refs), _trn_texts(hyps)
        if values.get("num_utterances") is not None and len(references) != values["num_utterances"]:
            return f"metrics.{test_set}.num_utterances={values['num_utterances']} but its decodes ({refs}) hold {len(references)}"
        if len(references) != len(hypotheses):
            return f"its decodes of {test_set} hold {len(references)} references but {len(hypotheses)} hypotheses"
        recomputed = error_rates(references, hypotheses, lambda text: text)["wer"] if references else None
        wer = values.get("wer")
        if recomputed is not None and wer is not None and abs(recomputed - wer) > WER_TOLERANCE:
            return f"metrics.{test_set}.wer={wer} but its decodes ({hyps}) give {recomputed:.6g}"
    return None


def _trn_texts(path: Path) -> list[str]:
    return [line.rsplit(" (", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
