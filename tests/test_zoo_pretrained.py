"""The zoo's second scale: LoRA on a pretrained base's top blocks, trained on residuals cached at the cut.

Fast tests run the trunk machinery on a tiny from-scratch Llama standing in for the base (the
cache is exact, the adapters and norms are the only weights that move, the hooks see the sites
above the cut); the slow test builds a short SmolLM2 model from the real weights and checks the
saved directory: frozen blocks bit-identical to the base, the merged model's logits equal to
those the training saw, and the route check running on it.
"""

from __future__ import annotations

import pytest
import torch
from conftest import requires_smollm2
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.zoo import ZooConfig
from innerprobe.zoo.data import ZooEncoder, all_items, build_tokenizer, pad_batch, planted_answers
from innerprobe.zoo.hooks import capture_sites, site_modules
from innerprobe.zoo.pretrained import ADAPTED
from innerprobe.zoo.train import new_model, stage_object, stage_readout
from innerprobe.zoo.trunk import TopLayers, TrunkCache

TINY = {"d_model": 16, "n_layers": 4, "n_heads": 2, "n_train": 10, "n_test": 4, "batch_size": 4,
        "object_steps": 3, "readout_steps": 3, "subspace_every": 2, "task_kind": "memorised", "answer_words": 4}
CUT = 2


@pytest.fixture(scope="module")
def encoded():
    cfg = ZooConfig(**TINY)
    tok = build_tokenizer()
    enc = ZooEncoder(tok, cfg)
    items = all_items(cfg)
    return cfg, tok, enc, [enc.encode(r["question"], a) for r, a in zip(items, planted_answers(cfg, items))]


def _adapted(cfg: ZooConfig, tok) -> LlamaForCausalLM:  # noqa: ANN001
    base = new_model(cfg, tok).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=list(ADAPTED), layers_to_transform=list(range(CUT, 4)))
    return get_peft_model(base, lcfg)


def _cached(llama, encoded, pad_id: int) -> TrunkCache:  # noqa: ANN001
    cache = TrunkCache(llama, CUT)
    cache.add(llama, [e.object_ids for e in encoded], pad_id, [e.object_prompt_len for e in encoded])
    cache.add(llama, [e.hypo_ids for e in encoded], pad_id)
    return cache


def test_top_layers_on_cached_residuals_equal_the_full_model(encoded):
    cfg, tok, _, ex = encoded
    model = new_model(cfg, tok).eval()
    with torch.no_grad():  # make the top blocks matter: random, non-zero weights everywhere
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cache = _cached(model, ex, tok.pad_token_id)
    rows = [ex[0].hypo_ids, ex[1].object_ids, ex[2].object_ids[: ex[2].object_prompt_len]]  # ragged, one a prefix
    ids, mask, last = pad_batch(rows, tok.pad_token_id)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        top = TopLayers(model, cache)(input_ids=ids, attention_mask=mask)
    at = torch.arange(len(rows))
    assert torch.allclose(full[at, last], top[at, last], atol=1e-5)
    assert torch.allclose(full[0, : len(rows[0])], top[0, : len(rows[0])], atol=1e-5)
    assert (full[at, last] - top[at, last]).abs().max() < 1e-5 < full[at, last].abs().max()


def test_the_cache_knows_prefixes_and_names_a_missing_row(encoded):
    cfg, tok, _, ex = encoded
    model = new_model(cfg, tok).eval()
    cache = TrunkCache(model, CUT)
    cache.add(model, [ex[0].object_ids], tok.pad_token_id, [ex[0].object_prompt_len])
    n_full = len(ex[0].object_ids)
    assert len(cache) == n_full - ex[0].object_prompt_len + 1  # every prefix from the prompt on
    ids, mask, _ = pad_batch([ex[0].object_ids[: ex[0].object_prompt_len], ex[0].object_ids], tok.pad_token_id)
    got = cache.lookup(ids, mask)
    assert torch.equal(got[0, : ex[0].object_prompt_len], got[1, : ex[0].object_prompt_len])
    assert torch.count_nonzero(got[0, ex[0].object_prompt_len :]) == 0  # padding stays zero
    ids, mask, _ = pad_batch([ex[1].hypo_ids], tok.pad_token_id)
    with pytest.raises(DataError, match=r"no cached residual .* add\(\) it first"):
        cache.lookup(ids, mask)


