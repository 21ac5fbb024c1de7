"""The intervention API: edits, position selectors under padding and cached generation, bad input."""

from __future__ import annotations

import pytest
import torch

from innerprobe.behavior.inference import left_pad
from innerprobe.core.errors import DataError
from innerprobe.interventions.edits import AddVector, ProjectOut, Replace
from innerprobe.interventions.hooks import Intervention, intervene
from innerprobe.interventions.positions import BeforePrefill, From, Range, Single, Span
from innerprobe.protocol.prompts import PromptSpec, hypothetical_prompt
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items


@pytest.fixture(scope="module")
def items():
    return load_items("animals", n=4, split="test")


def _ids(tiny, text):
    return tiny.tokenizer(text, add_special_tokens=False)["input_ids"]


def _logits(tiny, rows):
    ids, mask, pos = left_pad(rows, tiny.tokenizer.pad_token_id, tiny.device)
    return tiny.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits, mask


def test_zero_vector_and_orthogonal_noop_edits_are_bit_exact(tiny):
    rows = [_ids(tiny, "the cat sat on the mat"), _ids(tiny, "red green")]
    base, _ = _logits(tiny, rows)
    v = torch.zeros(tiny.d_model)
    with intervene(tiny, Intervention(AddVector(v, 5.0), layers=(0, 1), positions="all")) as log:
        zero, _ = _logits(tiny, rows)
    assert torch.equal(base, zero)
    assert log.touched(0, 1, rows[1]) == list(range(len(rows[1])))  # every real token, no padding


def test_steering_touches_only_the_selected_real_positions_in_a_padded_batch(tiny):
    rows = [_ids(tiny, "the cat sat on the mat"), _ids(tiny, "red green")]
    base, mask = _logits(tiny, rows)
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    with intervene(tiny, Intervention(AddVector(v, 4.0), layers=(1,), positions="last")) as log:
        steered, _ = _logits(tiny, rows)
    changed = ((steered - base).abs().amax(-1) > 0)[mask.bool()]  # real positions only: a pad's
    # output is meaningless (SDPA lets fully masked rows attend everywhere)
    n0, n1 = len(rows[0]), len(rows[1])
    assert changed.tolist() == [False] * (n0 - 1) + [True] + [False] * (n1 - 1) + [True]
    assert log.touched(0, 1, rows[0]) == [len(rows[0]) - 1]
    assert log.touched(0, 1, rows[1]) == [len(rows[1]) - 1]


def test_steered_positions_are_right_under_cached_generation(tiny):
    ids = torch.tensor([_ids(tiny, "the cat sat on the mat")])
    n = ids.shape[1]
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1))
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
              pad_token_id=tiny.tokenizer.pad_token_id)
    for selector, expected in [
        ("generation", [n, n + 1, n + 2]),          # the 4th token is read off position n + 2
        ("prompt", list(range(n))),
        (From(n - 1), [n - 1, n, n + 1, n + 2]),
        (Single(n + 1), [n + 1]),
        (Range(-2, None or n), [n - 2, n - 1]),
    ]:
        with intervene(tiny, Intervention(AddVector(v, 2.0), layers=(0,), positions=selector)) as log:
            tiny.hf_model.generate(input_ids=ids, **kw)
        assert log.touched(0, 0, ids[0].tolist()) == expected, selector


def test_generation_only_steering_changes_nothing_before_the_first_new_token(tiny):
    ids = torch.tensor([_ids(tiny, "the cat sat on the mat")])
    base = tiny.hf_model(input_ids=ids).logits
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(2))
    with intervene(tiny, Intervention(AddVector(v, 8.0), layers=(0,), positions="generation")):
        same = tiny.hf_model(input_ids=ids).logits
    assert torch.equal(base, same)


