"""One training run, from a composed Hydra config to `results.json`.

Order matters: data are prepared and validated, the pretrained model is loaded (weights first), the
frozen model is scored if asked, then the method is injected (SVDs of the loaded weights), Lightning
trains (resuming from `last.ckpt` when the run directory has one), the best checkpoint is scored on
every test set, and the record is written. A failure still leaves a record, marked failed.

The steps live in their own modules: `baseline` (frozen scores, cached), `trainer` (Lightning Trainer
and the tested checkpoint), `module` / `datamodule` (what Lightning runs), `results` (the record),
`plan` (the dry run).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from asr_peft.adapters import apply_method, total_parameter_count, trainable_parameter_count
from asr_peft.data.normalizers import get_normalizer
from asr_peft.evaluation.scoring import score_test_sets
from asr_peft.evaluation.trn import read_decodes
from asr_peft.models import load_owsm
from asr_peft.reporting.diagnostics import (compute_subspace_diagnostics, pretrained_target_weights,
                                            write_subspace_diagnostics)
from asr_peft.training.baseline import baseline_metrics
from asr_peft.training.datamodule import OWSMDataModule
from asr_peft.training.module import OWSMLitModule
from asr_peft.training.results import claim_run_dir, new_record, now_iso, peak_memory_mb, write_results
from asr_peft.training.trainer import build_trainer, load_tested_checkpoint

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def train(cfg: DictConfig, run_dir: Path, *, record: dict[str, Any]) -> dict[str, Any]:
    """Everything after the run directory is claimed; fills and returns `record`."""
    pl.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    skipped: Counter = Counter()
    if cfg.data.get("prepare"):
        instantiate(cfg.data.prepare)
    normalizer = get_normalizer(cfg.data.get("normalizer", "whisper_basic"))
    bundle = load_owsm(_plain(cfg.model), cache_dir=cfg.paths.get("model_cache_dir"))
    record["model"]["source"] = bundle.source
    datamodule = OWSMDataModule(_plain(cfg.data), _plain(cfg.loader), bundle, seed=cfg.seed)
    datamodule.setup("fit")  # validate all data before spending time on anything else
    if rank_zero_only.rank == 0:
        record["baseline_metrics"] = baseline_metrics(cfg, bundle, normalizer, run_dir, skipped)

    pretrained = pretrained_target_weights(cfg, bundle.model)
    apply_method(bundle.model, _plain(cfg.method), _plain(cfg.adapt), svd_cache_dir=Path(cfg.paths.cache_dir) / "svd")
    record["parameters"] = {"trainable": trainable_parameter_count(bundle.model),
                            "total": total_parameter_count(bundle.model)}
    log.info("trainable parameters: %s of %s", f"{record['parameters']['trainable']:,}",
             f"{record['parameters']['total']:,}")

    trainer = build_trainer(cfg, run_dir)
    module = OWSMLitModule(bundle, optimizer=_plain(cfg.optimizer), normalizer=normalizer,
                           total_steps=cfg.trainer.get("max_steps"))
    for lightning_logger in trainer.loggers:
        lightning_logger.log_hyperparams({**_plain(cfg), "parameters": record["parameters"],
                                          "configuration": record["configuration"]})  # W&B groups runs by it
    if record["parameters"]["trainable"] > 0:  # method=frozen only scores the pretrained model
        last = Path(cfg.callbacks.model_checkpoint.dirpath) / "last.ckpt" if cfg.get("callbacks") else None
        record["resumed_from"] = str(last) if last is not None and last.is_file() else None
        if record["resumed_from"]:
            log.info("resuming from %s", record["resumed_from"])
        fit_started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=record["resumed_from"])
        record["fit_time_s"] = time.perf_counter() - fit_started  # this process's share, when it resumed
        record["validation_history"] = module.validation_history
        if not trainer.is_global_zero:
            return record
        record["tested_checkpoint"], record["tested_step"] = load_tested_checkpoint(
            module, trainer, cfg.evaluation.get("checkpoint", "best"))
    record["train_time_s"] = time.perf_counter() - started
    record["global_step"] = int(trainer.global_step)
    skipped.update(datamodule.skipped)
    record["metrics"] = score_test_sets(bundle, _plain(cfg.data), _plain(cfg.evaluation), normalizer,
                                        run_dir / "decode", skipped=skipped)
    record["skipped"] = dict(skipped)
    if pretrained:
        diagnostics = compute_subspace_diagnostics(pretrained, bundle.model, [k.removesuffix(".weight") for k in pretrained],
                                                   svd_cache_dir=Path(cfg.paths.cache_dir) / "svd")
        write_subspace_diagnostics(run_dir, diagnostics)
    record["peak_memory_mb"] = peak_memory_mb()
    for lightning_logger in trainer.loggers:
        lightning_logger.log_metrics({f"test/{name}/{key}": value for name, values in record["metrics"].items()
                                      for key, value in values.items() if isinstance(value, (int, float))})
        if hasattr(lightning_logger, "log_table"):  # W&B: a per-run table of test transcripts
            lightning_logger.log_table(key="test_decodes", columns=["test set", "reference", "hypothesis"],
                                       data=read_decodes(run_dir / "decode"))
    return record


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and test once; always leaves results.json (completed or failed) in `run_dir`."""
    # Under DDP every rank runs this; only rank zero owns the run directory's record.
    is_rank_zero = rank_zero_only.rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero:
        claim_run_dir(run_dir)
    record = new_record(_plain(cfg), run_dir)
    try:
        train(cfg, run_dir, record=record)
        record["status"] = "completed"
    except BaseException as err:  # KeyboardInterrupt too: an interrupted run is recorded, then resumable
        record["status"] = "failed"
        record["error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"[:2000]
        raise
    finally:
        record["finished_at"] = now_iso()
        if record["status"] != "running" and is_rank_zero:
            write_results(run_dir, record)
    return record
