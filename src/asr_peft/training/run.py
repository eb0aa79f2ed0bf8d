"""One training run, from a composed Hydra config to `results.json`.

Order matters: the config is validated (one pass, `asr_peft.config`, the hardware settings included:
before anything loads), every manifest is read and every utterance checked (train, valid and the test
sets: a bad test file stops the run before training, not after it), the pretrained model is loaded
(weights first) and the utterances' languages checked against its tokens, the frozen model is scored if
asked, then the method is injected (SVDs of the loaded weights), Lightning trains (resuming from
`last.ckpt` when the run directory has one), the tested checkpoint is scored on every test set, and the
record is written. The record exists from the start (`running`); a failure leaves it `failed`, with the
error in one line; SIGTERM leaves it `failed` too and the process exits with status 143 (128 + SIGTERM)
after the record is written. Scoring (baseline and test) runs on the training accelerator in
validation's precision (`training/hardware.py`); under FSDP, whose processes each hold a shard of the
trained model, rank 0 scores a copy rebuilt from the tested checkpoint.

The steps live in their own modules: `baseline` (frozen scores, cached), `trainer` (Lightning Trainer
and the tested checkpoint), `resume` (what a resumed run needs), `module` / `datamodule` (what
Lightning runs), `results` (the record and the run directory's claim), `plan` (the dry run).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from asr_peft.adapters import apply_method, total_parameter_count, trainable_parameter_count
from asr_peft.config.resolve import plain
from asr_peft.config.validate import validate_config
from asr_peft.data.normalizers import get_normalizer
from asr_peft.data.validation import validate_data
from asr_peft.errors import ConfigError, ModelLoadError
from asr_peft.evaluation.checkpoint import rebuild_trained_model
from asr_peft.evaluation.scoring import score_test_sets
from asr_peft.evaluation.trn import read_decodes
from asr_peft.adapters.subspace import compute_subspace_diagnostics, pretrained_target_weights, write_subspace_diagnostics
from asr_peft.files import check_writable_directory
from asr_peft.models import load_model
from asr_peft.training.baseline import baseline_metrics
from asr_peft.training.datamodule import SpeechDataModule
from asr_peft.training.hardware import scoring_target, strategy_name
from asr_peft.training.module import SpeechLitModule
from asr_peft.training.resume import random_state_kept, resumable_checkpoint
from asr_peft.training.results import RunClaim, claim_run_dir, new_record, now_iso, peak_memory_mb, resolved_or_raw, write_results
from asr_peft.training.trainer import build_trainer, load_tested_checkpoint, tested_checkpoint_path

log = logging.getLogger(__name__)

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM
SIGINT_EXIT_STATUS = 128 + signal.SIGINT
INTERRUPTED = "interrupted (Ctrl-C); the same command resumes the run from checkpoints/last.ckpt"


def _is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0  # set by Lightning when it is imported


class Terminated(BaseException):
    """SIGTERM outside Lightning's training loop (which stops at the next step by itself)."""


class _SigtermGuard:
    """SIGTERM becomes `Terminated` (so the record is written), except while Lightning trains: its own
    handler, which it chains with this one, finishes the current step and raises SIGTERMException."""

    def __init__(self) -> None:
        self.lightning_handles = False

    def __call__(self, signum, frame) -> None:
        if not self.lightning_handles:
            raise Terminated("SIGTERM")

    @contextlib.contextmanager
    def installed(self) -> Iterator[_SigtermGuard]:
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextlib.contextmanager
    def deferred_to_lightning(self) -> Iterator[None]:
        self.lightning_handles = True
        try:
            yield
        finally:
            self.lightning_handles = False


