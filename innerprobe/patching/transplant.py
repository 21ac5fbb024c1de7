"""O→H transplant: write the object-level run's residual into the hypothetical.

Two sites, each a set of conditions of one :func:`transplant` call:

* **word** (conditions ``donor``, ``same_property``, ``other_task``, ``random``): if H re-reads
  the representation of P that O builds, writing O(P_B)'s residual at the replaced word (and the
  last tokens of P) into H(P_A)'s quote of P, at the same layer, should move H's prediction
  toward P_B's property.
* **answer state** (the same conditions with the suffix :data:`ANSWER_STATE`, ``donor@last``
  ...): the reference protocol's E5 (``interp_methods.md``): O(P_B)'s residual at its last
  prompt token ``o_last``, where O has formed its answer, written into H(P_A)'s last token
  ``h_last``. If H recomputes the answer at ``h_last`` and reads the property off it
  (self-simulation), the donor's answer state carries P_B's answer and moves the prediction;
  a model that reads a property feature of its own gains nothing from O's answer state beyond
  what any overwrite does (the controls). On the zoo's planted simulation models only this site
  sees the route: their H reads the quote within the first layer, so a word-site transplant
  from a third of the depth on comes after the read.

Each item carries its controls, run the same way:

* ``same_property``: a donor whose property equals the recipient's (no shift expected);
* ``random``: a random vector with the donor's norm at each position (how much overwriting with
  *anything* moves the prediction);
* ``other_task``: the object prompt of another task (real activations, wrong content).

Only ``donor`` beyond its controls (``donor - other_task`` above all) is evidence that H reads
the O representation. Every transplant is a list of :class:`~innerprobe.patching.rows.PatchRow`
run by the batched staircase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from innerprobe.core.errors import DataError
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, bootstrap_ci
from innerprobe.patching.decoder import DecoderStack
from innerprobe.patching.rows import PatchRow, run_rows
from innerprobe.patching.traces import baseline_metric, trace

CONDITIONS = ("donor", "same_property", "other_task", "random")
#: Suffix of the answer-state conditions (``o_last`` → ``h_last``; module docstring).
ANSWER_STATE = "@last"
ANSWER_STATE_CONDITIONS = tuple(c + ANSWER_STATE for c in CONDITIONS)


@dataclass
class TransplantSummary(Summary):
    """Per condition, the shift toward the donor's label averaged over the patched layers for
    each item, with a bootstrap CI over items (None: the condition was not run)."""

    n_items: int
    layers: list[int]
    donor: Estimate | None
    same_property: Estimate | None
    other_task: Estimate | None
    random: Estimate | None


def layer_mean_shift(shift: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> Estimate | None:
    """Per item the mean shift over layers, bootstrapped over items (None when no item is finite)."""
    with np.errstate(all="ignore"):
        per_item = np.nanmean(shift, axis=1)
    per_item = per_item[np.isfinite(per_item)]
    return bootstrap_ci(per_item, n_boot=n_boot, seed=seed) if per_item.size else None


@dataclass
class TransplantResult(Result):
    """Per-layer shift of the self-prediction toward the donor's label, beside its controls.

    ``shift[condition]`` is ``[items, layers]``: ``(patched - unpatched)`` of
    ``logit[donor label] - logit[own label]`` in H. Conditions: ``donor`` (O of the other prompt
    of the pair, different property), ``same_property`` (a donor whose property equals the
    recipient's), ``random`` (a random vector with the donor's norm), ``other_task``.
    """

    stage: ClassVar[str] = "transplant"

    layers: list[int]
    shift: dict[str, np.ndarray]
    estimates: dict[str, list[Estimate]]
    n_boot: int = 2000
    seed: int = 0

    @property
    def table(self) -> pd.DataFrame:
        """One row per condition × layer: mean shift over items with its bootstrap CI."""
        rows = []
        for cond, ests in self.estimates.items():
            for layer, e in zip(self.layers, ests):
                rows.append({"condition": cond, "layer": layer, **e.to_dict()})
        return pd.DataFrame(rows)

    @property
    def summary(self) -> TransplantSummary:
        by = {c: layer_mean_shift(self.shift[c], n_boot=self.n_boot, seed=self.seed) if c in self.shift else None
              for c in CONDITIONS}
        n = next(iter(self.shift.values())).shape[0] if self.shift else 0
        return TransplantSummary(int(n), list(self.layers), **by)

    def figure(self) -> go.Figure:
        """Shift per layer for each condition, with its CI band: the donor against its controls."""
        fig = go.Figure()
        for cond, ests in self.estimates.items():
            fig.add_trace(go.Scatter(
                x=self.layers, y=[e.value for e in ests], name=cond, mode="lines+markers",
                error_y={"type": "data", "symmetric": False,
                         "array": [e.ci_high - e.value for e in ests],
                         "arrayminus": [e.value - e.ci_low for e in ests]},
            ))
        fig.update_layout(title="O→H transplant: shift toward the donor's label", xaxis_title="layer",
                          yaxis_title="logit-diff shift")
        return fig


@dataclass
class TransplantItem:
    """One recipient H prompt, its metric tokens and the donors' O prompts.

    ``metric_tokens``: ``(donor label, own label)`` in H. ``donors``: condition name →
    ``(O token ids, O positions to read, H positions to write)``; a ``"random…"`` condition is
    built from each ``"donor…"`` condition's vectors (``donor@last`` → ``random@last``).
    """

    h_ids: list[int]
    metric_tokens: tuple[int, int]
    donors: dict[str, tuple[list[int], list[int], list[int]]]


@torch.inference_mode()
def transplant(
    model: Any,
    items: Sequence[TransplantItem],
    *,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    max_rows: int = 256,
    stack: DecoderStack | None = None,
) -> TransplantResult:
    """Write the O-run residual (resid_pre at each layer) into H at aligned positions.

    For each item and layer, the residual of the donor's O run at its read positions replaces
    H's residual at the write positions (same layer), and the metric shift is recorded.
    """
    if not items:
        raise DataError("no transplant items")
    stack = stack or DecoderStack(model)
    layers = list(range(stack.n_layers)) if layers is None else list(layers)
    gen = torch.Generator().manual_seed(seed)
    targets, rows, where = [], [], []
    for k, it in enumerate(items):
        tgt = trace(stack, it.h_ids)
        targets.append(tgt)
        donor_cache = {c: trace(stack, ids) for c, (ids, _, _) in it.donors.items()}
        for cond, (_, read, write) in it.donors.items():
            if len(read) != len(write):
                raise DataError(f"{cond}: {len(read)} read positions but {len(write)} write positions")
        randoms = {"random" + c[len("donor"):]: c for c in it.donors if c.startswith("donor")}
        conds = list(it.donors) + list(randoms)
        for cond in conds:
            for i, layer in enumerate(layers):
                if cond in randoms:
                    _, read, write = it.donors[randoms[cond]]
                    ref = donor_cache[randoms[cond]].resid[layer][read]
                    r = torch.randn(ref.shape, generator=gen).to(ref)
                    vec = r / r.norm(dim=-1, keepdim=True) * ref.norm(dim=-1, keepdim=True)
                else:
                    _, read, write = it.donors[cond]
                    vec = donor_cache[cond].resid[layer][read]
                rows.append(PatchRow(k, layer, tuple(write), vec))
                where.append((cond, k, i))
    tok = torch.tensor([list(it.metric_tokens) for it in items], dtype=torch.long)
    values = run_rows(stack, targets, tok, rows, max_rows=max_rows).numpy()
    base = np.array([baseline_metric(stack, t, m) for t, m in zip(targets, tok.tolist())])
    shift: dict[str, np.ndarray] = {}
    for (cond, k, i), v in zip(where, values):
        shift.setdefault(cond, np.full((len(items), len(layers)), np.nan))[k, i] = v - base[k]
    ests = {
        c: [bootstrap_ci(s[np.isfinite(s[:, i]), i], n_boot=n_boot, seed=seed) for i in range(len(layers))]
        for c, s in shift.items()
    }
    return TransplantResult(layers, shift, ests, n_boot=n_boot, seed=seed)


__all__ = ["ANSWER_STATE", "ANSWER_STATE_CONDITIONS", "CONDITIONS", "TransplantItem", "TransplantResult", "TransplantSummary", "layer_mean_shift", "transplant"]
