"""Building and loading OWSM models with ESPnet's own classes and checkpoint format.

Four ways to get a model, chosen by the `model` config (first match wins):

1. `model.path`: a local directory in ESPnet's exported layout (`config.yaml`, a `.pth`, the tokenizer
   and `feats_stats.npz`; either ESPnet's packed layout with a `meta.yaml`, or any tree holding one
   `config.yaml` with a `.pth` beside it).
2. `model.hf_id` with `model.init=pretrained`: downloaded (or found in the cache) through
   espnet_model_zoo, exactly as `Speech2Text.from_pretrained` does.
3. `model.init=random`: built from `model.s2t_config` (the same keys as ESPnet's `config.yaml`),
   random weights, an OWSM-style character token list.
4. `device="meta"`: as 3, on PyTorch's meta device: shapes only, no memory, for parameter planning.

Pretrained weights are loaded inside this module, strictly, before anything else sees the model,
so adapters always factorise the real weights.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml

from asr_peft.errors import ConfigError, ModelLoadError, torch_load_problem
from asr_peft.models.base import ModelBundle, eval_mode
from asr_peft.models.token_list import NON_LINGUISTIC_SYMBOLS, char_token_list

log = logging.getLogger(__name__)

PAD_INPUT_KEY = "pad_input_to_speech_length"  # our key in config.yaml; ESPnet ignores unknown keys


# ESPnet's S2T model takes these batch keys (its collate adds each `*_lengths`).
MODEL_KEYS = ("speech", "text", "text_prev", "text_ctc")
MODEL_INPUTS = tuple(key for name in MODEL_KEYS for key in (name, f"{name}_lengths"))


@dataclass
class OWSMBundle(ModelBundle):
    """An ESPnet S2T model plus everything needed to feed it text and to export it again in ESPnet's layout.

    Its inputs are made by ESPnet's own S2T preprocessor and collate function, its loss is ESPnet's joint
    CTC/attention loss, and it decodes with greedy CTC, greedy attention decoding or ESPnet's attention + CTC
    beam search (`owsm_decoding.py`).
    """

    # Greedy attention decoding sees the decoder (a quarter of an adapter's parameters) at about the cost of
    # greedy CTC (docs/models.md): the default for scoring and validation both.
    decode_methods = ("att_greedy", "ctc_greedy", "beam")
    validation_decode = "att_greedy"

    model: torch.nn.Module  # espnet2.s2t.espnet_model.ESPnetS2TModel
    s2t_config: dict[str, Any]  # ESPnet config.yaml content, paths absolute
    tokenizer: Any  # espnet2.text.abs_tokenizer.AbsTokenizer
    converter: Any  # espnet2.text.token_id_converter.TokenIDConverter
    source: str  # where the weights came from, for results.json
    speech_length: float | None = None  # OWSM pads/trims input audio to this many seconds
    files: dict[str, str] = field(default_factory=dict)  # tokenizer / stats files to copy on export

    @property
    def token_list(self) -> list[str]:
        return list(self.model.token_list)

    def text_to_ids(self, text: str) -> list[int]:
        return self.converter.tokens2ids(self.tokenizer.text2tokens(text))

    def ids_to_text(self, ids: list[int]) -> str:
        tokens = [t for t in self.converter.ids2tokens(ids) if not (t.startswith("<") and t.endswith(">")) or t == "<space>"]
        return self.tokenizer.tokens2text(tokens).strip()

    @property
    def input_seconds(self) -> float | None:
        return self.speech_length or None

    def preprocessor(self, *, default_language: str, train: bool):
        from asr_peft.models.owsm_text import OWSMPreprocessor

        return OWSMPreprocessor(self, default_language=default_language, train=train)

    def collate(self, items: list[dict]) -> dict:
        _, batch = espnet_collate()([("", {key: item[key] for key in MODEL_KEYS}) for item in items])
        return batch

    def loss(self, batch: Mapping[str, Any]):
        loss, stats, _ = self.model(**{key: batch[key] for key in MODEL_INPUTS})
        return loss, {key: stats.get(key) for key in ("loss_ctc", "loss_att", "acc")}

    def transcribe(self, batch: Mapping[str, Any], *, method: str, languages: list[str], options: Mapping[str, Any]) -> list[str]:
        from asr_peft.models.owsm_decoding import decode

        return decode(self, batch["speech"], batch["speech_lengths"], method=method, languages=languages, **options)

    def validate(self, batch: Mapping[str, Any], *, method: str, languages: list[str]) -> tuple[torch.Tensor, list[str]]:
        # The encoder is about three quarters of the loss pass and of a greedy decode on a CPU: the decode
        # takes the loss pass's encoding of the same speech (ESPnet's forward offers no other way in).
        with eval_mode(self.model), encoding_reused(self.model):
            loss, _ = self.loss(batch)
            return loss, self.transcribe(batch, method=method, languages=languages, options={})

    def has_language(self, language: str) -> bool:
        return f"<{language}>" in self.converter.token2id

    def token_limit(self, default_language: str):
        from asr_peft.models.owsm_limits import owsm_token_limit

        return owsm_token_limit(self, self.preprocessor(default_language=default_language, train=False))

    def enable_activation_checkpointing(self) -> None:
        from asr_peft.models.checkpointing import enable_activation_checkpointing

        enable_activation_checkpointing(self.model)

    def export(self, out_dir: Path, *, model: torch.nn.Module, dtype: torch.dtype) -> None:
        from asr_peft.models.export import export_espnet_dir

        export_espnet_dir(self, out_dir, model=model, dtype=dtype)


@contextlib.contextmanager
def encoding_reused(model: torch.nn.Module):
    """Within the block, `model.encode` given the speech and lengths of its previous call returns that call's
    output instead of encoding again (evaluation mode only: training's dropout would differ)."""
    previous: list[Any] = []
    encode, patched = model.encode, "encode" in vars(model)

    def reusing(speech: torch.Tensor, speech_lengths: torch.Tensor):
        if previous and torch.equal(previous[0], speech) and torch.equal(previous[1], speech_lengths):
            return previous[2]
        output = encode(speech, speech_lengths)
        previous[:] = [speech, speech_lengths, output]
        return output

    model.encode = reusing  # an instance attribute, over the class's method
    try:
        yield
    finally:
        if patched:
            model.encode = encode
        else:
            del model.encode


def s2t_task():
    # Importing ESPnet's S2T task takes 10-25 s, so it happens only when a model is actually built.
    # On import, g2p_en (pulled in by ESPnet's text frontends, unused here) tries to download NLTK
    # data and prints the refusal offline; that noise is swallowed, real import errors still raise.
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        from espnet2.tasks.s2t import S2TTask

    return S2TTask


@functools.cache
def espnet_collate():
    """ESPnet's S2T collate function (`CommonCollateFn`: speech padded with 0, token ids with -1)."""
    return s2t_task().build_collate_fn(argparse.Namespace(), train=True)


def _build_args(s2t_config: Mapping[str, Any]) -> argparse.Namespace:
    """ESPnet's parser defaults overlaid with the given config, as `S2TTask.build_model` expects."""
    args = s2t_task().get_parser().parse_args([])
    for key, value in s2t_config.items():
        setattr(args, key, copy.deepcopy(value))
    return args


def full_espnet_config(s2t_config: Mapping[str, Any]) -> dict[str, Any]:
    """Every key ESPnet's S2T parser knows, as in the config.yaml ESPnet itself writes when training."""
    return vars(_build_args(s2t_config))


def build_model(s2t_config: Mapping[str, Any], *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build an `ESPnetS2TModel` with random weights from an ESPnet S2T config (meta device allowed)."""
    args = _build_args(s2t_config)
    check_stats_file(s2t_config)
    try:
        with torch.device(device):
            model = s2t_task().build_model(args)
    except (TypeError, KeyError, ValueError) as err:
        raise ConfigError(f"model.s2t_config does not build an ESPnet S2T model: {err}") from err
    channels_last_convolutions(model)
    return model


def channels_last_convolutions(model: torch.nn.Module) -> None:
    """Store every 2-D convolution's weight channels-last: on a CPU, ESPnet's Conv2dSubsampling is about 40%
    of the encoder's forward time, and oneDNN's channels-last kernels for it are ~1.5x faster (a toy training
    step 0.9x: bench/run.py --sections layout). Values are unchanged; outputs differ by float rounding."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)


STATS_KEYS = ("count", "sum", "sum_square")  # what ESPnet's GlobalMVN reads from feats_stats.npz


def check_stats_file(s2t_config: Mapping[str, Any]) -> None:
    """`global_mvn`'s statistics file, read as ESPnet will (no pickles): one line naming the file if it is not
    a readable npz of finite count / sum / sum_square (ESPnet's own error would blame the whole config)."""
    if s2t_config.get("normalize") != "global_mvn":
        return
    stats_file = (s2t_config.get("normalize_conf") or {}).get("stats_file")
    if not stats_file:
        return
    try:
        with np.load(stats_file, allow_pickle=False) as stats:
            arrays = {key: stats[key] for key in STATS_KEYS}
    except (OSError, ValueError, KeyError, EOFError) as err:
        # numpy's own text would advise loading with pickles allowed: never relayed
        why = err.strerror if isinstance(err, OSError) and err.strerror else "not an npz of plain arrays"
        raise ModelLoadError(
            f"feature statistics {stats_file} are unreadable ({why}); ESPnet's npz of {', '.join(STATS_KEYS)} is expected"
        ) from err
    if not all(np.isfinite(array).all() for array in arrays.values()) or float(arrays["count"]) <= 0:
        raise ModelLoadError(f"feature statistics {stats_file} hold a non-positive count or non-finite sums")


def _tokenizer_for(s2t_config: Mapping[str, Any]):
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.token_id_converter import TokenIDConverter

    token_type = s2t_config.get("token_type", "bpe")
    if token_type == "bpe":
        tokenizer = build_tokenizer(token_type="bpe", bpemodel=s2t_config["bpemodel"])
    else:
        tokenizer = build_tokenizer(token_type=token_type, non_linguistic_symbols=NON_LINGUISTIC_SYMBOLS)
    converter = TokenIDConverter(token_list=list(s2t_config["token_list"]), unk_symbol="<unk>")
    return tokenizer, converter


def random_init_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ESPnet config of a model built from `model.s2t_config`.

    The tokenizer is `model.tokenizer`: `{type: char}` (default; an OWSM-style character token list
    padded to `model.vocab_size`) or `{type: bpe, bpemodel: <bpe.model>, token_list: <tokens.txt>}`.
    """
    s2t_config = dict(copy.deepcopy(model_cfg["s2t_config"]))
    tokenizer = dict(model_cfg.get("tokenizer") or {"type": "char"})
    if tokenizer.get("type") == "bpe":
        for key in ("bpemodel", "token_list"):
            if not tokenizer.get(key) or not Path(tokenizer[key]).is_file():
                raise ConfigError(f"model.tokenizer.{key}={tokenizer.get(key)} is not a file")
        s2t_config["token_type"] = "bpe"
        s2t_config["bpemodel"] = str(Path(tokenizer["bpemodel"]).resolve())
        s2t_config["token_list"] = Path(tokenizer["token_list"]).read_text(encoding="utf-8").split()
    elif tokenizer.get("type") == "char":
        s2t_config["token_type"] = "char"
        s2t_config["token_list"] = char_token_list(model_cfg.get("vocab_size"))
        # ESPnet's own preprocessor must keep <eng>, <asr>, ... whole, as this project's tokenizer does.
        s2t_config["non_linguistic_symbols"] = list(NON_LINGUISTIC_SYMBOLS)
    else:
        raise ConfigError(f"model.tokenizer.type must be 'char' or 'bpe', got {tokenizer.get('type')!r}")
    # Stock Speech2Text always pads to preprocessor_conf.speech_length; this key records whether the
    # model was trained that way (OWSM: yes, 30 s; the CPU-sized tiny model: no).
    s2t_config[PAD_INPUT_KEY] = bool(model_cfg.get("speech_length"))
    s2t_config.setdefault("preprocessor_conf", {})
    s2t_config["preprocessor_conf"].update(
        {
            "fs": 16000,
            "speech_length": model_cfg.get("speech_length") or 30,
            "notime_symbol": "<notimestamps>",
            "first_time_symbol": "<0.00>",
            "last_time_symbol": "<30.00>",
            "na_symbol": "<na>",
        }
    )
    return s2t_config


def _resolve_paths(node: Any, root: Path) -> Any:
    """Make every string in an exported config that names a file under `root` absolute.

    ESPnet writes recipe-relative paths (bpemodel, stats_file) into config.yaml; this is the same
    rewrite espnet_model_zoo performs when it unpacks a model.
    """
    if isinstance(node, dict):
        return {k: _resolve_paths(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_paths(v, root) for v in node]
    if isinstance(node, str) and node and not node.startswith("<") and len(node) < 4096:
        candidate = root / node
        try:
            if not Path(node).is_absolute() and candidate.is_file():
                return str(candidate.resolve())
        except OSError:
            return node
    return node


def find_exported_files(path: str | Path) -> tuple[Path, Path, Path]:
    """Locate (root, config.yaml, model .pth) in an exported ESPnet model directory."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"model.path={path} is not a directory")
    meta = root / "meta.yaml"
    if meta.is_file():
        info = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
        config = root / info.get("yaml_files", {}).get("s2t_train_config", "")
        weights = root / info.get("files", {}).get("s2t_model_file", "")
        if config.is_file() and weights.is_file():
            return root, config, weights
        raise ModelLoadError(f"{meta} does not name an existing s2t_train_config and s2t_model_file")
    candidates = [c for c in sorted(root.rglob("config.yaml")) if list(c.parent.glob("*.pth"))]
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(str(c) for c in candidates)
        raise ModelLoadError(f"model.path={path} must hold exactly one config.yaml with a .pth beside it (found {found})")
    config = candidates[0]
    weights = sorted(config.parent.glob("*.pth"))
    if len(weights) != 1:
        raise ModelLoadError(f"{config.parent} holds {len(weights)} .pth files; keep exactly one beside config.yaml")
    return root, config, weights[0]


def load_exported(
    path: str | Path, *, device: str = "cpu", speech_length: float | None = None, source: str | None = None
) -> OWSMBundle:
    """Load an ESPnet-exported S2T model directory, strictly (every tensor must match)."""
    root, config_file, weights_file = find_exported_files(path)
    try:
        s2t_config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ModelLoadError(f"cannot read {config_file}: {err}") from err
    s2t_config = _resolve_paths(s2t_config, root)
    model = build_model(s2t_config, device=device)
    if str(device) == "meta":  # planning: the architecture from config.yaml, no weights read
        tokenizer, converter = _tokenizer_for(s2t_config)
        return OWSMBundle(model=model, s2t_config=s2t_config, tokenizer=tokenizer, converter=converter, source="meta")
    try:
        state = torch.load(weights_file, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise ModelLoadError(f"cannot read weights {weights_file}: {torch_load_problem(err)}") from err
    state = state.get("module", state)  # DeepSpeed-style checkpoints nest the weights
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights_file} does not match {config_file}: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}"
        )
    tokenizer, converter = _tokenizer_for(s2t_config)
    preprocessor = s2t_config.get("preprocessor_conf") or {}
    files = {
        k: v
        for k, v in (
            ("bpemodel", s2t_config.get("bpemodel")),
            ("stats_file", (s2t_config.get("normalize_conf") or {}).get("stats_file")),
        )
        if v
    }
    return OWSMBundle(
        model=model,
        s2t_config=s2t_config,
        tokenizer=tokenizer,
        converter=converter,
        source=source or f"dir:{root}",
        files=files,
        speech_length=speech_length or (preprocessor.get("speech_length") if s2t_config.get(PAD_INPUT_KEY, True) else None),
    )


