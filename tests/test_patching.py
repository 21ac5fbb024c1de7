"""Batched activation patching: exactness against loops and TransformerLens, controls, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from innerprobe import patching as P
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.stats import normalised_recovery
from innerprobe.models.loaded import original_module
from innerprobe.patching import traces as trace_mod

os.environ.setdefault("TQDM_DISABLE", "1")

A_TEXT = "the cat sat on the mat and the dog ran"
B_TEXT = "the red sat on the mat and the dog ran"  # " cat" and " red" are both 3 tiny tokens
C_TEXT = "one pig sat on the mat and a dog ran far"
D_TEXT = "one two sat on the mat and a dog ran far"
METRIC = (5, 9)


@pytest.fixture(scope="module")
def stack(tiny):
    return P.DecoderStack(tiny)


@pytest.fixture(scope="module")
def pair(tiny):
    a, b = tiny.tokenizer(A_TEXT)["input_ids"], tiny.tokenizer(B_TEXT)["input_ids"]
    assert len(a) == len(b)
    return a, b


@pytest.fixture(scope="module")
def pair2(tiny):
    c, d = tiny.tokenizer(C_TEXT)["input_ids"], tiny.tokenizer(D_TEXT)["input_ids"]
    assert len(c) == len(d)
    return c, d


def _diff_positions(a, b):
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def test_trace_matches_hf_forward(tiny, stack, pair):
    with torch.inference_mode():
        tr = P.trace(stack, pair[0])
        out = tiny.hf_model(input_ids=torch.tensor([pair[0]]), output_hidden_states=True)
    assert torch.allclose(tr.resid[1], out.hidden_states[1][0], atol=1e-5)
    assert torch.allclose(stack.logits(tr.resid[-1][-1:]), out.logits[0, -1:], atol=1e-4)


def test_trace_cache_reuses_and_evicts(tiny, pair, pair2):
    st = P.DecoderStack(tiny)
    a = P.trace(st, pair[0])
    assert P.trace(st, pair[0]) is a  # memoised
    assert P.trace(st, pair[0], grad=True) is not a  # gradient traces never are
    st.cache_bytes = trace_mod._run_trace(st, pair2[0], False).nbytes  # room for one trace: the older one goes
    P.trace(st, pair2[0])
    assert st.cached_trace(pair[0]) is None and st.cached_trace(pair2[0]) is not None
    st.cache_bytes = 0
    assert P.trace(st, pair[0]) is not P.trace(st, pair[0])
    cold = P.patch_grid(tiny, [pair, pair2], [METRIC, METRIC], stack=st, n_boot=50)
    st.cache_bytes = 1 << 30
    P.patch_grid(tiny, [pair, pair2], [METRIC, METRIC], stack=st, n_boot=50)
    warm = P.patch_grid(tiny, [pair, pair2], [METRIC, METRIC], stack=st, n_boot=50)
    assert np.array_equal(cold.patched, warm.patched)


def test_clean_into_clean_changes_nothing(tiny, pair):
    res = P.patch_grid(tiny, [(pair[0], pair[0])], [METRIC], n_boot=50)
    assert np.allclose(res.patched, res.target_metric[0], atol=1e-5)
    assert res.n_excluded == 1  # zero gap: recovery is undefined, not a fake 0 or 1
    assert np.isnan(res.recovery).all()


def test_first_layer_all_positions_is_full_recovery(tiny, stack, pair):
    clean, corrupt = pair
    src, tgt = P.trace(stack, clean), P.trace(stack, corrupt)
    row = P.PatchRow(0, 0, tuple(range(len(clean))), src.resid[0])
    val = P.run_rows(stack, [tgt], torch.tensor([METRIC]), [row]).numpy()
    rec = normalised_recovery(val, P.baseline_metric(stack, tgt, METRIC), P.baseline_metric(stack, src, METRIC))
    assert rec.values[0] == pytest.approx(1.0, abs=1e-5)
    # The grid agrees: at layer 0 only the differing tokens carry the difference.
    res = P.patch_grid(tiny, [pair], [METRIC], layers=[0], n_boot=50)
    diff = _diff_positions(clean, corrupt)
    same = [p for p in range(len(clean)) if p not in diff]
    assert np.allclose(res.recovery[0, 0, same], 0.0, atol=1e-5)


def test_batched_equals_looped(tiny, pair, pair2):
    pairs, metrics = [pair, pair2], [METRIC, (7, 11)]
    rel = [-9, -1]
    res = P.patch_grid(tiny, pairs, metrics, positions=rel, max_rows=3, n_boot=50)
    ref = P.looped_patch_grid(tiny, pairs, metrics, layers=[0, 1], positions=rel)
    assert np.abs(res.patched - ref).max() <= 1e-4
    assert res.patched.shape == (2, 2, 2)


def test_plan_suffixes_groups_by_cost():
    # Far-apart first positions with much work each: each starts at its own position.
    assert P.plan_suffixes([10, 10, 90, 90], [30, 30, 30, 30], 100, overhead=1.0) == [10, 10, 90, 90]
    # Huge per-batch overhead: one shared start at the smallest position.
    assert P.plan_suffixes([10, 50, 90], [30, 30, 30], 100, overhead=1e9) == [10, 10, 10]
    # Adjacent positions merge, a distant one stays apart.
    assert P.plan_suffixes([88, 89, 90, 10], [30] * 4, 100, overhead=64.0) == [88, 88, 88, 10]


def test_suffix_strategies_agree(tiny, pair):
    with pytest.raises(UnknownNameError, match="shared"):
        P.patch_grid(tiny, [pair], [METRIC], suffix="lazy")
    c = P.patch_grid(tiny, [pair], [METRIC], suffix="auto", n_boot=50)
    a = P.patch_grid(tiny, [pair], [METRIC], suffix="per_position", n_boot=50)
    b = P.patch_grid(tiny, [pair], [METRIC], suffix="shared", max_rows=5, n_boot=50)
    # float32 sums depend on batch shape: ~2e-5 apart on logit differences of ~4 (seen on a fresh build)
    assert np.abs(a.patched - c.patched).max() <= 1e-4
    assert np.abs(a.patched - b.patched).max() <= 1e-4


def test_batched_equals_transformerlens(tiny, pair):
    import transformer_lens.patching as tlp

    clean, corrupt = (torch.tensor([x]) for x in pair)
    cells = pd.DataFrame({"layer": [0, 0, 1, 1, 1], "pos": [1, 2, 2, 5, len(pair[0]) - 1]})
    with torch.inference_mode():
        _, cache = tiny.bridge.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_resid_pre"))
        tl = tlp.get_act_patch_resid_pre(
            tiny.bridge, corrupt, cache, lambda lg: lg[0, -1, METRIC[0]] - lg[0, -1, METRIC[1]],
            index_axis_names=None, index_df=cells,
        )
    res = P.patch_grid(tiny, [pair], [METRIC], n_boot=50)
    ours = res.patched[0][cells["layer"].to_numpy(), cells["pos"].to_numpy()]
    assert np.abs(ours - tl.detach().numpy()).max() <= 1e-4


def test_sites_are_consistent(tiny, pair):
    pre = P.patch_grid(tiny, [pair], [METRIC], site="resid_pre", n_boot=50)
    post = P.patch_grid(tiny, [pair], [METRIC], site="resid_post", n_boot=50)
    assert np.allclose(post.patched[0, 0], pre.patched[0, 1], atol=1e-5)  # post(0) == pre(1)
    # resid_post of the last layer at the last position is the whole source readout
    assert post.patched[0, -1, -1] == pytest.approx(post.source_metric[0], abs=1e-5)
    for site in ("attn_out", "mlp_out"):
        r = P.patch_grid(tiny, [pair], [METRIC], site=site, n_boot=50)
        first_diff = min(_diff_positions(*pair))
        assert np.allclose(r.patched[0, :, :first_diff], r.target_metric[0], atol=1e-5)


def test_control_pair_shows_no_effect():
    """A token pair the model cannot tell apart (identical embedding rows) must patch to nothing."""
    from innerprobe.models.load import load_model

    model = load_model("tiny-random", device="cpu")
    tok = model.tokenizer
    a = tok(A_TEXT)["input_ids"]
    p = _diff_positions(a, tok(B_TEXT)["input_ids"])[0]
    twin = 17 if a[p] != 17 else 18
    emb = original_module(model.hf_model.model.embed_tokens).weight
    with torch.no_grad():
        emb[twin] = emb[a[p]]
    b = list(a)
    b[p] = twin
    metric = (5, 9)  # neither is the twin, so the tied unembedding change does not enter
    res = P.patch_grid(model, [(a, b)], [metric], n_boot=50)
    assert abs(res.source_metric[0] - res.target_metric[0]) < 1e-6
    assert np.abs(res.patched - res.target_metric[0]).max() < 1e-5
    atp = P.attribution_patch(model, [(a, b)], [metric])
    assert np.abs(atp.estimate).max() < 1e-6


def test_attribution_matches_finite_difference(tiny, stack, pair):
    clean, corrupt = pair
    atp = P.attribution_patch(tiny, [pair], [METRIC])
    src, tgt = P.trace(stack, clean), P.trace(stack, corrupt)
    eps = 1e-3
    rows = [
        P.PatchRow(0, layer, (p,), (tgt.resid[layer][p] + eps * (src.resid[layer][p] - tgt.resid[layer][p]))[None])
        for layer in range(2)
        for p in range(len(clean))
    ]
    vals = P.run_rows(stack, [tgt], torch.tensor([METRIC]), rows).numpy().reshape(2, -1)
    fd = (vals - P.baseline_metric(stack, tgt, METRIC)) / eps
    assert np.corrcoef(fd.ravel(), atp.estimate[0].ravel())[0, 1] > 0.999
    exact = P.patch_grid(tiny, [pair], [METRIC], n_boot=50)
    assert -1 <= atp.correlation(exact) <= 1


def test_transplant_of_own_residual_is_zero(tiny, pair):
    h = pair[0]
    pos = [3, 4, 5]
    item = P.TransplantItem(h, METRIC, {"donor": (h, pos, pos), "other_task": (pair[1], pos, pos)})
    res = P.transplant(tiny, [item, item], n_boot=50)
    assert np.allclose(res.shift["donor"], 0.0, atol=1e-5)
    assert np.abs(res.shift["random"]).max() > 1e-4  # a norm-matched random vector does move it
    df = res.table
    assert set(df["condition"]) == {"donor", "other_task", "random"}


def test_answer_state_transplant_gets_its_own_random_control(tiny, pair, tmp_path):
    h, other = pair
    last = [len(h) - 1]
    item = P.TransplantItem(h, METRIC, {"donor@last": (h, last, last), "donor": (h, [3], [3]),
                                        "other_task@last": (other, [len(other) - 1], last)})
    res = P.transplant(tiny, [item], n_boot=50)
    assert set(res.shift) == {"donor@last", "donor", "other_task@last", "random@last", "random"}
    assert np.allclose(res.shift["donor@last"], 0.0, atol=1e-5)  # its own last-token state: no shift
    assert np.abs(res.shift["random@last"]).max() > 1e-4
    assert np.abs(res.shift["other_task@last"]).max() > 1e-4  # another prompt's state at h_last moves it
    back = P.TransplantResult.load(res.save(tmp_path / "tr"))
    assert np.array_equal(back.shift["random@last"], res.shift["random@last"], equal_nan=True)


def test_result_tables(tiny, pair, pair2, tmp_path):
    res = P.patch_grid(tiny, [pair, pair2], [METRIC, (7, 11)], positions=[-3, -2, -1], n_boot=50)
    df = res.table
    assert len(df) == 2 * 2 * 3
    assert res.per_item.shape == (2, 2, 3)
    assert res.position_labels[0].startswith("-3:")
    s = res.summary
    assert s.n_pairs == 2 and s.best_cell.layer in res.layers and "naive max" in s.best_cell.selection
    assert P.heatmap(res).data[0].z.shape == (2, 3) and res.figure().data[0].z.shape == (2, 3)
    back = P.PatchResult.load(res.save(tmp_path / "grid"))
    assert np.array_equal(back.patched, res.patched) and back.positions == res.positions
    pd.testing.assert_frame_equal(back.table, res.table)
    json.dumps(s.to_dict(), default=str)


def test_bad_inputs(tiny, pair):
    a, b = pair
    with pytest.raises(DataError, match="differ in length"):
        P.patch_grid(tiny, [(a, b + [5])], [METRIC])
    with pytest.raises(DataError, match="outside a prompt"):
        P.patch_grid(tiny, [pair], [METRIC], positions=[len(a)])
    with pytest.raises(DataError, match="empty pair set"):
        P.patch_grid(tiny, [], [])
    with pytest.raises(DataError, match="layers"):
        P.patch_grid(tiny, [pair], [METRIC], layers=[5])
    from innerprobe.core.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        P.patch_grid(tiny, [pair], [METRIC], site="resid_middle")


def test_pairs_accounting_and_empty(tiny):
    from innerprobe.patching.search import build_pairs

    with pytest.raises(DataError, match="empty pair set|no pair changes|no candidate"):
        build_pairs(tiny, "animals", n_items=6, min_gap=1e9, per_item=2)
    try:
        ps = build_pairs(tiny, "animals", n_items=12, min_gap=-1e9, per_item=3, n_pairs=100, n_controls=100)
    except DataError:
        pytest.skip("the random tiny model changed no answer on these items")
    for p in ps.pairs:
        assert p.value_a != p.value_b and p.answer_a != p.answer_b
        assert len(p.o_a) == len(p.o_b) and len(p.h_a) == len(p.h_b)
    for c in ps.controls:
        assert c.value_a == c.value_b and c.answer_a != c.answer_b
    # The O gaps are read from the forced-choice forwards: they equal a fresh logit difference.
    from innerprobe.patching.filters import logit_diffs

    both = ps.pairs + ps.controls
    fresh_a = logit_diffs(tiny, [p.o_a for p in both], [p.o_tokens for p in both], 4)
    fresh_b = logit_diffs(tiny, [p.o_b for p in both], [p.o_tokens for p in both], 4)
    np.testing.assert_allclose([p.o_ld[0] for p in both], fresh_a, atol=1e-4)
    np.testing.assert_allclose([p.o_ld[1] for p in both], fresh_b, atol=1e-4)
    assert ps.n_candidates == sum(v for k, v in ps.excluded.items() if k not in ("unequal_length", "not_sequence")) + len(ps.pairs) + len(ps.controls)


def test_pairs_search_stops_when_budgets_are_full(tiny, monkeypatch):
    """Chunked search: small budgets use fewer items than drawn; every count stays consistent."""
    import innerprobe.patching.search as pairs_mod

    monkeypatch.setattr(pairs_mod, "_forced_answers", _copy_first_word)
    kw = dict(n_items=16, min_gap=-1e9, per_item=1, word_index="any")
    small = pairs_mod.build_pairs(tiny, "animals", n_pairs=1, n_controls=0, chunk_size=4, **kw)
    assert len(small.pairs) == 1 and small.settings["n_items_used"] < 16
    full = pairs_mod.build_pairs(tiny, "animals", n_pairs=100, n_controls=100, chunk_size=None, **kw)
    assert full.settings["n_items_used"] == 16 and len(full.pairs) > 1
    chunked = pairs_mod.build_pairs(tiny, "animals", n_pairs=100, n_controls=100, chunk_size=5, **kw)
    assert chunked.settings["n_items_used"] == 16 and len(chunked.pairs) > 1
    for ps in (small, full, chunked):
        used = sum(v for k, v in ps.excluded.items() if k not in ("unequal_length", "not_sequence"))
        assert ps.n_candidates == used + len(ps.pairs) + len(ps.controls)
    with pytest.raises(DataError, match="chunk_size"):
        pairs_mod.build_pairs(tiny, "animals", n_pairs=1, chunk_size=0, **kw)


@pytest.mark.integration
def test_smol_batched_equals_looped(smol):
    from innerprobe.protocol.prompts import object_prompt

    tok = smol.tokenizer
    q = "What is the next 5 animals in the following text? Respond only with the next 5 animals and nothing else, including punctuation.\n{} \n"
    a = object_prompt(tok, q.format("cat dog fox bear lion")).input_ids
    b = object_prompt(tok, q.format("cat dog fox bear wolf")).input_ids
    assert len(a) == len(b)
    first = lambda w: tok(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    metric = (first(" lion"), first(" wolf"))  # SmolLM2 prepends BOS without add_special_tokens=False
    layers, rel = [0, 14, 29], [-12, -1]
    res = P.patch_grid(smol, [(a, b)], [metric], layers=layers, positions=rel, n_boot=100)
    ref = P.looped_patch_grid(smol, [(a, b)], [metric], layers=layers, positions=rel)
    assert np.abs(res.patched - ref).max() <= 1e-4
    assert abs(res.source_metric[0] - res.target_metric[0]) > 0.5  # a real metric, not 0 - 0
    atp = P.attribution_patch(smol, [(a, b)], [metric], layers=layers, positions=rel)
    assert atp.correlation(res) > 0.9


def test_identical_metric_tokens_are_rejected(tiny, pair):
    """Regression: SmolLM2 prepends BOS, so tok(' w')['input_ids'][0] was BOS for every word; the
    metric logit[BOS] - logit[BOS] is identically 0 and the AtP correlation came out NaN."""
    with pytest.raises(DataError, match="two different token ids"):
        P.patch_grid(tiny, [pair], [(5, 5)])
    with pytest.raises(DataError, match="two different token ids"):
        P.attribution_patch(tiny, [pair], [(5, 5)])


def test_atp_agreement_skips_nonfinite_and_flags_constant(tiny, pair, pair2):
    pairs, metrics = [pair, pair2], [METRIC, (7, 11)]
    exact = P.patch_grid(tiny, pairs, metrics, n_boot=50)
    atp = P.attribution_patch(tiny, pairs, metrics)
    full = atp.agreement(exact, n_boot=100)
    assert np.isfinite(full.value) and full.n == atp.estimate.size
    assert full.ci_low <= full.value <= full.ci_high
    exact.patched[0, 0, 0] = np.nan  # a non-finite cell is dropped, not propagated
    part = atp.agreement(exact, n_boot=0)
    assert np.isfinite(part.value) and part.n == atp.estimate.size - 1
    atp.estimate[:] = 0.0  # a constant vector: r undefined, said so
    const = atp.agreement(exact, n_boot=0)
    assert np.isnan(const.value) and "constant" in const.method


def test_atp_agreement_on_one_pair_resamples_cells(tiny, pair):
    exact = P.patch_grid(tiny, [pair], [METRIC], n_boot=50)
    one = P.attribution_patch(tiny, [pair], [METRIC]).agreement(exact, n_boot=200)
    assert np.isfinite(one.ci_low) and one.ci_low <= one.value <= one.ci_high
    assert "over cells" in one.method and "optimistic" in one.method


def _copy_first_word(model, prompts, vocabulary, spec, batch_size):
    """A stand-in for SmolLM2's habit: answer by copying the first word of the sequence."""
    from innerprobe.protocol.prompts import label_tokens

    ids = label_tokens(model.tokenizer, list(vocabulary), prompts[0].text, spec.object_prefill).first_ids
    out = []
    for p in prompts:
        first = p.user.rstrip().split("\n")[-1].split()[0]
        out.append(vocabulary.index(first))
    scores = [{t: (0.0 if t == ids[i] else -5.0) for t in ids} for i in out]
    return [vocabulary[i] for i in out], [ids[i] for i in out], scores


