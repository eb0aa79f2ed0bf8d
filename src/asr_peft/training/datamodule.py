"""The DataModule: manifests from the `data` config, validated once, preprocessed by ESPnet's S2T
preprocessor (train mode for the training set), batched as the `loader` config says."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from asr_peft.data.dataset import SpeechDataset, collate, validate_utterances
from asr_peft.data.manifest import Utterance, load_utterances
from asr_peft.data.owsm_text import OWSMPreprocessor
from asr_peft.data.sampler import DurationBucketSampler
from asr_peft.errors import ConfigError


def load_split(data_cfg: Mapping[str, Any], path: str, skipped: Counter) -> list[Utterance]:
    """Read and validate one manifest; skip counts accumulate into `skipped`."""
    utterances, skip_counts = validate_utterances(
        load_utterances(path), max_duration=data_cfg.get("max_duration"), on_error=data_cfg.get("on_error", "raise"),
        resample=data_cfg.get("resample", True))
    skipped.update(skip_counts)
    return utterances


def speed_factors(data_cfg: Mapping[str, Any]) -> list[float]:
    """`data.speed_perturb`: the training set's speed factors (e.g. [0.9, 1.0, 1.1]); null or [] for none."""
    factors = data_cfg.get("speed_perturb") or []
    if isinstance(factors, (str, int, float)) or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0.5 <= f <= 2.0 for f in factors):
        raise ConfigError(f"data.speed_perturb must be a list of speed factors in [0.5, 2], got {factors!r}")
    return [float(f) for f in factors]


class OWSMDataModule(pl.LightningDataModule):
    def __init__(self, data_cfg: Mapping[str, Any], loader_cfg: Mapping[str, Any], bundle, *, seed: int = 0):
        super().__init__()
        for key in ("train", "valid"):
            if not data_cfg.get(key):
                raise ConfigError(f"data.{key} is not set (a JSONL manifest or a Kaldi data directory)")
        self.cfg = data_cfg
        self.loader_cfg = loader_cfg
        self.bundle = bundle
        self.seed = seed
        language = data_cfg.get("language", "eng")
        # Train mode: ESPnet's random placement in the padded window and its text_prev dropping.
        self.train_preprocessor = OWSMPreprocessor(bundle, default_language=language, train=True)
        self.eval_preprocessor = OWSMPreprocessor(bundle, default_language=language, train=False)
        self.speed_factors = speed_factors(data_cfg)
        self.skipped: Counter = Counter()
        self.train_set: SpeechDataset | None = None
        self.valid_set: SpeechDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            resample = self.cfg.get("resample", True)
            self.train_set = SpeechDataset(load_split(self.cfg, self.cfg["train"], self.skipped), self.train_preprocessor,
                                           resample=resample, speed_factors=self.speed_factors)
            self.valid_set = SpeechDataset(load_split(self.cfg, self.cfg["valid"], self.skipped), self.eval_preprocessor,
                                           resample=resample)

    def loader(self, dataset: SpeechDataset, *, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        sampler = DurationBucketSampler(
            dataset.durations, max_batch_seconds=self.loader_cfg.get("max_batch_seconds"),
            max_batch_size=self.loader_cfg.get("max_batch_size"), batch_size=self.loader_cfg.get("batch_size"),
            shuffle=shuffle, seed=self.seed,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)
        workers = int(self.loader_cfg.get("num_workers", 0))
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.valid_set, shuffle=False)
