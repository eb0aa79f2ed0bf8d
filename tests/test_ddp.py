"""Data parallelism through Lightning's DDP strategy: 2 CPU processes on the gloo backend, frozen weights."""

from __future__ import annotations

import json

import pytest

from test_train_e2e import FAST, train_cli


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_an_adapter(tiny_corpus, tmp_path):
    run_dir = tmp_path / "run"
    result = train_cli([*FAST, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                        "trainer.accumulate_grad_batches=1", "trainer.max_steps=4", "trainer.val_check_interval=2",
                        "method=ssvd", "data=manifest", f"data.corpus_dir={tiny_corpus}", "loader.max_batch_size=1",
                        "evaluation.baseline=false", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 4
    assert record["config"]["trainer"]["strategy"]["_target_"].endswith("DDPStrategy")
    # Frozen base weights (most of the model) did not break DDP's reducer: only SSVD parameters trained.
    assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"] / 10
    assert "gloo" in result.stderr or "distributed_backend=gloo" in result.stdout + result.stderr