def test_any_word_index_finds_pairs_where_last_word_fails(tiny, monkeypatch):
    """Regression: replacing only the last word yielded ~0 pairs on SmolLM2, which copies the
    first word; ``word_index="any"`` searches positions (first word first) and finds them."""
    import innerprobe.patching.search as pairs_mod

    monkeypatch.setattr(pairs_mod, "_forced_answers", _copy_first_word)
    kw = dict(n_items=8, min_gap=-1e9, per_item=1, n_pairs=100, n_controls=100)
    with pytest.raises(DataError, match="no pair changes") as err:
        pairs_mod.build_pairs(tiny, "animals", word_index=-1, **kw)
    assert "'same_answer': 8" in str(err.value)
    ps = pairs_mod.build_pairs(tiny, "animals", word_index="any", **kw)
    assert len(ps.pairs) + len(ps.controls) == 8  # every item flips at word 0
    assert all(p.word_index == 0 for p in ps.pairs + ps.controls)
    assert ps.excluded["same_answer"] == 0
    again = pairs_mod.build_pairs(tiny, "animals", word_index="any", **kw)
    assert ps.table.equals(again.table)  # same seed, same pairs
    with pytest.raises(DataError, match="word_index"):
        pairs_mod.build_pairs(tiny, "animals", word_index="first", **kw)


