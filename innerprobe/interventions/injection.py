"""Concept injection (Lindsey 2026; E8) scored from logits, with every control built in.

**The protocol.** Add ``α·v`` (a concept vector, :mod:`innerprobe.interventions.concepts`) to
the residual stream at one layer, at the positions the *timing* names
(:mod:`innerprobe.interventions.injection_config`), and ask the model whether it detects an
injected thought. Instead of sampling an answer and having a judge grade it, read the answer
from the logits after the prefill "Answer:":

* **detection score** ``LD = log P(yes) − log P(no)`` (each side a logsumexp over its
  spellings' first tokens, "yes"/"Yes"); a trial counts as "yes" when ``LD > 0``;
* **identification**: forced choice among the ``N`` concept words (first tokens), chance ``1/N``,
  beside the *leak* control: the same injection with "Say one word" (a steering vector makes a
  model say its word without any introspection; identification must beat that, not chance).

**Why the controls** (each trial type is in :mod:`innerprobe.interventions.trials`):

* *no-injection* trials give the false-positive rate and the baseline ``LD`` every shift is
  measured from (paired by trial variant);
* *norm-matched random vectors* separate "this concept" from "any push of this size";
* the *impossible question* ("Is the sky made of cheese?") under the same injection measures the
  **yes-bias**: if the detection shift is just a shift towards "yes", it appears here too.
  Hahami et al. (arXiv 2512.12411) found the two shifts correlated at r = 0.999 across vectors
  and scales; the result reports that correlation with a bootstrap CI over conditions;
* the *input-level twin* writes the concept word into the prompt instead ("Think about ocean."):
  a model that "detects" the twin as well as the injection cannot tell steering from input;
* *localisation* injects into one of ``N`` numbered sentences and asks which one: a yes-bias
  cannot help, chance is exactly ``1/N`` (targets are balanced).

Every rate carries a Wilson interval, every mean shift a bootstrap interval over trials, and every
paired comparison (injected vs not, concept vs random, detection vs impossible question) a paired
bootstrap CI and an exact McNemar p-value. The positions every trial was injected at are read
back from the intervention log and checked against the timing's request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.behavior.inference import cache_kwarg, left_pad, output_cache
from innerprobe.core.errors import DataError
from innerprobe.core.io import provenance
from innerprobe.interventions.concepts import ConceptSet, check_layer, random_like
from innerprobe.interventions.edits import AddVector
from innerprobe.interventions.hooks import Intervention, intervene
from innerprobe.interventions.injection_config import (
    InjectionConfig,
    control_variants,
    expected_positions,
    timing_selector,
)
from innerprobe.interventions.injection_result import InjectionResult, conditions_table, summarise
from innerprobe.interventions.positions import Selector
from innerprobe.interventions.trials import (
    DETECT,
    IDENTIFY,
    LEAK,
    Trial,
    build_trial,
    choice_tokens,
    localisation_question,
    with_prefill,
    yes_no_ids,
)
from innerprobe.models.loaded import LoadedModel

log = logging.getLogger(__name__)
Progress = Callable[[str, int], Callable[[int], None]] | None


@dataclass(frozen=True)
class Condition:
    """What is injected: nothing (``none``), a concept vector or its norm-matched random twin."""

    kind: str           # "none" | "concept" | "random"
    word: str = ""      # the concept (for "random": the concept whose norm it matches)
    scale: float = 0.0
    vector: Tensor | None = None


# --------------------------------------------------------------------------- readout


@torch.inference_mode()
def _cached_logprobs(
    model: LoadedModel, trials: Sequence[Trial], keep: Sequence[int], batch_size: int
) -> Float[Tensor, "n k"]:
    """log p(token | prompt + prefill) for the tokens ``keep``: the prompt is one fresh forward,
    the prefill one cached step after it (so its positions are "generated", index ≥ prompt_len)."""
    hf, pad = model.hf_model, model.tokenizer.pad_token_id
    out = torch.zeros(len(trials), len(keep))
    keep_t = torch.tensor(list(keep))
    order = sorted(range(len(trials)), key=lambda i: (trials[i].prefill_ids, len(trials[i].prompt_ids)))
    start = 0
    while start < len(order):
        idx = [order[start]]
        while (len(idx) < batch_size and start + len(idx) < len(order)
               and trials[order[start + len(idx)]].prefill_ids == trials[idx[0]].prefill_ids):
            idx.append(order[start + len(idx)])
        start += len(idx)
        ids, mask, pos = left_pad([trials[i].prompt_ids for i in idx], pad, model.device)
        prefill = trials[idx[0]].prefill_ids
        res = hf(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=bool(prefill), logits_to_keep=1)
        logits = res.logits[:, -1]
        if prefill:
            b, k = len(idx), len(prefill)
            cont = torch.tensor([list(prefill)] * b, device=ids.device)
            attn = torch.cat([mask, torch.ones(b, k, dtype=mask.dtype, device=mask.device)], 1)
            cpos = pos[:, -1:] + 1 + torch.arange(k, device=ids.device)
            logits = hf(input_ids=cont, attention_mask=attn, position_ids=cpos, use_cache=True,
                        **{cache_kwarg(hf): output_cache(res)}).logits[:, -1]
        lp = torch.log_softmax(logits.float(), -1).cpu()
        out[idx] = lp[:, keep_t]
    return out


def readout(
    model: LoadedModel, trials: Sequence[Trial], keep: Sequence[int], condition: Condition, layer: int,
    site: str, selector_of: Callable[[Trial], Selector], batch_size: int, relative: bool = False,
) -> tuple[Float[Tensor, "n k"], list[list[int]]]:
    """Log-probs of ``keep`` after each trial under ``condition``, and the injected positions.

    Trials are grouped by their selector (one :func:`~innerprobe.interventions.hooks.intervene`
    per group) also when nothing is injected, so a zero vector batches exactly like no injection
    and changes nothing bit for bit.
    """
    groups: dict[Selector, list[int]] = {}
    for i, t in enumerate(trials):
        groups.setdefault(selector_of(t), []).append(i)
    lp = torch.zeros(len(trials), len(keep))
    touched: list[list[int]] = [[] for _ in trials]
    for sel, idx in groups.items():
        chunk = [trials[i] for i in idx]
        if condition.vector is None:
            lp[idx] = _cached_logprobs(model, chunk, keep, batch_size)
            continue
        iv = Intervention(AddVector(condition.vector, condition.scale, relative), layers=(layer,), site=site, positions=sel,
                          name=f"{condition.kind}:{condition.word}")
        with intervene(model, iv) as ilog:
            lp[idx] = _cached_logprobs(model, chunk, keep, batch_size)
        for i, t in zip(idx, chunk):
            touched[i] = ilog.touched(0, layer, t.prompt_ids)
    return lp, touched


def _ld(lp: Float[Tensor, "n k"], n_yes: int) -> np.ndarray:
    return (torch.logsumexp(lp[:, :n_yes], -1) - torch.logsumexp(lp[:, n_yes:], -1)).double().numpy()


# --------------------------------------------------------------------------- trials


def _trials(model: LoadedModel, config: InjectionConfig, words: Sequence[str]) -> dict[str, list[Trial]]:
    tok, sys = model.tokenizer, config.system
    ks = range(1, config.n_trials + 1)
    ks_none = range(1, control_variants(config) + 1)  # the no-injection condition runs more variants
    out = {
        "detect": [build_trial(tok, "detect", k, DETECT, system=sys) for k in ks_none],
        "impossible": [build_trial(tok, "impossible", k, config.impossible, system=sys) for k in ks_none],
        "twin": {w: [build_trial(tok, "twin", k, config.twin.format(word=w) + DETECT, system=sys) for k in ks]
                 for w in words},
    }
    if config.identification:
        out["identify"] = [build_trial(tok, "identify", k, IDENTIFY, system=sys) for k in ks]
        out["leak"] = [build_trial(tok, "leak", k, LEAK, system=sys) for k in ks]
        out["twin_identify"] = {w: [build_trial(tok, "twin_identify", k, config.twin.format(word=w) + IDENTIFY,
                                                system=sys) for k in ks] for w in words}
    if config.localisation:
        base = build_trial(tok, "localise", 1, localisation_question(config.sentences), system=sys,
                           spans=config.sentences)
        out["localise"] = [Trial("localise", 1, base.prompt_ids, base.prefill_ids, base.text, base.prefill,
                                 {**base.positions, "target": j}) for j in range(len(config.sentences))]
    return out  # type: ignore[return-value]


def _rows(trials: Sequence[Trial], cond: Condition, touched: Sequence[Sequence[int]], **cols: Sequence) -> list[dict]:
    rows = []
    for i, t in enumerate(trials):
        row = {"kind": t.kind, "condition": cond.kind, "word": cond.word, "scale": cond.scale, "variant": t.variant,
               "target": t.positions.get("target", -1), "positions": list(touched[i]), "n_positions": len(touched[i])}
        row.update({k: v[i] for k, v in cols.items()})
        rows.append(row)
    return rows


class _Runner:
    """Runs every trial type under every condition; collects one table row per trial."""

    def __init__(self, model: LoadedModel, concepts: ConceptSet, config: InjectionConfig, progress: Progress) -> None:
        self.model, self.concepts, self.config = model, concepts, config
        self.layer, self.site = concepts.layer, concepts.site
        self.trials = _trials(model, config, concepts.words)
        self.yes, self.no = yes_no_ids(model.tokenizer, self.trials["detect"][0])
        self.rows: list[dict] = []
        self.mismatch: list[str] = []
        self.progress = progress

    def selector(self, t: Trial) -> Selector:
        return timing_selector(self.config, t)

    def _check(self, trials: Sequence[Trial], cond: Condition, touched: Sequence[Sequence[int]]) -> None:
        if cond.vector is None:
            return
        for t, got in zip(trials, touched):
            want = expected_positions(self.config, t)
            if list(got) != want:
                self.mismatch.append(f"{t.kind} trial {t.variant}: injected {list(got)}, requested {want}")

    def yes_no(self, trials: Sequence[Trial], cond: Condition) -> None:
        lp, touched = readout(self.model, trials, self.yes + self.no, cond, self.layer, self.site, self.selector,
                              self.config.batch_size, self.config.relative)
        self._check(trials, cond, touched)
        ld = _ld(lp, len(self.yes))
        self.rows += _rows(trials, cond, touched, score=ld, yes=ld > 0, choice=["yes" if x > 0 else "no" for x in ld],
                           correct=[None] * len(trials))

    def choice(self, trials: Sequence[Trial], cond: Condition, labels: Sequence[str], truth: Sequence[str]) -> None:
        shared, keep = choice_tokens(self.model.tokenizer, trials[0], labels)
        trials = [with_prefill(t, shared) for t in trials]
        lp, touched = readout(self.model, trials, keep, cond, self.layer, self.site, self.selector,
                              self.config.batch_size, self.config.relative)
        self._check(trials, cond, touched)
        pick = [labels[j] for j in lp.argmax(-1).tolist()]
        margin = [float(lp[i, labels.index(truth[i])] - lp[i].max()) if truth[i] in labels else float("nan")
                  for i in range(len(trials))]
        self.rows += _rows(trials, cond, touched, score=margin, yes=[None] * len(trials), choice=pick,
                           correct=[p == w for p, w in zip(pick, truth)])

    def conditions(self) -> list[Condition]:
        rnd = random_like(self.concepts, seed=self.config.random_seed)
        out = [Condition("none")]
        for s in self.config.scales:
            for i, w in enumerate(self.concepts.words):
                out.append(Condition("concept", w, s, self.concepts.vectors[i]))
                out.append(Condition("random", w, s, rnd.vectors[i]))
        return out

    def total(self, conds: Sequence[Condition]) -> int:
        """Trials :meth:`run` scores (for the progress bar)."""
        n, c = self.config.n_trials, self.config
        per = [2 * (control_variants(c) if x.kind == "none" else n) + (2 * n if c.identification and x.kind != "random" else 0)
               + (len(c.sentences) if c.localisation else 0) for x in conds]
        return sum(per) + len(self.concepts.words) * (n + (n if c.identification else 0))

    def run(self) -> None:
        conds = self.conditions()
        words, tr, n_sent = self.concepts.words, self.trials, len(self.config.sentences)
        tick = self.progress("injection trials", self.total(conds)) if self.progress else None
        done = 0
        n = self.config.n_trials
        for cond in conds:
            for kind in ("detect", "impossible"):
                # the paired variants batch exactly like the injected ones (a zero vector stays
                # bit-exact); the extra no-injection variants run after them
                self.yes_no(tr[kind][:n], cond)
                if cond.kind == "none" and len(tr[kind]) > n:
                    self.yes_no(tr[kind][n:], cond)
            if self.config.identification and cond.kind != "random":
                self.choice(tr["identify"], cond, words, [cond.word] * len(tr["identify"]))
                self.choice(tr["leak"], cond, words, [cond.word] * len(tr["leak"]))
            if self.config.localisation:
                sentences = [str(j + 1) for j in range(n_sent)]
                self.choice(tr["localise"], cond, sentences, [str(t.positions["target"] + 1) for t in tr["localise"]])
            done = self._tick(tick, done)
        for w in words:
            self.yes_no(tr["twin"][w], Condition("twin", w))
            if self.config.identification:
                self.choice(tr["twin_identify"][w], Condition("twin", w), words, [w] * self.config.n_trials)
            done = self._tick(tick, done)

    def _tick(self, tick: Callable[[int], None] | None, done: int) -> int:
        if tick is not None:
            tick(len(self.rows) - done)
        return len(self.rows)


def run_injection(
    model: LoadedModel,
    concepts: ConceptSet,
    config: InjectionConfig = InjectionConfig(),
    *,
    progress: Progress = None,
) -> InjectionResult:
    """Run the detection, identification and localisation trials with all controls.

    ``concepts`` fixes the layer and site (vectors are injected where they were read). Raises
    ``DataError`` for a vector of the wrong width, a layer the model lacks, or injected
    positions that differ from the timing's request.
    """
    check_layer(model, concepts.layer)
    if concepts.vectors.shape[1] != model.d_model:
        raise DataError(f"concept vectors have width {concepts.vectors.shape[1]}, the model's d_model is {model.d_model}")
    t0 = time.perf_counter()
    runner = _Runner(model, concepts, config, progress)
    runner.run()
    if runner.mismatch:
        raise DataError("injected positions differ from the timing's request: " + "; ".join(runner.mismatch[:3]))
    table = pd.DataFrame(runner.rows)
    table["timing"] = config.timing
    table["layer"] = concepts.layer
    seconds = time.perf_counter() - t0
    log.info("concept injection: %d trials in %.1f s", len(table), seconds)
    rnd = random_like(concepts, seed=config.random_seed)
    return InjectionResult(
        table=table,
        conditions=conditions_table(table),
        summary=summarise(table, config, len(concepts.words)),
        words=list(concepts.words),
        concept_vectors=concepts.vectors.clone(),
        random_vectors=rnd.vectors.clone(),
        config=config,
        concept_provenance={k: v for k, v in concepts.provenance.items() if k != "fingerprint"},
        provenance=provenance(model.fingerprint, seed=config.seed),
        seconds=seconds,
    )


__all__ = ["Condition", "InjectionConfig", "InjectionResult", "readout", "run_injection"]
