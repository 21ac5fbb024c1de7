"""``innerprobe patch``: minimal pairs, O and H patching maps, AtP and O→H transplants."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.patching.study import check_patch_options, run_patch

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command()
    def patch(
        model: str = typer.Option("smollm2-135m-instruct", help="Embedded name, HF dir or hub id."),
        task: str = typer.Option("animals", help="Sequence task with a vocabulary."),
        property: str = typer.Option("second_character", "--property", help="Property of the answer."),
        n_pairs: int = typer.Option(16, min=1, help="Property pairs to keep."),
        site: str = typer.Option("resid_pre", help="resid_pre | resid_post | attn_out | mlp_out."),
        out: Path = typer.Option(Path("runs/patch"), help="Output directory."),
        n_items: int = typer.Option(200, min=2, help="Items tried when building pairs."),
        min_gap: float = typer.Option(0.5, help="Logit-difference gap filter threshold."),
        gap_rule: str = typer.Option("difference", help="difference | both_runs."),
        p_tokens: int = typer.Option(8, min=0, help="Tokens at the end of P patched and aligned O↔H (besides the replaced word)."),
        last: int = typer.Option(6, min=1, help="Last prompt positions patched."),
        other_task: str = typer.Option("colors", help="Task of the other-task transplant control."),
        seed: int = typer.Option(0, help="Seed for items, pairs and bootstrap."),
        device: str | None = typer.Option(None, help="cpu | cuda | cuda:N | mps."),
        layers: str = typer.Option("all", help="Layers patched: all | '0,5,9' | slice '0:30:3'."),
    ) -> None:
        """Activation patching of O and H on minimal pairs, with AtP and O→H transplants."""

        try:
            check_patch_options(task, property, site, gap_rule, other_task)
            preflight(out, "patch", device, models=(model,))
            with Bars() as bars:
                summary = run_patch(
                    model, task, property, n_pairs, site, out, n_items=n_items, min_gap=min_gap,
                    gap_rule=gap_rule, p_tokens=p_tokens, last=last, other_task=other_task, seed=seed,
                    device=device, progress=bars.factory, console=console, layers=layers,
                )
        except InnerprobeError as e:
            fail(e)
            return
        agree = summary["pairs"].get("forced_vs_greedy", {})
        if agree.get("n"):
            console.print(f"pairs: forced-choice answer = greedy answer on both sides for "
                          f"{agree['answer_both']:.0%} of {agree['n']} pairs")
        for name, s in summary["maps"].items():
            b = s["best_cell"]
            ci = "[" + ", ".join(f"{v:.2f}" for v in b["ci"]) + "]"
            console.print(f"{name}: n={s['n_pairs']} best layer {b['layer']} {b['token']!r} recovery {b['recovery']:.2f} {ci}")
            console.print(f"  ({b['selection']})")
        console.print(f"wrote {out}")