def test_word_order_is_a_seeded_permutation_starting_at_zero():
    from innerprobe.patching.candidates import word_order

    a = word_order(9, np.random.default_rng(3))
    assert a[0] == 0 and sorted(a) == list(range(9))
    assert a == word_order(9, np.random.default_rng(3))


@pytest.fixture(scope="module")
def word_pairs(tiny):
    """Pairs whose replaced word is the first sequence word (the tiny model stands in for SmolLM2)."""
    import innerprobe.patching.search as pairs_mod

    mp = pytest.MonkeyPatch()
    mp.setattr(pairs_mod, "_forced_answers", _copy_first_word)
    try:
        ps = pairs_mod.build_pairs(tiny, "animals", n_items=8, min_gap=-1e9, per_item=1, n_pairs=100, n_controls=100)
    finally:
        mp.undo()
    return ps


def test_pairs_record_the_replaced_word_span(tiny, word_pairs):
    tok = tiny.tokenizer
    for p in word_pairs.pairs + word_pairs.controls:
        for a, b, span in ((p.o_a, p.o_b, p.o_span), (p.h_a, p.h_b, p.h_span)):
            if span == (0, 0):
                continue
            diff = _diff_positions(a.input_ids, b.input_ids)
            assert diff and span[0] <= min(diff) and max(diff) < span[1]
            assert p.word_a in tok.decode(a.input_ids[span[0] : span[1]])
            assert p.word_b in tok.decode(b.input_ids[span[0] : span[1]])
    df = word_pairs.table
    assert {"o_span_start", "o_span_end", "h_span_start", "h_span_end"} <= set(df.columns)


