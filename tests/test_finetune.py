"""Finetuning (M1/M2), training data, adapters and baselines, on the tiny model."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from innerprobe.behavior.baselines import TextBaseline
from innerprobe.behavior.elicitation import (
    CHARACTER_LABELS,
    BehaviorConfig,
    build_hypotheticals,
    predict,
)
from innerprobe.protocol.prompts import PromptSpec, label_tokens
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.training.data import assistant_text, balance_classes, build_training_data
from innerprobe.training.finetune import (
    IGNORE,
    FinetuneConfig,
    encode_dataset,
    finetune,
    merged_copy,
    trainable_state,
)
from innerprobe.training.shift import behaviour_shift

PROP = get_property("first_character")


def constant_label_data(model, items, label: str = "q") -> Dataset:
    """Training rows whose answer is always ``label`` (a planted, learnable behaviour)."""
    spec = PromptSpec()
    hyps = build_hypotheticals(model, items, PROP, spec)
    return Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "system", "content": ""},
                    {"role": "user", "content": h.user},
                    {"role": "assistant", "content": assistant_text(label, spec.hypothetical_prefill)},
                ],
                "prompt": h.user,
                "completion": label,
                "task": "colors",
                "property": PROP.name,
                "item_id": i,
                "prefill": spec.hypothetical_prefill,
            }
            for i, h in zip(items["id"], hyps)
        ]
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Backward passes on the shared 2-core box thrash with >1 intra-op thread (100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def items():
    return load_items("colors", n=12, split="train", seed=0)


@pytest.fixture(scope="module")
def data(tiny, items):
    return constant_label_data(tiny, items)


def _forced_accuracy(model, items, label="q") -> float:
    pred = predict(model, items, PROP, list(CHARACTER_LABELS), BehaviorConfig())
    return float(np.mean([a == label for a in pred.answers]))


def test_loss_mask_covers_answer_tokens_only(tiny, data):
    enc = encode_dataset(tiny.tokenizer, data)
    for e, row in zip(enc, data):
        answer = [t for t in e.labels if t != IGNORE]
        n = len(answer)
        assert n >= 1
        assert e.labels[:-n] == [IGNORE] * (len(e.labels) - n)
        assert e.input_ids[-n:] == answer
        prompt_text = tiny.tokenizer.decode(e.input_ids[:-n])
        lt = label_tokens(tiny.tokenizer, ["q"], prompt_text, row["prefill"])
        assert list(lt.token_ids[0]) == answer


def test_finetune_learns_planted_label_and_adapter_round_trips(tiny, items, data, tmp_path):
    from innerprobe.models.load import load_model

    before = _forced_accuracy(tiny, items)
    assert before <= 0.5
    cfg = FinetuneConfig(rank=4, alpha=8, lr=1e-2, epochs=6, batch_size=4, seed=0)
    res = finetune(tiny, data, tmp_path / "m1", cfg)
    assert res.finished and res.step == 18
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    trained = load_model(tmp_path / "m1", device="cpu")
    assert _forced_accuracy(trained, items) >= 0.9
    # the base bridge is untouched
    assert _forced_accuracy(tiny, items) == before
    # round trip: merged on load == merged in memory
    from transformers import AutoModelForCausalLM

    from innerprobe.models.adapters import merged_model_dir

    merged = merged_copy(res.model)
    loaded = dict(AutoModelForCausalLM.from_pretrained(merged_model_dir(tmp_path / "m1")).named_parameters())
    for name, p in merged.named_parameters():
        assert torch.equal(loaded[name], p), name  # merged weights are bit-identical
    ids = torch.tensor([encode_dataset(tiny.tokenizer, data)[0].input_ids])
    with torch.no_grad():
        a = trained.bridge(ids)
        b = merged(ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # bridge forward vs HF forward numerics
    # the saved tensors are exactly the in-memory ones
    from peft import get_peft_model_state_dict

    saved = load_file(str(tmp_path / "m1" / "adapter_model.safetensors"))
    mem = get_peft_model_state_dict(res.model)
    assert saved.keys() == mem.keys()
    assert all(torch.equal(saved[k], mem[k].cpu()) for k in saved)


def test_resumed_run_equals_uninterrupted(tiny, data, tmp_path):
    cfg = FinetuneConfig(rank=4, alpha=8, lr=5e-3, epochs=2, batch_size=4, warmup_steps=2, seed=3)
    full = finetune(tiny, data, tmp_path / "full", cfg)
    part = finetune(tiny, data, tmp_path / "part", cfg, stop_after=4)
    assert not part.finished and part.step == 4
    rest = finetune(tiny, data, tmp_path / "part", cfg, resume=True)
    assert rest.finished and rest.step == full.step
    assert [h["loss"] for h in rest.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    a, b = trainable_state(full.model), trainable_state(rest.model)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_resume_refuses_other_config(tiny, data, tmp_path):
    from innerprobe.core.errors import DataError

    cfg = FinetuneConfig(rank=4, alpha=8, epochs=1, batch_size=4)
    finetune(tiny, data, tmp_path / "r", cfg, stop_after=1)
    with pytest.raises(DataError, match="cannot resume"):
        finetune(tiny, data, tmp_path / "r", FinetuneConfig(rank=4, alpha=8, epochs=1, batch_size=4, lr=1e-3), resume=True)


def test_text_baseline_beats_chance_on_planted_mapping():
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "fox", "owl", "bee", "eel"]
    strings = [" ".join(rng.choice(words, 4)) for _ in range(300)]
    labels = ["a" if "cat" in s else ("b" if "dog" in s else "c") for s in strings]
    tb = TextBaseline().fit(strings[:200], labels[:200])
    est = tb.score(strings[200:], labels[200:])
    chance = max(labels[200:].count(x) for x in "abc") / 100
    assert est.value > chance + 0.1 and est.ci_low > chance
    assert TextBaseline().fit(["x y"], ["k"]).predict(["z"]) == ["k"]


def test_training_data_from_own_behaviour(tiny):
    t0 = time.time()
    ds = build_training_data(tiny, ["colors", "numbers"], ["first_character", "is_even"], n_per_combo=6)
    assert set(ds.column_names) >= {"messages", "prompt", "completion", "task", "property", "item_id"}
    assert {(r["task"], r["property"]) for r in ds} <= {
        ("colors", "first_character"), ("numbers", "first_character"), ("numbers", "is_even")
    }
    for r in ds:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][0]["content"] == ""
        assert r["messages"][2]["content"] == "Answer: " + r["completion"]
        assert "Previously, you were asked" in r["prompt"]
    assert time.time() - t0 < 30


def test_balance_downsamples_to_rarest():
    rows = [{"completion": c} for c in "aaaabbc"]
    out = balance_classes(rows, seed=0)
    assert sorted(r["completion"] for r in out) == ["a", "b", "c"]
    assert balance_classes(rows, seed=0) == out


def test_behaviour_shift_runs_on_tiny(tiny, tmp_path):
    tr = load_items("colors", n=8, split="train", seed=1)
    ev = load_items("colors", n=8, split="test", seed=1)
    res = behaviour_shift(
        tiny, tiny, tr, ev, PROP, tmp_path / "shift",
        FinetuneConfig(rank=4, alpha=8, lr=1e-2, epochs=2, batch_size=4),
        BehaviorConfig(object_max_new_tokens=8),
    )
    assert res.n_items == 8 and 0 <= res.n_changed <= 8 and res.n_train_rows > 0
    assert len(res.table) == 8
    if res.n_changed:
        assert res.predicts_new.n == res.n_changed == res.before_predicts_new.n
        assert abs(res.tracking.diff.value - (res.predicts_new.value - res.before_predicts_new.value)) < 1e-9
    assert (tmp_path / "shift" / "adapter_model.safetensors").exists()


@pytest.mark.integration
def test_smol_few_steps(smol, tmp_path):
    from innerprobe.models.load import load_model

    items = load_items("colors", n=8, split="train", seed=0)
    data = constant_label_data(smol, items, "q")
    res = finetune(smol, data, tmp_path / "smol", FinetuneConfig(rank=8, lr=5e-3, epochs=1, batch_size=4))
    assert res.finished and res.step == 2
    assert np.isfinite(res.history[-1]["loss"])
    m1 = load_model(tmp_path / "smol", device="cpu")
    assert m1.n_layers == smol.n_layers


def test_answer_loss_equals_full_hf_loss(tiny, data):
    """The truncated-logits loss on a left-padded batch equals HF's loss on the unpadded rows."""
    from innerprobe.training.finetune import FinetuneConfig, answer_loss, collate, lora_model

    enc = encode_dataset(tiny.tokenizer, data)[:3]
    model = lora_model(tiny, FinetuneConfig(rank=4))
    ids, mask, pos, labels = collate(enc, tiny.tokenizer.pad_token_id)
    assert ((labels != IGNORE) <= (mask == 1)).all()
    with torch.no_grad():
        ours = answer_loss(model, ids, mask, pos, labels)
        per_row = []
        for e in enc:
            out = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels]))
            per_row.append((out.loss.item(), sum(t != IGNORE for t in e.labels)))
    ref = sum(loss * n for loss, n in per_row) / sum(n for _, n in per_row)
    assert ours.item() == pytest.approx(ref, abs=1e-5)
