"""Planning, rendering and caching the synthetic domain-shift corpus.

Splits at scale 1.0 (utterances; hours are measured in the corpus's CARD.md):
    source_train  19,500  pretraining (>= 8 h: utterances average 1.6 s), adult voices, standard accents
    source_dev, child_dev, dialect_dev  300 each: the same 300 dev sentences in every domain
    child_adapt 2,500, dialect_adapt 2,100  adaptation sets (about 1 h each)
    source_test, child_test, dialect_test  600 each: the same 600 test sentences in every domain
Dev and test sentences are held out first and never occur in a training split (source_train,
child_adapt, dialect_adapt); paired dev and test sets make a domain gap come from voice and
pronunciation alone. Every random choice is drawn up front from one generator seeded with `seed`,
and each utterance's audio depends only on its drawn specification: a seed fixes the corpus bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr_peft.data.synthetic import engines
from asr_peft.data.synthetic.card import write_card
from asr_peft.data.synthetic.render import SAMPLE_RATE, Rendering, render_to_file
from asr_peft.data.synthetic.text import SENTENCES, hold_out, load_sentences
from asr_peft.data.synthetic.voices import domains, draw_voice
from asr_peft.errors import DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
LEVEL_DBFS = (-26.0, -16.0)  # RMS level of each utterance
SNR_DB = (30.0, 45.0)        # white noise below that level: clean, but never digital silence


@dataclass(frozen=True)
class Split:
    name: str
    domain: str
    utterances: int  # at scale 1.0
    pool: str        # "train", "dev" or "test" sentences


SPLITS = (
    Split("source_train", "source", 19500, "train"), Split("source_dev", "source", 300, "dev"),
    Split("child_adapt", "child", 2500, "train"), Split("child_dev", "child", 300, "dev"),
    Split("dialect_adapt", "dialect", 2100, "train"), Split("dialect_dev", "dialect", 300, "dev"),
    Split("source_test", "source", 600, "test"), Split("child_test", "child", 600, "test"),
    Split("dialect_test", "dialect", 600, "test"),
)
COMPLETE, GENERATING = "COMPLETE.json", "GENERATING.json"


def scaled(count: int, scale: float) -> int:
    return max(1, math.ceil(count * scale))


def plan(seed: int, scale: float, flite: bool) -> dict[str, list[Rendering]]:
    """Every utterance of every split, drawn from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    held_counts = {pool: max(scaled(s.utterances, scale) for s in SPLITS if s.pool == pool) for pool in ("dev", "test")}
    held, training = hold_out(load_sentences(), held_counts["dev"] + held_counts["test"], rng)
    pools = {"test": held[: held_counts["test"]], "dev": held[held_counts["test"]:], "train": training}
    voices = domains(flite)
    planned = {}
    for split in SPLITS:
        count, pool = scaled(split.utterances, scale), pools[split.pool]
        if split.pool == "train":  # every training sentence once before any twice
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(math.ceil(count / len(pool)))])
            texts = [pool[i] for i in order[:count]]
        else:
            texts = pool[:count]
        planned[split.name] = [
            Rendering(text, draw_voice(voices[split.domain], rng, SAMPLE_RATE), float(rng.uniform(*LEVEL_DBFS)),
                      float(rng.uniform(*SNR_DB)), int(rng.integers(2**31)))
            for text in texts]
    return planned


def settings(seed: int, scale: float, flite: bool) -> dict:
    """What determines the corpus; its hash marks a finished corpus."""
    sentences = hashlib.sha256(SENTENCES.read_bytes()).hexdigest()[:16]
    values = {"generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale, "flite": flite, "sentences": sentences}
    values["hash"] = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    return values


def utterance_id(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


def generate(out_dir: Path, wanted: dict, workers: int) -> None:
    """Render every planned utterance (skipping finished files), then write manifests and the card."""
    planned = plan(wanted["seed"], wanted["scale"], wanted["flite"])
    jobs = [(spec, str(out_dir / "audio" / split / f"{utterance_id(split, i)}.flac"))
            for split, specs in planned.items() for i, spec in enumerate(specs)]
    # fork: the workers inherit the imported modules; the synthesisers fork per utterance anyway.
    with get_context("fork").Pool(workers) as pool:
        durations = list(tqdm(pool.imap(render_to_file, jobs, chunksize=8), total=len(jobs),
                              desc="synthesising", unit="utt", dynamic_ncols=True))
    index = 0
    for split, specs in planned.items():
        lines = []
        for i, spec in enumerate(specs):
            name = utterance_id(split, i)
            lines.append(json.dumps({"id": name, "audio": f"audio/{split}/{name}.flac", "text": spec.text,
                                     "duration": round(durations[index], 4), "speaker": spec.draw.voice.speaker,
                                     "language": "eng"}))
            index += 1
        (out_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_card(out_dir, wanted, planned, durations)


def ensure_corpus(out_dir: str | Path, *, seed: int = 0, scale: float = 1.0, workers: int | None = None,
                  flite: bool = True) -> Path:
    """The corpus directory, generated first unless it already holds the corpus for these settings.

    `scale` shrinks or grows every split; `flite=False` uses espeak-ng voices only (no flite
    installed). An interrupted generation with the same settings resumes. A directory that holds
    anything else (another corpus, other files) is never touched: DataError.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    if scale <= 0:
        raise DataError(f"scale must be positive, got {scale} (corpus {out_dir})")
    wanted = settings(seed, scale, flite)
    describe = f"seed {seed}, scale {scale}, flite {flite}, generator {GENERATOR_VERSION}"
    for marker in (COMPLETE, GENERATING):
        if (out_dir / marker).is_file():
            found = json.loads((out_dir / marker).read_text())
            if found.get("hash") != wanted["hash"]:
                raise DataError(f"{out_dir} holds another synthetic corpus (seed {found.get('seed')}, scale "
                                f"{found.get('scale')}, flite {found.get('flite')}, generator "
                                f"{found.get('generator_version')}), not the one asked for ({describe}); "
                                f"choose another directory or delete it")
            if marker == COMPLETE:
                return out_dir
            break
    else:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise DataError(f"{out_dir} is not empty and holds no synthetic corpus; choose another directory")
    if flite:
        engines.flite_version()  # fails early, with the install hint, before anything is written
    engines.espeak_version()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / GENERATING).write_text(json.dumps(wanted, indent=1) + "\n")
    log.info("generating the synthetic corpus in %s (%s)", out_dir, describe)
    generate(out_dir, wanted, workers or len(os.sched_getaffinity(0)))
    (out_dir / GENERATING).replace(out_dir / COMPLETE)
    return out_dir