def _o_cells(tiny, pairs, k=3, last=2):
    from innerprobe.patching.cells import grid_cells, p_end

    return [grid_cells(p.o_span, p_end(tiny.tokenizer, p.o_a, p.o_a.user), len(p.o_a), k, last) for p in pairs]


def test_patch_grid_covers_the_replaced_word(tiny, word_pairs):
    """Regression: the CLI grid covered only the last tokens of P and the end, never the replaced
    (first) word, so no cell could carry the difference at early layers. At layer 0 resid_pre is
    the embedding, equal in both runs except at the word: patching the word cell recovers exactly
    1, every other cell exactly 0."""
    from innerprobe.patching.cells import cell_names

    src = word_pairs.pairs + word_pairs.controls
    cells = _o_cells(tiny, src)
    names = cell_names(3, 2)
    for p, pc in zip(src, cells):
        assert pc[0] == tuple(range(*p.o_span)) and len(pc) == len(names)
        assert set(_diff_positions(p.o_a.input_ids, p.o_b.input_ids)) <= set(pc[0])
        assert all(set(c).isdisjoint(pc[0]) for c in pc[1:])  # first word: far from P's end
    pairs = [(p.o_a.input_ids, p.o_b.input_ids) for p in src]
    res = P.patch_grid(tiny, pairs, [p.o_tokens for p in src], layers=[0], cells=cells, cell_labels=names, n_boot=50)
    assert res.positions == names and res.position_labels[0].startswith("word:")
    ok = np.abs(res.source_metric - res.target_metric) > 1e-6
    assert ok.any()
    assert np.allclose(res.recovery[ok, 0, 0], 1.0, atol=1e-4)
    assert np.allclose(res.recovery[ok, 0, 1:], 0.0, atol=1e-4)


