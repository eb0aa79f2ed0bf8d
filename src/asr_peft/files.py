"""Writing the files a run owns (records, checkpoints, caches): whole or not at all, never through a link.

A file is written to a fresh temporary file beside it (same directory, so the same file system: the
rename cannot become a copy that a full disk tears), flushed to disk, then renamed over the target;
the directory is flushed too, so that the rename survives a crash. `mkstemp` creates the temporary
file exclusively (O_EXCL), which fails on a planted symbolic link instead of following it, and a
rename replaces a link at the target's name rather than writing where it points. A write that fails
(a full disk, a read-only directory) leaves the target as it was and no temporary file behind, and
is reported in one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from asr_peft.errors import AsrPeftError


class UnwritableError(AsrPeftError):
    """A file or directory the run must write cannot be written (full disk, read-only, not a directory)."""


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Replace `path` with what `write(file)` writes, atomically (see the module docstring)."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UnwritableError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        failed = _failed_write(err)
        if failed is not None:
            raise UnwritableError(f"cannot write {path}: {failed.strerror or failed}") from err
        raise
    _fsync_directory(path.parent)
    return path


def _failed_write(err: BaseException) -> OSError | None:
    """The OSError behind an exception raised while writing: itself, or the one it was raised in handling
    (torch's zip writer answers a full disk with a RuntimeError of its own, "unexpected pos ...")."""
    cause: BaseException | None = err if isinstance(err, Exception) else None  # Ctrl-C stays Ctrl-C
    while cause is not None:
        if isinstance(cause, OSError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def write_json_atomically(path: str | Path, value: Any, **dumps: Any) -> Path:
    return write_text_atomically(path, json.dumps(value, default=str, **dumps))


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot open or sync a directory: the rename stands
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def open_own_file(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` of a file the run owns, refusing a symbolic link at its name (one line, not followed)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnwritableError(
                f"{path} is a symbolic link; a run's own files are never written through one (remove the link)"
            ) from None
        raise UnwritableError(f"cannot open {path}: {err.strerror or err}") from err


def check_writable_directory(directory: str | Path, what: str) -> Path:
    """Create `directory` if needed and prove it takes a file, before any work depends on it; `what`
    names the config key it comes from."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UnwritableError(f"{what}={directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UnwritableError(f"{what}={directory} is not a writable directory ({err.strerror or err})") from None
    return directory


def check_creatable_directory(directory: str | Path, what: str) -> None:
    """That `directory` is, or could be created as, a writable directory, creating nothing (a preflight
    check); `what` names the config key it comes from."""
    directory = Path(directory).absolute()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is not a directory" if existing == directory else f"is inside {existing}, which is not a directory"
        raise UnwritableError(f"{what}={directory} {where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnwritableError(f"{what}={directory} is not writable ({existing} is read-only for this user)")
