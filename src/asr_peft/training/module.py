"""The LightningModule: the model family's training loss, AdamW with ESPnet's or a warm-up schedule, validation WER.

The loss and the validation transcripts come from the model bundle (`models/base.py`): for OWSM,
ESPnet's joint CTC/attention loss; for Whisper, transformers' cross-entropy on the labels. Validation
decodes with `evaluation.validation_decode`, by default the family's `validation_decode`. Only
parameters that require gradients reach the optimizer, and only they (plus the optimizer state) are
written to checkpoints: frozen weights come from the pretrained model, rebuilt the same way on resume.

Under FSDP (auto-wrap) or activation-checkpoint wrapping, `named_parameters()` names carry the
wrappers' segments (`_fsdp_wrapped_module.`) while the state dict Lightning checkpoints does not;
trainable tensors are matched by the state dict's names (`state_dict_name`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning.pytorch as pl
import torch

from asr_peft.adapters import adapter_modules
from asr_peft.adapters.fingerprint import FINGERPRINT_KEY, check_fingerprint, fingerprint
from asr_peft.evaluation.wer import error_rates
from asr_peft.training.nonfinite import nonfinite_loss
from asr_peft.errors import ConfigError, ModelLoadError

# Module-path segments that wrappers insert and full state dicts leave out: FSDP, torch's checkpoint
# wrapper, torch.compile.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def state_dict_name(name: str) -> str:
    """A parameter's name as a (full) state dict holds it: wrapper segments removed."""
    for segment in WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def warmup_lambda(warmup_steps: int, schedule: str, total_steps: int | None) -> Callable[[int], float]:
    """LR multiplier per update: linear warm-up, then constant or linear decay to zero at `total_steps`."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "linear" and total_steps:
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        return 1.0

    return factor


def espnet_scheduler_class(name: str):
    """ESPnet's scheduler registered under `name` (as `scheduler:` in an ESPnet config), if it is one
    that ESPnet's trainer steps once per update (`AbsBatchStepScheduler`), as Lightning's `interval:
    step` does here."""
    from asr_peft.models.owsm import s2t_task

    s2t_task()  # imports ESPnet's task modules quietly (their registries live there)
    from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
    from espnet2.tasks.abs_task import scheduler_classes

    choices = {key: cls for key, cls in scheduler_classes.items() if issubclass(cls, AbsBatchStepScheduler)}
    if str(name).lower() not in choices:
        raise ConfigError(
            f"optimizer.scheduler={name!r} is not one of ESPnet's per-update schedulers "
            f"(choose from: {', '.join(sorted(choices))})"
        )
    return choices[str(name).lower()]


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], total_steps: int | None):
    """`optimizer.scheduler` + `scheduler_conf`: ESPnet's class, as in ESPnet's config; otherwise the
    project's `warmup_steps` + `schedule` (constant | linear decay to zero at trainer.max_steps)."""
    if not cfg.get("scheduler"):
        schedule = cfg.get("schedule", "constant")
        if schedule not in ("constant", "linear"):
            raise ConfigError(f"optimizer.schedule must be 'constant' or 'linear', got {schedule!r}")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(int(cfg.get("warmup_steps", 0)), schedule, total_steps))
    for key in ("warmup_steps", "schedule"):
        if cfg.get(key):  # warmup_steps: 0 asks for nothing
            raise ConfigError(
                f"optimizer.{key} applies only without optimizer.scheduler; set the schedule in optimizer.scheduler_conf"
            )
    scheduler_class = espnet_scheduler_class(cfg["scheduler"])
    from typeguard import TypeCheckError  # ESPnet checks its constructors' argument types with typeguard

    try:
        return scheduler_class(optimizer, **(cfg.get("scheduler_conf") or {}))
    except (TypeError, TypeCheckError) as err:
        raise ConfigError(f"optimizer.scheduler_conf does not fit {cfg['scheduler']}: {err}") from err


