"""Bad config and bad data, tried as a new user would: each case is one line naming the key or the file,
before anything is trained or written, and before the model loads.

Config cases go through `preflight` (what `train.py` / `evaluate.py` run before Hydra starts) in this
process, and two through the real command line; data cases through the validation that every run does
before it loads the model, with `data.on_error=raise` (the line) and `skip` (the count).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from omegaconf import OmegaConf

from asr_peft.config.preflight import preflight
from asr_peft.data.dataset import SpeechDataset
from asr_peft.data.manifest import Utterance, load_utterances
from asr_peft.data.normalizers import get_normalizer
from asr_peft.data.validation import ValidatedData, validate_data, validate_utterances
from asr_peft.errors import AsrPeftError, ConfigError, DataError
from conftest import ROOT, write_tone
from test_train_e2e import FAST, run_in_process, train_cli

CORPUS = "data.corpus_dir=/corpus"  # never read: the schema does not touch data

CONFIG_CASES = [
    # The 43-config probe's failures (issue 15), then more of the same kinds.
    (["adapt.p=abc"], ["adapt.p=abc must be a number"]),
    (["method=lora", "method.r=abc"], ["method.r=abc must be an integer"]),
    (["optimizer.lr=-1"], ["optimizer.lr=-1 must be > 0"]),
    (["optimizer.lr=abc"], ["optimizer.lr=abc must be a number"]),
    (["seed=abc"], ["seed=abc must be an integer"]),
    (
        ["trainer.max_steps=-5"],
        ["trainer.max_steps=-5 must be a positive number of optimizer steps (or -1: limited by trainer.max_epochs)"],
    ),
    (
        ["trainer.val_check_interval=0"],
        ["trainer.val_check_interval=0 must be a positive whole number of training steps or a fraction in (0, 1]"],
    ),
    (["data=manifest"], ["data.corpus_dir is required (??? in the config; data.train uses it): set data.corpus_dir=<value>"]),
    (
        ["data=manifest", "data.train=/a", "data.valid=/b", "trainer.max_steps=-9"],  # corpus_dir: needed by data.test only
        [
            "data.corpus_dir is required (??? in the config; data.test.test uses it): set data.corpus_dir=<value>",
            "trainer.max_steps=-9 must be a positive number of optimizer steps (or -1: limited by trainer.max_epochs)",
        ],
    ),
    (
        ["trainer.max_steps=0"],
        ["trainer.max_steps=0 must be a positive number of optimizer steps (or -1: limited by trainer.max_epochs)"],
    ),
    (["loader.max_batch_size=0"], ["loader.max_batch_size=0 must be >= 1"]),
    (["evaluation.checkpoint=bogus"], ["evaluation.checkpoint=bogus must be one of: best, last"]),
    (["data.max_duration=-1"], ["data.max_duration=-1 must be > 0"]),
    (
        ["method=nope"],
        ["In 'train': Could not find 'method/nope' (choose from: dora, frozen, full, lora, peft, pissa, ssvd, svft, vera)"],
    ),
    (["logger=bogus"], ["In 'train': Could not find 'logger/bogus' (choose from: csv, none, wandb)"]),
    (["data.on_error=ignore"], ["data.on_error=ignore must be one of: raise, skip"]),
    (["on_nonfinite_loss=ignore"], ["on_nonfinite_loss=ignore must be one of: stop, skip"]),
    (["data.normalizer=english"], ["data.normalizer=english must be one of: none, whisper_basic, whisper_english, myst, cgn"]),
    (["evaluation.decode=viterbi"], ["evaluation.decode=viterbi must be one of: att_greedy, beam, ctc_greedy, greedy"]),
    (
        ["evaluation.decode=greedy"],
        ["evaluation.decode=greedy must be one of: att_greedy, ctc_greedy, beam for model family owsm"],
    ),
    (
        ["evaluation.validation_decode=greedy"],
        ["evaluation.validation_decode=greedy must be one of: att_greedy, ctc_greedy, beam for model family owsm"],
    ),
    (
        ["evaluation.secondary_decodes=[ctc_greedy,greedy]"],
        [
            "evaluation.secondary_decodes=[ctc_greedy,greedy] may hold only: att_greedy, ctc_greedy, beam for model family owsm (not greedy)"
        ],
    ),
    (["method.rotation=givens"], ["method.rotation=givens must be one of: approx, cayley, free"]),
    (["method=svft", "method.pattern=diag"], ["method.pattern=diag must be one of: plain, banded, random, top_k"]),
    (["adapt.p=0"], ["adapt.p=0 must be > 0"]),
    (["adapt.targets=[]"], ["adapt.targets=[] must have at least 1 item(s)"]),
    (["optimizer.betas=[0.9,1.5]"], ["optimizer.betas[1]=1.5 must be < 1"]),
    (["optimizer.schedule=cosine"], ["optimizer.schedule=cosine must be one of: constant, linear"]),
    (
        ["trainer.max_steps=-1"],
        ["trainer.max_steps=-1 needs trainer.max_epochs (a positive number): otherwise training never ends"],
    ),
    (["data.speed_perturb=[3.0]"], ["data.speed_perturb[0]=3.0 must be <= 2"]),
    (["data.speed_perturb=1.1"], ["data.speed_perturb=1.1 must be a list"]),
    (["data.speed_perturb=[0.9,fast]"], ["data.speed_perturb[1]=fast must be a number"]),
    (["data.speed_perturb=[true]"], ["data.speed_perturb[0]=true must be a number"]),
    (["seed=-1"], ["seed=-1 must be >= 0"]),
    (["trainer.deterministic=yes"], ["trainer.deterministic=yes must be true, false or warn"]),
    (
        ["callbacks.early_stopping.monitor=wer"],
        ["callbacks.early_stopping.monitor=wer must be one of: val_wer, val_cer, val_loss"],
    ),
    (
        ["+optimizer.foo=1"],
        [
            "optimizer.foo is not a setting of optimizer (it has: lr, betas, weight_decay, eps, "
            "scheduler, scheduler_conf, warmup_steps, schedule)"
        ],
    ),
    (["+trainer.foo=1"], ["trainer.foo=1 is not an argument of lightning.pytorch.Trainer"]),
    (
        ["model=owsm_1b", "model.path=/no/such/model"],
        ["model.path=/no/such/model is not a directory (a model directory: ESPnet's exported layout, or a Whisper one)"],
    ),
    (
        ["method=lora", "method.rank=8"],
        ["Could not override 'method.rank'. (Key 'rank' is not in struct full_key: method.rank object_type=dict)"],
    ),
    (["method=lora", "+method.rank=8"], ["method.rank is not a hyperparameter of lora (it takes: r, alpha, embedding_targets)"]),
    # Issue 28, case 8 and 11: a value echoed whole, a key given twice, an empty mapping merged, unquoted non-ASCII.
    (["seed=" + "7x" * 2500], ["seed=" + "7x" * 27 + "7... (5000 characters) must be an integer"]),
    (["data=manifest", "data=synth_child"], ["data is given twice (data=manifest and data=synth_child); give it once"]),
    (
        ["data.test={}"],
        [
            "data.test={} changes nothing (a mapping given to data.test is merged into it); to leave it "
            "empty, remove it: ~data.test"
        ],
    ),
    (
        ["data.language=\u00e9"],
        ["LexerNoViableAltException: data.language=\u00e9; quote a value with spaces or characters outside ASCII: key='value'"],
    ),
    (["+trainer.profiler=bogus"], ["trainer.profiler=bogus must be one of: simple, advanced, pytorch, xla"]),
    (["hydra.run.dir=/etc/passwd/run"], ["hydra.run.dir=/etc/passwd/run is inside /etc/passwd, which is not a directory"]),
    # Several problems: one line each.
    (
        ["optimizer.lr=0", "seed=1.5", "data.on_error=never"],
        ["seed=1.5 must be an integer", "data.on_error=never must be one of: raise, skip", "optimizer.lr=0 must be > 0"],
    ),
]


def preflight_lines(capsys, tmp_path, task: str, args: list[str]) -> list[str]:
    """stderr lines of `preflight` (exit status 2 asserted), run in an empty directory that must stay empty."""
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit_:
            preflight(task, args)
    finally:
        os.chdir(here)
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []  # nothing written
    return captured.err.splitlines()


@pytest.mark.parametrize("args, lines", CONFIG_CASES, ids=[" ".join(args) for args, _ in CONFIG_CASES])
def test_a_bad_config_is_one_line_per_problem_before_anything_runs(capsys, tmp_path, args, lines):
    assert preflight_lines(capsys, tmp_path, "train", [*args, f"paths.log_dir={tmp_path}/outputs"]) == [
        f"error: {line}" for line in lines
    ]


def test_an_unknown_scheduler_is_named_before_anything_runs(capsys, tmp_path):
    """Issue 28, case 8: it failed after data validation, model load and baseline scoring, blaming
    optimizer.warmup_steps, then optimizer.schedule, before naming itself."""
    [line] = preflight_lines(capsys, tmp_path, "train", ["optimizer.scheduler=bogus", f"paths.log_dir={tmp_path}/outputs"])
    from espnet2.tasks.abs_task import scheduler_classes  # imported quietly by the check above

    assert line.startswith("error: optimizer.scheduler='bogus' is not one of ESPnet's per-update schedulers (choose from: ")
    assert "piecewiselinearwarmuplr" in line and set(line.split("(choose from: ")[1].rstrip(")").split(", ")) <= set(
        scheduler_classes
    )
    assert preflight_lines(
        capsys, tmp_path, "train", ["optimizer=adamw", "optimizer.warmup_steps=10", f"paths.log_dir={tmp_path}/outputs"]
    ) == ["error: optimizer.warmup_steps applies only without optimizer.scheduler; set the schedule in optimizer.scheduler_conf"]


def test_every_shipped_config_passes_the_schema():
    from asr_peft.config.validate import validate_config
    from conftest import compose_config

    for group in ("model", "method", "adapt", "data", "trainer", "logger", "optimizer", "experiment", "hparams_search"):
        for option in sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml")):
            cfg = compose_config("train", [f"{group}={option}", CORPUS])
            if cfg.model.get("path") and not Path(cfg.model.path).is_dir():  # a pretraining stage not built yet
                cfg.model.path = str(ROOT / "checkpoints" / "owsm_tiny_pretrained")
            validate_config(cfg, "train", check_hardware=False)  # trainer=gpu is valid, on a machine with one
    for point in sorted(p.stem for p in (ROOT / "sweeps" / "point").glob("*.yaml")):
        validate_config(compose_config("train", [f"+point={point}"]), "train", check_hardware=False)


def test_the_config_name_flag_does_not_skip_the_check(capsys, tmp_path):
    """Issue 28, case 8: any -/-- flag skipped the check, so a bad override then created the run directory."""
    for flag in (["--config-name", "train"], ["-cn", "train"], ["--config-name=train"]):
        assert preflight_lines(capsys, tmp_path, "train", [*flag, "optimizer.lr=-1"]) == ["error: optimizer.lr=-1 must be > 0"]


@pytest.fixture(scope="module")
def extra_config_dir(tmp_path_factory) -> Path:
    """A `--config-dir` with one option of its own: a LoRA whose rank is out of range."""
    directory = tmp_path_factory.mktemp("my_configs")
    (directory / "method").mkdir()
    lora = (ROOT / "configs" / "method" / "lora.yaml").read_text()
    (directory / "method" / "my_lora.yaml").write_text(re.sub(r"(?m)^r: .*$", "r: 0", lora))
    (directory / "method" / "twice.yaml").write_text(lora + "r: 0\n")  # r given twice: not YAML
    return directory


def test_the_config_dir_and_config_path_flags_do_not_skip_the_check(capsys, tmp_path, extra_config_dir):
    """Issue 28, case 8: Hydra's flags skipped the check (--config-dir: its configs were not on the search path)."""
    configs = str(ROOT / "configs")
    for flags in (
        ["--config-dir", str(extra_config_dir)],
        ["-cd", str(extra_config_dir)],
        [f"--config-dir={extra_config_dir}"],
        ["--config-path", configs],
        ["-cp", "configs"],  # relative to the entry point's directory, as Hydra reads it
        ["--run"],
    ):
        assert preflight_lines(capsys, tmp_path, "train", [*flags, "optimizer.lr=-1"]) == ["error: optimizer.lr=-1 must be > 0"]
    # the extra directory's options are found and checked like the shipped ones
    lora_lines = len((ROOT / "configs" / "method" / "lora.yaml").read_text().splitlines())
    assert preflight_lines(capsys, tmp_path, "train", ["--config-dir", str(extra_config_dir), "method=my_lora"]) == [
        "error: method.r=0 must be >= 1"
    ]
    assert preflight_lines(capsys, tmp_path, "train", ["--config-dir", str(extra_config_dir), "method=twice"]) == [
        f"error: {extra_config_dir / 'method' / 'twice.yaml'}, line {lora_lines + 1}: found duplicate key r"
    ]
    [line] = preflight_lines(capsys, tmp_path, "train", ["--config-dir", str(tmp_path / "nowhere"), "optimizer.lr=1e-3"])
    assert line == f"error: Additional config directory '{tmp_path / 'nowhere'}' not found"
    assert preflight_lines(capsys, tmp_path, "train", ["--config-path", str(tmp_path / "nowhere")]) == [
        f"error: --config-path={tmp_path / 'nowhere'}: the config directory {tmp_path / 'nowhere'} does not exist"
    ]


