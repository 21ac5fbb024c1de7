"""Activation capture and the on-disk store: equality with TransformerLens, padding, resume."""

from __future__ import annotations

import json

import pytest
import torch

from innerprobe.activations.capture import capture, position_span
from innerprobe.activations.store import ActivationStore
from innerprobe.behavior.elicitation import build_hypotheticals
from innerprobe.core.errors import DataError, StoreMismatchError, UnknownNameError
from innerprobe.protocol.prompts import PromptSpec, object_prompt
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

PROP = get_property("second_character")
SPEC = PromptSpec()


@pytest.fixture(scope="module")
def items():
    return load_items("animals", n=6, split="train", seed=0)


def _cached_reference(model, prompt, span, layers):
    """resid_post at a span (mean) from a single, unpadded ``run_with_cache``."""
    _, cache = model.bridge.run_with_cache(
        torch.tensor([prompt.input_ids]), names_filter=lambda n: n.endswith("hook_resid_post")
    )
    a, b = span
    return torch.stack([cache[f"blocks.{i}.hook_resid_post"][0, a:b].mean(0) for i in layers])


def test_capture_equals_run_with_cache(tiny, items, tmp_path):
    store = capture(tiny, items, PROP, spec=SPEC, out=tmp_path / "s", batch_size=4, shard_size=4)
    assert store.layers == [0, 1] and store.n_items == len(items)
    o_prompts = [object_prompt(tiny.tokenizer, q, SPEC) for q in items["question"]]
    h_prompts = build_hypotheticals(tiny, items, PROP, SPEC)
    for run, prompts, names in (
        ("object", o_prompts, ["o_last"]),
        ("hypothetical", h_prompts, ["h_last", "quote_last", "quote_mean"]),
    ):
        for name in names:
            got = store.read(run, "resid_post", name)
            assert got.shape == (len(items), 2, tiny.d_model) and got.dtype == torch.float32
            for i, p in enumerate(prompts):
                ref = _cached_reference(tiny, p, position_span(p, name), [0, 1])
                torch.testing.assert_close(got[i], ref, atol=1e-4, rtol=0)
    # the quoted span really is a span (the mean differs from its last token)
    assert not torch.allclose(
        store.read("hypothetical", "resid_post", "quote_mean"), store.read("hypothetical", "resid_post", "quote_last")
    )


def test_padded_batch_equals_one_by_one(tiny, items, tmp_path):
    kw = dict(spec=SPEC, sites=("resid_post", "attn_out", "resid_mid"), object_positions=("o_last", -3))
    batched = capture(tiny, items, PROP, out=tmp_path / "b", batch_size=6, **kw)
    single = capture(tiny, items, PROP, out=tmp_path / "s", batch_size=1, **kw)
    assert batched.keys() == single.keys() and len(batched.keys()) == 15
    for key in batched.keys():
        torch.testing.assert_close(batched.read(*key), single.read(*key), atol=1e-5, rtol=0)


def test_resume_after_interrupt_gives_identical_store(tiny, items, tmp_path):
    kw = dict(spec=SPEC, shard_size=2, batch_size=2, seed=3, labels={"colour": list("abcdef")})
    full = capture(tiny, items, PROP, out=tmp_path / "full", **kw)

    calls = []

    def interrupt(n):
        calls.append(n)
        raise KeyboardInterrupt  # after shard 0 is committed

    with pytest.raises(KeyboardInterrupt):
        capture(tiny, items, PROP, out=tmp_path / "cut", progress=interrupt, **kw)
    partial = ActivationStore.open(tmp_path / "cut")
    assert not partial.complete and len(partial.manifest["shards"]) == 1 and calls == [2]
    with pytest.raises(DataError, match="incomplete"):
        partial.read("object", "resid_post", "o_last")

    done = []
    resumed = capture(tiny, items, PROP, out=tmp_path / "cut", progress=done.append, **kw)
    assert resumed.complete and done == [2, 2]  # only the two missing shards ran
    for k in range(3):
        name = f"shard-{k:05d}.safetensors"
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    assert resumed.rows.equals(full.rows)
    assert list(resumed.rows.columns) == ["index", "id", "task", "group", "colour"]


