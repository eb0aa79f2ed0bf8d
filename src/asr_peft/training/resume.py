"""What a resumed run needs to continue exactly where an uninterrupted one would be.

Lightning's checkpoint already holds the trainable weights, optimizer, LR scheduler, loop counters and
callback states (best checkpoint, early stopping); the DataModule adds the sampler's position
(`training/datamodule.py`). Two things are missing from it, and live here:

- `LatestModelCheckpoint`: Lightning rewrites `last.ckpt` only when it also saves a top-k checkpoint,
  so with `save_top_k: 1` on `val_wer` it stays at the best step. Here `last.ckpt` is the latest state
  after every validation, at the end of training, and when the process is told to stop (SIGTERM:
  a preempted or timed-out job resumes from the step it reached).
- `RandomState`: the global random generators (torch, CUDA, numpy, Python) as of the checkpoint, put
  back when training restarts, so SpecAugment, dropout and speed perturbation draw what an
  uninterrupted run draws. Under DDP the checkpoint holds rank zero's state, which every rank gets
  back: resumed multi-process runs are close, not identical.

- `StoppedStaysStopped`: Lightning does not keep `trainer.should_stop`, so a run stopped by early stopping
  and resumed (killed while its test sets were scored, say) would train on until the next validation
  and past it; it stays where early stopping left it, and only its scoring runs again.

A run directory's checkpoints may also come from another directory (a run copied or moved, or an LR
search's run that a comparison scores instead of training the same again): `LatestModelCheckpoint` then
tests the copy beside it, not the original it names, and says where it was trained (`trained_in`).

Two more things make a resumed (or a repeated) run train what an uninterrupted first run trains:
`random_state_kept` runs the work before training whose amount depends on caches (scoring the
frozen model, generating the corpus) without drawing from the generators training uses, and
`resumable_checkpoint` resumes only from a checkpoint that loads: a `last.ckpt` torn by a full disk
or a crash (or not a checkpoint at all) gives way to the newest checkpoint beside it that loads, with
one line saying so.
"""

from __future__ import annotations

import contextlib
import logging
import random
import warnings
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from asr_peft.errors import ModelLoadError
from asr_peft.evaluation.checkpoint import read_checkpoint

log = logging.getLogger(__name__)


class LatestModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose `last.ckpt` is always the latest state (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latest_step: int | None = None  # the global step `last.ckpt` holds
        self.trained_in: str | None = None  # the checkpoint directory of the training, when not this one

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_in = state_dict.get("dirpath")
        if saved_in is None or self.dirpath is None or Path(saved_in) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return
        with warnings.catch_warnings():  # Lightning's warning says what the line below says
            warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        self.trained_in = str(saved_in)
        copy = Path(self.dirpath) / Path(self.best_model_path).name if self.best_model_path else None
        if copy is not None and copy.is_file():
            self.best_model_path = str(copy)
        log.info("these checkpoints were trained in %s; testing %s", saved_in, self.best_model_path or "none")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_latest(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_latest(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        # Lightning raises SIGTERMException between steps, so the state is a consistent one.
        if isinstance(exception, SIGTERMException):
            self._save_latest(trainer)

    def _save_latest(self, trainer: pl.Trainer) -> None:
        if (
            not self.save_last
            or trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
            or getattr(trainer, "fast_dev_run", False)  # set by Lightning at run time, not declared
            or self._latest_step == trainer.global_step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._latest_step = trainer.global_step


class StoppedStaysStopped(Callback):
    """A run that early stopping had stopped does not train on when it is resumed (see the module docstring)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the checkpoint's states are restored (for every strategy), before the fit loop's first step.
        stopper = trainer.early_stopping_callback
        if stopper is not None and stopper.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            log.info("early stopping had stopped this run at step %d; it is not trained further", trainer.global_step)
            trainer.should_stop = True


class RandomState(Callback):
    """Saves the global random generators with each checkpoint; puts them back when a resumed run starts training."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, python_state, gauss = random.getstate()
        kind, keys, position, has_gauss, cached = np.random.get_state()
        # Tensors, lists and numbers only: checkpoints load with torch.load(weights_only=True).
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": version, "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not at load time: building the data loaders and the sanity check come in between, and an
        # uninterrupted run does not repeat them at this point.
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        numpy = state["numpy"]
        np.random.set_state(
            (
                numpy["kind"],
                numpy["keys"].numpy().astype(np.uint32),
                numpy["position"],
                numpy["has_gauss"],
                numpy["cached_gaussian"],
            )
        )
        python = state["python"]
        random.setstate((python["version"], tuple(python["state"]), python["gauss"]))


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Every global generator (torch, CUDA, numpy, Python) is, after the block, as it was before it.

    For work whose amount depends on what is cached (a baseline scored or read from the cache, a corpus
    generated or found): drawing from training's generators there would make a run's training depend
    on whether it was the first of its sweep (a data loader alone draws a seed from torch's generator
    each time it is iterated).
    """
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def resumable_checkpoint(last: Path) -> Path | None:
    """`last` when it loads; else the newest (highest step) checkpoint beside it that loads; else None
    (a fresh start). Choosing another than `last` is said in one line."""
    if not last.exists() and not last.is_symlink():
        return None
    _, problem = _resumable_step(last)
    if problem is None:
        return last
    steps: dict[Path, int] = {}
    for candidate in sorted(set(last.parent.glob("*.ckpt")) - {last}):
        step, _ = _resumable_step(candidate)
        if step is not None:
            steps[candidate] = step
    chosen = max(steps, key=steps.__getitem__) if steps else None
    instead = f"resuming from {chosen} (step {steps[chosen]}) instead" if chosen else "starting afresh instead"
    log.warning("%s; %s", problem, instead)
    return chosen


def _resumable_step(path: Path) -> tuple[int | None, str | None]:
    """(the step `path` was saved at, None) when it loads as a training checkpoint, else (None, why not)."""
    if path.is_symlink():
        return None, f"{path} is a symbolic link; a run resumes only from its own checkpoints"
    try:  # memory-mapped: the check reads the file's index, not every tensor
        return int(read_checkpoint(path, mmap=True).get("global_step") or 0), None
    except ModelLoadError as err:
        return None, str(err)
