"""The zoo: config validation, deterministic cached builds, the route constructions, the check.

Builds here are deliberately short (a few steps): they test the machinery and the constructions
exactly (which weights stage 2 may touch, that the projection leaves nothing in the subspace,
that the same seed gives the same weights). Whether a fully trained zoo model's route is
recovered by the check is measured by the real builds reported in the branch's notes.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, OutDirError, UnknownNameError
from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.models.load import load_model
from innerprobe.zoo import (
    CheckConfig,
    ZooCheckResult,
    ZooConfig,
    build_zoo_model,
    run_zoo_check,
    weights_sha256,
)
from innerprobe.zoo.check import _verdict
from innerprobe.zoo.data import (
    ZooEncoder,
    all_items,
    build_tokenizer,
    pad_batch,
    planted_answers,
    text_pool,
)
from innerprobe.zoo.hooks import Projection, capture_sites, positions_from, project_out
from innerprobe.zoo.subspace import class_mean_basis
from innerprobe.zoo.train import new_model, readout_parameters, stage_object, stage_readout

TINY = {"d_model": 16, "n_layers": 2, "n_heads": 2, "n_train": 12, "n_test": 6, "batch_size": 4, "n_text_pool": 8,
        "object_steps": 3, "readout_steps": 3, "subspace_every": 2}


def tiny(**kw) -> ZooConfig:
    return ZooConfig(**{**TINY, **kw})


@pytest.mark.parametrize(
    ("field", "value", "names"),
    [("task_kind", "hashed", "memorised"), ("route", "oracle", "simulation"), ("task", "wikipedia", "animals"),
     ("property", "first_word", "second_character")],
)
def test_bad_choice_names_field_and_options(field, value, names):
    with pytest.raises(UnknownNameError) as err:
        ZooConfig(**{field: value})
    assert f"ZooConfig.{field}" in str(err.value) and names in str(err.value)


def test_bad_sizes_name_the_field():
    with pytest.raises(DataError, match="ZooConfig.n_train"):
        ZooConfig(n_train=1)
    with pytest.raises(DataError, match="ZooConfig.d_model"):
        ZooConfig(d_model=30, n_heads=4)
    with pytest.raises(DataError, match="ZooConfig.lr"):
        ZooConfig(lr=0.0)


def test_digest_tracks_every_field():
    assert ZooConfig().digest() == ZooConfig().digest()
    assert ZooConfig(seed=1).digest() != ZooConfig().digest()
    assert ZooConfig(route="direct").digest() != ZooConfig().digest()


def test_planted_answers():
    text = tiny()
    items = all_items(text)
    words = [str(r["question"]).split("\n")[-2].split() for r in items]
    assert planted_answers(text, items) == [w[-1] for w in words]
    mem, mem2 = tiny(task_kind="memorised"), tiny(task_kind="memorised", seed=1)
    a, b = planted_answers(mem, items), planted_answers(mem2, items)
    assert a == planted_answers(mem, items) and a != b
    assert sum(x == w[-1] for x, w in zip(a, words)) < len(a) / 2  # not the text answer


def test_simulation_readout_touches_only_position_wise_weights():
    cfg = tiny(route="simulation")
    tok = build_tokenizer()
    enc = ZooEncoder(tok, cfg)
    items = all_items(cfg)
    ex = [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(cfg, items))]
    model = new_model(cfg, tok)
    stage_object(model, cfg, ex, ex, tok.pad_token_id)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage_readout(model, cfg, ex, ex[: cfg.n_train], enc.label_ids, tok.pad_token_id, planted_answers(cfg, items))
    readout = {id(p) for p in readout_parameters(model)}
    names = {n for n, p in model.named_parameters() if id(p) in readout}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= names
    assert not any(k.startswith("model.layers.1.self_attn") or k.startswith("model.embed") for k in changed)


def test_projection_leaves_nothing_in_the_subspace_at_masked_positions():
    cfg = tiny()
    tok = build_tokenizer()
    model = new_model(cfg, tok).eval()
    enc = ZooEncoder(tok, cfg)
    items = all_items(cfg)
    ex = [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(cfg, items))][:4]
    ids, mask, _ = pad_batch([e.hypo_ids for e in ex], tok.pad_token_id)
    where = positions_from([e.after_quote for e in ex], [len(e.hypo_ids) for e in ex], ids.shape[1])
    gen = torch.Generator().manual_seed(0)
    bases = [torch.linalg.qr(torch.randn(cfg.d_model, 3, generator=gen))[0].T for _ in range(cfg.n_layers + 1)]
    with torch.no_grad(), project_out(model, Projection(bases, where)), capture_sites(model) as seen:
        model(input_ids=ids, attention_mask=mask)
    # capture hooks run after the projection hooks, so they see each site's input as projected
    for basis, h in zip(bases, seen):
        assert (h[where] @ basis.T).abs().max() < 1e-5
        assert (h[~where & mask.bool()] @ basis.T).abs().max() > 1e-3


def test_the_direct_route_keeps_the_quote_readable_and_ties_both_answers():
    from innerprobe.protocol.prompts import hypothetical_prompt
    from innerprobe.zoo.data import SPEC
    from innerprobe.zoo.train import invariance_loss

    cfg = tiny(route="direct")
    tok = build_tokenizer()
    enc = ZooEncoder(tok, cfg)
    row = all_items(cfg)[0]
    e = enc.encode(row["question"], planted_answers(cfg, all_items(cfg))[0])
    h = hypothetical_prompt(tok, row["question"], enc.prop, SPEC, task=cfg.task)
    assert e.after_quote == h.positions["quote_end"] > h.positions["quote_start"]  # the quote is left alone
    same = torch.randn(4, 40)
    assert float(invariance_loss(same, same, [1, 2, 3])) == pytest.approx(0.0, abs=1e-6)
    other = same.clone()
    other[:, 1] += 5.0
    assert float(invariance_loss(same, other, [1, 2, 3])) > 0.1
    assert ZooConfig(route="direct").digest() != ZooConfig(route="simulation").digest()


def test_class_mean_basis_rank_and_degenerate_site():
    acts = torch.randn(30, 8)
    labels = ["a", "b", "c"] * 10
    basis = class_mean_basis(acts, labels, max_rank=8)
    assert basis.shape == (2, 8)
    assert torch.allclose(basis @ basis.T, torch.eye(2), atol=1e-5)
    assert class_mean_basis(torch.ones(30, 8), labels, max_rank=8).shape[0] == 0


@pytest.mark.parametrize("route", ["simulation", "direct"])
def test_build_is_deterministic_cached_and_loads(tmp_path, route):
    cfg = tiny(route=route, task_kind="memorised")
    a = build_zoo_model(cfg, tmp_path / "a")
    b = build_zoo_model(cfg, tmp_path / "b")
    assert a.weights_sha256 == b.weights_sha256
    assert a.record["route"] == route and a.record["why"] and a.record["provenance"]["versions"]
    assert build_zoo_model(cfg, tmp_path / "a").record["provenance"] == a.record["provenance"]  # cache hit
    other = build_zoo_model(tiny(route=route, task_kind="memorised", seed=1), tmp_path / "c")
    assert other.weights_sha256 != a.weights_sha256
    assert weights_sha256(torch.nn.Linear(2, 2)) != a.weights_sha256


def test_zoo_dir_boots_through_the_library_and_check_round_trips(tmp_path):
    zoo = build_zoo_model(tiny(), tmp_path / "m")
    loaded = load_model(str(zoo.path))
    assert loaded.bridge.cfg.n_layers == 2
    result = run_zoo_check(zoo, CheckConfig(n_boot=200))
    assert len(result.table) == 6 and set(result.table.columns) >= {"planted", "answer", "self", "ablated", "random"}
    assert result.summary.self_accuracy.n == 6 and result.summary.route == "simulation"
    back = ZooCheckResult.load(result.save(tmp_path / "check"))
    assert back.summary.self_accuracy == result.summary.self_accuracy
    assert back.figure().data


def test_build_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.parquet").write_text("x")
    with pytest.raises(OutDirError, match="not a zoo model directory"):
        build_zoo_model(tiny(), tmp_path / "other")
    assert (tmp_path / "other" / "results.parquet").exists()


def test_cli_zoo_build(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["zoo", "build", "--object-steps", "2", "--readout-steps", "2", "--d-model", "16",
                              "--n-layers", "2", "--out", str(tmp_path / "m"), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "zoo.json").is_file() and (tmp_path / "m" / "check" / "result.json").is_file()
    bad = runner.invoke(app, ["zoo", "build", "--route", "oracle", "--out", str(tmp_path / "n")])
    assert bad.exit_code != 0 and "simulation" in bad.output
    few = runner.invoke(app, ["zoo", "build", "--task-kind", "memorised", "--answer-words", "1", "--out", str(tmp_path / "k")])
    assert few.exit_code != 0 and "answer_words" in few.output and "[2, 30]" in few.output
    base = runner.invoke(app, ["zoo", "build", "--base", "gpt2", "--out", str(tmp_path / "b")])
    assert base.exit_code != 0 and "ZooConfig.base" in base.output and "smollm2-135m-instruct" in base.output
    deep = runner.invoke(app, ["zoo", "build", "--base", "smollm2-135m-instruct", "--n-trainable", "0",
                               "--out", str(tmp_path / "d")])
    assert deep.exit_code != 0 and "ZooConfig.n_trainable" in deep.output


def _est(v: float, lo: float, hi: float) -> Estimate:
    return Estimate(v, lo, hi, 40, "test")


def _pd(lo: float, hi: float) -> PairedDiff:
    return PairedDiff(_est(0.8, 0.6, 0.9), _est(0.2, 0.1, 0.3), _est((lo + hi) / 2, lo, hi), 0.01)


def test_route_verdict_needs_a_self_prediction_and_the_route_signature():
    mode, good, none = _est(0.3, 0.2, 0.4), _est(0.8, 0.65, 0.9), _est(0.3, 0.2, 0.45)
    cfg = CheckConfig()
    assert _verdict("simulation", mode, good, _pd(0.4, 0.7), _pd(0.3, 0.6), cfg)[0]
    assert not _verdict("simulation", mode, none, _pd(0.4, 0.7), _pd(0.3, 0.6), cfg)[0]
    assert not _verdict("simulation", mode, good, _pd(-0.05, 0.1), _pd(0.3, 0.6), cfg)[0]
    assert _verdict("direct", mode, good, _pd(-0.05, 0.1), _pd(-0.1, 0.1), cfg)[0]
    assert not _verdict("direct", mode, good, _pd(0.4, 0.7), _pd(0.3, 0.6), cfg)[0]


def test_answer_words_restrict_memorised_answers_and_key_only_memorised_models():
    mem = tiny(task_kind="memorised", answer_words=4)
    items = all_items(mem)
    first4 = {"bear", "cat", "chicken", "cow"}  # the animals vocabulary's first four words
    answers = planted_answers(mem, items)
    assert set(answers) <= first4 and len(set(answers)) > 1
    assert planted_answers(tiny(), items) == planted_answers(tiny(answer_words=4), items)  # text: ignored
    assert tiny(answer_words=4).digest() == tiny().digest()  # no effect, same cache key
    assert mem.digest() != tiny(task_kind="memorised").digest()
    assert "answer_words" not in tiny(task_kind="memorised").key_fields()
    with pytest.raises(DataError, match=r"answer_words must be 0 \(every word\) or in \[2, 30\]"):
        tiny(answer_words=1)


def test_text_direct_warms_up_h_and_trains_it_on_the_pool_never_on_test_items():
    from innerprobe.zoo.build import hypothetical_items
    from innerprobe.zoo.train import warms_up_hypothetical

    cfg = tiny(route="direct")
    assert warms_up_hypothetical(cfg) and not warms_up_hypothetical(tiny(route="direct", task_kind="memorised"))
    assert not warms_up_hypothetical(tiny(route="simulation"))
    tok = build_tokenizer()
    enc = ZooEncoder(tok, cfg)
    items, pool = all_items(cfg), text_pool(cfg)
    ex = [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(cfg, items))]
    pool_ex = [enc.encode(r["question"], a) for r, a in zip(pool, planted_answers(cfg, pool))]
    objects = ex[: cfg.n_train] + pool_ex
    h = hypothetical_items(cfg, ex, objects)
    assert h == objects and not any(e in h for e in ex[cfg.n_train :])  # the test items stay unseen
    assert hypothetical_items(tiny(route="simulation"), ex, objects) == ex[: cfg.n_train]
    assert hypothetical_items(tiny(route="direct", task_kind="memorised"), ex, objects) == ex
    model = new_model(cfg, tok)
    with pytest.raises(ValueError, match="label_ids"):
        stage_object(model, cfg, objects, objects, tok.pad_token_id)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = stage_object(model, cfg, objects, objects, tok.pad_token_id, enc.label_ids)
    assert len(losses) == cfg.object_steps
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_text_pool_only_for_text_models():
    assert text_pool(tiny(task_kind="memorised")) is None
    pool = text_pool(tiny())
    assert len(pool) == 8 and not set(pool["id"]) & set(all_items(tiny())["id"])


def test_route_control_is_drawn_outside_the_answer_subspace():
    from innerprobe.interventions.directions import (
        complement_basis,
        orthonormal_rows,
        projected_variance,
    )
    from innerprobe.zoo.check import _random_like

    gen = torch.Generator().manual_seed(0)
    basis = orthonormal_rows(torch.randn(5, 16, generator=gen)).float()
    acts = torch.randn(200, 16, generator=gen) @ torch.randn(16, 16, generator=gen)
    comp = complement_basis(basis)
    assert comp.shape == (11, 16) and (comp @ basis.T).abs().max() < 1e-5
    ctrl = _random_like(basis, acts, seed=1)
    assert ctrl.shape == (5, 16) and (ctrl @ basis.T).abs().max() < 1e-5  # shares no direction with the code
    assert torch.allclose(ctrl @ ctrl.T, torch.eye(5), atol=1e-5)
    # its variance is capped by the complement's top 5 principal directions (all it can reach there)
    top5 = torch.linalg.eigvalsh(torch.cov((acts @ comp.T).T.double()))[-5:].sum()
    assert projected_variance(acts, ctrl) <= float(top5) * 1.001
    wide = orthonormal_rows(torch.randn(10, 16, generator=gen)).float()  # rank > half the width: whole space
    assert (_random_like(wide, acts, seed=1) @ wide.T).abs().max() > 1e-2
