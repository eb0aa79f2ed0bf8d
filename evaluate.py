"""Score a trained run: `python evaluate.py run_dir=outputs/train/<run> [data=...] [evaluation.decode=beam]`.

The model, method and adapter settings come from the run's own saved config; the checkpoint's
trainable weights are put back into a freshly loaded pretrained model, and every test set of the
data config is decoded and scored. Hypotheses and references are written in sclite's trn format.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr_peft.cli import one_line_errors, preflight, quote_path_overrides, setup_environment


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    from asr_peft.config_schema import validate_config
    from asr_peft.evaluation.checkpoint import load_trained_run
    from asr_peft.data.normalizers import get_normalizer
    from asr_peft.evaluation.scoring import score_test_sets
    from asr_peft.errors import ConfigError
    from asr_peft.training.results import now_iso, write_results

    validate_config(cfg, "evaluate")
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if (out_dir / "eval.json").exists():
        raise ConfigError(f"{out_dir / 'eval.json'} exists already; evaluate with other overrides or delete it")
    bundle, run_cfg, checkpoint = load_trained_run(Path(cfg.run_dir), cfg.checkpoint)
    data_cfg = cfg.data if cfg.get("data") is not None else run_cfg.data
    data = OmegaConf.to_container(data_cfg, resolve=True)
    evaluation = OmegaConf.to_container(cfg.evaluation, resolve=True)
    metrics = score_test_sets(bundle, data, evaluation, get_normalizer(data.get("normalizer", "whisper_basic")), out_dir,
                              cache_dir=cfg.paths.cache_dir)
    record = {"run_dir": str(cfg.run_dir), "checkpoint": checkpoint, "data": data, "evaluation": evaluation,
              "metrics": metrics, "finished_at": now_iso()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    for name, values in metrics.items():
        print(f"{name:<12} WER {100 * values['wer']:5.1f}%   CER {100 * values['cer']:5.1f}%")
    print(f"written: {out_dir}")


if __name__ == "__main__":
    setup_environment()
    sys.argv[1:] = quote_path_overrides(sys.argv[1:], ("run_dir",))
    preflight("evaluate", sys.argv[1:])
    main()