def test_mismatched_manifest_refused(tiny, items, tmp_path):
    out = tmp_path / "s"
    capture(tiny, items, PROP, spec=SPEC, layers=[0], out=out)
    with pytest.raises(StoreMismatchError, match="layers"):
        capture(tiny, items, PROP, spec=SPEC, layers=[1], out=out)
    with pytest.raises(StoreMismatchError, match="template_hash"):
        capture(tiny, items, PROP, spec=PromptSpec(variant="suppose"), layers=[0], out=out)
    with pytest.raises(StoreMismatchError, match="dtype"):
        capture(tiny, items, PROP, spec=SPEC, layers=[0], out=out, dtype="float16")
    store = ActivationStore.open(out)
    other = {**tiny.fingerprint.to_dict(), "weights_sha256": "0" * 64}
    with pytest.raises(StoreMismatchError, match="weights_sha256"):
        store.check_compatible(other)
    store.check_compatible(tiny.fingerprint, template_hash=SPEC.template_hash(PROP), layers=[0])
    # a complete matching store is reused as is
    again = capture(tiny, items, PROP, spec=SPEC, layers=[0], out=out)
    assert again.complete and json.loads((out / "manifest.json").read_text())["complete"]


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(sites=("resid_postt",)), UnknownNameError, "resid_post"),
        (dict(layers=[0, 2]), DataError, "0..1"),
        (dict(layers="some"), DataError, "all"),
        (dict(hypothetical_positions=("o_last",)), UnknownNameError, "quote_mean"),
        (dict(object_positions=("quote_mean",)), UnknownNameError, "o_last"),
        (dict(dtype="int8"), UnknownNameError, "float16"),
        (dict(labels={"id": [1] * 6}), DataError, "reserved"),
        (dict(labels={"x": [1, 2]}), DataError, "2 values"),
    ],
)
def test_bad_requests(tiny, items, tmp_path, kwargs, error, text):
    with pytest.raises(error, match=text):
        capture(tiny, items, PROP, spec=SPEC, out=tmp_path / "s", **kwargs)


def test_streaming_equals_read_and_layer_selection(tiny, items, tmp_path):
    store = capture(tiny, items, PROP, spec=SPEC, out=tmp_path / "s", shard_size=4, dtype="float16")
    with open(tmp_path / "s" / "shard-00000.safetensors", "rb") as f:  # stored as float16
        assert b"F16" in f.read(400)
    full = store.read("hypothetical", "resid_post", "h_last")
    parts = list(store.iter_shards("hypothetical", "resid_post", "h_last"))
    assert [s for s, _ in parts] == [slice(0, 4), slice(4, 6)]
    torch.testing.assert_close(torch.cat([t for _, t in parts]), full, atol=0, rtol=0)
    torch.testing.assert_close(store.read("hypothetical", "resid_post", "h_last", layers=[1]), full[:, [1]])
    with pytest.raises(UnknownNameError, match="layer"):
        store.read("hypothetical", "resid_post", "h_last", layers=[5])
    with pytest.raises(UnknownNameError, match="quote_mean"):
        store.read("hypothetical", "resid_post", "o_last")
    m = store.manifest
    assert m["template_hash"] == SPEC.template_hash(PROP) and m["model"]["weights_sha256"]
    assert m["positions"] == {"object": ["o_last"], "hypothetical": ["h_last", "quote_last", "quote_mean"]}


def test_non_finite_activations_name_site_and_layer(tiny, items, tmp_path):
    def poison(act, hook):
        return act * float("nan")

    tiny.bridge.add_hook("blocks.1.hook_resid_post", poison)
    try:
        with pytest.raises(DataError, match="layer 1"):
            capture(tiny, items, PROP, spec=SPEC, out=tmp_path / "s")
    finally:
        tiny.bridge.reset_hooks(including_permanent=True)


@pytest.mark.integration
def test_capture_smollm2(smol, tmp_path):
    items = load_items("animals", n=24, split="test", seed=0)
    store = capture(smol, items, PROP, spec=SPEC, layers=[3, 20], out=tmp_path / "s", batch_size=8, shard_size=16)
    got = store.read("hypothetical", "resid_post", "quote_mean")
    assert got.shape == (24, 2, 576) and store.layers == [3, 20]
    p = build_hypotheticals(smol, items.select([5]), PROP, SPEC)[0]
    ref = _cached_reference(smol, p, position_span(p, "quote_mean"), [3, 20])
    torch.testing.assert_close(got[5], ref, atol=1e-3, rtol=1e-4)
    o = store.read("object", "resid_post", "o_last")
    assert torch.isfinite(o).all() and o.abs().mean() > 0


def test_capture_leaves_no_hooks_and_stops_early(tiny, items, tmp_path):
    ids = torch.tensor([object_prompt(tiny.tokenizer, items["question"][0], SPEC).input_ids])
    before = tiny.bridge(ids)
    seen = []
    tiny.bridge.add_hook("blocks.1.hook_resid_pre", lambda act, hook: seen.append(hook.name))
    try:
        capture(tiny, items, PROP, spec=SPEC, layers=[0], out=tmp_path / "s", hypothetical_positions=())
        assert seen == []  # layer 1 never ran: the forward stopped after the last hook
    finally:
        tiny.bridge.reset_hooks(including_permanent=True)
    torch.testing.assert_close(tiny.bridge(ids), before, atol=0, rtol=0)
