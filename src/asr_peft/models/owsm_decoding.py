"""OWSM decoding: greedy CTC (batched, fast, used for validation) and ESPnet's attention + CTC beam search.

The beam search is ESPnet's own `BatchBeamSearch` with the scorers and hypothesis primer that stock
`espnet2.bin.s2t_inference.Speech2Text` uses (`<sos> <lang> <asr> <notimestamps>`, timestamp score
filter, CTC prefix scorer, length bonus), so that an exported model decodes to the same transcript
in both. The language token of the primer is each utterance's own (its manifest's `language`, else
`data.language`), as `Speech2Text(lang_sym=...)` is given it.
"""

from __future__ import annotations

import logging
from itertools import groupby

import torch
import torch.nn.functional as F

from asr_peft.errors import ConfigError
from asr_peft.models.base import eval_mode


def pad_or_trim(speech: torch.Tensor, lengths: torch.Tensor, speech_length: float | None):
    """OWSM's fixed input length: pad with zeros or trim every utterance to `speech_length` seconds."""
    if not speech_length:
        return speech, lengths
    samples = int(speech_length * 16000)
    speech = F.pad(speech, (0, samples - speech.shape[1])) if speech.shape[1] < samples else speech[:, :samples]
    return speech, torch.full_like(lengths, samples)


def ctc_greedy_decode(bundle, speech: torch.Tensor, speech_lengths: torch.Tensor) -> list[str]:
    """Best path of the CTC posteriors: argmax per frame, repeats collapsed, blanks dropped."""
    model = bundle.model
    speech, speech_lengths = pad_or_trim(speech, speech_lengths, bundle.speech_length)
    with eval_mode(model):
        encoded, encoded_lengths = model.encode(speech, speech_lengths)
        if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
            encoded = encoded[0]
        best = model.ctc.argmax(encoded)
    texts = []
    for path, length in zip(best.tolist(), encoded_lengths.tolist()):
        ids = [token for token, _ in groupby(path[:length]) if token != model.blank_id]
        texts.append(bundle.ids_to_text(ids))
    return texts