def test_named_spans_follow_each_rows_prompt(tiny, items):
    prop = get_property("second_character")
    prompts = [hypothetical_prompt(tiny.tokenizer, row["question"], prop, PromptSpec()) for row in items.select(range(2))]
    rows = [p.input_ids for p in prompts]
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(3))
    with intervene(tiny, Intervention(AddVector(v, 1.0), layers=(1,), positions="quote"), prompts=prompts) as log:
        _logits(tiny, rows)
    for p in prompts:
        assert log.touched(0, 1, p.input_ids) == list(range(p.positions["quote_start"], p.positions["quote_end"]))
    with intervene(tiny, Intervention(AddVector(v, 1.0), layers=(1,), positions="after_quote"), prompts=prompts) as log:
        _logits(tiny, rows)
    for p in prompts:  # everything after the quoted P, through the last prompt token; none of P
        assert log.touched(0, 1, p.input_ids) == list(range(p.positions["quote_end"], len(p.input_ids)))
    with intervene(tiny, Intervention(AddVector(v, 1.0), layers=(1,), positions=BeforePrefill()), prompts=prompts) as log:
        _logits(tiny, rows)
    assert log.touched(0, 1, rows[0]) == list(range(prompts[0].positions["prefill_start"]))


def test_a_span_without_prompts_names_what_it_needs(tiny):
    v = torch.ones(tiny.d_model)
    with pytest.raises(DataError, match="pass the Prompt objects"):
        with intervene(tiny, Intervention(AddVector(v), layers=(0,), positions=Span("quote"))):
            _logits(tiny, [_ids(tiny, "red green")])


def test_project_out_removes_the_component_and_mean_mode_keeps_the_mean():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 16, generator=g)
    h = torch.randn(5, 16, generator=g)
    zero = ProjectOut(basis).apply(h)
    q, _ = torch.linalg.qr(basis.T)
    assert torch.allclose(zero @ q, torch.zeros(5, 3), atol=1e-5)
    mu = torch.randn(16, generator=g)
    mean = ProjectOut(basis, mean=mu).apply(h)
    assert torch.allclose(mean @ q, (mu @ q).expand(5, 3), atol=1e-5)
    assert torch.allclose(Replace(mu).apply(h), mu.expand(5, 16))


def test_relative_scale_pushes_by_a_fraction_of_the_residual_norm():
    h = torch.tensor([[3.0, 4.0, 0.0]])
    out = AddVector(torch.tensor([0.0, 0.0, 2.0]), 0.5, relative=True).apply(h)
    assert torch.allclose(out, torch.tensor([[3.0, 4.0, 2.5]]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: AddVector(torch.full((d,), float("nan"))), "non-finite"),
        (lambda d: AddVector(torch.ones(d, 2)), "1-D"),
        (lambda d: AddVector(torch.ones(d), float("inf")), "scale inf is not finite"),
        (lambda d: AddVector(torch.zeros(d), relative=True), "zero vector"),
        (lambda d: ProjectOut(torch.zeros(0, d)), "rank 0"),
        (lambda d: ProjectOut(torch.randn(d + 1, d)), f"rank {65}"),
        (lambda d: ProjectOut(torch.ones(2, d)), "rank 1"),
        (lambda d: Intervention(AddVector(torch.ones(d)), layers=(0,), site="resid_side"), "valid sites"),
        (lambda d: Intervention(AddVector(torch.ones(d)), layers=(0,), positions="middle"), "use a name"),
    ],
)
def test_bad_edits_name_the_problem(make, match):
    with pytest.raises(DataError, match=match):
        make(64)


def test_bad_layer_width_and_overflow_are_refused(tiny):
    d = tiny.d_model
    with pytest.raises(DataError, match="outside the model's layers 0..1"):
        with intervene(tiny, Intervention(AddVector(torch.ones(d)), layers=(7,))):
            pass
    with pytest.raises(DataError, match="width 10"):
        with intervene(tiny, Intervention(AddVector(torch.ones(10)), layers=(0,))):
            pass
    with pytest.raises(DataError, match="non-finite activations at layer 0"):
        with intervene(tiny, Intervention(AddVector(torch.full((d,), 1e30), 1e10), layers=(0,))):
            _logits(tiny, [_ids(tiny, "red green")])
    # hooks are gone after the error
    assert not any(m._forward_hooks for m in tiny.bridge.hook_dict.values())
