"""Training to convergence (sweeps/schedule/converge.yaml): early stopping on dev WER stops a run after
`patience` validations without improvement, and the run is tested with the best dev checkpoint's
weights, not the last ones."""

from __future__ import annotations

import json

import torch

from test_train_e2e import run_in_process

SCRIPTED_DEV_WER = [0.50, 0.30, 0.40, 0.45, 0.50, 0.20, 0.10, 0.05, 0.05, 0.05]  # best at step 2; 0.20 comes too late


def test_early_stopping_stops_after_its_patience_and_the_best_dev_checkpoint_is_tested(tiny_corpus, tmp_path, monkeypatch):
    import asr_peft.training.module as module
    import asr_peft.training.run as run

    wers = iter(SCRIPTED_DEV_WER)
    real_error_rates = module.error_rates
    monkeypatch.setattr(
        module, "error_rates", lambda refs, hyps, normalizer: {**real_error_rates(refs, hyps, normalizer), "wer": next(wers)}
    )
    scored = {}
    real_score = run.score_test_sets

    def score_and_keep_weights(bundle, *args, **kwargs):
        scored.update({name: p.detach().clone() for name, p in bundle.model.named_parameters() if p.requires_grad})
        return real_score(bundle, *args, **kwargs)

    monkeypatch.setattr(run, "score_test_sets", score_and_keep_weights)
    run_dir = tmp_path / "run"
    record = run_in_process(
        [
            "method=ssvd",
            "data=manifest",
            f"data.corpus_dir={tiny_corpus}",
            "loader.max_batch_size=1",
            "trainer.max_steps=10",
            "trainer.val_check_interval=1",
            "callbacks.early_stopping.patience=2",
            "evaluation.checkpoint=best",
            "evaluation.baseline=false",
            "evaluation.subspace=false",
        ],
        run_dir,
    )
    assert record["status"] == "completed"
    assert [h["val_wer"] for h in record["validation_history"]] == SCRIPTED_DEV_WER[:4]  # stopped: 2 validations after the best
    assert record["global_step"] == 4 and record["tested_step"] == 2
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert scored
    for name, weight in scored.items():
        key = next(k for k in best if k.endswith(name))
        assert torch.equal(weight, best[key].to(weight.dtype)), name
    assert any(not torch.equal(best[k], last[k]) for k in best if k in last)  # the last weights differ: a real choice
    assert json.loads((run_dir / "results.json").read_text())["tested_step"] == 2


def test_a_validation_before_training_adds_the_step_0_point_and_changes_nothing_trained(tiny_corpus, tmp_path):
    """The convergence claim measures a run's dev gain from its WER before adaptation: that validation is the
    history's step 0, and it draws from none of training's generators (the trained weights are bit-equal)."""
    common = [
        "method=ssvd",
        "data=manifest",
        f"data.corpus_dir={tiny_corpus}",
        "loader.max_batch_size=1",
        "data.speed_perturb=[0.9,1.0,1.1]",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "evaluation.baseline=false",
        "evaluation.subspace=false",
    ]
    plain = run_in_process(common, tmp_path / "plain")
    with_step_0 = run_in_process([*common, "evaluation.validate_before_training=true"], tmp_path / "step0")
    assert [h["step"] for h in with_step_0["validation_history"]] == [0, *(h["step"] for h in plain["validation_history"])]
    assert with_step_0["validation_history"][1:] == plain["validation_history"]
    assert with_step_0["tested_step"] == plain["tested_step"] != 0
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        for d in (tmp_path / "plain", tmp_path / "step0")
    ]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
