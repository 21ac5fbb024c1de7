"""The patching study in one call: pairs → O map → H map → AtP → O→H transplant.

::

    from innerprobe.patching.study import PatchStudyConfig, run_patching_study
    result = run_patching_study("smollm2-135m-instruct", "animals", "second_character",
                                PatchStudyConfig(n_pairs=16, layers="0:30:3"))
    result.summary            # best cells with held-out estimates, AtP agreement, transplant shifts
    result.figure()           # O map beside H map on the quoted P
    result.save("runs/patch") # what `innerprobe patch` writes; PatchStudyResult.load() reads it

What happens, in order:

1. **Minimal pairs** (:func:`~innerprobe.patching.search.build_pairs`) are built on the object
   prompt O from the items (a task name, a ``datasets.Dataset`` or a list of dicts).
2. The **object map** patches O(P_A) with O(P_B), cell by layer, and the **hypothetical map**
   does the same on H(P_A) / H(P_B), the quoted P inside H: both are denoising grids over the
   replaced word and the last tokens of P (:mod:`innerprobe.patching.cells`). Control pairs
   (answer changes, property does not) get their own O map.
3. On ``resid_pre``, **attribution patching** (AtP) approximates the H map from one forward and
   one backward; its agreement with the exact map is reported (triage, not a result).
4. The **transplant** writes O(P_B)'s residual at the word and the last P tokens into H(P_A)'s
   quote at the same places, beside its controls: O(P_A) (same property, no shift expected), a
   norm-matched random vector, and an object prompt of another task; and, the same four ways,
   O's answer state (``o_last``) into H's last token (``h_last``), the reference E5.

The model may be a loaded model, a ``TransformerBridge`` the caller built, or a model name or
directory (:func:`~innerprobe.models.load.load_model`). The items' digest
(:func:`~innerprobe.protocol.tasks.loaders.items_digest`) and the model's fingerprint go into
the result's provenance, so a saved study says exactly what it was run on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from innerprobe.core.errors import DataError
from innerprobe.core.io import provenance
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.patching.attribution import attribution_patch
from innerprobe.patching.cells import cell_names, grid_cells, p_end, transplant_positions
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.grid import PatchResult, patch_grid
from innerprobe.patching.pairs import PairSet
from innerprobe.patching.search import Items, build_pairs, check_pair_task
from innerprobe.patching.study_config import PatchStudyConfig, parse_layers
from innerprobe.patching.study_result import PatchStudyResult
from innerprobe.patching.transplant import (
    ANSWER_STATE,
    TransplantItem,
    TransplantResult,
    transplant,
)
from innerprobe.protocol.prompts import object_prompt
from innerprobe.protocol.properties import Property, get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.protocol.tasks.loaders import as_items, items_digest

log = logging.getLogger(__name__)

Progress = Callable[[str, int], Callable[[int], None]] | None
"""``progress(stage, total)`` returns ``advance(n)``: how a caller (the CLI's bars) follows a run."""

def _task_of(items: Dataset, config: PatchStudyConfig) -> str:
    if config.task is not None:
        return config.task
    names = sorted(set(items["task"]))
    if len(names) != 1:
        raise DataError(f"items of several tasks {names}: set PatchStudyConfig(task=...) for the vocabulary")
    check_pair_task(names[0])
    return names[0]


def _source(items: Any) -> str:
    return items if isinstance(items, str) else type(items).__name__


def _as_model(model: Any, device: str | None) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model, device=device)