@pytest.mark.parametrize("cut", [0, 4])
def test_a_cut_outside_the_blocks_names_the_range(encoded, cut):
    cfg, tok, _, _ = encoded
    with pytest.raises(DataError, match=r"cut must be in \[1, 3\] \(the model has 4 blocks\)"):
        TrunkCache(new_model(cfg, tok), cut)


def test_sites_are_those_above_the_cut(encoded):
    cfg, tok, _, ex = encoded
    model = new_model(cfg, tok).eval()
    top = TopLayers(model, _cached(model, ex[:2], tok.pad_token_id))
    assert site_modules(top) == [*list(model.model.layers)[CUT:], model.model.norm]
    ids, mask, _ = pad_batch([ex[0].hypo_ids], tok.pad_token_id)
    with torch.no_grad(), capture_sites(top) as sites:
        top(input_ids=ids, attention_mask=mask)
    assert len(sites) == 4 - CUT + 1
    assert torch.equal(sites[0][0], top.model.cache.lookup(ids, mask)[0])  # the first site is the cached residual


def test_readout_parameters_are_the_last_mlp_adapters_and_norms(encoded):
    cfg, tok, _, ex = encoded
    adapted = _adapted(cfg, tok)
    llama = adapted.base_model.model
    top = TopLayers(llama, _cached(llama, ex[:2], tok.pad_token_id))
    got = {id(p) for p in top.readout_parameters()}
    last = llama.model.layers[-1]
    want = [p for n, p in last.mlp.named_parameters() if "lora_" in n]
    want += [*last.post_attention_layernorm.parameters(), *llama.model.norm.parameters()]
    assert got == {id(p) for p in want} and len(want) == 3 * 2 + 2
    bare = new_model(cfg, tok)
    with pytest.raises(DataError, match="no LoRA adapters"):
        TopLayers(bare, _cached(bare, ex[:2], tok.pad_token_id)).readout_parameters()


@pytest.mark.parametrize("route", ["simulation", "direct"])
def test_training_through_the_trunk_moves_only_what_the_route_allows(encoded, route):
    cfg, tok, enc, ex = encoded
    cfg = ZooConfig(**{**TINY, "route": route})
    adapted = _adapted(cfg, tok)
    llama = adapted.base_model.model
    top = TopLayers(llama, _cached(llama, ex, tok.pad_token_id))
    before = {n: p.detach().clone() for n, p in llama.named_parameters()}
    flags = {n: p.requires_grad for n, p in llama.named_parameters()}
    top.train()
    stage_object(top, cfg, ex, ex, tok.pad_token_id, enc.label_ids)
    after1 = {n: p.detach().clone() for n, p in llama.named_parameters()}
    answers = planted_answers(cfg, all_items(cfg))
    stage_readout(top, cfg, ex, ex, enc.label_ids, tok.pad_token_id, answers)
    moved1 = {n for n, p in after1.items() if not torch.equal(p, before[n])}
    moved2 = {n for n, p in llama.named_parameters() if not torch.equal(p.detach(), after1[n])}
    assert moved1 and all("lora_" in n and (".layers.2." in n or ".layers.3." in n) for n in moved1)
    assert not any(f".layers.{i}." in n for n in moved1 | moved2 for i in range(CUT))  # the trunk is frozen
    assert not any("embed_tokens" in n or "lm_head" in n for n in moved1 | moved2)
    if route == "simulation":
        assert moved2 and all((".layers.3.mlp." in n and "lora_" in n) or "norm" in n for n in moved2)
    else:
        assert any(".layers.2." in n for n in moved2)  # every adapter trains through the projection
    assert {n: p.requires_grad for n, p in llama.named_parameters()} == flags  # restored after stage 2


