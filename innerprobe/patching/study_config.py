"""The knobs of a patching study, checked before any model is loaded.

:class:`PatchStudyConfig` is what ``innerprobe patch``'s options build and what
:func:`~innerprobe.patching.study.run_patching_study` takes: every value is checked in
``__post_init__``, so a bad site, gap rule, count, layer spec or task name fails at once, with
an error naming the bad value and the valid ones, and never after minutes of patching.
:func:`parse_layers` turns a layer spec into layer indices once the model's depth is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, get_args

from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.patching.pairs import GapRule
from innerprobe.patching.search import check_pair_task
from innerprobe.patching.sites import SITES
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.tasks import load_items

LAYERS_HELP = "use 'all', a list '0,5,9' or a slice '0:30:3'"


def _layer_selection(spec: str) -> list[int] | slice:
    """The layers a spec names, before the model's depth is known (a list, or a slice of it)."""
    try:
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) > 3:
                raise ValueError(spec)
            return slice(*(int(x) if x.strip() else None for x in parts))
        return [int(x) for x in spec.split(",")]
    except ValueError as e:
        raise DataError(f"--layers {spec!r}: {LAYERS_HELP}") from e


def parse_layers(spec: str | None, n_layers: int) -> list[int]:
    """``None`` / ``"all"`` → every layer; ``"0,5,9"`` → those; ``"0:30:3"`` → ``range(0, 30, 3)``.

    Raises:
        DataError: a spec that does not parse, or names no layer or one outside ``0..n_layers-1``.
    """
    if spec is None or spec.strip() in ("", "all"):
        return list(range(n_layers))
    sel = _layer_selection(spec)
    out = list(range(n_layers))[sel] if isinstance(sel, slice) else sel
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad or not out:
        raise DataError(f"--layers {spec!r} gives {bad or out}; valid layers are 0..{n_layers - 1}")
    return out


@dataclass(frozen=True)
class PatchStudyConfig:
    """The knobs of a patching study, checked when built (each error names the valid values).

    Attributes:
        task: the sequence task whose vocabulary supplies replacement words and whose wording H
            uses (default: the items' own ``task``).
        n_pairs, n_controls: property- and control-pair budgets (``n_controls`` default:
            ``n_pairs``).
        n_items: items searched for pairs (at most: the search stops when the budgets are full).
        min_gap, gap_rule: the logit-difference gap filter (:mod:`innerprobe.patching.filters`).
        site: the hook site patched, one of :data:`~innerprobe.patching.sites.SITES` (AtP runs
            on ``resid_pre`` only).
        p_tokens: tokens at the end of P patched (and aligned O↔H) besides the replaced word.
        last: last prompt positions patched.
        layers: ``"all"``, a list ``"0,5,9"`` or a slice ``"0:30:3"`` (checked against the
            model's depth when it is loaded).
        transplant_layers: layers of the O→H transplant, in the same notation (None: ``layers``).
        greedy_max_new_tokens: length of the greedy decode that records each pair's greedy
            answers (:func:`~innerprobe.patching.search.annotate_greedy`; behaviour's default 24,
            so the decode is shared with a behaviour run; fewer tokens still find a first word).
        other_task: items of the other-task transplant control (a task name or file), unless
            ``run_patching_study`` is given ``other_items``.
        n_boot: bootstrap resamples of every interval.
        seed: items, pairs, random-vector control and bootstrap.
        device: where a model given by name is loaded (default: cuda if available).
        spec: prompt wording (:class:`~innerprobe.protocol.prompts.PromptSpec`).
    """

    task: str | None = None
    n_pairs: int = 16
    n_controls: int | None = None
    n_items: int = 200
    min_gap: float = 0.5
    gap_rule: str = "difference"
    site: str = "resid_pre"
    p_tokens: int = 8
    last: int = 6
    layers: str | None = "all"
    transplant_layers: str | None = None
    greedy_max_new_tokens: int = 24
    other_task: str = "colors"
    n_boot: int = 2000
    seed: int = 0
    device: str | None = None
    spec: PromptSpec = PromptSpec()

    def __post_init__(self) -> None:
        check_choice("site", self.site, SITES)
        check_choice("gap rule", self.gap_rule, get_args(GapRule))
        check_at_least("PatchStudyConfig.n_pairs", self.n_pairs, 1)
        check_at_least("PatchStudyConfig.n_controls", self.n_controls, 0, allow_none=True)
        check_at_least("PatchStudyConfig.n_items", self.n_items, 2)
        check_at_least("PatchStudyConfig.p_tokens", self.p_tokens, 0)
        check_at_least("PatchStudyConfig.last", self.last, 1)
        check_at_least("PatchStudyConfig.n_boot", self.n_boot, 1)
        if not math.isfinite(self.min_gap):
            raise DataError(f"PatchStudyConfig.min_gap must be a finite number, got {self.min_gap}")
        check_at_least("PatchStudyConfig.greedy_max_new_tokens", self.greedy_max_new_tokens, 1)
        for layer_spec in (self.layers, self.transplant_layers):
            if layer_spec is not None and layer_spec.strip() not in ("", "all"):
                _layer_selection(layer_spec)
        if self.task is not None:
            check_pair_task(self.task)
        load_items(self.other_task, n=1)  # a name that loads: the control's items exist

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": self.spec.to_dict()}


__all__ = ["PatchStudyConfig", "parse_layers"]
