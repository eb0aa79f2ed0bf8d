"""OWSM decoding: greedy CTC, greedy attention decoding (both batched) and ESPnet's attention + CTC beam search.

- `ctc_greedy`: the best path of the CTC posteriors; sees the encoder and the CTC head only.
- `att_greedy`: the attention decoder's most probable token at every step, for a whole padded batch
  at once; the transcript ESPnet's beam search gives with beam 1 and CTC weight 0.
- `beam`: ESPnet's own `BatchBeamSearch`, one utterance at a time.

The attention decodes use the hypothesis primer and score filter of stock
`espnet2.bin.s2t_inference.Speech2Text` (`<sos> <lang> <asr> <notimestamps>`, timestamp tokens
suppressed), the beam search also its CTC prefix scorer and length bonus, so that an exported model
decodes to the same transcript in both. The language token of the primer is each utterance's own
(its manifest's `language`, else `data.language`), as `Speech2Text(lang_sym=...)` is given it.
"""

from __future__ import annotations

import logging
from itertools import groupby

import torch
import torch.nn.functional as F

from asr_peft.errors import ConfigError
from asr_peft.models.base import eval_mode

DEFAULT_LANG_SYM = "<eng>"
ASR_TASK_SYM = "<asr>"


def pad_or_trim(speech: torch.Tensor, lengths: torch.Tensor, speech_length: float | None):
    """OWSM's fixed input length: pad with zeros or trim every utterance to `speech_length` seconds."""
    if not speech_length:
        return speech, lengths
    samples = int(speech_length * 16000)
    speech = F.pad(speech, (0, samples - speech.shape[1])) if speech.shape[1] < samples else speech[:, :samples]
    return speech, torch.full_like(lengths, samples)