def train(cfg: DictConfig, run_dir: Path, *, record: dict[str, Any], sigterm: _SigtermGuard) -> dict[str, Any]:
    """Everything after the run directory is claimed and the config validated; fills and returns `record`."""
    check_writable_directory(cfg.paths.cache_dir, "paths.cache_dir")  # not after the baseline was scored
    device, precision = scoring_target(cfg.trainer, cfg.evaluation)
    record["scored_on"] = {"device": str(device), "precision": precision}
    pl.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    data_cfg = plain(cfg.data)
    normalizer = get_normalizer(data_cfg.get("normalizer", "whisper_basic"))
    with random_state_kept():  # a corpus generated or found, a baseline scored or cached: training draws the same
        if cfg.data.get("prepare"):
            instantiate(cfg.data.prepare)
        data = validate_data(data_cfg, normalizer=normalizer, cache_dir=cfg.paths.cache_dir)  # before the model loads
    bundle = load_model(plain(cfg.model), cache_dir=cfg.paths.get("model_cache_dir"))
    record["model"]["source"] = bundle.source
    bundle.check_decode_method(cfg.evaluation.get("decode"))  # before anything is scored or trained
    bundle.check_validation_decode(cfg.evaluation.get("validation_decode"))
    for method in cfg.evaluation.get("secondary_decodes") or []:
        bundle.check_decode_method(method, key="evaluation.secondary_decodes")
    language = data_cfg.get("language", "eng")
    data.keep_languages(bundle.has_language, language, data_cfg.get("on_error", "raise"))
    with random_state_kept():
        data.keep_within_token_limits(
            bundle.token_limit(language),
            data_cfg.get("on_error", "raise"),
            fastest_speed=max(data_cfg.get("speed_perturb") or [1.0]),
        )
    record["skipped"] = dict(data.skipped)
    if cfg.get("activation_checkpointing"):
        bundle.enable_activation_checkpointing()
    datamodule = SpeechDataModule(data_cfg, plain(cfg.loader), bundle, train=data.train, valid=data.valid, seed=cfg.seed)
    if _is_rank_zero():
        with random_state_kept():
            record["baseline_metrics"] = baseline_metrics(
                cfg, bundle, normalizer, run_dir, data.test, device=device, precision=precision
            )

    pretrained = pretrained_target_weights(cfg, bundle.model)
    apply_method(bundle.model, plain(cfg.method), plain(cfg.adapt), svd_cache_dir=Path(cfg.paths.cache_dir) / "svd")
    record["parameters"] = {"trainable": trainable_parameter_count(bundle.model), "total": total_parameter_count(bundle.model)}
    log.info("trainable parameters: %s of %s", f"{record['parameters']['trainable']:,}", f"{record['parameters']['total']:,}")

    trainer = build_trainer(cfg, run_dir)
    module = SpeechLitModule(
        bundle,
        optimizer=plain(cfg.optimizer),
        normalizer=normalizer,
        total_steps=cfg.trainer.get("max_steps"),
        on_nonfinite_loss=cfg.get("on_nonfinite_loss", "stop"),
        validation_decode=cfg.evaluation.get("validation_decode"),
    )
    for lightning_logger in trainer.loggers:
        lightning_logger.log_hyperparams(
            {**plain(cfg), "parameters": record["parameters"], "configuration": record["configuration"]}
        )  # W&B groups runs by it
    if record["parameters"]["trainable"] > 0:  # method=frozen only scores the pretrained model
        last = Path(cfg.callbacks.model_checkpoint.dirpath) / "last.ckpt" if cfg.get("callbacks") else None
        resume_from = resumable_checkpoint(last) if last is not None else None
        record["resumed_from"] = str(resume_from) if resume_from is not None else None
        if record["resumed_from"]:
            log.info("resuming from %s", record["resumed_from"])
        elif cfg.evaluation.get("validate_before_training"):
            with random_state_kept():  # the dev WER before adaptation: the step-0 point of the validation history
                trainer.validate(module, datamodule=datamodule, verbose=False)
        fit_started = time.perf_counter()
        with sigterm.deferred_to_lightning():
            trainer.fit(module, datamodule=datamodule, ckpt_path=record["resumed_from"], weights_only=True)
        record["fit_time_s"] = time.perf_counter() - fit_started  # this process's share, when it resumed
        record["validation_history"] = module.validation_history
        # A run whose checkpoints were trained in another directory (copied there): where, else None.
        record["trained_in"] = getattr(trainer.checkpoint_callback, "trained_in", None)
        if not trainer.is_global_zero:
            return record
        which = cfg.evaluation.get("checkpoint", "best")
        if strategy_name(cfg.trainer.get("strategy", "auto")).startswith("fsdp"):
            record["tested_checkpoint"] = tested_checkpoint_path(trainer, which)
            if record["tested_checkpoint"] is None:
                raise ModelLoadError(
                    f"trainer=fsdp: no {which} checkpoint was written, and the sharded model can only be scored from one"
                )
            bundle = rebuild_trained_model(cfg, Path(record["tested_checkpoint"]), device=device)
            record["tested_step"] = int(trainer.global_step) if which == "last" else None
        else:
            record["tested_checkpoint"], record["tested_step"] = load_tested_checkpoint(module, trainer, which)
    record["train_time_s"] = time.perf_counter() - started
    record["global_step"] = int(trainer.global_step)
    record["metrics"] = score_test_sets(
        bundle,
        data_cfg,
        plain(cfg.evaluation),
        normalizer,
        run_dir / "decode",
        test_sets=data.test,
        device=device,
        precision=precision,
    )
    if pretrained:
        pretrained = {name: weight.to(device) for name, weight in pretrained.items()}  # beside the scored model
        diagnostics = compute_subspace_diagnostics(
            pretrained,
            bundle.model,
            [k.removesuffix(".weight") for k in pretrained],
            svd_cache_dir=Path(cfg.paths.cache_dir) / "svd",
        )
        write_subspace_diagnostics(run_dir, diagnostics)
    record["peak_memory_mb"] = peak_memory_mb()
    for lightning_logger in trainer.loggers:
        lightning_logger.log_metrics(
            {
                f"test/{name}/{key}": value
                for name, values in record["metrics"].items()
                for key, value in values.items()
                if isinstance(value, (int, float))
            }
        )
        if hasattr(lightning_logger, "log_table"):  # W&B: a per-run table of test transcripts
            lightning_logger.log_table(
                key="test_decodes", columns=["test set", "reference", "hypothesis"], data=read_decodes(run_dir / "decode")
            )
    return record