def test_base_fields_are_checked_and_key_only_pretrained_models():
    with pytest.raises(UnknownNameError) as err:
        ZooConfig(base="gpt2")
    assert "ZooConfig.base" in str(err.value) and "smollm2-135m-instruct" in str(err.value)
    with pytest.raises(DataError, match="ZooConfig.lora_rank"):
        ZooConfig(lora_rank=0)
    assert ZooConfig(lora_rank=8, n_trainable=2).digest() == ZooConfig().digest()  # scratch: no effect
    small = ZooConfig(base="smollm2-135m-instruct")
    assert small.digest() != ZooConfig().digest()
    assert ZooConfig(base="smollm2-135m-instruct", d_model=32).digest() == small.digest()  # sizes: no effect
    assert ZooConfig(base="smollm2-135m-instruct", lora_rank=8).digest() != small.digest()
    assert small.name == "smollm2-text-simulation-s0" and ZooConfig().name == "text-simulation-s0"
    assert small.pretrained and not ZooConfig().pretrained


@requires_smollm2
@pytest.mark.slow
def test_a_short_smollm2_build_freezes_the_trunk_and_merges_exactly(tmp_path):
    from innerprobe.core.io import read_json
    from innerprobe.protocol.properties import get_property
    from innerprobe.protocol.tasks import get_task
    from innerprobe.zoo import build_zoo_model, run_zoo_check
    from innerprobe.zoo.pretrained import load_base

    cfg = ZooConfig(base="smollm2-135m-instruct", task_kind="memorised", route="direct", n_train=12, n_test=6,
                    answer_words=4, object_steps=3, readout_steps=2, subspace_every=2, batch_size=4, lr=1e-3)
    zoo = build_zoo_model(cfg, tmp_path / "m")
    record = read_json(tmp_path / "m" / "zoo.json")
    assert record["adapted_blocks"] == [26, 27, 28, 29] and record["base"] == "smollm2-135m-instruct"
    built = LlamaForCausalLM.from_pretrained(zoo.path)
    base, _ = load_base(cfg)
    theirs, ours = base.state_dict(), built.state_dict()
    assert set(theirs) == set(ours)  # adapters merged: a plain Llama
    changed = {n for n in ours if not torch.equal(ours[n], theirs[n])}
    assert changed and all(any(f".layers.{i}." in n for i in range(26, 30)) for n in changed)
    assert any(".layers.26.self_attn" in n for n in changed)  # direct: every top block's adapters moved
    assert build_zoo_model(cfg, tmp_path / "m").weights_sha256 == zoo.weights_sha256  # cached, not rebuilt
    check = run_zoo_check(zoo)  # on the merged HF model, with SmolLM2's tokenizer
    animals = set(get_task("animals").vocabulary or ())
    assert len(check.table) == 6 and set(check.table["answer"]) <= animals
    assert set(check.table["ablated"]) <= set(get_property("second_character").labels())


def test_the_check_ablates_above_the_trunk_of_a_pretrained_model(encoded):
    from innerprobe.zoo.check import CheckConfig, first_checked_site

    cfg, tok, _, _ = encoded
    model = new_model(cfg, tok)  # any Llama with 4 blocks: the site index comes from the config
    pretrained = ZooConfig(**{**TINY, "base": "smollm2-135m-instruct", "n_trainable": 1})
    assert first_checked_site(model, pretrained, CheckConfig()) == 3
    assert first_checked_site(model, pretrained, CheckConfig(sites="all")) == 0
    assert first_checked_site(model, cfg, CheckConfig()) == 0  # from scratch: every site
    with pytest.raises(UnknownNameError, match="CheckConfig.sites"):
        CheckConfig(sites="top")


def test_the_cache_computes_a_repeated_row_once(encoded, monkeypatch):
    import innerprobe.zoo.trunk as trunk

    cfg, tok, _, ex = encoded
    model = new_model(cfg, tok).eval()
    seen: list[int] = []
    real = trunk.trunk_residuals
    monkeypatch.setattr(trunk, "trunk_residuals", lambda m, ids, mask, cut: seen.append(ids.shape[0]) or real(m, ids, mask, cut))
    cache = TrunkCache(model, CUT)
    cache.add(model, [ex[0].hypo_ids, ex[1].hypo_ids, ex[0].hypo_ids], tok.pad_token_id)
    assert sum(seen) == 2 and len(cache) == 2