class BeamSearchDecoder:
    """ESPnet's attention + CTC beam search over one utterance at a time, as Speech2Text runs it."""

    def __init__(
        self,
        bundle,
        *,
        beam_size: int = 5,
        ctc_weight: float = 0.3,
        penalty: float = 0.0,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        lang_sym: str = "<eng>",
        task_sym: str = "<asr>",
    ):
        from espnet.nets.batch_beam_search import BatchBeamSearch
        from espnet.nets.scorers.ctc import CTCPrefixScorer
        from espnet.nets.scorers.length_bonus import LengthBonus
        from espnet2.bin.s2t_inference import ScoreFilter

        model = bundle.model
        token_list = bundle.token_list
        preprocessor = bundle.s2t_config.get("preprocessor_conf") or {}
        index = {token: i for i, token in enumerate(token_list)}
        for symbol in (lang_sym, task_sym):
            if symbol not in index:
                raise ConfigError(f"evaluation.beam: {symbol} is not in the model's token list")
        self.bundle = bundle
        self.index = index
        self.lang_sym = lang_sym
        self.maxlenratio, self.minlenratio = maxlenratio, minlenratio
        # Speech2Text's primer: <sos> <lang> <task> <notimestamps>; the language is set per call.
        self.primer = [model.sos, index[lang_sym], index[task_sym], index[preprocessor.get("notime_symbol", "<notimestamps>")]]
        scorers = {
            "decoder": model.decoder,
            "ctc": CTCPrefixScorer(ctc=model.ctc, eos=model.eos),
            "length_bonus": LengthBonus(len(token_list)),
            "scorefilter": ScoreFilter(
                notimestamps=index[preprocessor.get("notime_symbol", "<notimestamps>")],
                first_time=index[preprocessor.get("first_time_symbol", "<0.00>")],
                last_time=index[preprocessor.get("last_time_symbol", "<30.00>")],
                sos=model.sos,
                eos=model.eos,
                vocab_size=len(token_list),
            ),
        }
        weights = {"decoder": 1.0 - ctc_weight, "ctc": ctc_weight, "length_bonus": penalty, "scorefilter": 1.0}
        self.search = BatchBeamSearch(
            beam_size=beam_size,
            weights=weights,
            scorers=scorers,
            sos=model.sos,
            eos=model.eos,
            vocab_size=len(token_list),
            token_list=token_list,
            pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        )
        self.search.eval()
        # ESPnet's search logs every utterance's hypotheses at INFO: thousands of lines per test set.
        logging.getLogger("espnet.nets.beam_search").setLevel(logging.WARNING)

    def max_tokens(self, frames: int) -> int:
        """ESPnet's output-length limit for `maxlenratio`, capped where its CTC prefix scorer would index
        past the last frame (it counts the primer's tokens as aligned output: at step i it reads frame
        len(primer) + i - 2). A stock run with maxlenratio=0 allows `frames` steps and crashes on a
        hypothesis that does not end; the cap only stops what CTC could not align anyway. Passing the
        limit as an absolute length gives up ESPnet's end-detect heuristic for maxlenratio=0."""
        if self.maxlenratio > 0:
            requested = max(1, int(self.maxlenratio * frames))
        else:
            requested = -int(self.maxlenratio) if self.maxlenratio < 0 else frames
        return min(requested, frames - len(self.primer) + 2)

    def primer_for(self, lang_sym: str | None) -> list[int]:
        lang_sym = lang_sym or self.lang_sym
        if lang_sym not in self.index:
            raise ConfigError(f"language token {lang_sym} is not in the model's token list (data.language?)")
        return [self.primer[0], self.index[lang_sym], *self.primer[2:]]

    def __call__(self, speech: torch.Tensor, lang_sym: str | None = None) -> str:
        """Transcript of one utterance (1-D waveform at 16 kHz), primed with `lang_sym` (default: the
        decoder's own)."""
        primer = self.primer_for(lang_sym)
        model = self.bundle.model
        speech = speech[None]
        speech, lengths = pad_or_trim(speech, torch.tensor([speech.shape[1]], device=speech.device), self.bundle.speech_length)
        with eval_mode(model):
            encoded, _ = model.encode(speech, lengths)
            if isinstance(encoded, tuple):
                encoded = encoded[0]
            maxlen = self.max_tokens(encoded.shape[1])
            if maxlen < 1:
                return ""  # too few frames for the CTC scorer to extend the primer at all
            self.search.set_hyp_primer(primer)
            hypotheses = self.search(x=encoded[0], maxlenratio=-maxlen, minlenratio=self.minlenratio)
        tokens = hypotheses[0].yseq.tolist()[:-1]  # drop the final <eos>
        tokens = tokens[tokens.index(model.sos) + 1 :]
        return self.bundle.ids_to_text([t for t in tokens if t != model.blank_id])


def decode(
    bundle,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    *,
    method: str = "ctc_greedy",
    languages: list[str] | None = None,
    **beam_kwargs,
) -> list[str]:
    """Transcripts of a padded batch with the chosen method (`evaluation.decode`); `languages` (ISO
    639-3, one per utterance) prime the beam search's language token."""
    if method == "ctc_greedy":
        return ctc_greedy_decode(bundle, speech, speech_lengths)
    if method == "beam":
        decoder = BeamSearchDecoder(bundle, **beam_kwargs)
        lang_syms = [f"<{language}>" for language in languages] if languages else [None] * len(speech)
        return [decoder(s[:n], lang_sym) for s, n, lang_sym in zip(speech, speech_lengths.tolist(), lang_syms)]
    raise ConfigError(f"evaluation.decode={method!r} is unknown; choose from ctc_greedy, beam")