def run(cfg: DictConfig, run_dir: Path, *, claim: RunClaim | None = None) -> dict[str, Any]:
    """Train and test once; always leaves results.json (completed or failed) in `run_dir`.

    `claim`: the caller's hold on `run_dir` (train.py claims it first, to show a completed run instead);
    without one, the directory is claimed here and a completed run in it is an error.
    """
    # Under DDP every rank runs this; only rank zero owns the run directory and its record.
    is_rank_zero = _is_rank_zero()
    if is_rank_zero and claim is None:
        claim = claim_run_dir(run_dir, cfg)
        if claim.completed is not None:
            claim.release()
            raise ConfigError(
                f"{run_dir / 'results.json'} already records a completed run; pick another "
                "hydra.run.dir (or delete it) to train again"
            )
    record = new_record(resolved_or_raw(cfg), run_dir)
    sigterm = _SigtermGuard()
    try:
        with sigterm.installed():
            if is_rank_zero:
                write_results(run_dir, record)  # `running`: a killed process is noticed by the next start
            validate_config(cfg)
            train(cfg, run_dir, record=record, sigterm=sigterm)
            record["status"] = "completed"
    except (Terminated, SIGTERMException):
        record["status"] = "failed"
        record["error"] = "SIGTERM: the run was told to stop; the same command resumes it from checkpoints/last.ckpt"
        _finish(record, run_dir, claim, is_rank_zero)
        raise SystemExit(SIGTERM_EXIT_STATUS) from None
    except BaseException as err:
        record["status"] = "failed"
        if _interrupted(err):  # Ctrl-C: recorded, then resumable; exit status 130 as for any interrupted command
            record["error"] = INTERRUPTED
            _finish(record, run_dir, claim, is_rank_zero)
            log.error("%s", INTERRUPTED)
            raise SystemExit(SIGINT_EXIT_STATUS) from None
        record["error"] = f"{type(err).__name__}: {' '.join(str(err).split())}"[:2000]
        _finish(record, run_dir, claim, is_rank_zero)
        raise
    _finish(record, run_dir, claim, is_rank_zero)
    return record


def _interrupted(err: BaseException) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or the `exit(1)` Lightning turns one into after shutting down."""
    return isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt))


def _finish(record: dict[str, Any], run_dir: Path, claim: RunClaim | None, is_rank_zero: bool) -> None:
    record["finished_at"] = now_iso()
    if is_rank_zero:
        write_results(run_dir, record)
    if claim is not None:
        claim.release()
