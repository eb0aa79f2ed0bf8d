"""Planning, rendering and caching the synthetic domain-shift corpus.

Splits (utterance counts at scale 1.0):
    source_train 16,500 (>= 8 h)   pretraining, adult standard-accent voices
    source_dev   300
    child_adapt  3,000 (~1 h; child utterances are faster)   child_dev   300
    dialect_adapt 1,900 (~1 h)  dialect_dev 300
    source_test / child_test / dialect_test 600 each: the same sentences in every domain (paired)
Sentences are partitioned first: test and dev sentences never occur in a training split. In the
target domains (child, dialect) the adaptation, dev and test splits are spoken by disjoint speakers
(domains.py: a speaker is an accent, a voice variant and fixed pitch and vocal-tract draws, and each
role has its own variants); the data card lists every split's speakers.
Every random choice is drawn up front from one seeded generator, so a seed fixes the corpus exactly.

Only the splits asked for are rendered (a data config asks for those it reads; the pretraining split
only `make pretrained-checkpoint` needs). The whole corpus is always planned, in one fixed order, and
each utterance's audio depends only on its own drawn settings, so a split rendered alone is
bit-identical to the same split rendered in a full generation. A split is complete when its manifest
exists: the manifest is written, atomically, only after all its audio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from tqdm import tqdm

from asr_peft.data.synthetic.domains import (
    DOMAINS,
    FEMALE_VARIANTS,
    LEVEL_DBFS,
    MALE_VARIANTS,
    SNR_DB,
    VARIANTS_BY_ROLE,
    Domain,
)
from asr_peft.data.synthetic.render import SAMPLE_RATE, Rendering, render_to_file
from asr_peft.errors import DataError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # 2: child formant scaling of 8-11-year-olds; 3: speaker-disjoint target splits (domains.py)
SENTENCES = Path(__file__).with_name("sentences.txt")
SPLITS = {  # split -> (domain, utterances at scale 1, sentence pool)
    "source_train": ("source", 16500, "train"),
    "source_dev": ("source", 300, "dev"),
    "child_adapt": ("child", 3000, "train"),
    "child_dev": ("child", 300, "dev"),
    "dialect_adapt": ("dialect", 1900, "train"),
    "dialect_dev": ("dialect", 300, "dev"),
    "source_test": ("source", 600, "test"),
    "child_test": ("child", 600, "test"),
    "dialect_test": ("dialect", 600, "test"),
}
# A pretraining-sized split that only `make pretrained-checkpoint` reads: generated on demand.
PRETRAINING_SPLITS = ("source_train",)
SETTINGS = "SETTINGS"  # the seed/scale/generator hash of the corpus in a directory, written before rendering
LEGACY_COMPLETE = "COMPLETE"  # written by earlier generators after a full corpus: the same hash


def load_sentences() -> list[str]:
    return [line.strip() for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]


def partition(sentences: list[str], rng: np.random.Generator, scale: float) -> dict[str, list[str]]:
    order = rng.permutation(len(sentences))
    n_test, n_dev = math.ceil(600 * scale), math.ceil(300 * scale)
    shuffled = [sentences[i] for i in order]
    return {"test": shuffled[:n_test], "dev": shuffled[n_test : n_test + n_dev], "train": shuffled[n_test + n_dev :]}


@dataclass(frozen=True)
class Speaker:
    """A target-domain speaker: the same voice, pitch and vocal-tract scaling in every utterance."""

    id: str
    voice: str  # espeak-ng voice, accent+variant
    pitch: int
    vtlp: float


def draw_vtlp(domain: Domain, female: bool, rng: np.random.Generator) -> float:
    low, high = domain.vtlp_female if female else domain.vtlp_male
    # Quantised so that the resampling ratio stays a small fraction (fast, exact to reproduce).
    return SAMPLE_RATE / (round(SAMPLE_RATE / rng.uniform(low, high) / 50) * 50)


def draw(domain_name: str, text: str, rng: np.random.Generator) -> Rendering:
    """A source-domain utterance: voice, pitch and scaling drawn afresh from the pretraining population
    (the draws, in this order, are generator version 2's: the pretraining split is unchanged)."""
    domain = DOMAINS[domain_name]
    female = rng.random() < len(FEMALE_VARIANTS) / (len(FEMALE_VARIANTS) + len(MALE_VARIANTS))
    variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
    vtlp = draw_vtlp(domain, female, rng)
    voice = f"{rng.choice(domain.accents)}+{variant}"
    return Rendering(
        text=text,
        voice=voice,
        pitch=int(rng.integers(*domain.pitch, endpoint=True)),
        rate=int(rng.integers(*domain.rate, endpoint=True)),
        vtlp=vtlp,
        level_dbfs=float(rng.uniform(*LEVEL_DBFS)),
        snr_db=float(rng.uniform(*SNR_DB)),
        noise_seed=int(rng.integers(2**31)),
        speaker=voice,
    )


def draw_speakers(split: str, domain_name: str, pool: str, rng: np.random.Generator) -> list[Speaker]:
    """The speakers of a target-domain split: each accent x each of its role's variants x
    `speakers_per_voice` draws of pitch and vocal-tract scaling."""
    domain = DOMAINS[domain_name]
    speakers: list[Speaker] = []
    for accent in domain.accents:
        for variant in VARIANTS_BY_ROLE[pool]:
            for _ in range(domain.speakers_per_voice):
                pitch = int(rng.integers(*domain.pitch, endpoint=True))
                vtlp = draw_vtlp(domain, variant in FEMALE_VARIANTS, rng)
                speakers.append(Speaker(f"{split}_s{len(speakers):02d}", f"{accent}+{variant}", pitch, vtlp))
    return speakers


def speak(speaker: Speaker, domain_name: str, text: str, rng: np.random.Generator) -> Rendering:
    """A target-domain utterance of `speaker`: only rate, level and noise are drawn per utterance."""
    domain = DOMAINS[domain_name]
    return Rendering(
        text=text,
        voice=speaker.voice,
        pitch=speaker.pitch,
        rate=int(rng.integers(*domain.rate, endpoint=True)),
        vtlp=speaker.vtlp,
        level_dbfs=float(rng.uniform(*LEVEL_DBFS)),
        snr_db=float(rng.uniform(*SNR_DB)),
        noise_seed=int(rng.integers(2**31)),
        speaker=speaker.id,
    )


def plan(seed: int, scale: float) -> dict[str, list[Rendering]]:
    rng = np.random.default_rng(seed)
    pools = partition(load_sentences(), rng, scale)
    planned = {}
    for split, (domain, count, pool) in SPLITS.items():
        sentences = pools[pool]
        if pool == "train":
            texts = [sentences[i] for i in rng.integers(len(sentences), size=math.ceil(count * scale))]
        else:
            texts = sentences[: math.ceil(count * scale)]
        if domain == "source":
            planned[split] = [draw(domain, text, rng) for text in texts]
        else:
            speakers = draw_speakers(split, domain, pool, rng)
            planned[split] = [speak(speakers[int(rng.integers(len(speakers)))], domain, text, rng) for text in texts]
    return planned


def settings_hash(seed: int, scale: float) -> str:
    payload = json.dumps(
        {
            "seed": seed,
            "scale": scale,
            "version": GENERATOR_VERSION,
            "sentences": hashlib.sha256(SENTENCES.read_bytes()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def split_names(splits: Iterable[Any] | None, out_dir: Path) -> list[str]:
    """Split names, in corpus order, from names or manifest paths (`<out_dir>/<split>.jsonl`), nested
    in lists or mappings as a data config holds them (`[train, valid, {source: ..., child: ...}]`)."""
    if splits is None:
        return list(SPLITS)
    wanted = set()

    def visit(item: Any) -> None:
        if isinstance(item, Mapping):
            for value in item.values():
                visit(value)
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes, Path)):
            for value in item:
                visit(value)
        elif item is not None:
            path = Path(str(item))
            name = path.stem if path.suffix == ".jsonl" else str(item)
            if name not in SPLITS or (path.suffix == ".jsonl" and path.parent.resolve() != out_dir.resolve()):
                raise DataError(f"{item} is not a split of the synthetic corpus in {out_dir} (splits: {', '.join(SPLITS)})")
            wanted.add(name)

    visit(splits)
    return [split for split in SPLITS if split in wanted]


def complete_splits(out_dir: Path) -> list[str]:
    return [split for split in SPLITS if (out_dir / f"{split}.jsonl").is_file()]


def generate(out_dir: Path, *, seed: int, scale: float, workers: int | None, splits: list[str]) -> None:
    planned = plan(seed, scale)  # always the whole plan: the draws of one split depend on those before it
    jobs = [
        (spec, str(out_dir / "audio" / split / f"{split}_{i:05d}.flac"))
        for split in splits
        for i, spec in enumerate(planned[split])
    ]
    todo = [job for job in jobs if not (os.path.exists(job[1]) and os.path.getsize(job[1]) > 0)]
    if todo:
        with Pool(min(workers or os.cpu_count() or 1, len(todo))) as pool:
            for _ in tqdm(pool.imap(render_to_file, todo, chunksize=16), total=len(todo), desc="rendering", unit="utt"):
                pass
    import soundfile

    for split in splits:
        lines = []
        for i, spec in enumerate(planned[split]):
            name = f"{split}_{i:05d}"
            duration = soundfile.info(str(out_dir / "audio" / split / f"{name}.flac")).duration
            lines.append(
                json.dumps(
                    {
                        "id": name,
                        "audio": f"audio/{split}/{name}.flac",
                        "text": spec.text,
                        "duration": round(duration, 3),
                        "speaker": spec.speaker,
                        "language": "eng",
                    }
                )
            )
        manifest = out_dir / f"{split}.jsonl"
        partial = manifest.with_suffix(".jsonl.tmp")
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
        partial.replace(manifest)  # the manifest marks the split complete: never a half-written one
    write_card(out_dir, seed, scale, {split: card_entry(out_dir, split, planned[split]) for split in complete_splits(out_dir)})


def card_entry(out_dir: Path, split: str, renderings: list[Rendering]) -> dict[str, Any]:
    """A split's entry in the data card: counts from its manifest, its speakers from the plan (a
    target-domain speaker with its voice, pitch and vocal-tract factor; a source voice by name)."""
    rows = [json.loads(line) for line in (out_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    speakers = {spec.speaker: {"voice": spec.voice, "pitch": spec.pitch, "vtlp": round(spec.vtlp, 4)} for spec in renderings}
    return {
        "domain": SPLITS[split][0],
        "utterances": len(rows),
        "hours": round(sum(row["duration"] for row in rows) / 3600, 3),
        "distinct_sentences": len({row["text"] for row in rows}),
        "voice_variants": sorted({spec.voice.split("+")[1] for spec in renderings}),
        "speakers": dict(sorted(speakers.items())) if SPLITS[split][0] != "source" else sorted(speakers),
    }


def write_card(out_dir: Path, seed: int, scale: float, splits: dict) -> None:
    card = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "sample_rate": SAMPLE_RATE,
        "synthesiser": "espeak-ng",
        "text": "Princeton WordNet 3.0 example sentences (see SENTENCES_LICENSE.txt)",
        "domains": {name: asdict(domain) for name, domain in DOMAINS.items()},
        "level_dbfs": LEVEL_DBFS,
        "snr_db": SNR_DB,
        "splits": splits,
    }
    (out_dir / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    rows = "\n".join(
        f"| {s} | {v['domain']} | {v['utterances']} | {v['hours']:.2f} | {v['distinct_sentences']} | "
        f"{len(v['speakers'])} | {' '.join(v['voice_variants'])} |"
        for s, v in splits.items()
    )
    domains = "\n".join(
        f"- **{d.name}**: accents {', '.join(d.accents)}; espeak pitch {d.pitch}, rate {d.rate} wpm; "
        f"VTLP factor {d.vtlp_male} (male variants), {d.vtlp_female} (female)"
        for d in DOMAINS.values()
    )
    (out_dir / "CARD.md").write_text(
        f"# Synthetic domain-shift corpus (seed {seed}, scale {scale})\n\nSynthesised offline with espeak-ng from "
        f"WordNet 3.0 example sentences; 16 kHz mono FLAC. Physical ranges and their rationale: "
        f"`asr_peft/data/synthetic/domains.py`.\n\n{domains}\n\nLevel {LEVEL_DBFS} dBFS, white noise at SNR {SNR_DB} dB.\n\n"
        f"| split | domain | utterances | hours | distinct sentences | speakers | voice variants |\n"
        f"|---|---|---|---|---|---|---|\n{rows}\n"
        f"\nTest sets are paired: the same sentences in every domain. Test and dev sentences never occur in training splits.\n"
        f"In the child and dialect domains a speaker keeps one voice, pitch and vocal-tract factor (card.json lists them); "
        f"their adaptation, dev and test splits are spoken by disjoint voice variants, hence disjoint speakers. The source "
        f"splits draw voice, pitch and factor per utterance from the pretraining population (all variants), so the source "
        f"test set measures forgetting on the voices the model was pretrained on.\n"
        f"Only pitch, formants, tempo and rule-based accent differ between domains: no disfluencies or child language.\n",
        encoding="utf-8",
    )


def ensure_corpus(
    out_dir: str | Path, *, seed: int = 0, scale: float = 1.0, workers: int | None = None, splits: Iterable[Any] | None = None
) -> Path:
    """Generate the `splits` (names or manifest paths; None: all) into `out_dir` unless they are there.

    Splits present already are left alone; a directory holding a corpus of another seed, scale or
    generator version, or something that is not a synthetic corpus, is refused.
    """
    out_dir = Path(out_dir).expanduser()
    wanted_splits = split_names(splits, out_dir)
    wanted = settings_hash(seed, scale)
    recorded = next(
        (path.read_text().strip() for path in (out_dir / SETTINGS, out_dir / LEGACY_COMPLETE) if path.is_file()), None
    )
    if recorded is not None and recorded != wanted:
        raise DataError(
            f"{out_dir} holds a different synthetic corpus (other seed, scale or generator); "
            f"choose another data.corpus_dir or delete it"
        )
    missing = [split for split in wanted_splits if split not in complete_splits(out_dir)]
    if not missing:
        return out_dir
    if recorded is None and out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "audio").is_dir():
        raise DataError(f"{out_dir} is not empty and is not a synthetic corpus; choose another data.corpus_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    if recorded is None:
        (out_dir / SETTINGS).write_text(wanted + "\n")
    count = sum(math.ceil(SPLITS[split][1] * scale) for split in missing)
    log.info(
        "generating %d utterances of the synthetic corpus in %s (%s; seed %d, scale %s)",
        count,
        out_dir,
        ", ".join(missing),
        seed,
        scale,
    )
    generate(out_dir, seed=seed, scale=scale, workers=workers, splits=missing)
    return out_dir
