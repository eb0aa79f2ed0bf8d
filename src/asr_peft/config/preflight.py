"""The command line composed and validated before Hydra starts, so that a bad override is reported in one
line each and nothing (no run directory, no log) is created."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asr_peft.cli import ROOT
from asr_peft.errors import AsrPeftError, report_error

ENTRY_POINT_CONFIG_PATH = "configs"  # the `config_path` of train.py's and evaluate.py's `hydra.main`, beside them


def preflight(config_name: str, argv: list[str]) -> list[str]:
    """Check the command line of an entry point whose config is `config_name`, exiting with status 2 and
    one `error:` line per problem; return the command line Hydra is to run.

    The flags are Hydra's own (its argument parser reads them): `--config-name`, `--config-path` and
    `--config-dir` give the config searched as Hydra will search it. Hydra's own messages for an unknown
    option or key span many lines (and append its config search path); this keeps the first line and the
    available options. Sweeps (`-m`) are checked job by job as they run (a bad job is recorded as failed
    and the others run); Hydra's informational flags (`--help`, `--cfg`, `--info`, ...) run nothing and are
    left to it, as is `--experimental-rerun`, whose config is a saved one.

    The run directory Hydra will create (`hydra.run.dir`, or the one named after the run below
    `paths.log_dir`) must be creatable and writable, except that of a completed run on a read-only archive:
    its results are shown again, with Hydra's log on stdout instead of a file there.
    """
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)  # what Hydra rejects, it rejects here, in its own words
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.multirun or args.experimental_rerun:
        return argv
    overrides = [arg for arg in args.overrides if not arg.lstrip("+~").startswith("hydra.")]
    problem = _given_twice(overrides) or _empty_mapping(overrides)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    import yaml
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        with _searched_as_the_app(args.config_path, args.config_dir):
            cfg = compose(config_name=args.config_name or config_name, overrides=args.overrides, return_hydra_config=True)
            run_dir = _run_directory(cfg)
    except yaml.MarkedYAMLError as err:  # a config file that is not YAML (a duplicate key, a bad indent)
        mark = err.problem_mark or err.context_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark else "a config file"
        print(f"error: {where}: {err.problem or err.context}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    try:
        argv = argv + _run_directory_check(run_dir, OmegaConf.select(cfg, "run_dir", throw_on_missing=False))
    except AsrPeftError as err:
        report_error(err)
    with open_dict(cfg):
        del cfg["hydra"]
    from asr_peft.config.validate import validate_config

    try:
        validate_config(cfg, config_name)
    except AsrPeftError as err:
        report_error(err)
    return argv


def _run_directory(cfg: Any) -> str | None:
    """The directory Hydra will create for the job; None where it cannot be named yet (evaluate.py's is named
    after the command line's overrides by Hydra's runtime)."""
    from omegaconf.errors import InterpolationResolutionError

    try:
        return str(cfg.hydra.run.dir)
    except InterpolationResolutionError:  # or a key it names is missing: the schema's check says which
        return None


def _run_directory_check(run_dir: str | None, trained_run: Any) -> list[str]:
    """Refuse a run directory that cannot be created or written, in one line (Hydra's own attempt is a
    traceback); the overrides a read-only directory holding a completed run needs to show it."""
    from asr_peft.files import UnwritableError, check_creatable_directory
    from asr_peft.training.results import read_results

    if run_dir is None:  # evaluate.py writes below the trained run's directory
        if isinstance(trained_run, str) and trained_run:
            check_creatable_directory(trained_run, "run_dir")
        return []
    try:
        check_creatable_directory(run_dir, "hydra.run.dir")
    except UnwritableError:
        record = read_results(Path(run_dir)) if Path(run_dir).is_dir() else None
        if record is None or record.get("status") != "completed":
            raise
        return ["hydra/job_logging=stdout"]  # Hydra's default log is a file in the run directory
    return []


@contextlib.contextmanager
def _searched_as_the_app(config_path: str | None, config_dir: str | None) -> Iterator[None]:
    """Hydra initialised with the config search path `hydra.main` builds for an entry point: its config
    path (or `--config-path`, absolute or relative to the entry point's directory), then `--config-dir`
    before the structured configs, as Hydra's `_run_hydra` does."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import validate_config_path
    from hydra.errors import SearchPathException

    path = ENTRY_POINT_CONFIG_PATH if config_path is None else config_path
    validate_config_path(path)
    primary = ROOT / path  # an absolute path stays itself
    if not path.startswith("pkg://") and not primary.is_dir():
        raise SearchPathException(f"--config-path={path}: the config directory {primary} does not exist")
    version.setbase("1.3")
    search_path = create_automatic_config_search_path(str(ROOT / "train.py"), None, path)
    if config_dir is not None:
        directory = os.path.abspath(config_dir)
        if not os.path.isdir(directory):
            raise SearchPathException(f"Additional config directory '{directory}' not found")
        search_path.prepend(provider="command-line", path=f"file://{directory}", anchor=SearchPathQuery(provider="schema"))
    Hydra.create_main_hydra2(task_name="preflight", config_search_path=search_path)
    try:
        yield
    finally:
        GlobalHydra.instance().clear()


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