class _Clock:
    """Seconds per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def tick(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._t, 2)
        self._t = now


def run_patching_study(
    model: LoadedModel | Any | str,
    items: Items = "animals",
    prop: str | Property = "second_character",
    config: PatchStudyConfig | None = None,
    *,
    other_items: str | Dataset | Sequence[Mapping[str, Any]] | None = None,
    out: str | Path | None = None,
    progress: Progress = None,
) -> PatchStudyResult:
    """Run the whole patching study (see the module docstring) and return its result.

    Args:
        model: a :class:`~innerprobe.models.loaded.LoadedModel`, a ``TransformerBridge``, or
            a model name / directory / hub id (loaded on ``config.device``).
        items: where the minimal pairs come from: a task name (its first ``config.n_items``
            items of the test split, drawn with ``config.seed``), a ``datasets.Dataset`` or a
            list of dicts (item records; the first ``config.n_items``).
        prop: the property the hypothetical asks about (a name or a ``Property``).
        other_items: items of the other-task transplant control (default: ``config.other_task``).
        out: when given, the result is also saved there (:meth:`PatchStudyResult.save`).
        progress: ``progress(stage, total) -> advance`` for progress bars.

    Everything that can be checked without the model (config, property, items, tasks) is
    checked before it is loaded.

    Raises:
        DataError / UnknownNameError: bad items, names or layers (naming the valid ones), or no
            property pair survives the filters.
    """
    config = config or PatchStudyConfig()
    prop = get_property(prop) if isinstance(prop, str) else prop
    ds = as_items(items, n=config.n_items, split="test", seed=config.seed)
    task = _task_of(ds, config)
    other_source = other_items if other_items is not None else config.other_task
    other_ds = None if isinstance(other_source, str) else as_items(other_source)
    if isinstance(other_items, str):
        load_items(other_items, n=1)  # fails now, not after the model and the maps
    clock = _Clock()
    m = _as_model(model, config.device)
    clock.tick("load")
    stack = DecoderStack(m)
    layers = parse_layers(config.layers, stack.n_layers)
    log.info("building minimal pairs from %d %s items", len(ds), task)
    ps = build_pairs(m, task, prop, items=ds, n_pairs=config.n_pairs, n_controls=config.n_controls,
                     min_gap=config.min_gap, gap_rule=config.gap_rule, spec=config.spec, seed=config.seed,
                     greedy_max_new_tokens=config.greedy_max_new_tokens)
    clock.tick("pairs")
    maps = _maps(m, stack, ps, layers, config, progress, clock)
    h_atp = agreement = None
    if config.site == "resid_pre":
        h_pairs, h_toks = ps.h_inputs()
        h_atp = attribution_patch(m, h_pairs, h_toks, layers=layers, cells=_h_cells(ps, config),
                                  cell_labels=cell_names(config.p_tokens, config.last), stack=stack)
        agreement = h_atp.agreement(maps["h_map"], seed=config.seed)
        clock.tick("h_atp")
    other = other_ds if other_ds is not None else as_items(other_source, n=len(ps.pairs), split="test", seed=config.seed)
    tr_layers = layers if config.transplant_layers is None else parse_layers(config.transplant_layers, stack.n_layers)
    tr, n_word_left_out = _transplant(m, stack, ps, other.select(range(min(len(ps.pairs), len(other)))),
                                      tr_layers, config)
    clock.tick("transplant")
    prov = provenance(
        m.fingerprint, seed=config.seed, template_hash=config.spec.template_hash(prop, task), task=task,
        property=prop.name, site=config.site, items_source=_source(items), items_digest=items_digest(ds),
        n_items=len(ds), other_items_source=_source(other_source), other_items_digest=items_digest(other),
    )
    result = PatchStudyResult(
        config=config, pairs=ps, o_map=maps["o_map"], h_map=maps["h_map"], o_map_controls=maps.get("o_map_controls"),
        h_atp=h_atp, h_atp_agreement=agreement, transplant=tr, transplant_word_left_out=n_word_left_out,
        timings=clock.timings, provenance=prov,
    )
    if out is not None:
        result.save(out)
    return result


def _o_cells(tok: Any, src: list, config: PatchStudyConfig) -> list[list[tuple[int, ...]]]:
    return [grid_cells(p.o_span, p_end(tok, p.o_a, p.o_a.user), len(p.o_a), config.p_tokens, config.last)
            for p in src]


def _h_cells(ps: PairSet, config: PatchStudyConfig) -> list[list[tuple[int, ...]]]:
    return [grid_cells(p.h_span, p.h_a.positions["quote_end"], len(p.h_a), config.p_tokens, config.last)
            for p in ps.pairs]


def _maps(m: LoadedModel, stack: DecoderStack, ps: PairSet, layers: list[int], config: PatchStudyConfig,
          progress: Progress, clock: _Clock) -> dict[str, PatchResult]:
    """The O map, the H map and (with control pairs) the control O map."""
    names = cell_names(config.p_tokens, config.last)
    todo = {"o_map": (ps.o_inputs("pairs"), _o_cells(m.tokenizer, ps.pairs, config)),
            "h_map": (ps.h_inputs(), _h_cells(ps, config))}
    if ps.controls:
        todo["o_map_controls"] = (ps.o_inputs("controls"), _o_cells(m.tokenizer, ps.controls, config))
    out = {}
    for name, ((pairs, toks), cells) in todo.items():
        adv = progress(name, len(pairs) * len(layers) * len(names)) if progress else None
        out[name] = patch_grid(m, pairs, toks, site=config.site, layers=layers, cells=cells, cell_labels=names,
                               n_boot=config.n_boot, seed=config.seed, progress=adv, stack=stack)
        clock.tick(name)
    return out


def _transplant(m: LoadedModel, stack: DecoderStack, ps: PairSet, other: Dataset, layers: list[int],
                config: PatchStudyConfig) -> tuple[TransplantResult, int]:
    """O→H transplant items (donor, same-property and other-task O prompts per pair, at the word
    site and at the answer state ``o_last`` → ``h_last``), run.

    Returns the result and how many pairs had the replaced word left out of the donor's write
    positions (O and H word spans of unequal token length).
    """
    tok, k = m.tokenizer, config.p_tokens
    items = []
    n_word_left_out = 0
    for p, o_row in zip(ps.pairs, other):
        h_ids, h_end = p.h_a.input_ids, p.h_a.positions["quote_end"]
        donors = {}
        for cond, o_prompt in (("donor", p.o_b), ("same_property", p.o_a)):
            read, write, word = transplant_positions(
                o_prompt.input_ids, p.o_span, p_end(tok, o_prompt, o_prompt.user), h_ids, p.h_span, h_end, k
            )
            n_word_left_out += cond == "donor" and not word
            donors[cond] = (o_prompt.input_ids, read, write)
        o_other = object_prompt(tok, o_row["question"], config.spec)
        end = p_end(tok, o_other, o_row["question"])
        write = donors["donor"][2]
        donors["other_task"] = (o_other.input_ids, list(range(end - len(write), end)), write)
        last = [len(h_ids) - 1]  # the answer state: o_last -> h_last
        for cond, ids in (("donor", p.o_b.input_ids), ("same_property", p.o_a.input_ids),
                          ("other_task", o_other.input_ids)):
            donors[cond + ANSWER_STATE] = (ids, [len(ids) - 1], last)
        items.append(TransplantItem(h_ids, (p.h_tokens[1], p.h_tokens[0]), donors))
    if n_word_left_out:
        log.warning("transplant: the replaced word left out for %d pairs (O/H spans differ)", n_word_left_out)
    tr = transplant(m, items, layers=layers, seed=config.seed, n_boot=config.n_boot, stack=stack)
    return tr, int(n_word_left_out)


__all__ = ["PatchStudyConfig", "PatchStudyResult", "Progress", "parse_layers", "run_patching_study"]