def encode(model, speech: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's output (batch, frames, dim) and each utterance's number of frames."""
    encoded, encoded_lengths = model.encode(speech, lengths)
    if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
        encoded = encoded[0]
    return encoded, encoded_lengths


def speech2text_primer(bundle, lang_sym: str, task_sym: str = ASR_TASK_SYM) -> list[int]:
    """Speech2Text's hypothesis primer: `<sos> <lang> <task> <notimestamps>`."""
    index = bundle.converter.token2id
    if lang_sym not in index:
        raise ConfigError(f"language token {lang_sym} is not in the model's token list (data.language?)")
    if task_sym not in index:
        raise ConfigError(f"task token {task_sym} is not in the model's token list")
    preprocessor = bundle.s2t_config.get("preprocessor_conf") or {}
    return [bundle.model.sos, index[lang_sym], index[task_sym], index[preprocessor.get("notime_symbol", "<notimestamps>")]]


def speech2text_score_filter(bundle, device: torch.device | str = "cpu"):
    """ESPnet's `ScoreFilter` as Speech2Text builds it (which timestamp tokens may come next), on `device`."""
    from espnet2.bin.s2t_inference import ScoreFilter

    index = bundle.converter.token2id
    preprocessor = bundle.s2t_config.get("preprocessor_conf") or {}
    return ScoreFilter(
        notimestamps=index[preprocessor.get("notime_symbol", "<notimestamps>")],
        first_time=index[preprocessor.get("first_time_symbol", "<0.00>")],
        last_time=index[preprocessor.get("last_time_symbol", "<30.00>")],
        sos=bundle.model.sos,
        eos=bundle.model.eos,
        vocab_size=len(bundle.token_list),
    ).to(device)


def output_length_limit(frames: int, primer_length: int, maxlenratio: float = 0.0) -> int:
    """Tokens an utterance of `frames` encoder frames may decode: ESPnet's limit for `maxlenratio`, capped
    where its CTC prefix scorer would index past the last frame (it counts the primer's tokens as aligned
    output: at step i it reads frame len(primer) + i - 2). A stock run with maxlenratio=0 allows `frames`
    steps and crashes on a hypothesis that does not end; the cap only stops what CTC could not align
    anyway. Greedy attention decoding keeps the same limit, so that it stops where the beam search does."""
    if maxlenratio > 0:
        requested = max(1, int(maxlenratio * frames))
    else:
        requested = -int(maxlenratio) if maxlenratio < 0 else frames
    return min(requested, frames - primer_length + 2)


def ctc_greedy_decode(bundle, speech: torch.Tensor, speech_lengths: torch.Tensor) -> list[str]:
    """Best path of the CTC posteriors: argmax per frame, repeats collapsed, blanks dropped."""
    model = bundle.model
    speech, speech_lengths = pad_or_trim(speech, speech_lengths, bundle.speech_length)
    with eval_mode(model):
        encoded, encoded_lengths = encode(model, speech, speech_lengths)
        best = model.ctc.argmax(encoded)
    texts = []
    for path, length in zip(best.tolist(), encoded_lengths.tolist()):
        ids = [token for token, _ in groupby(path[:length]) if token != model.blank_id]
        texts.append(bundle.ids_to_text(ids))
    return texts


def attention_greedy_decode(
    bundle, speech: torch.Tensor, speech_lengths: torch.Tensor, languages: list[str] | None = None
) -> list[str]:
    """Greedy attention decoding of a padded batch: the batch is encoded once, each utterance primed with its
    own language, and the decoder stepped for all utterances together (ESPnet's `forward_one_step` with its
    per-layer cache: each step computes the new position only), attending to each utterance's own frames.
    An utterance stops at <eos> or at the beam search's length limit, and then leaves the batch."""
    from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
    from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

    model = bundle.model
    lang_syms = [f"<{language}>" for language in languages] if languages else [DEFAULT_LANG_SYM] * len(speech)
    primers = [speech2text_primer(bundle, lang_sym) for lang_sym in lang_syms]
    speech, speech_lengths = pad_or_trim(speech, speech_lengths, bundle.speech_length)
    decoded: list[list[int]] = [[] for _ in primers]
    with eval_mode(model):
        memory, frames = encode(model, speech, speech_lengths)
        device = memory.device
        memory_mask = ~make_pad_mask(frames, maxlen=memory.shape[1]).to(device)[:, None, :]
        ys = torch.tensor(primers, device=device)
        primer_length = ys.shape[1]
        limits = torch.tensor([output_length_limit(n, primer_length) for n in frames.tolist()], device=device)
        # ScoreFilter's rule once a prefix holds <notimestamps> (every primer does): no timestamp tokens,
        # the same row at every step, so it is computed once per utterance.
        allowed = speech2text_score_filter(bundle, device).batch_score(ys, [None] * len(ys), memory)[0]
        rows = torch.arange(len(ys), device=device)
        active = limits > 0  # too few frames for the beam search to decode anything: empty, as there
        cache = None
        while active.any():
            if not active.all():  # ended utterances leave the batch
                ys, memory, memory_mask, limits, allowed, rows = (
                    t[active] for t in (ys, memory, memory_mask, limits, allowed, rows)
                )
                cache = None if cache is None else [layer[active] for layer in cache]
            causal = subsequent_mask(ys.shape[1], device=device).unsqueeze(0)
            scores, cache = model.decoder.forward_one_step(ys, causal, memory, memory_mask, cache=cache)
            best = (scores + allowed).argmax(dim=-1)
            ys = torch.cat([ys, best[:, None]], dim=1)
            ended = (best == model.eos) | (limits <= ys.shape[1] - primer_length)
            for row, tokens in zip(rows[ended].tolist(), ys[ended, primer_length:].tolist()):
                decoded[row] = tokens
            active = ~ended
    return [bundle.ids_to_text([t for t in tokens if t not in (model.eos, model.blank_id)]) for tokens in decoded]


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
        lang_sym: str = DEFAULT_LANG_SYM,
        task_sym: str = ASR_TASK_SYM,
    ):
        from espnet.nets.batch_beam_search import BatchBeamSearch
        from espnet.nets.scorers.ctc import CTCPrefixScorer
        from espnet.nets.scorers.length_bonus import LengthBonus

        model = bundle.model
        token_list = bundle.token_list
        for symbol in (lang_sym, task_sym):
            if symbol not in bundle.converter.token2id:
                raise ConfigError(f"evaluation.beam: {symbol} is not in the model's token list")
        self.bundle = bundle
        self.lang_sym, self.task_sym = lang_sym, task_sym
        self.maxlenratio, self.minlenratio = maxlenratio, minlenratio
        # Speech2Text's primer: <sos> <lang> <task> <notimestamps>; the language is set per call.
        self.primer = speech2text_primer(bundle, lang_sym, task_sym)
        scorers = {
            "decoder": model.decoder,
            "ctc": CTCPrefixScorer(ctc=model.ctc, eos=model.eos),
            "length_bonus": LengthBonus(len(token_list)),
            "scorefilter": speech2text_score_filter(bundle, next(model.parameters()).device),
        }
        # ESPnet drops a scorer of weight 0: ctc_weight=0 searches with the decoder and the filter alone.
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
        """ESPnet's output-length limit for `maxlenratio` (`output_length_limit`). Passing the limit as an
        absolute length gives up ESPnet's end-detect heuristic for maxlenratio=0."""
        return output_length_limit(frames, len(self.primer), self.maxlenratio)

    def primer_for(self, lang_sym: str | None) -> list[int]:
        return speech2text_primer(self.bundle, lang_sym or self.lang_sym, self.task_sym)

    def __call__(self, speech: torch.Tensor, lang_sym: str | None = None) -> str:
        """Transcript of one utterance (1-D waveform at 16 kHz), primed with `lang_sym` (default: the
        decoder's own)."""
        speech = speech[None]
        speech, lengths = pad_or_trim(speech, torch.tensor([speech.shape[1]], device=speech.device), self.bundle.speech_length)
        with eval_mode(self.bundle.model):
            encoded, _ = encode(self.bundle.model, speech, lengths)
            return self.decode_encoded(encoded[0], lang_sym)

    def decode_encoded(self, encoded: torch.Tensor, lang_sym: str | None = None) -> str:
        """Transcript of one utterance's encoder output (frames, dim)."""
        primer = self.primer_for(lang_sym)
        model = self.bundle.model
        maxlen = self.max_tokens(encoded.shape[0])
        if maxlen < 1:
            return ""  # too few frames for the CTC scorer to extend the primer at all
        self.search.set_hyp_primer(primer)
        with eval_mode(model):
            hypotheses = self.search(x=encoded, maxlenratio=-maxlen, minlenratio=self.minlenratio)
        tokens = hypotheses[0].yseq.tolist()[:-1]  # drop the final <eos>
        tokens = tokens[tokens.index(model.sos) + 1 :]
        return self.bundle.ids_to_text([t for t in tokens if t != model.blank_id])


def decode(
    bundle,
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    *,
    method: str,
    languages: list[str] | None = None,
    **beam_kwargs,
) -> list[str]:
    """Transcripts of a padded batch with the chosen method (`evaluation.decode`); `languages` (ISO
    639-3, one per utterance) prime the attention decoder's language token."""
    if method == "ctc_greedy":
        return ctc_greedy_decode(bundle, speech, speech_lengths)
    if method == "att_greedy":
        return attention_greedy_decode(bundle, speech, speech_lengths, languages)
    if method == "beam":
        decoder = BeamSearchDecoder(bundle, **beam_kwargs)
        lang_syms = [f"<{language}>" for language in languages] if languages else [None] * len(speech)
        return [decoder(s[:n], lang_sym) for s, n, lang_sym in zip(speech, speech_lengths.tolist(), lang_syms)]
    raise ConfigError(f"evaluation.decode={method!r} is unknown; choose from {', '.join(bundle.decode_methods)}")
