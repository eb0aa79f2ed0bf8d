"""Global mean/variance statistics of the model's log-mel features (ESPnet's `feats_stats.npz`).

OWSM normalises features with `global_mvn` from statistics of its pretraining data; a model
pretrained here does the same, so that a domain shift in the input reaches the encoder unnormalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from asr_peft.data.audio import read_audio
from asr_peft.data.manifest import Utterance
from asr_peft.errors import DataError


def compute_feats_stats(frontend: torch.nn.Module, utterances: Iterable[Utterance], out_file: Path) -> Path:
    """Accumulate ESPnet's count / sum / sum_square over every frame and write them as npz."""
    count, total, total_square = 0, None, None
    frontend.eval()
    with torch.inference_mode():
        for utt in utterances:
            speech = torch.from_numpy(read_audio(utt.audio, start=utt.start, end=utt.end))[None]
            feats, _ = frontend(speech, torch.tensor([speech.shape[1]]))
            frames = feats[0].double()
            count += frames.shape[0]
            total = frames.sum(0) if total is None else total + frames.sum(0)
            total_square = (frames**2).sum(0) if total_square is None else total_square + (frames**2).sum(0)
    if total is None or total_square is None:
        raise DataError(f"{out_file}: no utterances to compute feature statistics from")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_file, count=np.array(count), sum=total.numpy(), sum_square=total_square.numpy())
    return out_file
