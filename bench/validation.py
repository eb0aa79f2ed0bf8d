"""What checking every utterance before a run costs (`asr_peft.data.validation`), on a data config's manifests.

    python bench/validation.py                 # the default task (data=synth_child: train, valid, 3 test sets)
    python bench/validation.py data=synth_dialect

Times `validate_data` twice with a fresh audio-check cache: cold (every file's header read and samples
decoded) and warm (unchanged files answered by the cache), wall-clock and CPU seconds, against the hours
of audio checked. Results: outputs/bench/validation-<time>.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(overrides: list[str]) -> None:
    os.environ.setdefault("ASR_PEFT_ROOT", str(ROOT))
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from asr_peft.cli import setup_environment
    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.data.validation import validate_data

    setup_environment()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    if cfg.data.get("prepare"):
        instantiate(cfg.data.prepare)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    normalizer = get_normalizer(data["normalizer"])
    result = {"overrides": overrides, "threads": os.cpu_count()}
    with tempfile.TemporaryDirectory() as cache:
        for phase in ("cold", "cached"):
            wall, cpu = time.perf_counter(), cpu_seconds()
            validated = validate_data(data, normalizer=normalizer, cache_dir=cache)
            result[phase] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(cpu_seconds() - cpu, 2)}
    utterances = [*validated.train, *validated.valid, *(u for t in validated.test.values() for u in t)]
    result["utterances"] = len(utterances)
    result["audio_hours"] = round(sum(u.duration for u in utterances) / 3600, 3)
    result["cold_seconds_per_audio_hour"] = round(result["cold"]["wall_s"] / result["audio_hours"], 1)
    out = ROOT / "outputs" / "bench" / f"validation-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
