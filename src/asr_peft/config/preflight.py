"""The command line composed and validated before Hydra starts, so that a bad override is reported in one
line each and nothing (no run directory, no log) is created."""

from __future__ import annotations

import sys

from asr_peft.cli import ROOT, report_error
from asr_peft.errors import AsrPeftError


def preflight(config_name: str, argv: list[str]) -> None:
    """Compose and validate the config from the command line before Hydra starts, so that a bad
    override is reported in one line each and nothing (no run directory, no log) is created.

    Hydra's own messages for an unknown option or key span many lines (and append its config search
    path); this keeps the first line and the available options. Sweeps (`-m`) are checked job by job
    as they run (a bad job is recorded as failed and the others run); Hydra's informational flags
    (`--help`, `--cfg`, ...) run nothing and are left to it, as are `--config-dir` / `--config-path`,
    whose configs this check cannot see. `--config-name` is honoured.
    """
    argv, config_name = _without_config_name(argv, config_name)
    if any(arg.startswith("-") for arg in argv):
        return
    overrides = [arg for arg in argv if not arg.lstrip("+~").startswith("hydra.")]
    problem = _given_twice(overrides) or _empty_mapping(overrides)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    from asr_peft.files import check_creatable_directory

    try:  # Hydra creates the run directory before the job starts, with a traceback when it cannot
        for key, _, value in (arg.partition("=") for arg in argv):
            if key in ("hydra.run.dir", "run_dir") and value:
                check_creatable_directory(value.strip("'\""), key)
    except AsrPeftError as err:
        report_error(err)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    from asr_peft.config.validate import validate_config

    try:
        validate_config(cfg, config_name)
    except AsrPeftError as err:
        report_error(err)


def _without_config_name(argv: list[str], config_name: str) -> tuple[list[str], str]:
    """The command line without `--config-name NAME` / `-cn NAME` / `--config-name=NAME`, and that name."""
    rest, position = [], 0
    while position < len(argv):
        arg = argv[position]
        if arg in ("--config-name", "-cn") and position + 1 < len(argv):
            config_name, position = argv[position + 1], position + 2
            continue
        if arg.startswith("--config-name="):
            config_name = arg.partition("=")[2]
        else:
            rest.append(arg)
        position += 1
    return rest, config_name


def _given_twice(overrides: list[str]) -> str | None:
    """Hydra keeps the last of two overrides of one key or group (`data=manifest data=synth_child` then
    trains on the synthetic corpus, generated into the manifest's data.corpus_dir)."""
    seen: dict[str, str] = {}
    for override in overrides:
        key, sep, _ = override.lstrip("+~").partition("=")
        if not sep:
            continue
        if key in seen:
            return f"{key} is given twice ({seen[key]} and {override}); give it once"
        seen[key] = override
    return None


def _empty_mapping(overrides: list[str]) -> str | None:
    """`key={}` merges nothing into the mapping at `key` (Hydra merges mappings): a silent no-op."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and not key.startswith(("+", "~")) and value.replace(" ", "") == "{}":
            return (
                f"{key}={{}} changes nothing (a mapping given to {key} is merged into it); to leave it empty, remove it: ~{key}"
            )
    return None


def hydra_error_line(err: BaseException) -> str:
    """The first line of a Hydra composition error, with the options it lists, without its search path."""
    raw = str(err).splitlines()
    lines = [line.strip() for line in raw if line.strip()]
    detail = lines[0] if lines else type(err).__name__
    starts = [i for i, line in enumerate(raw) if line.startswith("Available options")]
    if starts:
        options = []
        for line in raw[starts[0] + 1 :]:
            if not line.startswith((" ", "\t")) or not line.strip():
                break  # the option list is indented; what follows (the config search path) is not
            options.append(line.strip())
        detail += f" (choose from: {', '.join(options)})"
    elif err.__cause__ is not None:
        detail += f" ({' '.join(str(err.__cause__).split()[:20])})"
    if "LexerNoViableAltException" in str(err) or "token recognition error" in str(err):
        detail += "; quote a value with spaces or characters outside ASCII: key='value'"
    return detail if len(detail) <= 300 else f"{detail[:280]}... ({len(detail)} characters)"
