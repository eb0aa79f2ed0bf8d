"""`dry_run=true`: the trainable-parameter plan of a method on a model, built on the meta device (no weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from asr_peft.adapters import apply_method, parameter_plan
from asr_peft.config.resolve import plain
from asr_peft.models import load_model


def run_dry(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build the architecture on the meta device, inject the method, and write the parameter plan."""
    bundle = load_model(plain(cfg.model), device="meta")
    apply_method(bundle.model, plain(cfg.method), plain(cfg.adapt))
    plan = parameter_plan(bundle.model)
    plan.update({"model": cfg.model.name, "method": plain(cfg.method), "adapt": plain(cfg.adapt)})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=2), encoding="utf-8")
    return plan
