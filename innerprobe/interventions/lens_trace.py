"""Does the object answer appear inside the hypothetical pass before its property? A lens trace.

Self-simulation says H(P) recomputes the object-level answer A from the quoted P and reads the
property off it: then A should become readable in H's residual stream (by a lens) at some layer,
and the property label (A's second character, say) only at a later one. A privileged route needs
no A at all. :func:`lens_trace` measures it, per item and per layer, at H's quoted-P end and at
its last token:

* **answer**: the first token of the model's *own* greedy object answer (``" deer"``), read by
  the logit lens (or a tuned lens) — its rank among the vocabulary and its log-prob;
* **control**: a word of P that is not the answer, *frequency matched* to it by the model's own
  prior (the log-prob of its first token after the start token): a lens can surface any word of
  the context, so the answer only counts as recomputed where it beats this control;
* **property**: the label the self-prediction should output (its first token after H's
  prefill, as forced choice scores it);
* **output**: what the model actually predicts there (the last layer's top-1 token at that
  position): the classic logit-lens target, and at H's last token the self-prediction itself,
  which an untrained model often gets wrong (SmolLM2 answers "b" to most second-character
  questions), so "property" and "output" can tell different stories.

A target has *emerged* at the first layer from which its rank stays below ``top_k`` for
``persist`` consecutive layers (one lucky early layer, where the logit lens mostly reflects
embedding neighbours, does not count; the layers before the last ``persist`` need every layer
to the end). The per-item layer
gap ``emerge(property) − emerge(answer)`` (on the items where both emerge) is bootstrapped over
items: a positive gap with a CI above 0 is "answer before property"; ``emerge(control) −
emerge(answer)`` beside it says whether the answer is special or any context word does the same.
Items whose answer or property value cannot be read are dropped and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from plotly.subplots import make_subplots
from torch import Tensor

from innerprobe.behavior.answers import answer_columns, items_vocabulary
from innerprobe.behavior.config import BehaviorConfig
from innerprobe.behavior.elicitation import elicit_object
from innerprobe.behavior.prediction import build_hypotheticals
from innerprobe.core.errors import DataError, UnknownNameError, check_at_least
from innerprobe.core.io import provenance
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, bootstrap_ci, proportion
from innerprobe.interventions.lens import TunedLens, logit_lens, residual_stream
from innerprobe.models.loaded import LoadedModel
from innerprobe.protocol.prompts import Prompt, PromptSpec, label_tokens
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import as_items, items_digest

POSITIONS = ("quote_end", "last")
TARGETS = ("answer", "control", "property", "output")


@dataclass(frozen=True)
class LensTraceConfig:
    """Settings of a lens trace (checked on construction).

    Attributes:
        positions: H positions read, any of :data:`POSITIONS`.
        top_k: a target has emerged at a layer where its rank is below ``top_k``...
        persist: ...and stays below it for this many consecutive layers (fewer at the end).
        batch_size: prompts per forward (object answers and residual streams).
        answer_tokens: greedy tokens of the object answer (None: the task's own budget, 48 for
            the sequence tasks). The trace needs only the answer's first vocabulary word and
            the property read off the response's start; greedy decoding is deterministic, so a
            budget that reaches that word gives the same targets, at half the cost. 12 tokens is
            too few: SmolLM2 sometimes writes "1 the next 5 animals in the text are cow ..."
            and the first animal arrives after a dozen tokens.
        n_boot, seed: bootstrap of the layer gaps (and the items' seed).
        spec: prompt wording, as in :class:`~innerprobe.behavior.config.BehaviorConfig`.
    """

    positions: tuple[str, ...] = POSITIONS
    top_k: int = 10
    persist: int = 3
    batch_size: int = 16
    n_boot: int = 2000
    seed: int = 0
    spec: PromptSpec = PromptSpec()
    answer_tokens: int | None = 24

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(self.positions))
        if self.answer_tokens is not None:
            check_at_least("LensTraceConfig.answer_tokens", self.answer_tokens, 1)
        if not self.positions:
            raise DataError(f"no positions to read; choose from {', '.join(POSITIONS)}")
        for p in self.positions:
            if p not in POSITIONS:
                raise UnknownNameError("lens position", p, POSITIONS)
        check_at_least("LensTraceConfig.top_k", self.top_k, 1)
        check_at_least("LensTraceConfig.persist", self.persist, 1)
        check_at_least("LensTraceConfig.batch_size", self.batch_size, 1)
        check_at_least("LensTraceConfig.n_boot", self.n_boot, 1)


# ------------------------------------------------------------------ targets


def _first_id(tokenizer: Any, word: str) -> int:
    return int(tokenizer(" " + word, add_special_tokens=False)["input_ids"][0])


def token_prior(model: LoadedModel) -> Float[Tensor, " vocab"]:
    """The model's prior over first tokens: log-probs after the start token alone (a frequency
    proxy that needs no corpus)."""
    tok = model.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    with torch.inference_mode():
        logits = model.hf_model(input_ids=torch.tensor([[start]], device=model.device)).logits
    return torch.log_softmax(logits[0, -1].float(), -1).cpu()


def _prompt_words(question: str, vocabulary: set[str] | None) -> list[str]:
    words = [w.strip(".,;:!?\"'()").lower() for w in question.split()]
    words = [w for w in words if w.isalpha() and len(w) > 1]
    in_vocab = [w for w in words if vocabulary and w in vocabulary]
    return list(dict.fromkeys(in_vocab or words))


def frequency_matched(
    tokenizer: Any, prior: Float[Tensor, " vocab"], answer: str, candidates: Sequence[str]
) -> tuple[str, int] | None:
    """The candidate word (not the answer, another first token) whose first-token prior log-prob
    is closest to the answer's, with its token id (None: no candidate)."""
    a_id = _first_id(tokenizer, answer)
    best = None
    for w in candidates:
        if w == answer.lower() or (c_id := _first_id(tokenizer, w)) == a_id:
            continue
        gap = abs(float(prior[c_id] - prior[a_id]))
        if best is None or gap < best[0]:
            best = (gap, w, c_id)
    return None if best is None else (best[1], best[2])


