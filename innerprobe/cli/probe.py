"""``innerprobe probe``: per-layer probes with controls and O→H transfer on a captured store.

Reads the O run (``("object", site, "o_last")``) and H runs (``("hypothetical", site, pos)``) of an
activation store, probes the target label at every layer (ridge and mass-mean by default; logistic
on request), and writes to ``--out``:

* the saved :class:`~innerprobe.probes.ProbeResult` (``ProbeResult.load(out)`` reads it back):
  ``table.parquet`` (tidy, with controls and CIs), ``arrays.safetensors`` (directions
  ``directions/<probe>/<run>`` and per-item correctness) and ``result.json`` (config, summary,
  provenance);
* ``results.parquet``: the same table under the name earlier versions wrote;
* ``summary.json``: the best layers (selected on one half of the items, estimated on the other),
  the control-task report and the provenance, for reading;
* ``layers_<probe>.html``: one figure of layer curves per probe.

Options are parsed into a :class:`~innerprobe.probes.ProbeConfig`, which checks them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from innerprobe.activations.store import ActivationStore
from innerprobe.cli.options import OutOpt, SeedOpt, SiteOpt
from innerprobe.cli.ui import Bars, console, fail, out_console, preflight
from innerprobe.core.errors import InnerprobeError
from innerprobe.core.io import provenance, write_json, write_parquet
from innerprobe.probes import ProbeConfig, best_layers, probe_store

log = logging.getLogger(__name__)

StoreOpt = Annotated[Path, typer.Option("--store", help="Activation store directory (from `innerprobe capture`).")]
TargetOpt = Annotated[str, typer.Option(help="Label column: object_answer | property_value | ...")]
PositionsOpt = Annotated[str, typer.Option(help="Hypothetical positions to probe and transfer to, comma-separated.")]
ProbesOpt = Annotated[str, typer.Option(
    help="Probe families, comma-separated: ridge | mass_mean | logistic (L-BFGS, slow on CPU)."
)]
FoldsOpt = Annotated[int, typer.Option(help="Grouped stratified CV folds.")]
COpt = Annotated[float, typer.Option("--C", help="Inverse L2 strength of the logistic probe (scikit-learn's C).")]
RidgeAlphaOpt = Annotated[float, typer.Option(
    help="L2 strength of the ridge probe (scikit-learn's RidgeClassifier alpha)."
)]
StandardiseOpt = Annotated[str, typer.Option(
    help="Scaler statistics from each training fold (fold) or all items, label-free (all: the fast ridge sweep)."
)]
RefineOpt = Annotated[bool, typer.Option(
    "--ridge-refine/--no-ridge-refine", help="Refine ridge answers to float64 accuracy (off: float32, fastest)."
)]
MinCountOpt = Annotated[int | None, typer.Option(help="Drop classes with fewer items (default: error if < folds).")]
ControlsOpt = Annotated[bool, typer.Option(help="Fit shuffled, control-task and random-projection controls.")]
NBootOpt = Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")]
ProbeDeviceOpt = Annotated[str, typer.Option(help="Device of the fits: cpu | cuda | cuda:N | mps.")]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _open_store(path: Path) -> Any:
    """The activation store at ``path`` (a seam tests can replace)."""

    return ActivationStore.open(path)


def _summary_table(best: Any, title: str) -> Any:
    """Best layer per (probe, split, items): held-out accuracy (Wilson CI), the naive max beside it."""

    table = Table(title=title, caption=str(best["selection"].iloc[0]) if len(best) and "selection" in best else None)
    for col in ("probe", "split", "items", "layer", "acc [95% CI]", "naive max (layer)", "ctrl task",
                "selectivity [95% CI]", "majority"):
        table.add_column(col)
    for r in best.itertuples():
        sel = (
            f"{r.selectivity:+.3f} [{r.selectivity_ci_low:+.3f}, {r.selectivity_ci_high:+.3f}]"
            if hasattr(r, "selectivity") else "–"
        )
        naive = f"{r.naive_value:.3f} ({r.naive_layer})" if hasattr(r, "naive_value") else "–"
        table.add_row(
            r.probe, r.split, r.items, str(r.layer), f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] n={r.n}",
            naive, f"{r.control_task:.3f}" if hasattr(r, "control_task") else "–", sel, f"{r.majority:.3f}",
        )
    return table


def probe_cmd(
    store: StoreOpt,
    target: TargetOpt = "object_answer",
    site: SiteOpt = "resid_post",
    positions: PositionsOpt = "h_last",
    probes: ProbesOpt = "ridge,mass_mean",
    folds: FoldsOpt = 5,
    C: COpt = 0.1,
    ridge_alpha: RidgeAlphaOpt = 10.0,
    standardise: StandardiseOpt = "fold",
    ridge_refine: RefineOpt = True,
    min_count: MinCountOpt = None,
    controls: ControlsOpt = True,
    n_boot: NBootOpt = 1000,
    seed: SeedOpt = 0,
    device: ProbeDeviceOpt = "cpu",
    out: OutOpt = Path("runs/probe"),
) -> None:
    """Probe a label at every layer (with controls) and test O→H / H→O transfer."""

    try:
        config = ProbeConfig(
            folds=folds, seed=seed, C=C, ridge_alpha=ridge_alpha, probes=tuple(_csv(probes)), controls=controls,
            min_count=min_count, n_boot=n_boot, device=device, standardise=standardise, ridge_refine=ridge_refine,
        )
        st = _open_store(store)
        preflight(out, "probe", None)
        with Bars() as bars:
            result = probe_store(
                st, target, site=site, hypothetical_positions=_csv(positions), config=config,
                progress=bars.factory,
            )
    except InnerprobeError as e:
        fail(e)
        return
    manifest = dict(getattr(st, "manifest", {}) or {})
    result.provenance = provenance(
        manifest.get("model") or manifest.get("fingerprint"), seed=seed,
        template_hash=manifest.get("template_hash"), store=str(store), site=site, target=target,
    )
    result.save(out)
    write_parquet(out / "results.parquet", result.table)
    best = best_layers(result)
    write_json(out / "summary.json", {
        "target": target, "site": site, "classes": result.classes, "n_items": result.n_items,
        "n_dropped": result.n_dropped, "dropped_classes": result.dropped_classes,
        "config": config.to_dict(), "best": best.to_dict(orient="records"),
        "best_selection": str(best["selection"].iloc[0]) if len(best) else None,
        "control_task": result.control, "warnings": result.warnings, "provenance": result.provenance,
    })
    for probe in config.probes:
        result.figure(probe=probe).write_html(str(out / f"layers_{probe}.html"))
    if result.n_dropped:
        console.print(f"dropped {len(result.dropped_classes)} rare classes ({result.n_dropped} items)")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    out_console.print(_summary_table(best, f"{target} · {site} · {result.n_items} items · {len(result.classes)} classes"))
    console.print(f"wrote {out}/: table.parquet, arrays.safetensors, result.json (ProbeResult.load), "
                  "results.parquet, summary.json, layers_*.html")


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_cmd)
