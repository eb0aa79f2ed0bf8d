"""One training run, from a composed Hydra config to `results.json`.

Order matters: data are prepared and validated, the pretrained model is loaded (weights first), the
frozen model is scored if asked, then the method is injected (SVDs of the loaded weights), Lightning
trains (resuming from `last.ckpt` when the run directory has one), the best checkpoint is scored on
every test set, and the record is written. A failure still leaves a record, marked failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from asr_peft.adapters import apply_method, parameter_plan, total_parameter_count, trainable_parameter_count
from asr_peft.adapters.svd import weight_key
from asr_peft.adapters.injection import match_modules
from asr_peft.data.normalizers import get_normalizer
from asr_peft.evaluation.scoring import score_test_sets
from asr_peft.models import load_owsm
from asr_peft.reporting.diagnostics import compute_subspace_diagnostics, write_subspace_diagnostics
from asr_peft.training.datamodule import OWSMDataModule
from asr_peft.training.module import OWSMLitModule
from asr_peft.training.results import (claim_run_dir, git_commit, now_iso, package_versions, peak_memory_mb,
                                       write_results)

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def run_dry(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build the architecture on the meta device, inject the method, and write the parameter plan."""
    bundle = load_owsm(_plain(cfg.model), device="meta")
    apply_method(bundle.model, _plain(cfg.method), _plain(cfg.adapt))
    plan = parameter_plan(bundle.model)
    plan.update({"model": cfg.model.name, "method": _plain(cfg.method), "adapt": _plain(cfg.adapt)})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    return plan


def _file_digest(path: str) -> str | None:
    """SHA-256 of a manifest file (None for a Kaldi directory or a missing file: the scorer reports those)."""
    file = Path(path)
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None


def _baseline_metrics(cfg: DictConfig, bundle, normalizer, run_dir: Path, skipped: Counter) -> dict | None:
    """Scores of the model before adaptation, cached: every method of a sweep shares them."""
    if not cfg.evaluation.get("baseline", False):
        return None
    # The weights themselves are part of the key: a checkpoint re-exported to the same path is a new model.
    weights = [weight_key(tensor) for tensor in bundle.model.state_dict().values()]
    # So are the test manifests' contents: a corpus regenerated in place is new test data.
    manifests = {name: _file_digest(path) for name, path in (cfg.data.test or {}).items()}
    key_source = json.dumps([_plain(cfg.model), _plain(cfg.data.test), _plain(cfg.evaluation), bundle.source, weights,
                             manifests], sort_keys=True, default=str)
    cache = Path(cfg.paths.cache_dir) / "baselines" / f"{hashlib.sha256(key_source.encode()).hexdigest()[:20]}.json"
    if cache.is_file() and bundle.source not in ("random", "meta"):
        return json.loads(cache.read_text(encoding="utf-8"))
    metrics = score_test_sets(bundle, _plain(cfg.data), _plain(cfg.evaluation), normalizer,
                              run_dir / "decode_baseline", skipped=skipped)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(metrics), encoding="utf-8")
    return metrics


def _pretrained_targets(cfg: DictConfig, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the pretrained weights of the adapted modules, for the subspace diagnostics at the end."""
    if not cfg.evaluation.get("subspace", False) or cfg.method.name == "frozen":
        return {}
    matches = match_modules(model, cfg.adapt.targets)
    return {f"{name}.weight": module.weight.detach().clone() for name, _, module in matches
            if isinstance(module, torch.nn.Linear)}


def _build_trainer(cfg: DictConfig, run_dir: Path) -> pl.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir))


def _load_best(module: OWSMLitModule, trainer: pl.Trainer, which: str) -> str | None:
    """Put the trainable weights of the best (or last) checkpoint back into the model for testing."""
    callback = trainer.checkpoint_callback
    path = None
    if callback is not None:
        path = callback.best_model_path if which == "best" else callback.last_model_path
    if not path or not Path(path).is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state, strict=False)
    return path


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
        record["baseline_metrics"] = _baseline_metrics(cfg, bundle, normalizer, run_dir, skipped)

    pretrained = _pretrained_targets(cfg, bundle.model)
    apply_method(bundle.model, _plain(cfg.method), _plain(cfg.adapt), svd_cache_dir=Path(cfg.paths.cache_dir) / "svd")
    record["parameters"] = {"trainable": trainable_parameter_count(bundle.model),
                            "total": total_parameter_count(bundle.model)}
    log.info("trainable parameters: %s of %s", f"{record['parameters']['trainable']:,}",
             f"{record['parameters']['total']:,}")

    trainer = _build_trainer(cfg, run_dir)
    module = OWSMLitModule(bundle, optimizer=_plain(cfg.optimizer), normalizer=normalizer,
                           total_steps=cfg.trainer.get("max_steps"))
    for lightning_logger in trainer.loggers:
        lightning_logger.log_hyperparams({**_plain(cfg), "parameters": record["parameters"]})
    if record["parameters"]["trainable"] > 0:  # method=frozen only scores the pretrained model
        last = Path(cfg.callbacks.model_checkpoint.dirpath) / "last.ckpt" if cfg.get("callbacks") else None
        record["resumed_from"] = str(last) if last is not None and last.is_file() else None
        if record["resumed_from"]:
            log.info("resuming from %s", record["resumed_from"])
        trainer.fit(module, datamodule=datamodule, ckpt_path=record["resumed_from"])
        record["validation_history"] = module.validation_history
        if not trainer.is_global_zero:
            return record
        record["tested_checkpoint"] = _load_best(module, trainer, cfg.evaluation.get("checkpoint", "best"))
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
                                       data=_decode_rows(run_dir / "decode"))
    return record


def _decode_rows(decode_dir: Path, per_set: int = 50) -> list[list[str]]:
    """(test set, reference, hypothesis) for the first utterances of each test set's trn files."""
    rows = []
    for set_dir in sorted(p for p in decode_dir.iterdir() if p.is_dir()):
        refs = (set_dir / "ref.trn").read_text(encoding="utf-8").splitlines()[:per_set]
        hyps = (set_dir / "hyp.trn").read_text(encoding="utf-8").splitlines()[:per_set]
        rows += [[set_dir.name, ref.rsplit(" (", 1)[0], hyp.rsplit(" (", 1)[0]] for ref, hyp in zip(refs, hyps)]
    return rows


def new_record(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return {
        "status": "running", "error": None, "run_dir": str(run_dir), "started_at": now_iso(), "finished_at": None,
        "method": _plain(cfg.method), "adapt": _plain(cfg.adapt), "model": {"name": cfg.model.name},
        "data": {"name": cfg.data.name}, "seed": cfg.seed, "metrics": {}, "baseline_metrics": None,
        "parameters": None, "train_time_s": None, "peak_memory_mb": None, "global_step": None,
        "validation_history": [], "skipped": {}, "packages": package_versions(),
        "git_commit": git_commit(Path(cfg.paths.root_dir)), "config": _plain(cfg),
    }


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and test once; always leaves results.json (completed or failed) in `run_dir`."""
    # Under DDP every rank runs this; only rank zero owns the run directory's record.
    is_rank_zero = rank_zero_only.rank == 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_rank_zero:
        claim_run_dir(run_dir)
    record = new_record(cfg, run_dir)
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