@dataclass
class _Targets:
    index: int
    answer: str
    control: str
    value: str
    ids: tuple[int, int, int]  # answer, control, property


def _answer_columns(model: LoadedModel, items: Any, prop: Property, config: LensTraceConfig) -> dict[str, list]:
    """The own answer per item from its greedy object response (see :func:`lens_trace`)."""
    budget = {} if config.answer_tokens is None else {"object_max_new_tokens": config.answer_tokens}
    behavior = elicit_object(model, items, prop, BehaviorConfig(spec=config.spec, batch_size=config.batch_size,
                                                                seed=config.seed, **budget))
    return answer_columns(behavior, prop, items_vocabulary(items))


def given_answer_columns(answers: Sequence[str | None], prop: Property, n_items: int) -> dict[str, list]:
    """Answer columns from given answer words: the property is read off each word."""
    if len(answers) != n_items:
        raise DataError(f"lens_trace: {len(answers)} answers for {n_items} items")
    return {"object_answer": list(answers), "property_value": [prop.extract(a) if a else None for a in answers]}


def _targets(model: LoadedModel, items: Any, prop: Property, h_prompts: Sequence[Prompt],
             cols: dict[str, list], spec: PromptSpec, dropped: Counter) -> list[_Targets]:
    tok, prior, vocab = model.tokenizer, token_prior(model), items_vocabulary(items)
    out = []
    for i, (row, h) in enumerate(zip(items, h_prompts)):
        answer, value = cols["object_answer"][i], cols["property_value"][i]
        if not answer or value is None:
            dropped["no_answer" if not answer else "no_property_value"] += 1
            continue
        control = frequency_matched(tok, prior, answer, _prompt_words(row["question"], vocab))
        if control is None:
            dropped["no_control_word"] += 1
            continue
        try:
            prop_id = label_tokens(tok, [str(value)], h.text, spec.hypothetical_prefill).token_ids[0][0]
        except DataError:
            dropped["label_merges_with_prompt"] += 1
            continue
        out.append(_Targets(i, answer, control[0], str(value), (_first_id(tok, answer), control[1], int(prop_id))))
    return out


# ------------------------------------------------------------------ readout


def _lens_logp(model: LoadedModel, lens: TunedLens | None, layer: int, h: Tensor) -> Tensor:
    return lens(model, layer, h) if lens is not None else logit_lens(model, h)


