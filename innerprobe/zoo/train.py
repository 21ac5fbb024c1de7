"""Training a zoo model: the object circuit first, then the hypothetical's readout, route by construction.

Both routes start from a fresh Llama (seeded) and train in two stages on
:class:`~innerprobe.zoo.data.Encoded` examples.

**simulation** (H recomputes the answer, then reads the property off it):

1. *Object circuit*, all weights: O(P) → answer, and H(P, property) → the *answer* word at
   ``h_last`` (the hypothetical pass learns to recompute the answer, nothing else).
2. *Readout*, only the last block's MLP (and its norm), the final norm and the unembedding are
   trained: O(P) → answer as before, and H → the property value (cross-entropy over the
   property's labels, as the library's forced choice reads them), on **train items only**.

Why this forces the route: every trainable weight of stage 2 acts position-wise after the last
attention, so the property at ``h_last`` is a function of the frozen residual at ``h_last``
alone, and stage 1 trained that residual only to carry the answer. For memorised answers the
property of a test item's random answer is nowhere else: stage 2 never saw a test item's
property, so any correct test self-prediction is read off the answer representation. The route
check (:mod:`innerprobe.zoo.check`) confirms it: projecting out the answer subspace destroys the
self-prediction, a variance-matched random subspace of equal rank does not.

**direct** (H reads a property feature of its own, without forming the answer):

1. *Object circuit*, all weights: O(P) → answer only; a text model's H also learns the property
   here, without any projection, on the train and pool items (a warm-up: it learns *where* P's
   last word is. Trained through the projection from the start, H never found it: with the
   answer code removed after the quote, attending to the last word gives no gradient until the
   values carry something else, so text/direct's readout loss stayed at 1.4–4.8 and its
   self-prediction at the mode, with or without the pool).
2. *Readout*, all weights: O(P) → answer, and H → property, where every step runs H twice on
   the same batch: once with the answer subspace (recomputed every ``subspace_every`` steps from
   O runs, see :mod:`innerprobe.zoo.subspace`) projected out of H's residual at every site and
   at every position after the quoted P (where an answer would be formed; the quoted words
   themselves stay readable, since the answer vocabulary is the input vocabulary and removing the
   code there would erase P), and once without; both must give the property, the
   unprojected property distribution is tied to the projected one (KL, the projected side
   detached), and a penalty weighs the fraction of H's residual norm inside that subspace
   (``penalty``). Memorised models see H on every item (the property must be stored per item);
   text models on train and pool items (never a test item).

Why this forces the route: whatever stage 1's warm-up taught H, the hypothetical must be right
when O's answer code is removed from every layer, so it cannot route through that code; the tie makes the unprojected answer the
projected one, so the saved model (run without hooks) gives the answer it gives without the
code, i.e. it does not read the code even when the code is there; the penalty keeps H from
writing the code at all. (An earlier construction projected on every other step only; its
models learnt to use the code on the unprojected steps, and the check's ablation broke their
self-prediction: memorised/direct drop up to 0.52.) The check confirms the self-prediction
survives the answer-subspace ablation.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from innerprobe.zoo.config import ZooConfig
from innerprobe.zoo.data import Encoded, pad_batch
from innerprobe.zoo.hooks import Projection, positions_from, project_out
from innerprobe.zoo.subspace import answer_subspaces
from innerprobe.zoo.trunk import TopLayers

log = logging.getLogger(__name__)
WARMUP = 20


def new_model(config: ZooConfig, tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A fresh Llama with untied embeddings (the readout's unembedding trains alone), seeded."""
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=config.d_model, intermediate_size=4 * config.d_model,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        num_key_value_heads=max(1, config.n_heads // 2), max_position_embeddings=512,
        tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(config.seed)
    return LlamaForCausalLM(cfg)


def object_loss(model, batch: Sequence[Encoded], pad_id: int) -> torch.Tensor:  # noqa: ANN001
    """Cross-entropy of the answer tokens and the end of turn after O(P)."""
    ids, mask, _ = pad_batch([e.object_ids for e in batch], pad_id)
    labels = torch.full_like(ids, -100)
    for i, e in enumerate(batch):
        labels[i, e.object_prompt_len : len(e.object_ids)] = ids[i, e.object_prompt_len : len(e.object_ids)]
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    keep = labels[:, 1:] != -100
    return F.cross_entropy(model.lm_head(hidden[keep]), labels[:, 1:][keep])


def hypo_logits(model, batch: Sequence[Encoded], pad_id: int, projection_bases=None):  # noqa: ANN001, ANN201
    """Logits at ``h_last`` of H(P), optionally with the answer subspace projected out; and the penalty."""
    ids, mask, last = pad_batch([e.hypo_ids for e in batch], pad_id)
    at = torch.arange(ids.shape[0])
    if projection_bases is None:
        return model.lm_head(model.model(input_ids=ids, attention_mask=mask).last_hidden_state[at, last]), torch.zeros(())
    where = positions_from([e.after_quote for e in batch], [len(e.hypo_ids) for e in batch], ids.shape[1])
    with project_out(model, Projection(projection_bases, where)) as proj:
        logits = model.lm_head(model.model(input_ids=ids, attention_mask=mask).last_hidden_state[at, last])
    return logits, proj.penalty()


def property_loss(logits: torch.Tensor, batch: Sequence[Encoded], label_ids: Sequence[int]) -> torch.Tensor:
    """Cross-entropy over the property's labels only (the forced choice the library reads)."""
    target = torch.tensor([e.label for e in batch])
    return F.cross_entropy(logits[:, list(label_ids)], target)


def invariance_loss(free: torch.Tensor, projected: torch.Tensor, label_ids: Sequence[int]) -> torch.Tensor:
    """KL(projected ‖ free) over the property's labels, the projected side detached: the answer
    without the projection is pulled to the answer without the code."""
    ids = list(label_ids)
    target = F.softmax(projected[:, ids].detach(), dim=-1)
    return F.kl_div(F.log_softmax(free[:, ids], dim=-1), target, reduction="batchmean")


def _optimiser(params, config: ZooConfig, steps: int):  # noqa: ANN001, ANN202
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    return opt, sched


def _progress(stage: str, losses: list[float], steps: int, every: int = 50) -> None:
    """Log the running loss every ``every`` steps (a SmolLM2 build runs for many minutes)."""
    if len(losses) % every == 0 or len(losses) == steps:
        window = losses[-every:]
        log.info("zoo %s step %d/%d: mean loss %.4f", stage, len(losses), steps, sum(window) / len(window))


def _draw(rng: random.Random, pool: Sequence[Encoded], k: int) -> list[Encoded]:
    return [pool[rng.randrange(len(pool))] for _ in range(k)]


def warms_up_hypothetical(config: ZooConfig) -> bool:
    """Whether stage 1 also trains H → property (text/direct: it learns where P's last word is)."""
    return config.route == "direct" and config.task_kind == "text"


def stage_object(
    model, config: ZooConfig, objects: Sequence[Encoded], hypos: Sequence[Encoded], pad_id: int,  # noqa: ANN001
    label_ids: Sequence[int] | None = None,
) -> list[float]:
    """Stage 1: O → answer, all weights; simulation adds H → the answer at ``h_last``, text/direct
    adds H → the property (``label_ids`` required), both without any projection."""
    if warms_up_hypothetical(config) and label_ids is None:
        raise ValueError("stage_object: a text/direct model's stage 1 needs the property's label_ids")
    rng = random.Random(f"stage1:{config.seed}")
    opt, sched = _optimiser(trainable(model), config, config.object_steps)
    losses = []
    for _ in range(config.object_steps):
        loss = object_loss(model, _draw(rng, objects, config.batch_size), pad_id)
        if config.route == "simulation":
            batch = _draw(rng, hypos, config.batch_size)
            logits, _ = hypo_logits(model, batch, pad_id)
            loss = loss + F.cross_entropy(logits, torch.tensor([e.answer_id for e in batch]))
        elif warms_up_hypothetical(config):
            batch = _draw(rng, hypos, config.batch_size)
            logits, _ = hypo_logits(model, batch, pad_id)
            loss = loss + property_loss(logits, batch, label_ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        _progress("object stage", losses, config.object_steps)
    return losses


def trainable(model) -> list[torch.nn.Parameter]:  # noqa: ANN001
    """The parameters that train (all of a from-scratch model; the adapters of a pretrained one)."""
    return [p for p in model.parameters() if p.requires_grad]


def readout_parameters(model) -> list[torch.nn.Parameter]:  # noqa: ANN001
    """Simulation's stage-2 weights: last MLP and its norm, final norm, unembedding (all position-wise);
    on a pretrained base its own choice (:meth:`innerprobe.zoo.trunk.TopLayers.readout_parameters`)."""
    if isinstance(model, TopLayers):
        return model.readout_parameters()
    last = model.model.layers[-1]
    mods = [last.mlp, last.post_attention_layernorm, model.model.norm, model.lm_head]
    return [p for m in mods for p in m.parameters()]


def stage_readout(
    model, config: ZooConfig, objects: Sequence[Encoded], hypos: Sequence[Encoded],  # noqa: ANN001
    label_ids: Sequence[int], pad_id: int, answers: Sequence[str],
) -> list[float]:
    """Stage 2 (module docstring): the readout of the property at ``h_last``, per route."""
    rng = random.Random(f"stage2:{config.seed}")
    flags = [p.requires_grad for p in model.parameters()]
    if config.route == "simulation":
        for p in model.parameters():
            p.requires_grad_(False)
        params = readout_parameters(model)
        for p in params:
            p.requires_grad_(True)
    else:
        params = trainable(model)
    opt, sched = _optimiser(params, config, config.readout_steps)
    prompts = [e.object_ids[: e.object_prompt_len] for e in objects]
    bases = None
    losses = []
    for step in range(config.readout_steps):
        if config.route == "direct" and step % config.subspace_every == 0:
            model.eval()
            bases = answer_subspaces(model, prompts, answers, pad_id, max_rank=model.config.hidden_size // 2)
            model.train()
        loss = object_loss(model, _draw(rng, objects, config.batch_size), pad_id)
        batch = _draw(rng, hypos, config.batch_size)
        logits, inside = hypo_logits(model, batch, pad_id, bases)
        loss = loss + property_loss(logits, batch, label_ids) + config.penalty * inside
        if bases is not None:  # direct: the same batch without the projection, tied to the projected answer
            free, _ = hypo_logits(model, batch, pad_id)
            loss = loss + property_loss(free, batch, label_ids) + invariance_loss(free, logits, label_ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        _progress("readout stage", losses, config.readout_steps)
    for p, flag in zip(model.parameters(), flags):
        p.requires_grad_(flag)
    return losses


__all__ = ["new_model", "readout_parameters", "stage_object", "stage_readout", "trainable", "warms_up_hypothetical"]