class SpeechLitModule(pl.LightningModule):
    def __init__(
        self,
        bundle,
        *,
        optimizer: Mapping[str, Any],
        normalizer: Callable[[str], str],
        total_steps: int | None = None,
        on_nonfinite_loss: str = "stop",
        validation_decode: str | None = None,
    ):
        super().__init__()
        self.validation_decode = bundle.check_validation_decode(validation_decode)
        self.on_nonfinite_loss = on_nonfinite_loss  # training/nonfinite.py
        self.bundle = bundle
        self.model = bundle.model
        self.optimizer_cfg = dict(optimizer)
        self.normalizer = normalizer
        self.total_steps = total_steps
        self.validation_history: list[dict[str, float]] = []
        self._val_refs: list[str] = []
        self._val_hyps: list[str] = []
        # Checkpoints hold only trainable tensors; the frozen rest is rebuilt from the pretrained model.
        self.strict_loading = False

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        loss, stats = self.bundle.loss(batch)
        if not torch.isfinite(loss):
            return nonfinite_loss(loss, batch["utt_id"], int(self.global_step), self.on_nonfinite_loss)
        size = len(batch["utt_id"])
        self.log("train_loss", loss, prog_bar=True, batch_size=size)
        for key, value in stats.items():
            if value is not None:
                self.log(f"train_{key}", value, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, hyps = self.bundle.validate(batch, method=self.validation_decode, languages=batch["language"])
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch["utt_id"]), sync_dist=True)
        self._val_hyps += hyps
        self._val_refs += batch["transcript"]

    def on_validation_epoch_end(self) -> None:
        refs, hyps = self._gather(self._val_refs), self._gather(self._val_hyps)
        self._val_refs, self._val_hyps = [], []
        if not refs:
            return
        rates = error_rates(refs, hyps, self.normalizer)
        self.log("val_wer", rates["wer"], prog_bar=True, sync_dist=False)
        self.log("val_cer", rates["cer"], sync_dist=False)
        if not self.trainer.sanity_checking:
            loss = self.trainer.callback_metrics.get("val_loss")
            self.validation_history.append(
                {
                    "step": int(self.global_step),
                    "epoch": int(self.current_epoch),
                    "val_wer": float(rates["wer"]),
                    "val_cer": float(rates["cer"]),
                    "val_loss": float(loss) if loss is not None else None,
                }
            )

    def _gather(self, values: list[str]) -> list[str]:
        """All ranks' transcripts, so that every rank logs the same corpus-level WER."""
        if self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return values
        gathered: list[list[str]] = [[] for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather_object(gathered, values)
        return [value for part in gathered for value in part]

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        cfg = self.optimizer_cfg
        # ESPnet's `optim: adamw` is torch's AdamW; ESPnet hands it every parameter, of which only the
        # trainable ones ever get a gradient, so the update is the same.
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg["lr"],
            betas=tuple(cfg.get("betas", (0.9, 0.98))),
            weight_decay=cfg.get("weight_decay", 0.0),
            eps=cfg.get("eps", 1e-8),
        )
        # Stepped once per update (after gradient accumulation), as ESPnet's trainer steps its schedulers.
        scheduler = build_scheduler(optimizer, cfg, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def trainable_state_names(self) -> set[str]:
        """The checkpoint keys of the trainable tensors (`model.<name>`, as the state dict names them)."""
        return {f"model.{state_dict_name(name)}" for name, p in self.model.named_parameters() if p.requires_grad}

    def adapter_layers(self) -> list:
        """(name, layer) of every adapter layer, named as a full state dict names it (as a rebuilt model does)."""
        return [(state_dict_name(name), layer) for name, layer in adapter_modules(self.model)]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = self.trainable_state_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["validation_history"] = self.validation_history
        # what the adapters were trained in (SVD bases, projections, base weights): checked on every reload
        checkpoint[FINGERPRINT_KEY] = fingerprint(self.adapter_layers())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.validation_history = list(checkpoint.get("validation_history", []))
        missing = self.trainable_state_names() - set(checkpoint["state_dict"])
        if missing:
            raise ModelLoadError(
                f"checkpoint lacks {len(missing)} trainable tensor(s) of this method (e.g. {sorted(missing)[0]}); "
                "it was written by another method or model config"
            )
        check_fingerprint(
            self.adapter_layers(),
            checkpoint.get(FINGERPRINT_KEY),
            f"checkpoint {self._trainer.ckpt_path if self._trainer else ''}",
        )
