"""``innerprobe patch``: minimal pairs, O and H patching maps, AtP and O→H transplants.

A thin verb over :func:`~innerprobe.patching.study.run_patching_study`: the options build a
:class:`~innerprobe.patching.study_config.PatchStudyConfig` (which checks every value), the study
runs, ``result.save(out)`` writes it and a few summary lines are printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.options import (
    DeviceOpt,
    LayersOpt,
    ModelOpt,
    OutOpt,
    PropertyOpt,
    SeedOpt,
    SiteOpt,
    TaskOpt,
)
from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.patching.study import PatchStudyConfig, PatchStudyResult, run_patching_study

NPairsOpt = Annotated[int, typer.Option(help="Property pairs to keep.")]
NItemsOpt = Annotated[int, typer.Option(help="Items tried when building pairs.")]
MinGapOpt = Annotated[float, typer.Option(help="Logit-difference gap filter threshold.")]
GapRuleOpt = Annotated[str, typer.Option(help="difference | both_runs.")]
PTokensOpt = Annotated[int, typer.Option(help="Tokens at the end of P patched and aligned O↔H (besides the replaced word).")]
LastOpt = Annotated[int, typer.Option(help="Last prompt positions patched.")]
OtherTaskOpt = Annotated[str, typer.Option(help="Task of the other-task transplant control.")]


def print_summary(result: PatchStudyResult) -> None:
    """The lines ``innerprobe patch`` prints: greedy agreement, then each map's best cell."""
    s = result.summary
    agree = s.answer_agreement
    if agree is not None:
        console.print(f"pairs: forced-choice answer = greedy answer on both sides for {agree.value:.0%} of {agree.n} pairs")
    rows = (("o_map", s.n_pairs, s.o_map_best, s.o_map_best_cell, s.o_map_selection),
            ("h_map", s.n_pairs, s.h_map_best, s.h_map_best_cell, s.h_map_selection),
            ("o_map_controls", s.n_controls, s.o_map_controls_best, s.o_map_controls_best_cell,
             s.o_map_controls_selection))
    for name, n, est, cell, selection in rows:
        if name not in result.maps():
            continue
        if est is None:
            console.print(f"{name}: n={n} no finite recovery")
            continue
        console.print(f"{name}: n={n} best {cell} recovery {est.value:.2f} [{est.ci_low:.2f}, {est.ci_high:.2f}]")
        console.print(f"  ({selection})")


def register(app: typer.Typer) -> None:
    @app.command()
    def patch(
        model: ModelOpt = "smollm2-135m-instruct",
        task: TaskOpt = "animals",
        property: PropertyOpt = "second_character",
        n_pairs: NPairsOpt = 16,
        site: SiteOpt = "resid_pre",
        out: OutOpt = Path("runs/patch"),
        n_items: NItemsOpt = 200,
        min_gap: MinGapOpt = 0.5,
        gap_rule: GapRuleOpt = "difference",
        p_tokens: PTokensOpt = 8,
        last: LastOpt = 6,
        other_task: OtherTaskOpt = "colors",
        seed: SeedOpt = 0,
        device: DeviceOpt = None,
        layers: LayersOpt = "all",
    ) -> None:
        """Activation patching of O and H on minimal pairs, with AtP and O→H transplants."""

        try:
            config = PatchStudyConfig(
                n_pairs=n_pairs, site=site, n_items=n_items, min_gap=min_gap, gap_rule=gap_rule,
                p_tokens=p_tokens, last=last, layers=layers, other_task=other_task, seed=seed, device=device,
            )
            preflight(out, "patch", device, models=(model,))
            with Bars() as bars:
                result = run_patching_study(model, task, property, config, progress=bars.factory)
            result.save(out)
        except InnerprobeError as e:
            fail(e)
            return
        print_summary(result)
        console.print(f"wrote {out}")
