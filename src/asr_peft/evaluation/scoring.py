"""Scoring a model on test sets: decode every utterance, compute WER/CER, write sclite trn files.

Each test set is decoded with `evaluation.decode` (its scores are the test set's metrics, its hypotheses
`hyp.trn`) and again with every method of `evaluation.secondary_decodes` (scores under the test set's
`secondary.<method>`, hypotheses `hyp.<method>.trn`): e.g. OWSM's greedy CTC beside its attention decoder.

Scoring runs on a given device and in one of Lightning's precisions, through Lightning's own precision
plugin (autocast for `*-mixed`; the model cast to half precision, adapters kept fp32, for `*-true`),
so a test set is decoded as validation ran (`training/hardware.py` chooses both).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.plugins.precision import Precision
from torch.utils.data import DataLoader
from tqdm import tqdm

from asr_peft.data.dataset import ITEM_INFO, Collate, SpeechDataset, model_dataset
from asr_peft.data.manifest import Utterance
from asr_peft.data.sampler import DurationBucketSampler
from asr_peft.data.validation import validate_data
from asr_peft.evaluation.sclite import sclite_command, sclite_word_errors
from asr_peft.evaluation.trn import write_trn
from asr_peft.evaluation.wer import error_rates
from asr_peft.models.precision import precision_plugin

log = logging.getLogger(__name__)


def transcribe(
    bundle,
    dataset: SpeechDataset,
    eval_cfg: Mapping[str, Any],
    *,
    method: str,
    desc: str = "decoding",
    precision: Precision | None = None,
) -> dict[str, str]:
    """Hypotheses by utterance id, decoded with `method` (one of the model's `decode_methods`) on the model's
    device in `precision` (a Lightning precision plugin whose `convert_module` the model has been through), in
    batches of at most `evaluation.batch_size`
    utterances (in corpus order), else in duration-sorted batches of at most `evaluation.max_batch_seconds`
    of padded audio (a model that pads to 30 s costs 30 s per utterance)."""
    precision = precision or Precision()
    sampler = DurationBucketSampler(
        dataset.durations,
        max_batch_seconds=eval_cfg.get("max_batch_seconds", 200.0),
        batch_size=eval_cfg.get("batch_size"),
        spread_remainder=False,
        shuffle=False,
        config_key="evaluation",
    )
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=Collate(bundle.collate))
    options = dict(eval_cfg.get("beam", {}) or {}) if method == "beam" else {}
    hypotheses: dict[str, str] = {}
    device = next(bundle.model.parameters()).device
    for batch in tqdm(loader, desc=desc, leave=False, disable=not eval_cfg.get("progress", True)):
        inputs = precision.convert_input(move_data_to_device({k: v for k, v in batch.items() if k not in ITEM_INFO}, device))
        with precision.forward_context():
            texts = bundle.transcribe(inputs, method=method, languages=batch["language"], options=options)
        hypotheses.update(zip(batch["utt_id"], texts))
    return hypotheses


def score_test_sets(
    bundle,
    data_cfg: Mapping[str, Any],
    eval_cfg: Mapping[str, Any],
    normalizer: Callable[[str], str],
    out_dir: Path | None,
    *,
    skipped: Counter | None = None,
    test_sets: Mapping[str, list[Utterance]] | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    precision: str = "32-true",
    label: str = "test",
) -> dict[str, dict[str, Any]]:
    """WER/CER per test set of `data.test`; hypothesis and reference trn files under `out_dir/<set>/`.
    `label` names what is scored in the log lines (the frozen model's scores are told from the trained one's).

    `test_sets`: the test utterances validated already (a training run checks them before it trains);
    otherwise the manifests are read and validated here, their skips counted into `skipped`.
    The model is moved to `device` (and, for `*-true`, cast to half precision) and stays there.
    """
    device = torch.device(device)
    plugin = precision_plugin(precision, device.type)
    plugin.convert_module(bundle.model).to(device)
    language = data_cfg.get("language", "eng")
    if test_sets is None:
        validated = validate_data(data_cfg, normalizer=normalizer, cache_dir=cache_dir, splits=("test",))
        validated.keep_languages(bundle.has_language, language, data_cfg.get("on_error", "raise"))
        test_sets = validated.test
        if skipped is not None:
            skipped.update(validated.skipped)
    metrics: dict[str, dict[str, Any]] = {}
    limit = eval_cfg.get("max_utterances")
    use_sclite = bool(eval_cfg.get("sclite", False))
    if use_sclite:
        sclite_command()  # before any decoding: a missing sclite is a config error, not a late crash
    primary = bundle.check_decode_method(eval_cfg.get("decode"))
    secondary = [
        bundle.check_decode_method(m, key="evaluation.secondary_decodes") for m in eval_cfg.get("secondary_decodes") or []
    ]
    for name, utterances in test_sets.items():
        utterances = utterances[:limit] if limit else utterances
        dataset = model_dataset(bundle, utterances, default_language=language, resample=data_cfg.get("resample", True))
        ids = [utt.id for utt in utterances]
        references = [utt.text for utt in utterances]
        hypotheses = {}
        for method in (primary, *secondary):
            with torch.inference_mode():
                decoded = transcribe(bundle, dataset, eval_cfg, method=method, desc=f"test {name} ({method})", precision=plugin)
            hypotheses[method] = [decoded[i] for i in ids]
        metrics[name] = error_rates(references, hypotheses[primary], normalizer)
        if secondary:
            metrics[name]["secondary"] = {method: error_rates(references, hypotheses[method], normalizer) for method in secondary}
        log.info(
            "%s %s: WER %.2f%% CER %.2f%% (%d utterances)",
            label,
            name,
            100 * metrics[name]["wer"],
            100 * metrics[name]["cer"],
            len(ids),
        )
        if out_dir is not None:
            # The scored utterances only (a reference empty after normalisation has no WER), so that
            # sclite scores exactly what jiwer did.
            scored = [k for k, reference in enumerate(references) if normalizer(reference)]
            set_dir = Path(out_dir) / name
            set_dir.mkdir(parents=True, exist_ok=True)
            write_trn(set_dir / "ref.trn", [ids[k] for k in scored], [normalizer(references[k]) for k in scored])
            for method, file in ((primary, "hyp.trn"), *((m, f"hyp.{m}.trn") for m in secondary)):
                write_trn(set_dir / file, [ids[k] for k in scored], [normalizer(hypotheses[method][k]) for k in scored])
            if use_sclite and scored:
                metrics[name]["sclite"] = sclite_word_errors(set_dir / "ref.trn", set_dir / "hyp.trn")
    return metrics