def test_evaluate_config_errors_name_the_key(capsys, tmp_path):
    assert preflight_lines(capsys, tmp_path, "evaluate", []) == [
        "error: run_dir is required (??? in the config): set run_dir=<value>"
    ]
    assert preflight_lines(capsys, tmp_path, "evaluate", ["run_dir=/no/such/run", "checkpoint=bogus"]) == [
        "error: run_dir=/no/such/run is not a directory (a training run's directory, e.g. outputs/train/<run>)",
        "error: checkpoint=bogus must be one of: best, last, or the path of a .ckpt file",
    ]


def test_the_command_line_prints_only_the_error_and_creates_nothing(tmp_path):
    result = train_cli(["optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "error: optimizer.lr=-1 must be > 0\n")
    assert not (tmp_path / "run").exists()


def test_a_bad_override_with_config_dir_creates_no_run_directory(tmp_path, extra_config_dir):
    result = train_cli(["--config-dir", str(extra_config_dir), "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "error: optimizer.lr=-1 must be > 0\n")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_config_inside_a_job_is_recorded_before_data_or_model_are_touched(tiny_corpus, tmp_path, monkeypatch):
    """What a sweep job meets (no preflight there): the record says failed, with the line; nothing loaded."""
    import asr_peft.training.run as run_module

    def never(*args, **kwargs):
        raise AssertionError("reached")

    monkeypatch.setattr(run_module, "load_model", never)
    monkeypatch.setattr(run_module, "validate_data", never)
    with pytest.raises(ConfigError, match="optimizer.lr=-1 must be > 0"):
        run_in_process(["optimizer.lr=-1", "data=manifest", f"data.corpus_dir={tiny_corpus}"], tmp_path / "run")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == "InvalidConfig: optimizer.lr=-1 must be > 0"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_disabled_progress_bar_drops_the_configured_one():
    from lightning.pytorch.callbacks import ProgressBar

    from asr_peft.training.trainer import build_trainer
    from conftest import compose_config

    cfg = compose_config("train", [*FAST[:3], "trainer.enable_progress_bar=false", "paths.output_dir=/tmp/x"])
    trainer = build_trainer(cfg, Path("/tmp/x"))
    assert not any(isinstance(c, ProgressBar) for c in trainer.callbacks)


# ---- data ----------------------------------------------------------------------------------------


def write_float_wav(path: Path, samples: np.ndarray) -> Path:
    soundfile.write(str(path), samples.astype(np.float32), 16000, subtype="FLOAT")
    return path


def flac(path: Path, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(
        str(path),
        (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32),
        16000,
        format="FLAC",
    )
    return path


def bad_entry(case: str, directory: Path) -> tuple[bytes, str, str]:
    """(manifest line, skip reason, the exact one-line error) for one kind of bad utterance."""
    good = write_tone(directory / "good.wav", 1.0)
    tone = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) * 0.3

    def line(**entry) -> bytes:
        return json.dumps({"id": "bad", "audio": str(good), "text": "hello there", **entry}).encode()

    if case == "nan_samples":
        path = write_float_wav(directory / "nan.wav", np.where(np.arange(16000) == 500, np.nan, tone))
        return line(audio=str(path)), "non_finite_audio", f"audio file {path} holds 1 NaN or infinite sample(s)"
    if case == "huge_samples":  # issue 28: finite but absurd samples made the training loss NaN
        path = write_float_wav(directory / "huge.wav", np.where(np.arange(16000) == 500, 1e30, tone))
        return (
            line(audio=str(path)),
            "out_of_range_audio",
            f"audio file {path} has samples up to ±1e+30, beyond ±2 (float audio lies in [-1, 1]; a scaling mistake?)",
        )
    if case == "inf_samples":
        path = write_float_wav(directory / "inf.wav", np.where(np.arange(16000) % 4000 == 0, np.inf, tone))
        return line(audio=str(path)), "non_finite_audio", f"audio file {path} holds 4 NaN or infinite sample(s)"
    if case == "not_utf8":
        raw = line(text="caf\u00e9").replace(b"\\u00e9", b"\xe9")  # Latin-1 where UTF-8 was expected
        position = raw.index(b"\xe9")
        return raw, "invalid_manifest_line", "{manifest}:3: not UTF-8 text (byte %d: b'\\xe9')" % position
    if case == "nan_start":
        return line(start=math.nan), "invalid_manifest_line", "{manifest}:3: field start is not a finite number (nan)"
    if case == "negative_start":
        return line(start=-0.5, end=0.5), "bad_segment", f"utterance bad: segment -0.5-0.5 s is outside {good} (1.00 s) or empty"
    if case == "end_before_start":
        return line(start=0.5, end=0.2), "bad_segment", f"utterance bad: segment 0.5-0.2 s is outside {good} (1.00 s) or empty"
    if case == "corrupt_flac":
        path = flac(directory / "corrupt.flac")
        data = bytearray(path.read_bytes())
        data[len(data) // 3 : len(data) // 3 + 2000] = bytes(range(256)) * 7 + bytes(208)
        path.write_bytes(bytes(data))
        return line(audio=str(path)), "undecodable_audio", f"audio file {path} fails to decode: Error : flac decoder lost sync."
    if case == "truncated_flac":
        path = flac(directory / "truncated.flac")
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return line(audio=str(path)), "undecodable_audio", f"audio file {path} fails to decode: Error : flac decoder lost sync."
    if case == "null_text":
        return line(text=None), "invalid_manifest_line", "{manifest}:3: field text is null, not a string"
    if case == "null_audio":
        return line(audio=None), "invalid_manifest_line", "{manifest}:3: field audio is null, not a string"
    if case == "punctuation_only":
        return (
            line(text="?! ..."),
            "empty_after_normalisation",
            f"utterance bad ({good}): transcript '?! ...' has no words after normalisation (nothing to score or learn)",
        )
    if case == "blank_text":
        return line(text="   "), "empty_transcript", f"utterance bad ({good}) has an empty transcript"
    if case == "silence":
        path = write_float_wav(directory / "silence.wav", np.zeros(16000))
        return (
            line(audio=str(path)),
            "silent_audio",
            f"audio file {path} is silent (peak 0.0e+00, below -80 dBFS) but utterance bad has a transcript",
        )
    if case == "device":  # issue 28: /dev/zero, a FIFO and a symbolic link loop were all "does not exist"
        return line(audio="/dev/zero"), "unreadable_audio", "audio file /dev/zero is a device, not an audio file"
    if case == "fifo":
        os.mkfifo(directory / "pipe.wav")
        return (
            line(audio=str(directory / "pipe.wav")),
            "unreadable_audio",
            f"audio file {directory / 'pipe.wav'} is a FIFO, not an audio file",
        )
    if case == "link_loop":
        (directory / "loop.wav").symlink_to(directory / "loop.wav")
        return (
            line(audio=str(directory / "loop.wav")),
            "unreadable_audio",
            f"audio file {directory / 'loop.wav'} is a loop of symbolic links",
        )
    if case == "missing_audio":
        return line(audio=str(directory / "gone.wav")), "missing_audio", f"audio file {directory / 'gone.wav'} does not exist"
    if case == "not_audio":
        (directory / "broken.wav").write_bytes(b"RIFF not really audio")
        return (
            line(audio=str(directory / "broken.wav")),
            "unreadable_audio",
            f"audio file {directory / 'broken.wav'} is unreadable: Error opening '{directory / 'broken.wav'}': Format not recognised.",
        )
    if case == "low_rate":
        path = write_tone(directory / "low.wav", 1.0, sample_rate=4000)
        return line(audio=str(path)), "bad_sample_rate", f"audio file {path} is 4000 Hz, below the 8000 Hz minimum for speech"
    if case == "too_long":
        path = write_tone(directory / "long.wav", 3.0)
        return line(audio=str(path)), "too_long", f"utterance bad ({path}) is 3.0 s, over data.max_duration=2.0"
    if case == "not_json":
        return (
            b"{not json",
            "invalid_manifest_line",
            "{manifest}:3: not valid JSON (Expecting property name enclosed in double quotes)",
        )
    if case == "duplicate_id":
        return line(id="u0"), "duplicate_id", "{manifest}: duplicate utterance id u0"
    if case == "long_transcript":  # issue 28: 5,000 words on a 1-second clip took the machine down
        return (
            line(text="hello " * 5000),
            "too_many_characters",
            (
                f"utterance bad ({good}): 29999 characters of transcript for 1.00 s of audio, over the 50 per second that "
                "speech reaches (a transcript of another clip, or wrong segment times?)"
            ),
        )
    raise KeyError(case)


DATA_CASES = [
    "nan_samples",
    "huge_samples",
    "inf_samples",
    "not_utf8",
    "nan_start",
    "negative_start",
    "end_before_start",
    "corrupt_flac",
    "truncated_flac",
    "null_text",
    "null_audio",
    "punctuation_only",
    "blank_text",
    "silence",
    "missing_audio",
    "not_audio",
    "low_rate",
    "too_long",
    "not_json",
    "duplicate_id",
    "long_transcript",
    "device",
    "fifo",
    "link_loop",
]


def manifest_with(directory: Path, *bad_lines: bytes) -> Path:
    """Two good utterances, then the bad lines."""
    directory.mkdir(parents=True, exist_ok=True)
    good = [
        json.dumps({"id": f"u{i}", "audio": str(write_tone(directory / f"u{i}.wav", 1.0, seed=i)), "text": "a cat"}).encode()
        for i in range(2)
    ]
    path = directory / "m.jsonl"
    path.write_bytes(b"\n".join([*good, *bad_lines]) + b"\n")
    return path


def data_cfg(manifest: Path, on_error: str, split: str = "train") -> dict:
    cfg = {
        "train": str(manifest),
        "valid": str(manifest),
        "test": {"t": str(manifest)},
        "max_duration": 2.0,
        "on_error": on_error,
        "normalizer": "whisper_basic",
    }
    return cfg


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line_naming_the_file_or_utterance_or_a_counted_skip(tmp_path, case):
    line, reason, message = bad_entry(case, tmp_path)
    manifest = manifest_with(tmp_path, line)
    message = message.format(manifest=manifest)
    normalizer = get_normalizer("whisper_basic")
    for split in ("train", "valid", "test"):  # test manifests too, before anything trains
        with pytest.raises(DataError) as err:
            validate_data(data_cfg(manifest, "raise"), normalizer=normalizer, cache_dir=tmp_path / "cache", splits=(split,))
        assert str(err.value) == message
    # Training and test sets apart: the one manifest serves as both here (test utterances that training
    # sees are refused when both are read, test_a_test_utterance_that_training_sees_is_refused_or_skipped).
    validated = validate_data(
        data_cfg(manifest, "skip"), normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train", "valid")
    )
    tested = validate_data(data_cfg(manifest, "skip"), normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("test",))
    assert [u.id for u in validated.train] == [u.id for u in validated.valid] == [u.id for u in tested.test["t"]] == ["u0", "u1"]
    assert validated.skipped + tested.skipped == Counter({reason: 2, f"test/{reason}": 1})


def test_skip_mode_skips_every_kind_at_once_and_what_it_keeps_reads(tmp_path):
    lines, reasons = [], Counter()
    for i, case in enumerate(DATA_CASES):
        line, reason, _ = bad_entry(case, tmp_path / case)
        if case not in ("not_utf8", "not_json"):
            entry = json.loads(line)
            entry["id"] = entry["id"] if case == "duplicate_id" else f"bad{i}"
            line = json.dumps(entry).encode()
        lines.append(line)
        reasons[reason] += 1
    manifest = manifest_with(tmp_path / "all", *lines)
    normalizer = get_normalizer("whisper_basic")
    kept, skipped = validate_utterances(
        load_utterances(manifest, skipped=(counted := Counter())), max_duration=2.0, on_error="skip", normalizer=normalizer
    )
    assert counted + skipped == reasons and [u.id for u in kept] == ["u0", "u1"]

    class NoText:
        default_language = "eng"
        speech_length = None

        def __call__(self, utt_id, speech, text, language):
            return {"speech": speech}

    assert [len(item["speech"]) for item in SpeechDataset(kept, NoText())] == [16000, 16000]  # reading them never fails


def test_an_unknown_utterance_language_is_refused_or_skipped(tmp_path):
    good = write_tone(tmp_path / "a.wav", 1.0)
    data = ValidatedData(
        train=[Utterance("a", good, "x", language="eng"), Utterance("b", good, "y", language="klingon")],
        valid=[Utterance("c", good, "z")],
    )
    with pytest.raises(
        DataError,
        match=r"^utterance b \(data.train\): language 'klingon' has no token <klingon> in the "
        r"model's token list$",
    ):
        ValidatedData(train=list(data.train), valid=list(data.valid)).keep_languages(lambda lang: lang == "eng", "eng", "raise")
    data.keep_languages(lambda lang: lang == "eng", "eng", "skip")
    assert [u.id for u in data.train] == ["a"] and data.skipped == Counter({"unknown_language": 1})


def test_audio_checks_are_cached_by_file_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    import asr_peft.data.validation as validation

    manifest = manifest_with(tmp_path)
    normalizer = get_normalizer("whisper_basic")
    scans = []
    real_scan = validation.scan_audio
    monkeypatch.setattr(validation, "scan_audio", lambda *a, **k: scans.append(a[0]) or real_scan(*a, **k))
    cfg = data_cfg(manifest, "raise")
    validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train",))
    assert len(scans) == 2
    validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train", "valid"))
    assert len(scans) == 2  # both files unchanged: no decoding
    write_float_wav(tmp_path / "u1.wav", np.full(16000, np.nan))  # the same path, new content
    with pytest.raises(DataError, match="u1.wav holds 16000 NaN"):
        validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train",))
    assert len(scans) == 3
    # Issue 28: new content with the size and modification time of the old is checked again too.
    u1 = tmp_path / "u1.wav"
    write_float_wav(u1, 0.3 * np.sin(np.arange(16000) / 10))
    validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train",))
    assert len(scans) == 4
    before = u1.stat()
    write_float_wav(u1, np.where(np.arange(16000) == 7, np.nan, 0.3))
    os.utime(u1, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (u1.stat().st_size, u1.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.raises(DataError, match="u1.wav holds 1 NaN"):
        validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache", splits=("train",))
    assert len(scans) == 5


def test_bad_test_data_stops_the_run_before_the_model_loads_or_anything_trains(tiny_corpus, tmp_path, monkeypatch):
    import asr_peft.training.run as run_module

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the data were checked")

    monkeypatch.setattr(run_module, "load_model", never)
    test = tiny_corpus / "test.jsonl"
    test.write_text(test.read_text() + '{"id": "x", "audio": "audio/test0.wav", "text": "hello", "start": -1}\n')
    with pytest.raises(DataError, match="^utterance x: segment -1.0-"):
        run_in_process(
            ["method=ssvd", "data=manifest", f"data.corpus_dir={tiny_corpus}", "evaluation.baseline=false"], tmp_path / "run"
        )
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- transcripts the model cannot learn from their audio (issue 28, case 1) ---------------------------


@pytest.mark.parametrize("targets, frames", [([1, 2, 3], 3), ([1, 1, 2], 4), ([5, 5, 5], 5), ([4, 4], 3)])
def test_the_frames_a_ctc_alignment_needs_are_what_torch_ctc_loss_accepts(targets, frames):
    import torch

    from asr_peft.models.owsm_limits import ctc_frames_needed

    assert ctc_frames_needed(targets) == frames
    log_probs = torch.randn(frames + 1, 1, 8).log_softmax(-1)
    loss = lambda t: torch.nn.functional.ctc_loss(
        log_probs[:t],
        torch.tensor([targets]),
        torch.tensor([t]),  # noqa: E731
        torch.tensor([len(targets)]),
        reduction="sum",
    )
    assert torch.isfinite(loss(frames)) and torch.isinf(loss(frames - 1))


def test_transcripts_longer_than_the_model_can_align_are_refused_or_skipped(tiny_bundle, tmp_path, monkeypatch, caplog):
    import torch

    from asr_peft.data.audio import read_audio
    from asr_peft.models.owsm_text import OWSMPreprocessor
    from asr_peft.data.validation import TokenLimit
    from asr_peft.models.owsm_limits import owsm_token_limit

    preprocessor = OWSMPreprocessor(tiny_bundle)
    audio = write_tone(tmp_path / "a.wav", 1.0)
    samples = torch.from_numpy(read_audio(audio))[None]
    tiny_bundle.model.eval()
    with torch.no_grad():  # the frames of the real audio, as training's forward pass counts them
        frames = int(tiny_bundle.model.encode(samples, torch.tensor([samples.shape[1]]))[1][0])
    text = "ab" * frames  # the tiny model spells: one token per letter, no repeats
    why = (
        f"CTC aligns one token per encoder frame, and {frames} frames come from that audio; a token repeated next "
        "to itself takes two"
    )
    utterances = lambda: [Utterance("fits", audio, text[:frames], 1.0), Utterance("over", audio, text[: frames + 1], 1.0)]  # noqa: E731
    # A model that also trains its attention decoder learns from them (ESPnet zeroes the infinite CTC loss).
    limit = owsm_token_limit(tiny_bundle, preprocessor)
    assert tiny_bundle.model.ctc_weight < 1
    assert limit(text[:frames], None, 1.0) == TokenLimit(frames, frames, why, refused=False)
    assert limit(text[: frames + 1], None, 1.0) == TokenLimit(frames + 1, frames, why, refused=False)
    data = ValidatedData(train=utterances(), valid=utterances())
    data.keep_within_token_limits(limit, "raise")
    assert [u.id for u in data.train] == ["fits", "over"] and data.skipped == Counter()
    assert [r.getMessage() for r in caplog.records if r.name == "asr_peft.data.validation"] == [
        f"{split}: 1 utterance(s) have more tokens than CTC can align to their audio (over: {frames + 1} tokens for "
        f"{frames}); their CTC loss is zero and only the attention decoder learns from them"
        for split in ("data.train", "data.valid")
    ]
    # A CTC-only model would learn nothing from them.
    monkeypatch.setattr(tiny_bundle.model, "ctc_weight", 1.0)
    limit = owsm_token_limit(tiny_bundle, preprocessor)
    data = ValidatedData(train=utterances(), valid=utterances())
    with pytest.raises(DataError) as refused:
        data.keep_within_token_limits(limit, "raise")
    assert str(refused.value) == (
        f"utterance over (data.train, {audio}): its transcript is {frames + 1} tokens, over the "
        f"{frames} that 1.00 s of audio allow ({why})"
    )
    data = ValidatedData(train=utterances(), valid=utterances())
    data.keep_within_token_limits(limit, "skip")
    assert [u.id for u in data.train] == [u.id for u in data.valid] == ["fits"]
    assert data.skipped == Counter({"too_many_tokens": 2})
    data = ValidatedData(train=utterances(), valid=utterances())  # speed perturbation x1.1 shortens training audio
    with pytest.raises(DataError, match=r"^data.train: no usable utterances left \(skipped: \{'too_many_tokens': 2\}\)$"):
        data.keep_within_token_limits(limit, "skip", fastest_speed=1.1)


def test_a_transcript_the_model_cannot_align_stops_the_run_before_scoring_or_training(tiny_corpus, tmp_path, monkeypatch):
    import asr_peft.training.run as run_module

    def never(*args, **kwargs):
        raise AssertionError("the baseline was scored before the transcripts were checked")

    monkeypatch.setattr(run_module, "baseline_metrics", never)
    from asr_peft.models.owsm import OWSMBundle

    model_limit = OWSMBundle.token_limit  # as a CTC-only model's: over the frames is refused
    monkeypatch.setattr(
        OWSMBundle, "token_limit", lambda *args: lambda *utt: dataclasses.replace(model_limit(*args)(*utt), refused=True)
    )
    train = tiny_corpus / "train.jsonl"
    entry = {"id": "dense", "audio": "audio/train0.wav", "text": "abcdefghij" * 5}  # 1.2 s: 50 letters, 29 frames
    train.write_text(train.read_text() + json.dumps(entry) + "\n")
    with pytest.raises(
        DataError,
        match=r"^utterance dense \(data.train, .*train0.wav\): its transcript is 50 tokens, "
        r"over the 29 that 1.20 s of audio allow \(CTC aligns",
    ):
        run_in_process(
            ["method=ssvd", "data=manifest", f"data.corpus_dir={tiny_corpus}", f"paths.cache_dir={tmp_path / 'cache'}"],
            tmp_path / "run",
        )
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unwritable_cache_directory_stops_the_run_before_anything_is_scored(tiny_corpus, tmp_path, monkeypatch):
    """Issue 28, case 9: a read-only cache directory crashed writing the baseline's scores after scoring."""
    import asr_peft.training.run as run_module

    def never(*args, **kwargs):
        raise AssertionError("reached")

    monkeypatch.setattr(run_module, "validate_data", never)
    (tmp_path / "cache").write_text("not a directory\n")
    with pytest.raises(AsrPeftError) as refused:
        run_in_process(
            ["data=manifest", f"data.corpus_dir={tiny_corpus}", f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path / "run"
        )
    assert str(refused.value) == f"paths.cache_dir={tmp_path / 'cache'} is not a directory"
    assert (tmp_path / "cache").read_text() == "not a directory\n"


def test_a_completed_run_on_a_read_only_archive_still_shows_its_results(tmp_path, monkeypatch):
    """Issue 28, case 9: `train.py` on a finished run copied to a read-only place could not print it."""
    import asr_peft.training.results as results
    from asr_peft.files import UnwritableError

    config = {"method": {"name": "ssvd"}, "adapt": {"p": 0.4}}
    results.claim_run_dir(tmp_path, OmegaConf.create(config)).release()
    results.write_results(tmp_path, {"status": "completed", "metrics": {"t": {"wer": 0.1}}})

    def read_only(directory, what):
        raise UnwritableError(f"{what}={directory} is not a writable directory (Read-only file system)")

    monkeypatch.setattr(results, "check_writable_directory", read_only)
    claim = results.claim_run_dir(tmp_path, OmegaConf.create(config))
    claim.release()
    assert claim.completed["metrics"] == {"t": {"wer": 0.1}}
    results.write_results(tmp_path, {"status": "failed"})  # an unfinished run there cannot be resumed: one line
    with pytest.raises(UnwritableError, match="Read-only file system"):
        results.claim_run_dir(tmp_path, OmegaConf.create(config))


def test_a_truncated_baseline_cache_is_scored_again_not_a_crash(tmp_path, caplog):
    """Issue 28, case 9: a baseline cache file cut short crashed every later run that read it."""
    from asr_peft.training.baseline import _cached_metrics

    cache = tmp_path / "baseline.json"
    cache.write_text('{"test": {"wer": 0.5')
    assert _cached_metrics(cache) is None
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [f"baseline cache {cache} is unreadable"]
    cache.write_text('{"test": {"wer": 0.5}}')
    assert _cached_metrics(cache) == {"test": {"wer": 0.5}} and _cached_metrics(tmp_path / "none.json") is None


def test_a_test_utterance_that_training_sees_is_refused_or_skipped(tmp_path):
    """Issue 28, case 11: the same id in train and test, and a test utterance whose audio (copied under
    another name) and transcript are in train, passed without a word."""
    import shutil

    train = manifest_with(tmp_path / "train")
    copied = shutil.copy(tmp_path / "train" / "u1.wav", tmp_path / "copy.wav")
    entries = [
        {"id": "u0", "audio": str(write_tone(tmp_path / "t0.wav", 1.0, seed=7)), "text": "a dog"},
        {"id": "t1", "audio": str(copied), "text": "A cat!"},  # the same words once normalised
        {"id": "t2", "audio": str(copied), "text": "a dog"},  # the same audio, another transcript: fine
        {"id": "t3", "audio": str(write_tone(tmp_path / "t3.wav", 1.0, seed=8)), "text": "a cat"},
    ]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    cfg = {**data_cfg(train, "raise"), "test": {"t": str(test)}}
    normalizer = get_normalizer("whisper_basic")
    with pytest.raises(DataError) as refused:
        validate_data(cfg, normalizer=normalizer, cache_dir=tmp_path / "cache")
    assert str(refused.value) == (
        "utterance u0 (test set t) has the id of a data.train utterance; ids must differ "
        "between training and test (decodes and records are keyed by them)"
    )
    validated = validate_data({**cfg, "on_error": "skip"}, normalizer=normalizer, cache_dir=tmp_path / "cache")
    assert [u.id for u in validated.test["t"]] == ["t2", "t3"] and validated.skipped == Counter({"test/in_train": 2})
