"""SHA256SUMS files: the checksum of every file of a model directory, in `sha256sum -c` format.

Kept out of export.py (which imports ESPnet and the adapters): checking a cached model directory needs
no heavy import.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(out_dir: Path) -> Path:
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(out_dir)}" for p in files]
    (out_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir / "SHA256SUMS"


def verify_checksums(out_dir: Path) -> list[str]:
    """Files whose content differs from SHA256SUMS (empty when all match)."""
    bad = []
    for line in (Path(out_dir) / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        path = Path(out_dir) / name
        if not path.is_file() or sha256(path) != digest:
            bad.append(name)
    return bad
