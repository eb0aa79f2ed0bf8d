"""A training loss that is NaN or infinite: the run stops at that step (`on_nonfinite_loss=stop`, the
default) or leaves the batch out (`skip`).

One such step ruins the trained weights (AdamW turns a NaN gradient into NaN parameters) and every
checkpoint after it, so training stops before that step's update, with one line naming the step and
the batch's utterances; the checkpoints hold the state of the last validation. `skip` is for a
corpus with a few utterances that the model cannot learn from (each skipped batch is said in one
line); it suits single-process training: under DDP every process must take the same steps.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from asr_peft.errors import AsrPeftError

log = logging.getLogger(__name__)

NONFINITE_LOSS_CHOICES = ("stop", "skip")


class NonFiniteLoss(AsrPeftError):
    """The training loss of a batch is NaN or infinite and `on_nonfinite_loss=stop`."""


def nonfinite_loss(loss: torch.Tensor, utterances: Sequence[str], step: int, action: str) -> None:
    """What training does with a batch whose loss is not finite: raise (stop) or return None (skip;
    Lightning then makes no update for it)."""
    where = f"training loss is {float(loss.detach())} at step {step}, on the batch of utterance(s) {', '.join(utterances)}"
    if action == "skip":
        log.warning("%s: batch skipped (on_nonfinite_loss=skip)", where)
        return None
    raise NonFiniteLoss(
        f"{where}: the run stops before the update (the checkpoints hold the last validated state); "
        "check those utterances' audio and transcripts, or set on_nonfinite_loss=skip to leave such "
        "batches out"
    )
