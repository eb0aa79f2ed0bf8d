"""SSVD on both singular subspaces (`method.side`, `method.p_out`) and per-group budgets (`adapt.p_groups`) on the
tiny model and the OWSM-1B plan: identity at init, merge, save/load with fingerprints, counts by formula, the rule."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from asr_peft.adapters import adapter_modules, apply_method, load_adapter, merged_copy, save_adapter
from asr_peft.adapters.budget import fractions, group_matches
from asr_peft.adapters.injection import match_modules
from asr_peft.errors import ConfigError, ModelLoadError
from conftest import compose_config
from test_adapters_owsm import adapt_config, batch, encoder_output, method_config  # noqa: F401 (fixture)
from test_fingerprint import _flip_pair, _serve_altered_factors, outputs, train_stand_in
from test_train_e2e import train_cli

BOTH = method_config("ssvd", side="both", p_out=0.3)


def generator_count(k: int, rotation: str = "approx") -> int:
    return k * k if rotation == "free" else k * (k - 1) // 2


def expected_count(
    d_out: int, d_in: int, p: float, side: str = "smaller", p_out: float | None = None, rotation: str = "approx"
) -> int:
    """The documented count: K Δσ's + 1 gate + each rotated side's generator, K = max(k_in, k_out)."""
    r_max = min(d_out, d_in)
    k_in = math.floor(p * r_max) if side in ("smaller", "input", "both") else 0
    k_out = math.floor((p if p_out is None else p_out) * r_max) if side in ("larger", "output", "both") else 0
    return max(k_in, k_out) + 1 + generator_count(k_in, rotation) + generator_count(k_out, rotation)


def test_both_sides_start_at_the_pretrained_model_and_merge_to_what_they_compute(tiny_bundle_factory, batch):
    frozen = encoder_output(tiny_bundle_factory(0).model, batch)
    model = tiny_bundle_factory(0).model
    apply_method(model, BOTH, adapt_config())
    assert all(module.k_out > 0 and module.k_in > 0 for _, module in adapter_modules(model))
    torch.testing.assert_close(encoder_output(model, batch), frozen, rtol=1e-5, atol=1e-5 * float(frozen.abs().max()))
    train_stand_in(model)
    adapted = encoder_output(model, batch)
    assert (adapted - frozen).norm() > 0.1 * frozen.norm()  # the output side's rotation does act
    merged = encoder_output(merged_copy(model), batch)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4 * float(adapted.abs().max()))


def test_both_sides_save_load_bit_identically_and_refuse_another_output_basis(tiny_bundle_factory, batch, tmp_path, monkeypatch):
    model = tiny_bundle_factory(0).model
    method, adapt = {**BOTH, "p_out_groups": {"src_attn": 0.6}}, adapt_config(p_groups={"encoder": 0.2})
    apply_method(model, method, adapt)
    train_stand_in(model)
    trained = outputs(model, batch)
    save_adapter(model, tmp_path / "adapter", method, adapt)
    fresh = tiny_bundle_factory(0).model
    names = [name for name, _, _ in match_modules(fresh, adapt["targets"])]
    load_adapter(fresh, tmp_path / "adapter")
    reloaded = outputs(fresh, batch)
    assert torch.equal(reloaded[0], trained[0]) and torch.equal(reloaded[1], trained[1])
    # a sign flip among the top k both generators act on is another model, refused naming the layer
    _serve_altered_factors(monkeypatch, 4, _flip_pair)
    with pytest.raises(ModelLoadError) as error:
        load_adapter(tiny_bundle_factory(0).model, tmp_path / "adapter")
    assert "\n" not in str(error.value) and f"layer {names[4]}: `left`" in str(error.value)


def test_the_tiny_models_trainable_count_follows_the_formula_per_layer_with_groups(tiny_bundle_factory):
    model = tiny_bundle_factory(0).model
    shapes = {name: (m.out_features, m.in_features) for name, _, m in match_modules(model, adapt_config()["targets"])}
    groups, out_groups = {"encoder": 0.2, "src_attn": 0.5}, {"decoder.decoders.0": 0.7, "encoders.1": 0.1}
    report = apply_method(
        model,
        method_config("ssvd", side="both", p_out=0.3, rotation="free", p_out_groups=out_groups),
        adapt_config(p_groups=groups),
    )
    p_of = lambda name: 0.2 if name.startswith("encoder.") else 0.5 if ".src_attn." in name else 0.4  # noqa: E731
    p_out_of = lambda name: (
        0.7
        if name.startswith("decoder.decoders.0.")  # noqa: E731
        else 0.1
        if name.startswith("encoder.encoders.1.")
        else 0.3
    )
    expected = sum(expected_count(*shape, p_of(name), "both", p_out_of(name), "free") for name, shape in shapes.items())
    assert report.trainable == expected
    assert {n: m.k_in for n, m in adapter_modules(model)} == {n: math.floor(p_of(n) * min(s)) for n, s in shapes.items()}
    assert {n: m.k_out for n, m in adapter_modules(model)} == {n: math.floor(p_out_of(n) * min(s)) for n, s in shapes.items()}


@pytest.mark.parametrize(
    "name, group, matches",
    [
        ("encoder.encoders.0.attn.linear_q", "encoder", True),
        ("encoder.encoders.0.attn.linear_q", "attn", True),
        ("encoder.encoders.0.attn.linear_q", "attn.linear_q", True),  # several components, in a run
        ("encoder.encoders.0.attn.linear_q", "encoders.0", True),
        ("decoder.decoders.0.self_attn.linear_q", "attn", False),  # a whole component, not a suffix of one
        ("encoder.encoders.0.feed_forward_macaron.w_1", "feed_forward", False),
        ("encoder.encoders.0.attn.linear_q", "encoder.attn", False),  # not a run of the name's components
        ("encoder.encoders.10.attn.linear_q", "encoders.1", False),
    ],
)
def test_a_group_is_a_run_of_whole_name_components(name, group, matches):
    assert group_matches(name, group) == matches


def test_groups_override_p_and_bad_groups_are_one_line_errors():
    names = [
        "encoder.encoders.0.attn.linear_q",
        "encoder.encoders.0.feed_forward.w_1",
        "decoder.decoders.0.self_attn.linear_q",
        "decoder.decoders.0.feed_forward.w_1",
    ]
    assert fractions(names, 0.4, {"self_attn": 0.3, "feed_forward": 0.5}) == [0.4, 0.5, 0.3, 0.5]
    assert fractions(names, 0.4, None) == [0.4] * 4
    for groups, expected in [
        ({"encoder": 0.2, "feed_forward": 0.5}, "matches groups 'encoder' and 'feed_forward'"),
        ({"encoder": 0.2, "cgmlp": 0.5}, "group(s) cgmlp match no target module"),
        ({"encoder": 1.5}, "adapt.p_groups.encoder=1.5 must be a fraction in (0, 1]"),
    ]:
        with pytest.raises(ConfigError) as error:
            fractions(names, 0.4, groups)
        assert "adapt.p_groups" in str(error.value) and expected in str(error.value) and "\n" not in str(error.value)


def test_p_groups_reach_the_layers_through_apply_method():
    model = nn.Sequential(nn.Linear(40, 24), nn.Linear(24, 40))
    with pytest.raises(ConfigError, match="adapt.p_groups: group.s. 2 match no target module"):
        apply_method(model, {"name": "ssvd"}, {"p": 0.4, "targets": ["0", "1"], "p_groups": {"2": 0.5}})
    with pytest.raises(ConfigError, match="method.p_out_groups: group.s. 2 match no target module"):
        apply_method(model, {"name": "ssvd", "side": "both", "p_out_groups": {"2": 0.5}}, {"p": 0.4, "targets": ["0", "1"]})
    for side in ("smaller", "input"):  # the sides p_out does not size
        with pytest.raises(ConfigError, match=f"method.p_out_groups sizes the rotation of U .*which method.side={side}"):
            apply_method(model, {"name": "ssvd", "side": side, "p_out_groups": {"1": 0.5}}, {"p": 0.4, "targets": ["0", "1"]})
    apply_method(
        model,
        {"name": "ssvd", "side": "both", "p_out": 0.25, "p_out_groups": {"0": 0.5}},
        {"p": 0.4, "targets": ["0", "1"], "p_groups": {"1": 0.75}},
    )
    assert (model[0].k_in, model[0].k_out, model[1].k_in, model[1].k_out) == (9, 12, 18, 6)


def test_config_schema_and_run_names_know_side_p_out_and_both_groups():
    from asr_peft.config.validate import validate_config
    from asr_peft.training.naming import configuration_label

    validate_config(
        compose_config(
            "train",
            ["method.side=both", "method.p_out=0.2", "adapt.p_groups={encoder: 0.2}", "method.p_out_groups={decoder: 0.3}"],
        ),
        "train",
        check_hardware=False,
    )
    for bad, key in [
        ("method.side=left", "method.side"),
        ("method.p_out=0", "method.p_out"),
        ("adapt.p_groups={encoder: 2.0}", "adapt.p_groups"),
        ("method.p_out_groups={decoder: 0}", "method.p_out_groups"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate_config(compose_config("train", [bad]), "train", check_hardware=False)
    assert configuration_label(method_config("ssvd"), adapt_config()) == "ssvd p=0.4"
    assert (
        configuration_label(BOTH, adapt_config(p_groups={"encoder": 0.2}))
        == 'ssvd p=0.4 side=both p_out=0.3 p_groups={"encoder":0.2}'
    )
    assert (
        configuration_label({**BOTH, "p_out_groups": {"decoder": 0.5}}, adapt_config())
        == 'ssvd p=0.4 side=both p_out=0.3 p_out_groups={"decoder":0.5}'
    )


def owsm_1b_expected_count() -> tuple[int, int]:
    """(adapted layers, trainable) for SSVD side=both p=p_out=0.2 on owsm_all, from OWSM-1B's layer shapes (its
    config's widths) and the per-layer formula."""
    cfg = compose_config("train", ["model=owsm_1b"]).model.s2t_config
    d, ffn, cgmlp = cfg.encoder_conf.output_size, cfg.encoder_conf.linear_units, cfg.encoder_conf.cgmlp_linear_units
    vocab = 50000
    per_encoder_block = [(d, d)] * 4 + [(cgmlp, d), (d, cgmlp // 2)] + [(ffn, d), (d, ffn)] * 2 + [(d, 2 * d)]
    per_decoder_block = [(d, d)] * 8 + [(ffn, d), (d, ffn)]
    shapes = (
        per_encoder_block * cfg.encoder_conf.num_blocks
        + per_decoder_block * cfg.decoder_conf.num_blocks
        + [(d, d * 19), (vocab, d)]
    )  # conv2d subsampling's projection (80 mels → 19 rows), output layer
    return len(shapes), sum(expected_count(*shape, 0.2, "both", 0.2) for shape in shapes)


def dry_plan(overrides: list[str], plan_dir) -> dict:
    """The dry run's plan for `train.py <overrides> dry_run=true`, from its own code in process (meta device)."""
    from omegaconf import OmegaConf

    from asr_peft.training.plan import run_dry

    cfg = compose_config("train", [*overrides, "dry_run=true"])
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra")
    return run_dry(cfg, plan_dir)


DRY_RUN_1B = ["method=ssvd", "method.side=both", "adapt.p=0.2", "method.p_out=0.2", "dry_run=true", "model=owsm_1b"]


def test_the_owsm_1b_plan_of_both_sides_follows_the_formula(tmp_path):
    """The dry run's own code (meta device, no weights) in process; the command itself is checked below (slow)."""
    plan = dry_plan(DRY_RUN_1B, tmp_path)
    layers, expected = owsm_1b_expected_count()
    assert sum(row["modules"] for row in plan["per_module_type"].values()) == layers
    assert plan["trainable"] == expected


@pytest.mark.slow
def test_dry_run_command_prints_the_owsm_1b_plan_of_both_sides(tmp_path):
    """`python train.py method=ssvd method.side=both adapt.p=0.2 method.p_out=0.2 dry_run=true model=owsm_1b`."""
    result = train_cli([*DRY_RUN_1B, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    _, expected = owsm_1b_expected_count()
    assert json.loads((tmp_path / "plan.json").read_text())["trainable"] == expected and f"{expected:,}" in result.stdout


def test_the_comparisons_allocation_points_match_a_smaller_side_budget_as_the_claims_require(tmp_path):
    """Each output/both-sided SSVD point of +sweep=comparison has a side=smaller point whose exact count (the dry
    run's plan) lies within the claims' budget tolerance: otherwise the both-sides claim has nothing to test."""
    from asr_peft.reporting.claims import BUDGET_TOLERANCE

    points = compose_config("train", ["+sweep=comparison"]).hydra.sweeper.params["+point"].split(",")
    counts = {}
    for point in (p for p in points if p.startswith("ssvd_") and "cayley" not in p and "free" not in p):
        plan = dry_plan([f"+point={point}"], tmp_path / point)
        counts[point] = (plan["method"]["side"], plan["trainable"])
    allocations = {p: n for p, (side, n) in counts.items() if side != "smaller"}
    inputs = [n for side, n in counts.values() if side == "smaller"]
    assert len(allocations) >= 3 and len(inputs) >= 3
    for point, count in allocations.items():
        assert any(abs(count - n) <= BUDGET_TOLERANCE * max(count, n) for n in inputs), (point, count, inputs)


def test_the_free_rotations_count_points_match_their_first_order_twins_and_the_rank_points_share_their_p(tmp_path):
    """The rotation ablation's two matchings (issue 26): free at p=0.07/0.28 has the trainable count of approx at
    p=0.1/0.4 (within the claims' tolerance, exact counts from the dry run), free at p=0.1/0.4 their rank."""
    from asr_peft.reporting.claims import BUDGET_TOLERANCE

    points = compose_config("train", ["+sweep=comparison"]).hydra.sweeper.params["+point"].split(",")
    assert {"ssvd_free_p0.07", "ssvd_free_p0.28", "ssvd_free_p0.1", "ssvd_free_p0.4", "ssvd_p0.1", "ssvd_p0.4"} <= set(points)
    count = {point: dry_plan([f"+point={point}"], tmp_path / point)["trainable"] for point in points if point.startswith("ssvd_")}
    for free, approx in (("ssvd_free_p0.07", "ssvd_p0.1"), ("ssvd_free_p0.28", "ssvd_p0.4")):
        assert abs(count[free] - count[approx]) <= BUDGET_TOLERANCE * max(count[free], count[approx]), (
            free,
            count[free],
            count[approx],
        )
    for free, approx in (("ssvd_free_p0.1", "ssvd_p0.1"), ("ssvd_free_p0.4", "ssvd_p0.4")):
        assert count[free] > 1.5 * count[approx]  # same rank: k^2 against k(k-1)/2 numbers per layer
