"""Score a trained run: `python evaluate.py run_dir=outputs/train/<run> [data=...] [evaluation.decode=beam]`.

The model, method and adapter settings come from the run's own saved config; the checkpoint's
trainable weights are put back into a freshly loaded pretrained model, and every test set of the
data config is decoded and scored. Hypotheses and references are written in sclite's trn format.
Scoring runs on the accelerator the run trained on and in its `trainer.precision`, unless
`evaluation.device` (cpu, cuda, cuda:1) or `evaluation.precision` (32-true, bf16-mixed, ...) say otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr_peft.cli import one_line_errors, quote_path_overrides, setup_environment
from asr_peft.config.preflight import preflight


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    from asr_peft.config.validate import validate_config
    from asr_peft.evaluation.checkpoint import checkpoint_path, read_run_config, rebuild_trained_model
    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.evaluation.scoring import score_test_sets
    from asr_peft.errors import ConfigError
    from asr_peft.training.hardware import scoring_target
    from asr_peft.training.results import now_iso

    validate_config(cfg, "evaluate")
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if (out_dir / "eval.json").exists():
        raise ConfigError(f"{out_dir / 'eval.json'} exists already; evaluate with other overrides or delete it")
    run_cfg = read_run_config(Path(cfg.run_dir))
    checkpoint = checkpoint_path(Path(cfg.run_dir), cfg.checkpoint)
    evaluation = OmegaConf.to_container(cfg.evaluation, resolve=True)
    device, precision = scoring_target(run_cfg.trainer, evaluation)  # before the model loads: fail fast
    bundle = rebuild_trained_model(run_cfg, checkpoint, device=device)
    data_cfg = cfg.data if cfg.get("data") is not None else run_cfg.data
    data = OmegaConf.to_container(data_cfg, resolve=True)
    metrics = score_test_sets(
        bundle,
        data,
        evaluation,
        get_normalizer(data.get("normalizer", "whisper_basic")),
        out_dir,
        cache_dir=cfg.paths.cache_dir,
        device=device,
        precision=precision,
    )
    record = {
        "run_dir": str(cfg.run_dir),
        "checkpoint": str(checkpoint),
        "data": data,
        "evaluation": evaluation,
        "scored_on": {"device": str(device), "precision": precision},
        "metrics": metrics,
        "finished_at": now_iso(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    for name, values in metrics.items():
        print(f"{name:<12} WER {100 * values['wer']:5.1f}%   CER {100 * values['cer']:5.1f}%")
    print(f"written: {out_dir}")


if __name__ == "__main__":
    setup_environment()
    sys.argv[1:] = quote_path_overrides(sys.argv[1:], ("run_dir",))
    sys.argv[1:] = preflight("evaluate", sys.argv[1:])
    main()