def _readout(
    model: LoadedModel, lens: TunedLens | None, resid: Float[Tensor, "layer pos d_model"], ids: Int[Tensor, " k"]
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (0 = top) and log-prob at every layer and position of each of ``ids`` and, last, of
    the position's own output (the last layer's top-1 there): ``[layer, pos, k + 1]``."""
    n_layers, n_pos = resid.shape[0], resid.shape[1]
    out_ids = _lens_logp(model, lens, n_layers - 1, resid[-1]).argmax(-1)  # [pos]
    per_pos = torch.cat([ids[None].expand(n_pos, -1), out_ids[:, None]], dim=1)  # [pos, k + 1]
    ranks, logps = [], []
    for layer in range(n_layers):
        logp = _lens_logp(model, lens, layer, resid[layer])  # [pos, vocab]
        tgt = logp.gather(1, per_pos)  # [pos, k + 1]
        ranks.append((logp[:, None, :] > tgt[:, :, None]).sum(-1))
        logps.append(tgt)
    return torch.stack(ranks).numpy(), torch.stack(logps).numpy()


def emergence(ranks: np.ndarray, top_k: int, persist: int = 1) -> np.ndarray:
    """First layer (axis 0) from which rank < ``top_k`` holds for ``persist`` consecutive layers
    (or to the last layer, when fewer remain); NaN where no layer qualifies."""
    hit = ranks < top_k
    n = hit.shape[0]
    ok = np.zeros_like(hit)
    for layer in range(n):
        ok[layer] = hit[layer : min(n, layer + persist)].all(0)
    first = ok.argmax(0).astype(float)
    first[~ok.any(0)] = np.nan
    return first


# ------------------------------------------------------------------ result


@dataclass
class PositionTrace(Summary):
    """One H position: how often each target emerges, and the layer gaps with their CIs."""

    position: str
    n_items: int
    answer_emerged: Estimate
    control_emerged: Estimate
    property_emerged: Estimate
    output_emerged: Estimate
    gap_property_minus_answer: Estimate | None
    gap_output_minus_answer: Estimate | None
    gap_control_minus_answer: Estimate | None


@dataclass
class LensTraceSummary(Summary):
    """Per position a :class:`PositionTrace`; ``dropped``: items left out, by reason."""

    lens: str
    top_k: int
    n_items: int
    dropped: dict[str, int]
    positions: dict[str, PositionTrace]

    @property
    def table(self) -> pd.DataFrame:
        frames = [p.table.assign(position=name) for name, p in self.positions.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _gap(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> Estimate | None:
    d = a - b
    d = d[np.isfinite(d)]
    return bootstrap_ci(d, n_boot=n_boot, seed=seed) if d.size else None


@dataclass
class LensTraceResult(Result):
    """Ranks and log-probs ``[item, layer, position, target]`` with the per-item words.

    ``.table``: one row per item × layer × position × target; ``.summary``: a
    :class:`LensTraceSummary`; ``.figure()``: median rank per layer of each target.
    """

    stage: ClassVar[str] = "lens_trace"

    ranks: np.ndarray
    logprobs: np.ndarray
    items: pd.DataFrame
    positions: list[str]
    lens: str
    config: dict[str, Any]
    dropped: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        n, n_l, n_p, n_t = self.ranks.shape
        i, layer, p, t = np.meshgrid(np.arange(n), np.arange(n_l), np.arange(n_p), np.arange(n_t), indexing="ij")
        return pd.DataFrame({
            "item": self.items["item_id"].to_numpy()[i.ravel()], "layer": layer.ravel(),
            "position": np.asarray(self.positions, dtype=object)[p.ravel()],
            "target": np.asarray(TARGETS, dtype=object)[t.ravel()],
            "rank": self.ranks.ravel(), "logprob": self.logprobs.ravel(),
        })

    def emergence(self) -> np.ndarray:
        """``[item, position, target]``: first layer with rank < top_k (NaN: never)."""
        return emergence(np.moveaxis(self.ranks, 1, 0), int(self.config["top_k"]), int(self.config.get("persist", 1)))

    @property
    def summary(self) -> LensTraceSummary:
        em, n = self.emergence(), self.ranks.shape[0]
        n_boot, seed = int(self.config["n_boot"]), int(self.config["seed"])
        per = {}
        for j, pos in enumerate(self.positions):
            a, c, p, o = (em[:, j, t] for t in range(len(TARGETS)))
            rate = lambda x: proportion(int(np.isfinite(x).sum()), n)  # noqa: E731
            per[pos] = PositionTrace(pos, n, rate(a), rate(c), rate(p), rate(o), _gap(p, a, n_boot, seed),
                                     _gap(o, a, n_boot, seed), _gap(c, a, n_boot, seed))
        return LensTraceSummary(self.lens, int(self.config["top_k"]), n, dict(self.dropped), per)

    def figure(self) -> go.Figure:
        fig = make_subplots(rows=1, cols=len(self.positions), subplot_titles=[f"H {p}" for p in self.positions],
                            shared_yaxes=True)
        colors = {"answer": "#d62728", "control": "#7f7f7f", "property": "#1f77b4", "output": "#2ca02c"}
        for j in range(len(self.positions)):
            for t, name in enumerate(TARGETS):
                med = np.median(self.ranks[:, :, j, t], axis=0) if len(self.ranks) else []
                fig.add_trace(go.Scatter(x=list(range(self.ranks.shape[1])), y=med + 1, name=name, mode="lines",
                                         line={"color": colors[name]}, showlegend=j == 0), row=1, col=j + 1)
        fig.update_yaxes(type="log", title_text="median rank + 1", row=1, col=1)
        fig.update_xaxes(title_text="layer")
        fig.update_layout(title=f"{self.lens} lens in H: own answer, a frequency-matched P word, the property label, the output")
        return fig


# ------------------------------------------------------------------ the experiment


def lens_trace(
    model: LoadedModel,
    items: Any,
    prop: Property | str,
    config: LensTraceConfig = LensTraceConfig(),
    *,
    lens: TunedLens | None = None,
    answers: Sequence[str | None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> LensTraceResult:
    """Trace the own answer, its control word and the property label through H's layers.

    Args:
        model: a loaded model.
        items: a task name, a ``datasets.Dataset`` or a list of item dicts.
        prop: the property H asks about.
        lens: a trained :class:`~innerprobe.interventions.lens.TunedLens` (default: logit lens).
        answers: the own answer word per item (``None``: no answer), e.g. the model's forced
            choice among the item's words; the property value traced is then the property of
            that word. Default: the first vocabulary word of the greedy object answer, and the
            property of the whole response (a model whose greedy answer has drifted away from
            the task's words then leaves few items to trace).
        progress: called with the number of items after each batch of residual streams.
    """
    prop = get_property(prop) if isinstance(prop, str) else prop
    ds = as_items(items, seed=config.seed)
    cols = _answer_columns(model, ds, prop, config) if answers is None else given_answer_columns(answers, prop, len(ds))
    h_prompts = build_hypotheticals(model, ds, prop, config.spec)
    dropped: Counter = Counter()
    targets = _targets(model, ds, prop, h_prompts, cols, config.spec, dropped)
    if not targets:
        raise DataError(f"no item has a readable answer, control word and property label (dropped: {dict(dropped)})")
    ranks, logps = [], []
    for start in range(0, len(targets), config.batch_size):
        chunk = targets[start : start + config.batch_size]
        streams = residual_stream(model, [h_prompts[t.index].input_ids for t in chunk], batch_size=config.batch_size)
        for t, s in zip(chunk, streams):
            pos = [h_prompts[t.index].positions[p] for p in config.positions]
            with torch.inference_mode():
                r, lp = _readout(model, lens, s[:, pos], torch.tensor(t.ids))
            ranks.append(r)
            logps.append(lp)
        if progress is not None:
            progress(len(chunk))
    table = pd.DataFrame([{"item_id": ds[t.index]["id"], "answer": t.answer, "control": t.control,
                           "property_value": t.value, "answer_id": t.ids[0], "control_id": t.ids[1],
                           "property_id": t.ids[2]} for t in targets])
    name = "tuned" if lens is not None else "logit"
    prov = provenance(model.fingerprint, seed=config.seed, template_hash=config.spec.template_hash(prop),
                      property=prop.name, items_digest=items_digest(ds), n_items=len(ds))
    cfg = {"positions": list(config.positions), "top_k": config.top_k, "persist": config.persist, "n_boot": config.n_boot, "seed": config.seed,
           "spec": config.spec.to_dict()}
    return LensTraceResult(np.stack(ranks), np.stack(logps), table, list(config.positions), name, cfg,
                           dict(dropped), prov)


__all__ = [
    "POSITIONS", "TARGETS", "LensTraceConfig", "LensTraceResult", "LensTraceSummary", "PositionTrace",
    "emergence", "frequency_matched", "lens_trace", "token_prior",
]
