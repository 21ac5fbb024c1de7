"""Prefix reuse: a replayed forward equals the whole forward bit for bit, and skips the prefix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from steer_toys import own_answer_store, planted_store

from innerprobe.core.errors import DataError
from innerprobe.interventions.ablation import AblationConfig, run_ablation
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.hooks import Intervention
from innerprobe.interventions.prefix import LayerPrefix, decoder_layer_list
from innerprobe.interventions.readout import Choice, choice_logprobs
from innerprobe.interventions.steering import SteeringConfig, run_steering
from innerprobe.protocol.prompts import Prompt
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

ROWS = [[5, 6, 7, 8, 9], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26], [30, 31]]
CHOICE = Choice(("a", "b", "c"), (40, 41, 42))


def _prompts():
    return [Prompt("object", "", list(r)) for r in ROWS]


def _edit(tiny, layer):
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(3))
    return Intervention(AddVector(v, 2.0), layers=(layer,), site="resid_pre", name="push")


def test_replayed_edited_forward_equals_the_whole_one_and_skips_the_prefix(tiny):
    start = tiny.n_layers - 1
    iv = _edit(tiny, start)
    whole = choice_logprobs(tiny, _prompts(), CHOICE, [iv], batch_size=2)
    prefix = LayerPrefix(tiny, start)
    with prefix.recording():
        plain = choice_logprobs(tiny, _prompts(), CHOICE, batch_size=2)
    assert prefix.n_batches == 2
    layers = decoder_layer_list(tiny.hf_model)
    calls = []
    handle = layers[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with prefix.replaying(iv.layers):
            fast = choice_logprobs(tiny, _prompts(), CHOICE, [iv], batch_size=2)
    finally:
        handle.remove()
    assert not calls  # layer 0 never ran
    assert np.array_equal(fast, whole)
    assert not np.array_equal(fast, plain)  # the edit did something
    again = choice_logprobs(tiny, _prompts(), CHOICE, [iv], batch_size=2)
    assert np.array_equal(again, whole)  # the layers are back in place


def test_replay_refuses_unrecorded_batches_and_edits_below_the_start(tiny):
    start = tiny.n_layers - 1
    prefix = LayerPrefix(tiny, start)
    with prefix.recording():
        choice_logprobs(tiny, _prompts(), CHOICE, batch_size=2)
    with pytest.raises(DataError, match="not recorded"), prefix.replaying():
        choice_logprobs(tiny, _prompts(), CHOICE, batch_size=3)
    with pytest.raises(DataError, match="edit sits at layer"), prefix.replaying([0]):
        pass
    with pytest.raises(DataError, match="outside"):
        LayerPrefix(tiny, tiny.n_layers + 1)
    assert all(not type(m).__name__.startswith("_Replay") for m in decoder_layer_list(tiny.hf_model))


def test_ablation_with_prefix_reuse_equals_the_whole_forwards(tiny, tmp_path):
    store = own_answer_store(tiny, tmp_path / "store")
    items = load_items("animals", n=16, split="test")
    prop = get_property("second_character")
    kw = dict(layer=-1, n_boot=50, min_count=2, batch_size=5)
    fast = run_ablation(tiny, store, items, prop, AblationConfig(**kw))
    slow = run_ablation(tiny, store, items, prop, AblationConfig(reuse_prefix=False, **kw))
    assert fast.summary.start_layer > 0
    cols = ["id", "reading", "arm", "mode", "prediction", "logp_truth", "dlogp"]
    assert fast.table[cols].equals(slow.table[cols])


def test_steering_with_prefix_reuse_equals_the_whole_forwards(tiny):
    items = load_items("animals", n=24, split="test")
    prop = get_property("second_character")
    store = planted_store(tiny, items, prop)
    kw = dict(layer=-1, h_positions=("last", "quote"), n_boot=100, batch_size=5)
    fast = run_steering(tiny, store, items, prop, SteeringConfig(**kw))
    slow = run_steering(tiny, store, items, prop, SteeringConfig(reuse_prefix=False, **kw))
    assert fast.summary.layer > 0 and fast.summary.n_steered > 0
    assert fast.table.equals(slow.table)
    assert fast.tracking.equals(slow.tracking)
