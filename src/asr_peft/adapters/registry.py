"""The methods by config name (`method.name`), each with its layer builder and hyperparameters.

A method's defaults live only in its `configs/method/<name>.yaml`; this table says how to build it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from asr_peft.adapters.base import AdapterLayer
from asr_peft.adapters.dora import DoRALinear
from asr_peft.adapters.lora import LoRALinear
from asr_peft.adapters.peft_tuner import PEFTLinear
from asr_peft.adapters.pissa import PiSSALinear
from asr_peft.adapters.ssvd import PAPER_SIDE, SSVDLinear, current_method, side_ranks
from asr_peft.adapters.svd import ThinSVD
from asr_peft.adapters.svft import SVFTLinear
from asr_peft.adapters.vera import SharedProjections, VeRALinear
from asr_peft.errors import ConfigError

LayerBuilder = Callable[[nn.Linear, ThinSVD | None, Mapping[str, Any], Mapping[str, Any], dict], AdapterLayer]


@dataclass(frozen=True)
class MethodSpec:
    build: LayerBuilder | None = None  # None: no adapter layers (full, frozen)
    trains: str = "adapters"  # adapters | all | none
    needs_svd: bool = False
    # How many leading singular triplets a layer needs (None: all min(d_out, d_in)); only the top
    # of the spectrum is factorised and cached when a method uses no more.
    svd_rank: Callable[[nn.Linear, Mapping[str, Any], Mapping[str, Any]], int | None] = lambda base, m, a: None
    hyperparameters: tuple[str, ...] = ()  # keys `method.<key>` may hold besides `name`
    embedding_adapter: bool = False  # may also adapt `method.embedding_targets` (LoRA family)
    summary: str = field(default="", compare=False)


def _vera(base, svd, method, adapt, context):
    if "vera_projections" not in context:  # one pair for all adapted layers (context["layers"]), as PEFT
        context["vera_projections"] = SharedProjections(context["layers"], method["r"], method.get("projection_seed", 0))
    return VeRALinear(base, context["vera_projections"], d_initial=method.get("d_initial", 0.1))


METHODS: dict[str, MethodSpec] = {
    "ssvd": MethodSpec(
        lambda base, svd, m, a, ctx: SSVDLinear(
            base,
            svd,
            p=a["p"],
            rotation=m.get("rotation", "approx"),
            formulation=m.get("formulation", "efficient"),
            recompute_weight=m.get("recompute_weight", False),
            side=m.get("side", PAPER_SIDE),
            p_out=m.get("p_out"),
        ),
        needs_svd=True,
        hyperparameters=("rotation", "formulation", "recompute_weight", "side", "p_out", "p_out_groups"),
        # the reference formulation rebuilds W' from the whole spectrum; the others need both sides' top k
        svd_rank=lambda base, m, a: (
            None
            if m.get("formulation") == "reference"
            else max(side_ranks(m.get("side", PAPER_SIDE), a["p"], m.get("p_out"), base.in_features, base.out_features))
        ),
        summary="structured SVD-guided rotation of top-k singular subspaces (method.side: which vectors)",
    ),
    "svft": MethodSpec(
        lambda base, svd, m, a, ctx: SVFTLinear(
            base, svd, pattern=m.get("pattern", "plain"), off_diag=m.get("off_diag", 0), seed=m.get("seed", 0)
        ),
        needs_svd=True,
        hyperparameters=("pattern", "off_diag", "seed"),
        summary="sparse update of the singular spectrum",
    ),
    "lora": MethodSpec(
        lambda base, svd, m, a, ctx: LoRALinear(base, r=m["r"], alpha=m["alpha"]),
        hyperparameters=("r", "alpha", "embedding_targets"),
        embedding_adapter=True,
        summary="low-rank update",
    ),
    "dora": MethodSpec(
        lambda base, svd, m, a, ctx: DoRALinear(base, r=m["r"], alpha=m["alpha"]),
        hyperparameters=("r", "alpha", "embedding_targets"),
        embedding_adapter=True,
        summary="magnitude + low-rank direction",
    ),
    "pissa": MethodSpec(
        lambda base, svd, m, a, ctx: PiSSALinear(base, svd, r=m["r"], alpha=m["alpha"]),
        needs_svd=True,
        hyperparameters=("r", "alpha", "embedding_targets"),
        embedding_adapter=True,
        # capped so that an oversized r reaches LoRA's own check and its config-key error
        svd_rank=lambda base, m, a: max(1, min(m["r"], base.in_features, base.out_features)),
        summary="LoRA on the principal singular subspace",
    ),
    "vera": MethodSpec(
        _vera,
        hyperparameters=("r", "d_initial", "projection_seed"),
        summary="one shared pair of random projections (PEFT's), trained scales",
    ),
    "peft": MethodSpec(
        lambda base, svd, m, a, ctx: PEFTLinear(base, m["peft_config"]),
        hyperparameters=("peft_config",),
        summary="any Hugging Face PEFT tuner of nn.Linear layers (method.peft_config)",
    ),
    "full": MethodSpec(trains="all", summary="every parameter"),
    "frozen": MethodSpec(trains="none", summary="no parameter (the pretrained model)"),
}


def get_method(method: Mapping[str, Any]) -> MethodSpec:
    name = method.get("name")
    if name not in METHODS:
        raise ConfigError(f"method.name={name!r} is unknown; choose from {', '.join(METHODS)}")
    spec = METHODS[name]
    unknown = sorted(set(method) - {"name", *spec.hyperparameters})
    if "orientation" in unknown and name == "ssvd":
        today = current_method(method).get("side")
        raise ConfigError(
            f"method.orientation is gone: method.side now names the singular vectors it rotates; this configuration "
            f"is method.side={today} (configs/method/ssvd.yaml lists the sides)"
        )
    if unknown:
        raise ConfigError(
            f"method.{unknown[0]} is not a hyperparameter of {name} (it takes: {', '.join(spec.hyperparameters) or 'none'})"
        )
    return spec
