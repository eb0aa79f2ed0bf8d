"""Run directories are named after what a run trains: readable, unique, stable, nothing that matters cut."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose_config

DEFAULT = "ssvd_p=0.4,synth_child,owsm_tiny_pretrained,seed=0"


def name_of(overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    from asr_peft.cli import run_name, setup_environment

    setup_environment()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return run_name(_root_=compose("train", overrides=overrides, return_hydra_config=True))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], DEFAULT),
        (["+point=ssvd_p0.4", "seed=0"], DEFAULT),  # the demo's SSVD point is the default run: one directory
        (["method=lora"], "lora_r=32,synth_child,owsm_tiny_pretrained,seed=0"),
        (
            ["+point=lora_r16", "seed=1", "trainer.max_steps=500"],
            "lora_r=16_alpha=32,synth_child,owsm_tiny_pretrained,seed=1,trainer.max_steps=500",
        ),
        (["+point=ssvd_cayley_p0.1"], "ssvd_p=0.1_rotation=cayley,synth_child,owsm_tiny_pretrained,seed=0"),
        (["+point=svft_banded2", "data=synth_dialect"], "svft_banded_d=2,synth_dialect,owsm_tiny_pretrained,seed=0"),
        (["method=peft"], "peft_PSOFT_r=32,synth_child,owsm_tiny_pretrained,seed=0"),
        # An Optuna trial: its learning rate, exactly.
        (["optimizer.lr=0.00031622776601683794", "evaluation.baseline=false"], f"{DEFAULT},optimizer.lr=0.00031622776601683794"),
        (["experiment=pretrain_tiny"], "full,synth_source,owsm_tiny,seed=0,experiment=pretrain_tiny"),
        (
            ["optimizer=adamw", "model=owsm_1b", "data=myst", "trainer=ddp"],
            "ssvd_p=0.4,myst,owsm_1b,seed=0,optimizer=adamw,trainer=ddp",
        ),
        (
            ["data=manifest", "data.corpus_dir=/data/my corpus"],
            "ssvd_p=0.4,manifest,owsm_tiny_pretrained,seed=0,data.corpus_dir=_data_my_corpus",
        ),
        (
            ["method.side=both", "adapt.p=0.2", "method.p_out=0.1"],
            "ssvd_p=0.2_side=both_p_out=0.1,synth_child,owsm_tiny_pretrained,seed=0",
        ),
        (["adapt.p_groups={encoder: 0.2}"], "ssvd_p=0.4_p_groups=__encoder__0.2_,synth_child,owsm_tiny_pretrained,seed=0"),
        (
            ["~callbacks.early_stopping", "data.speed_perturb=[0.9,1.0,1.1]"],
            f"{DEFAULT},data.speed_perturb=_0.9,1.0,1.1_,~callbacks.early_stopping",
        ),
    ],
)
def test_names_say_method_budget_data_model_seed_and_what_else_differs(overrides, expected):
    assert name_of(overrides) == expected


@pytest.mark.parametrize(
    "same",
    [
        ["method=lora", "adapt.p=0.1"],  # LoRA does not read SSVD's budget
        ["method=lora", "adapt.p_groups={encoder: 0.2}"],  # nor its per-group budgets
        ["method=lora", "method.r=32", "method.alpha=64"],  # the defaults, written out
        [
            "method=lora",
            "logger=wandb",
            "trainer.devices=2",
            "evaluation.progress=false",
            "~callbacks.progress_bar",
            "trainer.enable_progress_bar=false",
            "evaluation.baseline=false",
            "paths.cache_dir=/tmp/elsewhere",
        ],
    ],
)
def test_settings_that_do_not_change_the_run_do_not_change_its_name(same):
    assert name_of(same) == name_of(["method=lora"])


def test_different_runs_get_different_names_and_the_same_command_the_same_name():
    commands = [
        [],
        ["seed=1"],
        ["adapt.p=0.2"],
        ["method=full"],
        ["adapt=attention"],
        ["method.rotation=cayley"],
        ["trainer.max_steps=500"],
        ["optimizer.lr=0.01"],
        ["optimizer.lr=0.010000001"],
        ["data=synth_dialect"],
        ["model=owsm_tiny"],
        ["evaluation.decode=beam"],
        ["evaluation.checkpoint=last"],
        ["+point=lora_r16"],
        ["+point=dora_r16"],
        ["+point=pissa_r16"],
        ["+point=vera_r64"],
        ["+point=svft_banded8"],
        ["method=peft", "+method.peft_config.oft_block_size=32"],
        ["method=peft", "+method.peft_config.oft_block_size=64"],
    ]
    names = [name_of(command) for command in commands]
    assert len(set(names)) == len(names), names
    assert [name_of(command) for command in commands[:4]] == names[:4]
    assert name_of(["method=frozen", "adapt=attention"]) == name_of(["method=frozen"])  # frozen reads no targets


def test_long_names_stay_legal_and_unique_with_method_budget_data_model_and_seed_intact():
    long = "/data/" + "x" * 300
    name, other = name_of([f"data.corpus_dir={long}", "seed=3"]), name_of([f"data.corpus_dir={long}y", "seed=3"])
    assert len(name) <= 200 and name != other and name.startswith("ssvd_p=0.4,synth_child,owsm_tiny_pretrained,seed=3,")
    assert re.fullmatch(r"[A-Za-z0-9._,=+~-]+", name)


def grid_jobs(command: str) -> list[list[str]]:
    """The jobs a `python train.py -m ...` grid launches (a sweep file's params included), before deduplication."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [a for a in shlex.split(command)[3:] if "=" in a and not a.startswith("hydra")]
    for argument in list(arguments):
        if argument.startswith("+sweep="):
            sweep = OmegaConf.load(ROOT / "sweeps" / "sweep" / f"{argument.split('=', 1)[1]}.yaml")
            arguments += [f"{k}={v}" for k, v in sweep.hydra.sweeper.params.items()]
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    return jobs


def documented_grids() -> list:
    """The `-m` grids of the README and the docs pages, and every sweep file; grids of more than a dozen jobs are slow to compose."""
    documentation = "\n".join(
        path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    )
    commands = re.findall(r"(?<!\$ )python train\.py -m [^\n#`]*", documentation)  # `$ ...`: a console example
    searches = {
        path.stem
        for path in (ROOT / "sweeps" / "sweep").glob("*.yaml")  # Optuna studies, not grids
        if {"override /hydra/sweeper": "optuna"} in OmegaConf.load(path).get("defaults", [])
    }
    files = [f"python train.py -m +sweep={path.stem}" for path in sorted((ROOT / "sweeps" / "sweep").glob("*.yaml"))]
    grids = sorted(
        {
            c.strip()
            for c in commands + files
            if "hparams_search" not in c and not any(f"+sweep={name}" in c.split() for name in searches)
        }
    )
    return [pytest.param(c, marks=pytest.mark.slow) if len(grid_jobs(c)) > 12 else c for c in grids]


@pytest.mark.parametrize("command", documented_grids())
def test_every_documented_grid_launches_only_distinct_runs(command):
    jobs = grid_jobs(command)
    names = [name_of(job) for job in jobs]
    duplicates = [(a, b) for (a, na), (b, nb) in itertools.combinations(zip(jobs, names), 2) if na == nb]
    assert not duplicates, f"{command}: {duplicates[:3]}"


def test_help_lists_the_sweep_and_point_groups():
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ASR_PEFT_ROOT": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for group in ("sweep", "point"):
        options = sorted(path.stem for path in (ROOT / "sweeps" / group).glob("*.yaml"))
        assert f"\n{group}: {', '.join(options)}\n" in result.stdout


def test_the_makefile_exports_each_pretraining_stage_from_the_directory_it_trained_in():
    makefile = (ROOT / "Makefile").read_text()
    for stage in ("", "_stage2", "_stage3", "_stage4"):
        variable = f"$(PRETRAIN{stage.upper()}_RUN)"
        assert re.search(rf"^PRETRAIN{stage.upper()}_RUN := outputs/\S+$", makefile, re.M)
        trained = re.findall(rf"train\.py experiment=pretrain_tiny{stage} (.*)$", makefile, re.M)
        exported = re.findall(r"pretrain_tiny export (\S+)", makefile)
        assert trained == [f"hydra.run.dir={variable}"] and variable in exported


def test_a_sweeps_wandb_group_is_named_after_its_command_line():
    from hydra_plugins.asr_peft_sweeper import MAX_GROUP, sweep_group

    assert sweep_group(["+sweep=demo"]) == "demo"
    assert sweep_group(["model=owsm_tiny", "method=lora,dora", "seed=0,1"]) == "method=lora,dora seed=0,1 model=owsm_tiny"
    long = [f"key{i}=value,other" for i in range(30)]
    assert len(sweep_group(long)) <= MAX_GROUP and sweep_group(long) != sweep_group(long[:-1])
    assert compose_config("train", []).sweep_group == "train"  # a single run: the task's group
    assert compose_config("train", ["hparams_search=lr_optuna"]).sweep_group == "lr_optuna ssvd synth_child owsm_tiny_pretrained"


def test_the_demo_grid_names_each_point_by_method_and_budget_and_counts_the_default_run():
    from asr_peft.training.naming import configuration_label

    jobs = grid_jobs("python train.py -m +sweep=demo")
    labels = []
    for job in jobs:
        cfg = OmegaConf.to_container(compose_config("train", job), resolve=False)
        labels.append(configuration_label(cfg["method"], cfg["adapt"]))
    assert labels == ["svft plain", "ssvd p=0.4", "lora r=4", "full"]
    assert DEFAULT in [name_of(job) for job in jobs]  # `python train.py` is one of the grid's points
