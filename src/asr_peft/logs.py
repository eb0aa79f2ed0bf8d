"""What a run prints: each line once, and none of the dependency noise the project knows to be harmless.

- Lightning gives its `lightning` logger a console handler of its own and lets records propagate to
  the root logger too, where Hydra prints (and files) them: every Lightning line came twice. Its
  handler goes; Hydra's console and `<run>/train.log` keep one copy.
- Messages that say nothing about the run: Lightning's advertisement for its cloud logger and its note
  that 100% of the validation batches will be used; ESPnet's "Gradient checkpoint layers: []" (logged
  once per model build, with no checkpointing configured).
- Warnings about code the project does not own and cannot change: ESPnet 202511 calling
  `torch.cuda.amp.autocast`, Lightning 2.6 calling a pytree API torch 2.14 deprecates; and Lightning's
  warning that the checkpoint directory is not empty, which is how a resumed run finds it.

Everything else (a warning about the user's data or config, a real deprecation in our code) still shows.
"""

from __future__ import annotations

import logging
import warnings

# (logger name, text the message starts with): harmless lines, filtered where they are logged.
HARMLESS_MESSAGES = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("lightning.pytorch.utilities.rank_zero", "`Trainer(limit_val_batches=1.0)` was configured"),
    ("root", "Gradient checkpoint layers: []"),
)
# (category, message regex, module regex) for warnings.filterwarnings.
HARMLESS_WARNINGS = (
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", r"espnet2\."),
    (Warning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r""),
    # A run resuming from its own last.ckpt: the directory holds checkpoints by design.
    (Warning, r"Checkpoint directory .* exists and is not empty", r""),
)


class _DropHarmless(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_dependencies() -> None:
    """Install the filters above; safe to call more than once (after Hydra has set up logging)."""
    lightning = logging.getLogger("lightning")
    for handler in list(lightning.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            lightning.removeHandler(handler)
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, prefix in HARMLESS_MESSAGES:
        by_logger[name] = by_logger.get(name, ()) + (prefix,)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        if not any(isinstance(f, _DropHarmless) for f in logger.filters):
            logger.addFilter(_DropHarmless(prefixes))
    for category, message, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
