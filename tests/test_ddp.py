"""Data parallelism through Lightning's DDP strategy: 2 CPU processes on the gloo backend, frozen weights."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import write_tone
from test_train_e2e import FAST, train_cli

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.accumulate_grad_batches=1"]
METHODS = ["ssvd", "svft", "lora", "dora", "pissa", "vera", "peft", "full"]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_under_ddp_in_bf16_mixed(tiny_corpus, tmp_path, method):
    """`trainer=ddp` as shipped (bf16-mixed, from gpu.yaml) on two CPU processes; only rank 0 prints and writes."""
    run_dir = tmp_path / "run"
    result = train_cli(
        [
            *FAST,
            *DDP,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            f"method={method}",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "loader.max_batch_size=1",
            "evaluation.baseline=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 2
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert record["scored_on"] == {"device": "cpu", "precision": "bf16-mixed"}
    assert record["config"]["trainer"]["strategy"]["_target_"].endswith("DDPStrategy")
    assert "distributed_backend=gloo" in result.stdout + result.stderr
    if method != "full":  # frozen base weights (most of the model) did not break DDP's reducer; LoRA's default
        # r=32 with the token embedding is a quarter of this tiny model, so "most" is the bound
        assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"] / 2
    assert result.stdout.count("results: ") == 1  # rank 1 trains, but prints no summary of its own


def two_utterance_corpus(root):
    """Two training utterances (one per rank, or one batch of two), a validation and a test utterance."""
    texts = {
        "train": ["the cat sat on the mat", "a dog ran in the park"],
        "valid": ["she reads a good book"],
        "test": ["we like green apples"],
    }
    for split, sentences in texts.items():
        lines = []
        for i, text in enumerate(sentences):
            audio = write_tone(root / "audio" / f"{split}{i}.wav", 1.2 + 0.2 * i, frequency=180 + 40 * i, seed=i)
            lines.append(json.dumps({"id": f"{split}{i}", "audio": f"audio/{audio.name}", "text": text}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def one_update(tmp_path, name, method, extra, lr=1e6):
    """Adapter tensors after one optimizer step on the two training utterances, from the run's last.ckpt.

    AdamW with eps ≫ |g| and lr = eps updates by lr·g/(|g| + eps) ≈ g (to 1e-6 here), so the update is the
    gradient itself, not Adam's scale-free sign of it: a gradient summed instead of averaged over ranks
    would show as a factor of two. Gradient clipping is off for the same reason. Every utterance is padded
    to the same 2 s (as OWSM pads to 30 s) at offset 0 (ESPnet's random placement draws from each process's
    own NumPy state) and SpecAugment is off, so an utterance's loss does not depend on the batch it sits in.
    """
    run_dir = tmp_path / name
    fast = [arg for arg in FAST if not arg.startswith("optimizer.lr=")]
    result = train_cli(
        [
            *fast,
            *extra,
            f"method={method}",
            "data=manifest",
            f"data.corpus_dir={tmp_path / 'corpus'}",
            "model.speech_length=2",
            "model.s2t_config.specaug=null",
            "model.s2t_config.preprocessor_conf.speech_init_silence=0",
            "trainer.precision=32-true",
            "trainer.max_steps=1",
            "trainer.val_check_interval=1",
            "trainer.gradient_clip_val=null",
            f"optimizer.lr={lr}",
            "optimizer.eps=1e6",
            "optimizer.weight_decay=0",
            "evaluation.baseline=false",
            "evaluation.subspace=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 1
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ssvd", "lora"])
def test_one_ddp_update_on_a_global_batch_equals_the_single_process_update(tmp_path, method):
    two_utterance_corpus(tmp_path / "corpus")
    single = one_update(tmp_path, "single", method, ["loader.max_batch_size=2"])
    ddp = one_update(tmp_path, "ddp", method, [*DDP, "loader.max_batch_size=1"])
    initial = one_update(tmp_path, "initial", method, ["loader.max_batch_size=2"], lr=1e-30)  # lr > 0 (schema): a step of ~1e-36
    assert set(single) == set(ddp) == set(initial) and single
    updates = {key: (single[key] - initial[key], ddp[key] - initial[key]) for key in single}
    moved = [key for key, (one, two) in updates.items() if one.abs().max() > 0]
    assert moved  # the step did something
    for key, (one, two) in updates.items():
        # Relative to the whole update of that tensor; the two sum the batch's gradient in another order.
        assert float((two - one).norm()) <= 1e-4 * float(one.norm()) + 1e-9, key
