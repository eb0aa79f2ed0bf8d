"""The command line composed and validated before Hydra starts, so that a bad override is reported in one
line each and nothing (no run directory, no log) is created."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from asr_peft.cli import ROOT, report_error
from asr_peft.errors import AsrPeftError

ENTRY_POINT_CONFIG_PATH = "configs"  # the `config_path` of train.py's and evaluate.py's `hydra.main`, beside them


def preflight(config_name: str, argv: list[str]) -> None:
    """Check the command line of an entry point whose config is `config_name`, exiting with status 2 and
    one `error:` line per problem.

    The flags are Hydra's own (its argument parser reads them): `--config-name`, `--config-path` and
    `--config-dir` give the config searched as Hydra will search it. Hydra's own messages for an unknown
    option or key span many lines (and append its config search path); this keeps the first line and the
    available options. Sweeps (`-m`) are checked job by job as they run (a bad job is recorded as failed
    and the others run); Hydra's informational flags (`--help`, `--cfg`, `--info`, ...) run nothing and are
    left to it, as is `--experimental-rerun`, whose config is a saved one.
    """
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)  # what Hydra rejects, it rejects here, in its own words
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.multirun or args.experimental_rerun:
        return
    overrides = [arg for arg in args.overrides if not arg.lstrip("+~").startswith("hydra.")]
    problem = _given_twice(overrides) or _empty_mapping(overrides)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    from asr_peft.files import check_creatable_directory

    try:  # Hydra creates the run directory before the job starts, with a traceback when it cannot
        for key, _, value in (arg.partition("=") for arg in args.overrides):
            if key in ("hydra.run.dir", "run_dir") and value:
                check_creatable_directory(value.strip("'\""), key)
    except AsrPeftError as err:
        report_error(err)
    import yaml
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with _searched_as_the_app(args.config_path, args.config_dir):
            cfg = compose(config_name=args.config_name or config_name, overrides=overrides)
    except yaml.MarkedYAMLError as err:  # a config file that is not YAML (a duplicate key, a bad indent)
        mark = err.problem_mark or err.context_mark
        where = f"{mark.name}, line {mark.line + 1}" if mark else "a config file"
        print(f"error: {where}: {err.problem or err.context}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    from asr_peft.config.validate import validate_config

    try:
        validate_config(cfg, config_name)
    except AsrPeftError as err:
        report_error(err)


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
