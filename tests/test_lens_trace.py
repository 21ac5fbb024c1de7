"""The lens trace: own answer vs matched control vs property label through H's layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from innerprobe.behavior.prediction import build_hypotheticals
from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.interventions.lens import logit_lens, residual_stream
from innerprobe.interventions.lens_trace import (
    LensTraceConfig,
    LensTraceResult,
    emergence,
    frequency_matched,
    lens_trace,
)
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items


def test_emergence_ignores_a_lucky_early_layer():
    ranks = np.array([3, 50, 50, 4, 2, 1, 0])[:, None]  # layer 0 is a fluke; settles from layer 3
    assert emergence(ranks, 10, persist=1)[0] == 0
    assert emergence(ranks, 10, persist=3)[0] == 3
    assert np.isnan(emergence(np.full((5, 1), 99), 10, persist=2)[0])
    assert emergence(np.array([[50], [50], [50], [50], [1]]), 10, persist=3)[0] == 4  # the end counts


def test_frequency_matched_control_is_closest_in_prior(tiny):
    tok = tiny.tokenizer
    first = lambda w: tok(" " + w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    prior = torch.zeros(len(tok))
    prior[first("cat")], prior[first("dog")], prior[first("mat")] = -5.0, -1.0, -4.5
    word, tid = frequency_matched(tok, prior, "cat", ["cat", "dog", "mat"])
    assert (word, tid) == ("mat", first("mat"))
    assert frequency_matched(tok, prior, "cat", ["cat"]) is None


def _planted(n=12, layers=8):
    ranks = np.full((n, layers, 1, 4), 500)
    ranks[:, 2:, 0, 0] = 0  # the answer is top-1 from layer 2 on
    ranks[:, 5:, 0, 2] = 1  # the property from layer 5 on; the control never
    ranks[:, 6:, 0, 3] = 0  # the output from layer 6
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)]})
    cfg = {"positions": ["last"], "top_k": 10, "persist": 2, "n_boot": 200, "seed": 0}
    return LensTraceResult(ranks, -ranks.astype(float), items, ["last"], "logit", cfg)


def test_planted_answer_before_property_gives_the_gap(tmp_path):
    res = _planted()
    p = res.summary.positions["last"]
    assert p.gap_property_minus_answer.value == 3.0 and p.gap_property_minus_answer.ci_low == 3.0
    assert p.answer_emerged.value == 1.0 and p.control_emerged.value == 0.0 and p.gap_control_minus_answer is None
    assert p.gap_output_minus_answer.value == 4.0
    assert len(res.table) == 12 * 8 * 4
    back = LensTraceResult.load(res.save(tmp_path / "lt"))
    assert np.array_equal(back.ranks, res.ranks) and back.summary == res.summary
    assert res.figure().data


def test_config_names_bad_values():
    with pytest.raises(UnknownNameError, match="quote_end"):
        LensTraceConfig(positions=("middle",))
    with pytest.raises(DataError, match="top_k"):
        LensTraceConfig(top_k=0)


def test_cli_says_why_nothing_could_be_traced(tiny, tmp_path):
    r = CliRunner().invoke(app, ["lens", "--model", "tiny-random", "--n", "4", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no item has a readable answer" in r.output
    r = CliRunner().invoke(app, ["lens", "--model", "tiny-random", "--positions", "middle", "--out", str(tmp_path / "p")])
    assert r.exit_code != 0 and "quote_end" in r.output


@pytest.mark.integration
def test_last_layer_lens_is_the_models_own_prediction(smol):
    items = load_items("animals", n=8, split="test", seed=0)
    prop = get_property("second_character")
    res = lens_trace(smol, items, prop, LensTraceConfig(n_boot=100))
    assert len(res.items) >= 4
    h = build_hypotheticals(smol, items, prop, PromptSpec())
    by_id = dict(zip(items["id"], h))
    last = res.positions.index("last")
    for k, row in res.items.iterrows():
        prompt = by_id[row["item_id"]]
        with torch.inference_mode():
            logits = smol.hf_model(input_ids=torch.tensor([prompt.input_ids])).logits[0, -1]
        want = torch.log_softmax(logits.float(), -1)[int(row["property_id"])]
        assert res.logprobs[k, -1, last, 2] == pytest.approx(float(want), abs=1e-3)
        assert res.ranks[k, -1, last, 3] == 0 and res.logprobs[k, -1, last, 3] == pytest.approx(float(want.new_tensor(torch.log_softmax(logits.float(), -1).max())), abs=1e-3)
    # the lens read at an intermediate layer is the residual stream there, not the output
    stream = residual_stream(smol, [by_id[res.items["item_id"][0]].input_ids])[0]
    mid = logit_lens(smol, stream[10, -1])[int(res.items["answer_id"][0])]
    assert res.logprobs[0, 10, last, 0] == pytest.approx(float(mid), abs=1e-3)


@pytest.mark.integration
@pytest.mark.slow
def test_the_short_answer_budget_gives_the_same_targets_as_the_tasks_budget(smol):
    """The trace reads the answer's first word and the property off the response's start: the
    short greedy budget (the default) must find the same targets as the task's full one."""
    items = load_items("animals", n=6, split="test", seed=1)
    short = lens_trace(smol, items, "second_character", LensTraceConfig(n_boot=50))
    full = lens_trace(smol, items, "second_character", LensTraceConfig(n_boot=50, answer_tokens=None))
    cols = ["item_id", "answer", "answer_id", "property_id"]
    assert len(short.items) >= 4
    assert short.items[cols].equals(full.items[cols])
