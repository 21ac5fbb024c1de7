"""The patching study in one call: pairs → O map → H map → AtP → O→H transplant.

Minimal pairs (:mod:`innerprobe.patching.pairs`) are built on the object prompt O; both the
object map (patching O(P_A) with O(P_B) position by layer) and the hypothetical map (the same on
H(P_A) / H(P_B), the quoted P inside H) are denoising grids over the replaced word and the last
tokens of P; on ``resid_pre`` attribution patching (AtP) approximates the H map from one forward
and one backward, and its agreement with the exact map is reported. The transplant writes O(P_B)'s
residual at the word and the last P tokens into H(P_A)'s quote at the same places, beside two
controls: O(P_A) (same property, no shift expected) and an other-task object prompt.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, get_args

import plotly.graph_objects as go

from innerprobe.core.errors import DataError, check_choice
from innerprobe.core.io import provenance, write_json, write_parquet
from innerprobe.models.load import load_model
from innerprobe.patching.pairs import (
    GapRule,
    build_pairs,
    cell_names,
    grid_cells,
    p_end,
    transplant_positions,
)
from innerprobe.patching.stack import (
    SITES,
    LlamaStack,
    TransplantItem,
    attribution_patch,
    comparison_figure,
    heatmap,
    patch_grid,
    transplant,
)
from innerprobe.protocol.prompts import PromptSpec, object_prompt
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items

log = logging.getLogger(__name__)


def parse_layers(spec: str | None, n_layers: int) -> list[int]:
    """``None`` → every layer; ``"0,5,9"`` → those; ``"0:30:3"`` → ``range(0, 30, 3)``."""

    if spec is None or spec.strip() in ("", "all"):
        return list(range(n_layers))
    try:
        if ":" in spec:
            out = list(range(n_layers))[slice(*(int(x) if x else None for x in spec.split(":")))]
        else:
            out = [int(x) for x in spec.split(",")]
    except ValueError as e:
        raise DataError(f"--layers {spec!r}: use 'all', a list '0,5,9' or a slice '0:30:3'") from e
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad or not out:
        raise DataError(f"--layers {spec!r} gives {bad or out}; valid layers are 0..{n_layers - 1}")
    return out


def check_patch_options(task: str, prop_name: str, site: str, gap_rule: str, other_task: str) -> None:
    """Names the patch verb takes, checked before any model is loaded or map computed."""


    check_choice("site", site, SITES)
    check_choice("gap rule", gap_rule, get_args(GapRule))
    get_property(prop_name)
    for name in (task, other_task):  # --task and --other-task: generated tasks
        load_items(name, n=1)


def run_patch(
    model: str, task: str, prop_name: str, n_pairs: int, site: str, out: Path, *, n_items: int, min_gap: float,
    gap_rule: str, p_tokens: int, last: int, other_task: str, seed: int, device: str | None, progress: Any,
    console: Any, layers: str | None = None,
) -> dict[str, Any]:

    spec = PromptSpec()
    prop = get_property(prop_name)
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def tick(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(now - clock[0], 2)
        clock[0] = now

    console.log(f"loading {model}")
    m = load_model(model, device=device)
    tick("load")
    stack = LlamaStack(m)
    layer_list = parse_layers(layers, stack.n_layers)
    console.log("building minimal pairs")
    ps = build_pairs(m, task, prop, n_pairs=n_pairs, n_items=n_items, min_gap=min_gap, gap_rule=gap_rule,
                     spec=spec, seed=seed)
    tick("pairs")
    tok = m.tokenizer
    names = cell_names(p_tokens, last)

    def o_cells(src: list) -> list:
        return [grid_cells(p.o_span, p_end(tok, p.o_a, p.o_a.user), len(p.o_a), p_tokens, last) for p in src]

    h_cells = [grid_cells(p.h_span, p.h_a.positions["quote_end"], len(p.h_a), p_tokens, last) for p in ps.pairs]
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    def grid(name: str, inputs: tuple[list, list], cells: list) -> Any:
        pairs, toks = inputs
        adv = progress(name, len(pairs) * len(layer_list) * len(names))
        res = patch_grid(m, pairs, toks, site=site, layers=layer_list, cells=cells, cell_labels=names, seed=seed,
                         progress=adv, stack=stack)
        write_parquet(out / f"{name}.parquet", res.to_dataframe())
        heatmap(res, f"{name}: {site} denoising").write_html(out / f"{name}.html")
        results[name] = res
        tick(name)
        return res

    o_map = grid("o_map", ps.o_inputs("pairs"), o_cells(ps.pairs))
    h_map = grid("h_map", ps.h_inputs(), h_cells)
    if ps.controls:
        grid("o_map_controls", ps.o_inputs("controls"), o_cells(ps.controls))
    n_p = 1 + p_tokens  # the word and the last tokens of P: the columns O and H share
    comparison_figure(o_map, h_map, list(range(n_p)), list(range(n_p))).write_html(out / "o_vs_h.html")
    summary: dict[str, Any] = {"pairs": ps.summary(), "maps": {k: v.summary() for k, v in results.items()}}
    if site == "resid_pre":
        pairs, toks = ps.h_inputs()
        atp = attribution_patch(m, pairs, toks, layers=layer_list, cells=h_cells, cell_labels=names, stack=stack)
        write_parquet(out / "h_atp.parquet", atp.to_dataframe())
        agree = atp.agreement(h_map, seed=seed)
        summary["h_atp_pearson_r"] = agree.value
        summary["h_atp_agreement"] = agree.to_dict()
        tick("h_atp")
    # O -> H transplant: O(P_B)'s residual on the replaced word and the last P tokens into H(P_A)'s
    # quoted P at the same places.
    other = load_items(other_task, n=len(ps.pairs), split="test", seed=seed)
    items = []
    n_word_left_out = 0
    for p, o_row in zip(ps.pairs, other):
        h_ids = p.h_a.input_ids
        h_end = p.h_a.positions["quote_end"]
        donors = {}
        for cond, o_prompt in (("donor", p.o_b), ("same_property", p.o_a)):
            read, write, word = transplant_positions(
                o_prompt.input_ids, p.o_span, p_end(tok, o_prompt, o_prompt.user), h_ids, p.h_span, h_end, p_tokens
            )
            n_word_left_out += cond == "donor" and not word
            donors[cond] = (o_prompt.input_ids, read, write)
        o_other = object_prompt(tok, o_row["question"], spec)
        end = p_end(tok, o_other, o_row["question"])
        write = donors["donor"][2]
        donors["other_task"] = (o_other.input_ids, list(range(end - len(write), end)), write)
        items.append(TransplantItem(h_ids, (p.h_tokens[1], p.h_tokens[0]), donors))
    tr = transplant(m, items, layers=layer_list, seed=seed, stack=stack)
    tick("transplant")
    write_parquet(out / "transplant.parquet", tr.to_dataframe())
    _transplant_figure(tr).write_html(out / "transplant.html")
    summary["transplant"] = tr.to_dataframe().to_dict(orient="records")
    summary["transplant_word_left_out"] = int(n_word_left_out)  # O and H word spans of unequal length
    if n_word_left_out:
        log.warning("transplant: the replaced word left out for %d pairs (O/H spans differ)", n_word_left_out)
    write_parquet(out / "pairs.parquet", ps.to_dataframe())
    summary["provenance"] = provenance(m.fingerprint, seed=seed, template_hash=spec.template_hash(prop, task),
                                       task=task, property=prop.name, site=site)
    summary["timings_s"] = timings
    write_json(out / "summary.json", summary)
    return summary


def _transplant_figure(tr: Any) -> Any:

    fig = go.Figure()
    df = tr.to_dataframe()
    for cond, d in df.groupby("condition"):
        fig.add_trace(go.Scatter(
            x=d["layer"], y=d["value"], name=cond, mode="lines+markers",
            error_y={"type": "data", "symmetric": False, "array": d["ci_high"] - d["value"],
                     "arrayminus": d["value"] - d["ci_low"]},
        ))
    fig.update_layout(title="O→H transplant: shift toward the donor's property label",
                      xaxis_title="layer", yaxis_title="Δ logit diff (donor − own label)")
    return fig
