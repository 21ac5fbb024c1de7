"""Statistics that hold up (issue 9, section 5): each test fails on the statistics it replaces.

1. self, cross, mode and text-only baselines on exactly the scored items; pooling over scored rows;
2. Wilson intervals for proportions, exact McNemar beside the paired bootstrap;
3. a Hewitt–Liang control with recurring types, missing types dropped, collapse reported;
4. best layer / best cell selected on one split and estimated on the other;
5. patching pairs record whether their forced-choice answer is the greedy (behaviour) answer;
6. memoised answers, samples and traces keyed on the model's state.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from scipy.stats import binomtest

from innerprobe import probes as P
from innerprobe.behavior import baselines, elicitation
from innerprobe.behavior.config import BehaviorConfig
from innerprobe.behavior.elicitation import ObjectBehavior, elicit_object, greedy_responses
from innerprobe.behavior.result import BehaviorResult, BehaviorSummary, PredictorSummary
from innerprobe.behavior.run import behave
from innerprobe.cli.ui import behavior_summary_table as _summary_table
from innerprobe.core import stats
from innerprobe.core.errors import DataError
from innerprobe.patching import search as pairs_mod
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.grid import PatchResult, _cell_cis
from innerprobe.patching.traces import trace
from innerprobe.protocol.prompts import label_tokens
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

# ------------------------------------------------------------------ 1. same scored items


def _behaviour_table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """A behaviour table where 10 object-compliant rows were *not* scored (value outside labels)
    and are, by construction, self-wrong and cross-right: pooling them would flip the sign."""
    rng = np.random.default_rng(seed)
    compliant = np.ones(n, dtype=bool)
    compliant[:4] = False
    scored = compliant.copy()
    scored[4:14] = False
    correct = rng.random(n) < 0.7
    cross = rng.random(n) < 0.4
    correct[4:14], cross[4:14] = False, True
    values = [None if not c else ("a" if i % 3 else "b") for i, c in enumerate(compliant)]
    return pd.DataFrame({
        "id": [f"i{i}" for i in range(n)], "object_value": values, "object_compliant": compliant,
        "scored": scored, "correct": correct, "cross_correct": cross,
    })


def test_pooled_self_cross_uses_only_scored_rows():
    tables = [_behaviour_table(seed=0), _behaviour_table(seed=1)]
    pooled = baselines.pooled_from_tables(tables)
    scored = pd.concat(tables)
    scored = scored[scored["scored"]]
    assert pooled.diff.n == pooled.n == len(scored) == 52  # 2 × (40 − 4 non-compliant − 10 unscored)
    assert pooled.diff.value == pytest.approx(scored["correct"].mean() - scored["cross_correct"].mean())
    assert pooled.mcnemar_p is not None
    with pytest.raises(DataError, match="scored"):
        baselines.pooled_from_tables([tables[0].drop(columns="scored")])


def test_compare_self_cross_scores_every_baseline_on_the_scored_ids(monkeypatch, tmp_path):
    items = load_items("animals", n=40, split="test", seed=0)
    table = _behaviour_table()
    table["id"] = items["id"]
    keep = table["scored"].to_numpy(bool)
    always = stats.accuracy(np.ones(int(keep.sum()), bool))
    summary = BehaviorSummary(
        property="first_character", mode="forced", tasks=["animals"], n_items=len(table),
        n_scored=int(keep.sum()), n_object_noncompliant=4, n_skipped_too_long=0, n_value_outside_labels=10,
        dropped_reasons={}, object_compliance=always, labels=["a", "b"],
        self=PredictorSummary(int(keep.sum()), stats.accuracy(table["correct"].to_numpy()[keep]), always),
        cross=PredictorSummary(int(keep.sum()), stats.accuracy(table["cross_correct"].to_numpy()[keep]), always),
        self_minus_cross=stats.paired_bootstrap_diff(
            table["correct"].to_numpy(float)[keep], table["cross_correct"].to_numpy(float)[keep]
        ),
        mode_baseline=stats.mode_baseline(list(table["object_value"][keep])),
    )
    train = load_items("animals", n=30, split="train", seed=0)
    train_values = ["a" if i % 2 else "b" for i in range(30)]
    train_obj = ObjectBehavior([], [], [], train_values, np.ones(30, bool), np.zeros(30, bool))
    monkeypatch.setattr(baselines, "behave", lambda *a, **k: BehaviorResult(table, summary))
    monkeypatch.setattr(baselines, "elicit_object", lambda *a, **k: train_obj)
    comp = baselines.compare_self_cross(None, None, items, get_property("first_character"), text_train_items=train)
    c = comp.summary
    assert c.text_baseline is not None
    assert c.text_baseline.n == c.self_accuracy.n == c.cross_accuracy.n == c.mode_baseline.estimate.n == 26
    assert comp.scored_ids == list(table["id"][keep])
    row = comp.row()
    assert row["n"] == row["n_text"] == 26 and row["n_items"] == 40
    back = baselines.Comparison.load(comp.save(tmp_path / "comparison"))  # a Result: it round-trips
    assert back.summary == comp.summary and back.scored_ids == comp.scored_ids
    assert len(comp.figure().data[0].x) == 4  # mode, text-only, self, cross


def test_text_baseline_refuses_scored_items_without_label():
    tb = baselines.TextBaseline().fit(["cat dog", "owl bat", "cat fox", "owl elk"], ["c", "o", "c", "o"])
    est = tb.score(["cat emu", "owl yak", "cat ant"], ["c", "o", "o"], scored=[True, True, False])
    assert est.n == 2 and est.value == 1.0
    with pytest.raises(DataError, match="no label"):
        tb.score(["cat emu", "owl yak"], ["c", None], scored=[True, True])


# ------------------------------------------------------------ 2. Wilson and McNemar


def test_zero_of_55_has_a_nondegenerate_wilson_interval():
    est = stats.accuracy([False] * 55)
    assert est.value == 0.0 and est.ci_low == 0.0
    assert est.ci_high == pytest.approx(0.0653, abs=1e-3)  # Wilson, not a collapsed [0, 0]
    assert est.method.startswith("Wilson") and est.n == 55
    full = stats.accuracy([True] * 20)
    assert full.ci_high == 1.0 and full.ci_low == pytest.approx(0.839, abs=1e-3)


def test_mode_baseline_interval_is_wilson():
    base = stats.mode_baseline(["x"] * 30)
    assert base.estimate.value == 1.0 and base.estimate.ci_low == pytest.approx(0.886, abs=1e-3)
    assert base.estimate.method.startswith("Wilson")


def test_paired_binary_difference_has_exact_mcnemar():
    # 12 items only self gets right, 3 only cross, 25 both, 10 neither.
    a = np.array([1] * 12 + [0] * 3 + [1] * 25 + [0] * 10)
    b = np.array([0] * 12 + [1] * 3 + [1] * 25 + [0] * 10)
    d = stats.paired_bootstrap_diff(a, b, seed=0)
    assert (d.n_a_only, d.n_b_only) == (12, 3)
    assert d.mcnemar_p == pytest.approx(binomtest(12, 15, 0.5).pvalue)
    assert d.diff.value == pytest.approx(9 / 50) and "bootstrap" in d.diff.method
    assert d.a.method.startswith("Wilson")
    same = stats.paired_bootstrap_diff(a, a)
    assert same.mcnemar_p == 1.0 and (same.n_a_only, same.n_b_only) == (0, 0)
    cont = stats.paired_bootstrap_diff(np.linspace(0, 1, 20), np.linspace(0, 0.5, 20))
    assert cont.mcnemar_p is None and "bootstrap" in cont.a.method


def test_behaviour_summary_uses_wilson_and_cli_table_renders(tiny):
    items = load_items("animals", n=8, split="test", seed=0)
    res = behave(tiny, items, get_property("first_character"), BehaviorConfig(object_max_new_tokens=4),
                 predictor_spec=BehaviorConfig().spec)
    s = res.summary
    for est in (s.object_compliance, s.self.accuracy, s.self.compliance, s.mode_baseline.estimate):
        assert est.method.startswith("Wilson")
        assert est.ci_low < est.ci_high  # never a collapsed interval
    assert s.self.n == s.n_scored == len(res.scored_ids)
    assert s.self_minus_cross.mcnemar_p is not None
    out = io.StringIO()
    Console(file=out, width=200).print(_summary_table(s, "t"))
    text = out.getvalue()
    assert "Wilson" in text and "McNemar p=" in text and "self − cross" in text


# ------------------------------------------------------------ 3. Hewitt–Liang control


def _type_coded(n: int = 360, n_types: int = 24, d: int = 64, seed: int = 0):
    """Activations that encode each item's last word (its type) and nothing else; the label is a
    function of that word. Groups are whole item strings (one per item), as the store has them."""
    rng = np.random.default_rng(seed)
    word = rng.integers(0, n_types, n)
    emb = rng.standard_normal((n_types, d)) * 3
    x = emb[word][:, None, :] + 0.3 * rng.standard_normal((n, 1, d))
    y = np.array(["p", "q", "r"])[word % 3]
    groups = [f"item{i} t{w}" for i, w in enumerate(word)]
    return torch.tensor(x, dtype=torch.float32), y, groups


def test_default_control_types_recur_so_memorisation_shows():
    """A representation that only encodes word identity: a selective probe must show ~0
    selectivity. With one type per item (the old default, the group) the control is chance and
    selectivity was ~0.6, i.e. accuracy − chance."""
    x, y, groups = _type_coded()
    res = P.run_probes({"O": x}, y, groups, config=P.ProbeConfig(folds=4, n_boot=100, probes=("ridge",)))
    row = res.table.iloc[0]
    assert row["value"] > 0.95
    assert row["control_task"] > 0.85  # the probe memorised the 24 recurring types
    assert row["selectivity"] < 0.15
    assert res.control["n_types"] == 24 and res.control["n_recurring_type_items"] == len(y)
    assert not res.warnings


def test_missing_types_are_dropped_and_counted_not_one_none_type():
    x, y, groups = _type_coded()
    types = [g.split()[-1] for g in groups]
    for i in range(0, len(types), 4):
        types[i] = None
    cfg = P.ProbeConfig(folds=4, n_boot=100, probes=("ridge",))
    res = P.run_probes({"O": x}, y, groups, control_types=types, config=cfg)
    assert res.control["n_missing_type"] == 90
    assert res.control["n_types"] == 24  # no "None" type among them
    df = res.table
    assert (df["control_n"] == len(y) - 90).all() and (df["n"] == len(y)).all()
    ct = P.control_task(np.zeros(4, dtype=np.int64), ["a", None, "a", float("nan")], 2, 0)
    assert ct.n_missing == 2 and list(ct.keep) == [True, False, True, False] and ct.labels[1] == -1


@pytest.mark.parametrize(
    "types, says",
    [(["same"] * 120, "collapsed to 1 type"), ([f"u{i}" for i in range(120)], "occurs once")],
)
def test_degenerate_control_is_reported_not_scored(types, says):
    x, y, _ = P.synthetic_activations(n=120, n_layers=2, d=16, n_classes=3, seed=0)
    res = P.run_probes({"O": x}, y, control_types=types, config=P.ProbeConfig(folds=3, n_boot=50, probes=("ridge",)))
    assert len(res.warnings) == 1 and says in res.warnings[0]
    df = res.table
    assert df["control_task"].isna().all() and df["selectivity"].isna().all()
    assert res.control["warning"] == res.warnings[0]


# ------------------------------------------------------------ 4. best of many, honestly


def test_select_and_estimate_is_unbiased_where_the_naive_max_is_not():
    """Pure noise, 30 candidates: the naive max is above chance every time; the held-out
    estimate averages chance and its interval covers chance at about the nominal rate."""
    rng = np.random.default_rng(0)
    naive, held, covered = [], [], 0
    for rep in range(60):
        scores = (rng.random((200, 30)) < 0.5).astype(float)
        sel = stats.select_and_estimate(scores, seed=rep, what="layer")
        naive.append(sel.naive.value)
        held.append(sel.estimate.value)
        covered += sel.estimate.ci_low <= 0.5 <= sel.estimate.ci_high
        assert sel.n_select + sel.n_estimate == 200 and sel.estimate.n == sel.n_estimate
    assert min(naive) > 0.5 and np.mean(naive) > 0.55
    assert abs(np.mean(held) - 0.5) < 0.02
    assert covered / 60 >= 0.85
    assert "selected on split A (n=100), estimated on the disjoint split B (n=100" in sel.selection


def test_best_layer_of_pure_noise_probe_covers_chance():
    rng = np.random.default_rng(1)
    n, n_layers = 240, 30
    x = torch.tensor(rng.standard_normal((n, n_layers, 8)), dtype=torch.float32)
    y = np.array(["a", "b"])[rng.integers(0, 2, n)]
    res = P.run_probes({"O": x}, y, config=P.ProbeConfig(folds=4, n_boot=100, controls=False, probes=("ridge",)))
    best = P.best_layers(res).iloc[0]
    acc = res.table
    assert best["naive_value"] == pytest.approx(acc["value"].max())
    # The winner's curse: the max of 30 noisy layers sits well above chance and above the
    # typical layer (whose out-of-fold accuracy on noise is at or below chance).
    assert best["naive_value"] > 0.54 and best["naive_value"] > acc["value"].mean() + 0.04
    assert best["ci_low"] <= 0.5 <= best["ci_high"]
    assert best["n"] == n // 2 and best["naive_n"] == n  # estimated on the held-out half only
    assert "selected on split A" in best["selection"] and "split B" in best["selection"]
    naive = P.best_layers(acc).iloc[0]
    assert "naive max over 30 layers" in naive["selection"]


def test_best_patch_cell_of_noise_covers_zero():
    rng = np.random.default_rng(2)
    n, n_l, n_p = 16, 30, 4
    rec = rng.standard_normal((n, n_l, n_p))
    mean, lo, hi = _cell_cis(rec, 500, 0)
    res = PatchResult("resid_pre", "denoise", "logit_diff", list(range(n_l)), list(range(n_p)),
                      [f"t{i}" for i in range(n_p)], rec, np.ones(n), np.zeros(n), rec, mean, lo, hi, 0)
    b = res.summary.best_cell
    assert b.naive.ci_low > 0  # the naive best cell "excludes" 0 on pure noise
    assert b.estimate.ci_low <= 0 <= b.estimate.ci_high
    assert b.estimate.n == 8 and "split A (n=8)" in b.selection


# ------------------------------------------------------------ 5. forced vs greedy answers


FORCED: dict[tuple[int, ...], str] = {}


def _copy_first_word(model, prompts, vocabulary, spec, batch_size):
    """Forced choice stand-in: the first sequence word (remembered per prompt for the echo)."""
    ids = label_tokens(model.tokenizer, list(vocabulary), prompts[0].text, spec.object_prefill).first_ids
    out = [vocabulary.index(p.user.rstrip().split("\n")[-1].split()[0]) for p in prompts]
    FORCED.update({tuple(p.input_ids): vocabulary[i] for p, i in zip(prompts, out)})
    scores = [{t: (0.0 if t == ids[i] else -5.0) for t in ids} for i in out]
    return [vocabulary[i] for i in out], [ids[i] for i in out], scores


def test_pairs_record_agreement_with_greedy_behaviour(tiny, monkeypatch):
    monkeypatch.setattr(pairs_mod, "_forced_answers", _copy_first_word)
    items = load_items("animals", n=8, split="test", seed=0)
    prop = get_property("first_character")
    kw = dict(n_pairs=100, n_controls=100, min_gap=-1e9, per_item=1, items=items)
    ps = pairs_mod.build_pairs(tiny, "animals", prop, **kw)
    both = ps.pairs + ps.controls
    assert both
    # The greedy side is behaviour's own definition of the object answer.
    obj = elicit_object(tiny, items, prop)
    value_of = dict(zip(items["id"], obj.values))
    for p in both:
        assert p.greedy_value_a == value_of[p.item_id]
        assert p.greedy_agrees_a == (p.greedy_answer_a == p.answer_a)
    agree = ps.summary.forced_vs_greedy
    df = ps.table
    assert agree["n"] == len(both) == len(df)
    assert agree["answer_a"] == pytest.approx(df["greedy_agrees_a"].mean())
    assert agree["n_disagree"] == int((~(df["greedy_agrees_a"] & df["greedy_agrees_b"])).sum())
    # A model whose greedy answer is its forced one ("deer, cat, ...") agrees on every pair.
    echo = lambda model, rows, n, b, progress=None: [f" {FORCED[tuple(r)]}, cat" for r in rows]  # noqa: E731
    monkeypatch.setattr(pairs_mod, "greedy_responses", echo)
    again = pairs_mod.build_pairs(tiny, "animals", prop, **kw).summary.forced_vs_greedy
    assert again["answer_both"] == 1.0 and again["value_both"] == 1.0 and again["n_disagree"] == 0


# ------------------------------------------------------------ 6. state-keyed memos


def _answer(model, ids):
    return greedy_responses(model, [ids], 4, 1)[0]


def test_greedy_cache_follows_hooks_and_weights(tiny, monkeypatch):
    behavior = elicitation
    calls = []
    real = behavior.generate
    monkeypatch.setattr(behavior, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids = tiny.tokenizer("the cat sat on", add_special_tokens=False)["input_ids"]
    before = _answer(tiny, ids)
    assert _answer(tiny, ids) == before and len(calls) == 1  # memoised
    head = tiny.hf_model.lm_head
    target = int(tiny.tokenizer(" dog", add_special_tokens=False)["input_ids"][0])

    def force(module, inputs, output):
        output = output.clone()
        output[..., target] += 1e4
        return output

    handle = head.register_forward_hook(force)
    try:
        hooked = _answer(tiny, ids)
    finally:
        handle.remove()
    assert len(calls) == 2 and hooked != before and tiny.tokenizer.decode([target]) in hooked
    assert _answer(tiny, ids) == before and len(calls) == 2  # hook gone: the first memo again
    # A TransformerLens hook point counts too (the token sees it even if it does not fire).
    hp = tiny.bridge.hook_dict["blocks.0.hook_resid_post"]
    token = tiny.state_token()
    hp.add_hook(lambda act, hook: act)
    try:
        assert tiny.state_token() != token
    finally:
        hp.remove_hooks()
    assert tiny.state_token() == token
    # An in-place weight edit is a new state; undoing it in place is yet another one.
    w = tiny.hf_model.model.norm.weight
    saved = w.detach().clone()
    with torch.no_grad():
        w.mul_(-1.0)
    try:
        _answer(tiny, ids)
        assert len(calls) == 3
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert _answer(tiny, ids) == before and len(calls) == 4


def test_sample_cache_is_per_state(tiny):
    tiny.sample_cache["k"] = [["x"]]
    handle = tiny.hf_model.lm_head.register_forward_pre_hook(lambda m, i: None)
    try:
        assert "k" not in tiny.sample_cache
    finally:
        handle.remove()
    assert tiny.sample_cache["k"] == [["x"]]
    del tiny.sample_cache["k"]


def test_trace_memo_is_keyed_on_weights(tiny):
    stack = DecoderStack(tiny)
    ids = tiny.tokenizer("a b c d", add_special_tokens=False)["input_ids"]
    first = trace(stack, ids)
    assert trace(stack, ids) is first
    w = tiny.hf_model.model.layers[0].mlp.down_proj.weight
    saved = w.detach().clone()
    with torch.no_grad():
        w.mul_(3.0)
    try:
        edited = trace(stack, ids)
        assert edited is not first
        assert not torch.allclose(edited.resid[-1], first.resid[-1])
    finally:
        with torch.no_grad():
            w.copy_(saved)
    again = trace(stack, ids)
    assert again is not first and again is not edited  # every in-place edit is a new state
    torch.testing.assert_close(again.resid, first.resid)
