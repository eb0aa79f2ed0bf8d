"""The DataModule: the validated training and validation utterances, preprocessed by the model's own
preprocessor (train mode for the training set), batched as the `loader` config says.

Its state in a checkpoint is where the training sampler stood (epoch and batches done), so that a
resumed run goes on with the very batches an uninterrupted run would have drawn next.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from asr_peft.data.dataset import Collate, SpeechDataset, model_dataset
from asr_peft.data.manifest import Utterance
from asr_peft.data.sampler import DurationBucketSampler


class SpeechDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_cfg: Mapping[str, Any],
        loader_cfg: Mapping[str, Any],
        bundle,
        *,
        train: list[Utterance],
        valid: list[Utterance],
        seed: int = 0,
    ):
        super().__init__()
        self.cfg = data_cfg
        self.loader_cfg = loader_cfg
        self.bundle = bundle
        self.seed = seed
        language = data_cfg.get("language", "eng")
        resample = data_cfg.get("resample", True)
        # Train mode: the family's training variant (OWSM: ESPnet's random placement in the padded window).
        self.train_set = model_dataset(
            bundle,
            train,
            default_language=language,
            train=True,
            resample=resample,
            speed_factors=[float(f) for f in data_cfg.get("speed_perturb") or []],
        )
        self.valid_set = model_dataset(bundle, valid, default_language=language, resample=resample)
        self.collate = Collate(bundle.collate)
        self._train_sampler: DurationBucketSampler | None = None
        self._resume_sampler: Mapping[str, int] | None = None

    def sampler(self, dataset: SpeechDataset, *, shuffle: bool) -> DurationBucketSampler:
        trainer = self.trainer
        return DurationBucketSampler(
            dataset.durations,
            max_batch_seconds=self.loader_cfg.get("max_batch_seconds"),
            max_batch_size=self.loader_cfg.get("max_batch_size"),
            batch_size=self.loader_cfg.get("batch_size"),
            shuffle=shuffle,
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )

    def loader(self, dataset: SpeechDataset, sampler: DurationBucketSampler) -> DataLoader:
        workers = int(self.loader_cfg.get("num_workers", 0))
        # A generator of its own: creating a loader iterator then draws no number from the global one,
        # whose state a checkpoint restores (training/resume.py).
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        self._train_sampler = self.sampler(self.train_set, shuffle=True)
        if self._resume_sampler is not None:
            self._train_sampler.resume(**self._resume_sampler)
            self._resume_sampler = None
        return self.loader(self.train_set, self._train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.valid_set, self.sampler(self.valid_set, shuffle=False))

    def state_dict(self) -> dict[str, Any]:
        """The training sampler's position, by Lightning's count of the batches trained in this epoch (the
        sampler itself runs ahead of training by the loader's prefetch)."""
        trainer = self.trainer
        if trainer is None or self._train_sampler is None:
            return {}
        progress: Any = trainer.fit_loop.epoch_loop.batch_progress.current  # typed as its base class, without `processed`
        return {"train_sampler": {"epoch": int(trainer.current_epoch), "batches_done": int(progress.processed)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_sampler = state_dict.get("train_sampler")


class SamplerEpochs(Callback):
    """Tells the training sampler which epoch starts, so that every epoch is shuffled anew.

    Lightning calls `set_epoch` on a loader's `sampler` (and on `batch_sampler.sampler`), never on a
    batch sampler itself, which is what `DurationBucketSampler` is.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler: Any = getattr(trainer.train_dataloader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(trainer.current_epoch)
