"""Per-utterance word errors of a run on a test set, from its decodes (`decode/<set>/ref.trn`, `hyp.trn`) or
from a sweep's decodes table: what every paired test and bootstrap of the report resamples."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from asr_peft.errors import ConfigError


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors of one run on one test set, per utterance (ids in trn order)."""

    ids: tuple[str, ...]
    errors: np.ndarray  # (U,) substitutions + deletions + insertions
    ref_words: np.ndarray  # (U,) reference length in words


def read_trn(path: Path) -> dict[str, str]:
    """A trn file's texts by trn id, in file order."""
    texts = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text, _, tail = line.rpartition(" (")
        if not tail.endswith(")"):
            raise ConfigError(f"{path}: line without a trn id: {line[:80]!r}")
        texts[tail[:-1]] = text.strip()
    return texts


def read_trn_pair(ref_trn: str | Path, hyp_trn: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """References and hypotheses by trn id; both files must hold the same utterances."""
    refs, hyps = read_trn(Path(ref_trn)), read_trn(Path(hyp_trn))
    if set(refs) != set(hyps):
        raise ConfigError(f"{hyp_trn} and {ref_trn} hold different utterances")
    return refs, hyps


def utterance_errors(ref_trn: str | Path, hyp_trn: str | Path) -> UtteranceErrors:
    """Per-utterance word errors of `hyp_trn` against `ref_trn` (both normalised, as scoring writes them)."""
    return score_utterances(*read_trn_pair(ref_trn, hyp_trn), str(ref_trn))


def score_utterances(refs: dict[str, str], hyps: dict[str, str], source: str) -> UtteranceErrors:
    """Word errors of each hypothesis against its reference, in the order of `refs` (`source` names them in errors)."""
    ids = tuple(refs)
    errors, lengths = [], []
    for utt in ids:
        words = jiwer.process_words(refs[utt], hyps[utt]) if refs[utt] else None
        if words is None:  # an empty reference is not scored (see evaluation.wer)
            raise ConfigError(f"{source}: utterance {utt} has an empty reference")
        errors.append(words.substitutions + words.deletions + words.insertions)
        lengths.append(words.substitutions + words.deletions + words.hits)
    return UtteranceErrors(ids, np.asarray(errors, dtype=np.int64), np.asarray(lengths, dtype=np.int64))


@functools.lru_cache(maxsize=None)
def run_errors(run_dir: str, test_set: str) -> UtteranceErrors:
    """A run's per-utterance errors on `test_set`, from its `decode/<test_set>/ref.trn` and `hyp.trn` (read once),
    or, when the run directory is not there, from the decodes table of the sweep that holds it (reporting.tables)."""
    decoded = Path(run_dir) / "decode" / test_set
    if not Path(run_dir).is_dir():
        from asr_peft.reporting.tables import stored_errors  # the tables module builds on this one

        stored = stored_errors(run_dir, test_set)
        if stored is not None:
            return stored
    for name in ("ref.trn", "hyp.trn"):
        if not (decoded / name).is_file():
            raise ConfigError(f"{decoded / name} does not exist: the run's per-utterance errors are unknown")
    return utterance_errors(decoded / "ref.trn", decoded / "hyp.trn")
