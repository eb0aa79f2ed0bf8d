"""Optional scoring with NIST sclite (Debian/Ubuntu package `sctk`), as a cross-check of jiwer.

`evaluation.sclite=true` scores every test set's `ref.trn`/`hyp.trn` with sclite as well and records
its counts next to jiwer's. sclite is found as `sclite` on the PATH or through Debian's `sctk`
wrapper (`sctk sclite ...`). Its detailed report (`-o dtl`) carries the word counts behind each
percentage, which are parsed exactly (the percentages are rounded to 0.1).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from asr_peft.errors import ConfigError

COUNT_LINES = {
    "substitutions": "Percent Substitution",
    "deletions": "Percent Deletions",
    "insertions": "Percent Insertions",
    "num_words": "Ref. words",
}


def sclite_command() -> list[str]:
    if shutil.which("sclite"):
        return ["sclite"]
    if shutil.which("sctk"):
        return ["sctk", "sclite"]
    raise ConfigError(
        "evaluation.sclite=true needs NIST sclite: install it (apt-get install sctk) or set evaluation.sclite=false"
    )


def sclite_word_errors(ref_trn: str | Path, hyp_trn: str | Path) -> dict[str, float | int | None]:
    """Word error counts and WER of `hyp_trn` against `ref_trn` (sclite trn files, UTF-8)."""
    command = [
        *sclite_command(),
        "-r",
        str(ref_trn),
        "trn",
        "-h",
        str(hyp_trn),
        "trn",
        "-i",
        "rm",
        "-e",
        "utf-8",
        "-o",
        "dtl",
        "stdout",
    ]
    result = subprocess.run(command, capture_output=True, text=True, encoding="utf-8")
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise RuntimeError(f"sclite failed on {hyp_trn}: {message[-1] if message else f'exit status {result.returncode}'}")
    counts: dict[str, int] = {}
    for key, label in COUNT_LINES.items():
        match = re.search(rf"^{re.escape(label)}\s*=.*?\(\s*(\d+)\)", result.stdout, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"sclite's report on {hyp_trn} has no '{label}' line")
        counts[key] = int(match.group(1))
    errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    return {**counts, "wer": errors / counts["num_words"] if counts["num_words"] else None}
