"""Shared fixtures: a tiny OWSM-architecture model and a handful of generated utterances."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ASR_PEFT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for a model hub


def compose_config(config_name: str = "train", overrides: list[str] | None = None, config_dir: Path | None = None):
    """Compose a project config the way train.py does (resolvers included)."""
    from hydra import compose, initialize_config_dir

    from asr_peft.cli import setup_environment

    setup_environment()
    with initialize_config_dir(config_dir=str(config_dir or ROOT / "configs"), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=config_name == "train")


def model_config(name: str = "owsm_tiny") -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(name, config_dir=ROOT / "configs" / "model"), resolve=True)


@pytest.fixture(scope="session")
def tiny_bundle_factory():
    """Builds fresh tiny models with seeded random weights (ESPnet import cost is paid once)."""
    import torch

    from asr_peft.models import load_owsm

    def build(seed: int = 0):
        torch.manual_seed(seed)
        return load_owsm(model_config("owsm_tiny"))

    return build


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundle_factory):
    return tiny_bundle_factory(0)


def write_tone(path: Path, seconds: float, sample_rate: int = 16000, frequency: float = 220.0, seed: int = 0) -> Path:
    """A short tone with a little noise: real audio for the readers, not speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    samples = 0.3 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples.astype(np.float32), sample_rate)
    return path


SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "she reads a good book",
    "we like green apples",
    "the sun is warm today",
    "he plays the old piano",
]


def make_tiny_corpus(directory: Path) -> Path:
    """Train/valid/test JSONL manifests over a handful of generated utterances, in `directory/corpus`."""
    root = directory / "corpus"
    for split, offset in (("train", 0), ("valid", 2), ("test", 4)):
        lines = []
        for i, sentence in enumerate(SENTENCES[offset : offset + 2] * (2 if split == "train" else 1)):
            audio = write_tone(root / "audio" / f"{split}{i}.wav", 1.2 + 0.1 * i, frequency=200 + 30 * i, seed=i)
            lines.append(
                json.dumps(
                    {
                        "id": f"{split}{i}",
                        "audio": f"audio/{audio.name}",
                        "text": sentence,
                        "speaker": f"spk{i % 2}",
                        "language": "eng",
                    }
                )
            )
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return make_tiny_corpus(tmp_path)


@pytest.fixture(scope="session")
def tiny_corpus_factory():
    return make_tiny_corpus