def download_from_hub(hf_id: str, cache_dir: str | Path | None, *, name: str = "model") -> Path:
    """Fetch an OWSM model through espnet_model_zoo (Hugging Face), returning its unpacked directory."""
    from espnet_model_zoo.downloader import ModelDownloader

    downloader = ModelDownloader(cachedir=str(cache_dir) if cache_dir else None)
    try:
        info = downloader.download_and_unpack(hf_id)
    except Exception as err:  # network, hub and unpack errors all mean "not available here"
        offline = any(
            os.environ.get(flag, "").lower() in ("1", "true", "yes") for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
        )
        why = (
            "offline (HF_HUB_OFFLINE) and not in the download cache"
            if offline
            else f"download failed: {' '.join(str(err).split()[:25]) or type(err).__name__}"
        )
        raise ModelLoadError(
            f"model={name} ({hf_id}) is not available: {why} {downloader.cachedir}; set model.path=<a local "
            f"ESPnet model directory> or download it once online"
        ) from err
    return Path(info["s2t_train_config"]).parent


def load_owsm(model_cfg: Mapping[str, Any], *, device: str = "cpu", cache_dir: str | Path | None = None) -> OWSMBundle:
    """Build or load the OWSM model a `model` config describes (see the module docstring)."""
    speech_length = model_cfg.get("speech_length")
    name = model_cfg.get("name", "model")
    if model_cfg.get("path"):
        return load_exported(model_cfg["path"], device=device, speech_length=speech_length)
    init = model_cfg.get("init", "random")
    if init not in ("pretrained", "random"):
        raise ConfigError(f"model.init must be 'pretrained' or 'random', got {init!r}")
    if init == "pretrained" and device != "meta":
        if not model_cfg.get("hf_id"):
            raise ConfigError(f"model '{name}' has init=pretrained but neither model.path nor model.hf_id")
        unpacked = download_from_hub(model_cfg["hf_id"], cache_dir, name=name)
        return load_exported(unpacked, device=device, speech_length=speech_length, source=f"hub:{model_cfg['hf_id']}")
    if not model_cfg.get("s2t_config"):
        raise ConfigError(f"model '{name}' has no model.s2t_config to build it from")
    s2t_config = random_init_config(model_cfg)
    model = build_model(s2t_config, device=device)
    tokenizer, converter = _tokenizer_for(s2t_config)
    files = {"bpemodel": s2t_config["bpemodel"]} if s2t_config.get("bpemodel") else {}
    return OWSMBundle(
        model=model,
        s2t_config=s2t_config,
        tokenizer=tokenizer,
        converter=converter,
        source="meta" if str(device) == "meta" else "random",
        speech_length=speech_length,
        files=files,
    )
