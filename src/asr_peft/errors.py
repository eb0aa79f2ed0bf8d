"""The project's user-facing errors.

Every bad input (a config key, a data file, a model location) raises one of these with a message
that fits on one line and names the offending file or config key. The command-line entry points
catch `AsrPeftError` and print `error: <message>` instead of a traceback.
"""

import pickle
import re
import sys
from typing import NoReturn


class AsrPeftError(Exception):
    """Base class: a problem the user can fix from the message alone."""

    def __init__(self, message: str):
        # One line, always: multi-line messages would break the CLI contract.
        super().__init__(" ".join(str(message).split()))


def report_error(err: AsrPeftError) -> NoReturn:
    """`error: <line>` on stderr for each problem (a config may have several), then exit status 2."""
    for line in getattr(err, "lines", None) or [str(err)]:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(2)


class ConfigError(AsrPeftError, ValueError):
    """A config value is missing, unknown or out of range; the message names the key."""


class DataError(AsrPeftError):
    """An audio file, transcript or manifest is unusable; the message names the file."""


class ModelLoadError(AsrPeftError):
    """A model could not be built or loaded; the message names `model.path` or the file."""


def torch_load_problem(err: Exception) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in a few words for a one-line error.

    torch's refusal of a pickle holding more than data advises loading with `weights_only=False`,
    which would run the code in it: that advice is never passed on, only what was found.
    """
    if isinstance(err, pickle.UnpicklingError):
        unsafe = re.search(r"unsupported GLOBAL (\S+)", str(err))
        return f"it holds more than tensors and plain data ({unsafe.group(1) if unsafe else 'an object'}), refused unread"
    return " ".join(str(err).split())[:200]
