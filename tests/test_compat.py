"""Canaries for the upstream stack: cached generation must equal the no-cache reference.

transformers 5.24 renamed the attention keyword ``past_key_values`` to ``cache`` and
TransformerLens 4.3's bridged attention stopped extending the key/value cache: the first
generated token stayed right and every later one went wrong, with nothing raised (see
innerprobe/compat.py). These tests would have caught it the day it shipped: they compare the
cached fast paths against references that use no cache and no bridge.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from packaging.version import Version

from innerprobe.behavior.inference import continuation_logprobs, generate, label_logprobs
from innerprobe.models import compat
from innerprobe.models.compat import GenerationCheckError, cached_greedy, uncached_greedy
from innerprobe.protocol.prompts import PromptSpec, label_tokens, object_prompt

ENGLISH_WORDS = (
    "What is the next 5 words in the following text? Respond only with the next 5 words and do "
    "not include punctuation.\nTalegallus hygrodeik occupy roentgenoscope unrecoverable "
)
ANIMALS = (
    "What is the next 5 animals in the following text? Respond only with the next 5 animals and "
    "nothing else, including punctuation.\ndeer cow deer chicken fish rabbit deer rat rabbit panda "
)
TRANSFORMERS_RENAMED_CACHE = Version(compat.installed_version("transformers")) >= Version("5.24.0")


def _prompts(tok) -> list[list[int]]:
    spec = PromptSpec()
    return [object_prompt(tok, q, spec).input_ids for q in (ENGLISH_WORDS, ANIMALS)]


def _plain_hf(model_dir):
    """The same weights as a plain transformers model: no bridge, no hooks, no shim."""
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return m.eval()


def _stop_ids(hf_model) -> tuple[int, ...]:
    eos = hf_model.generation_config.eos_token_id
    return tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))


def _model_dir(loaded):
    return loaded.fingerprint.source


# --------------------------------------------------------------------------- the shim itself


def test_shim_leaves_old_keyword_and_no_cache_alone():
    """The wrapper only fills ``past_key_values`` from ``cache``; it never overrides an old name."""
    seen = {}

    def original(self, k, v, **kwargs):
        seen.update(kwargs)
        return k, v

    wrapped = compat._shimmed(original)
    old, new = object(), type("C", (), {"update": lambda *a: None})()
    wrapped(None, 1, 2, past_key_values=old, cache=new)
    assert seen["past_key_values"] is old
    seen.clear()
    wrapped(None, 1, 2)
    assert "past_key_values" not in seen
    seen.clear()
    wrapped(None, 1, 2, cache=new)
    assert seen["past_key_values"] is new


def test_shim_is_idempotent():
    compat.install_kv_cache_shim()
    first = compat._attention_bridge_class()._update_kv_cache
    compat.install_kv_cache_shim()
    assert compat._attention_bridge_class()._update_kv_cache is first
    assert first._innerprobe_shim


def test_without_shim_cached_generation_breaks_exactly_on_renamed_transformers(tiny):
    """The upstream cause, pinned: no shim → broken iff transformers renamed the keyword."""
    ids = _prompts(tiny.tokenizer)[0]
    try:
        compat.uninstall_kv_cache_shim()
        broken = cached_greedy(tiny.hf_model, ids, 8) != uncached_greedy(tiny.hf_model, ids, 8)
    finally:
        compat.install_kv_cache_shim()
    assert broken == TRANSFORMERS_RENAMED_CACHE
    assert cached_greedy(tiny.hf_model, ids, 8) == uncached_greedy(tiny.hf_model, ids, 8)


# --------------------------------------------------------------------------- load-time check


def test_check_passes_a_model_that_ends_its_turn_early(tiny):
    """A model whose greedy answer ends after one token is not a broken cache: the reference
    must forbid end-of-sequence as the cached call's ``min_new_tokens`` does (the zoo's trained
    models end their turn after one word and were refused before)."""
    ids = tiny.tokenizer(compat._SELF_CHECK_PROMPT)["input_ids"]
    first = uncached_greedy(tiny.hf_model, ids, 4)
    config = tiny.hf_model.generation_config
    old = config.eos_token_id
    try:
        config.eos_token_id = first[1]  # the model now "ends its turn" at its second token
        assert cached_greedy(tiny.hf_model, ids, 4) != first  # min_new_tokens forbids that end
        compat.check_generation(tiny.hf_model, tiny.tokenizer, 4)
        assert first[1] not in uncached_greedy(tiny.hf_model, ids, 4, suppress_ids=compat.eos_ids(tiny.hf_model))
    finally:
        config.eos_token_id = old


def test_load_model_refuses_a_broken_stack(monkeypatch):
    from innerprobe.models import load as models

    monkeypatch.setattr(compat, "cached_greedy", lambda m, ids, n: [0] * n)
    with pytest.raises(GenerationCheckError, match=r"transformers \d"):
        models.load_model("tiny-random", device="cpu")


def test_load_model_refuses_when_the_shim_cannot_apply(monkeypatch):
    """With the shim gone, load_model stops on renamed transformers and loads on older ones."""
    from innerprobe.models import load as models

    monkeypatch.setattr(models, "install_kv_cache_shim", lambda: False)
    compat.uninstall_kv_cache_shim()
    try:
        try:
            models.load_model("tiny-random", device="cpu")
            refused = False
        except GenerationCheckError as e:
            refused = True
            assert "constraints.txt" in str(e)
    finally:
        compat.install_kv_cache_shim()
    assert refused == TRANSFORMERS_RENAMED_CACHE


def test_untested_versions_warn_once(monkeypatch):
    monkeypatch.setattr(compat, "TESTED_VERSIONS", {"transformers": ("0.0.1",)})
    monkeypatch.setattr(compat.warn_untested_versions, "_done", False, raising=False)
    with pytest.warns(UserWarning, match=r"transformers .* \(tested: 0\.0\.1\)"):
        compat.warn_untested_versions()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.warn_untested_versions()  # once per process


def test_installed_stack_is_a_tested_one():
    """The lock file and TESTED_VERSIONS agree: what install.sh installs is what we tested."""
    assert compat.untested_versions() == {}


# --------------------------------------------------------------------------- canaries


def _canary_generation(loaded, n_new=16):
    tok = loaded.tokenizer
    rows = _prompts(tok)
    ours = generate(loaded.hf_model, tok, rows, max_new_tokens=n_new, batch_size=2)
    stop = _stop_ids(loaded.hf_model)
    refs = [
        tok.decode(uncached_greedy(loaded.hf_model, r, n_new, stop), skip_special_tokens=True)
        for r in rows
    ]
    plain = _plain_hf(_model_dir(loaded))
    plain_out = generate(plain, tok, rows, max_new_tokens=n_new, batch_size=1)
    return [o[0] for o in ours], refs, [o[0] for o in plain_out]


def test_tiny_cached_generation_equals_references(tiny):
    ours, refs, plain = _canary_generation(tiny)
    assert ours == refs
    assert ours == plain


def test_tiny_transformerlens_generation_equals_reference(tiny):
    tok = tiny.tokenizer
    ids = _prompts(tok)[1]
    ref = uncached_greedy(tiny.hf_model, ids, 8, _stop_ids(tiny.hf_model))
    out = tiny.bridge.generate(
        torch.tensor([ids]), max_new_tokens=8, do_sample=False, verbose=False, use_past_kv_cache=True
    )
    assert [int(t) for t in out[0, len(ids) :]] == ref


def _kv_reuse_vs_full(loaded):
    tok = loaded.tokenizer
    rows = _prompts(tok)
    labels = ["deer", "cow", "panda", "roentgenoscope", "occupy"]
    lt = label_tokens(tok, labels, context="", prefill="Answer:")
    fast = label_logprobs(loaded.hf_model, rows, lt, tok.pad_token_id)
    full = continuation_logprobs(
        loaded.hf_model,
        [r for r in rows for _ in lt.labels],
        [c for _ in rows for c in lt.token_ids],
        tok.pad_token_id,
    ).reshape(len(rows), len(labels))
    return fast, full, lt


def test_tiny_kv_reused_label_scoring_equals_full_sequences(tiny):
    fast, full, lt = _kv_reuse_vs_full(tiny)
    assert max(len(t) for t in lt.token_ids) > 1  # multi-token labels reach the cache path
    np.testing.assert_allclose(fast, full, atol=1e-4)


@pytest.mark.integration
def test_smollm2_cached_generation_equals_references(smol):
    ours, refs, plain = _canary_generation(smol)
    assert ours == refs
    assert ours == plain
    assert all("-----" not in o for o in ours)
    assert len(set(ours[1].split())) >= 3  # the animals list continues, not one repeated token


@pytest.mark.integration
def test_smollm2_kv_reused_label_scoring_equals_full_sequences(smol):
    fast, full, lt = _kv_reuse_vs_full(smol)
    assert max(len(t) for t in lt.token_ids) > 1
    np.testing.assert_allclose(fast, full, atol=1e-3)


@pytest.mark.integration
def test_smollm2_transformerlens_generation_equals_reference(smol):
    tok = smol.tokenizer
    ids = _prompts(tok)[0]
    ref = uncached_greedy(smol.hf_model, ids, 8, _stop_ids(smol.hf_model))
    out = smol.bridge.generate(
        torch.tensor([ids]), max_new_tokens=8, do_sample=False, verbose=False, use_past_kv_cache=True
    )
    assert [int(t) for t in out[0, len(ids) :]] == ref