def test_cells_batched_equals_looped(tiny, word_pairs):
    src = (word_pairs.pairs + word_pairs.controls)[:2]
    cells = _o_cells(tiny, src, k=2, last=1)
    pairs, metrics = [(p.o_a.input_ids, p.o_b.input_ids) for p in src], [p.o_tokens for p in src]
    res = P.patch_grid(tiny, pairs, metrics, cells=cells, max_rows=4, n_boot=50)
    ref = P.looped_patch_grid(tiny, pairs, metrics, layers=[0, 1], cells=cells)
    assert np.abs(res.patched - ref).max() <= 1e-4
    atp = P.attribution_patch(tiny, pairs, metrics, cells=cells)
    assert atp.estimate.shape == res.patched.shape
    with pytest.raises(DataError, match="same, non-zero number of cells"):
        P.patch_grid(tiny, pairs, metrics, cells=[cells[0], cells[1][:-1]])


def test_transplant_writes_the_replaced_word(tiny, word_pairs):
    from innerprobe.patching.cells import p_end, transplant_positions

    p = next(q for q in word_pairs.pairs + word_pairs.controls if q.h_span != (0, 0))
    o_end = p_end(tiny.tokenizer, p.o_b, p.o_b.user)
    read, write, word = transplant_positions(
        p.o_b.input_ids, p.o_span, o_end, p.h_a.input_ids, p.h_span, p.h_a.positions["quote_end"], 3
    )
    assert len(read) == len(write)
    if word:
        assert set(range(*p.h_span)) <= set(write) and set(range(*p.o_span)) <= set(read)
    assert any(w >= p.h_span[1] for w in write)  # and the last tokens of P
