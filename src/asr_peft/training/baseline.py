"""Scores of the pretrained model before adaptation, cached: every method of a sweep shares them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Mapping

import torch
from omegaconf import DictConfig

from asr_peft.adapters.svd import weight_key
from asr_peft.config.resolve import plain
from asr_peft.data.manifest import Utterance
from asr_peft.evaluation.scoring import score_test_sets
from asr_peft.files import write_json_atomically

log = logging.getLogger(__name__)


def _file_digest(path: str) -> str | None:
    """SHA-256 of a manifest file (None for a Kaldi directory or a missing file: the scorer reports those)."""
    file = Path(path)
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None


def baseline_metrics(
    cfg: DictConfig,
    bundle,
    normalizer: Callable[[str], str],
    run_dir: Path,
    test_sets: Mapping[str, list[Utterance]],
    *,
    device: torch.device,
    precision: str,
) -> dict | None:
    """The frozen model's test scores (`evaluation.baseline`), from the cache when the same model and
    test data were scored before in the same precision on the same kind of device. Scoring moves the
    model to `device` (and casts it for `*-true`, as Lightning would next)."""
    if not cfg.evaluation.get("baseline", False):
        return None
    # The weights themselves are part of the key: a checkpoint re-exported to the same path is a new model.
    weights = [weight_key(tensor) for tensor in bundle.model.state_dict().values()]
    # So are the test manifests' contents: a corpus regenerated in place is new test data.
    manifests = {name: _file_digest(path) for name, path in (cfg.data.test or {}).items()}
    key_source = json.dumps(
        [
            plain(cfg.model),
            plain(cfg.data.test),
            plain(cfg.evaluation),
            bundle.source,
            weights,
            manifests,
            device.type,
            precision,
        ],
        sort_keys=True,
        default=str,
    )
    cache = Path(cfg.paths.cache_dir) / "baselines" / f"{hashlib.sha256(key_source.encode()).hexdigest()[:20]}.json"
    if bundle.source not in ("random", "meta"):
        cached = _cached_metrics(cache)
        if cached is not None:
            return cached
    metrics = score_test_sets(
        bundle,
        plain(cfg.data),
        plain(cfg.evaluation),
        normalizer,
        run_dir / "decode_baseline",
        test_sets=test_sets,
        device=device,
        precision=precision,
        label="frozen model, test",
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(cache, metrics)
    return metrics


def _cached_metrics(cache: Path) -> dict | None:
    """The cached scores; None when there are none, or the file is damaged (it is then scored again)."""
    try:
        metrics = json.loads(cache.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("baseline cache %s is unreadable (%s); scoring the frozen model again", cache, err)
        return None
    return metrics if isinstance(metrics, dict) else None
