"""``innerprobe peer-probe``: self-vs-peer probes (E3b) on two captured stores of the same items.

``--store`` is the self model's capture, ``--peer-store`` the peer's (both from ``innerprobe
capture`` on the same task, split, n and seed). Probes on each model's activations predict the
self model's behaviour (``--target``, a label column of the self store); see
:mod:`innerprobe.probes.peer`. Writes to ``--out`` the saved
:class:`~innerprobe.probes.peer_result.PeerProbeResult` (``PeerProbeResult.load(out)``) and
``peer_probe.html`` (summary, figure, per-layer table, JSON of every number).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from innerprobe.activations.store import ActivationStore
from innerprobe.cli.options import NBootOpt, OutOpt, SeedOpt, SiteOpt
from innerprobe.cli.ui import console, fail, fmt, out_console, preflight
from innerprobe.core.errors import DataError, InnerprobeError
from innerprobe.probes.peer import run_peer_probes
from innerprobe.probes.peer_config import PeerProbeConfig
from innerprobe.probes.peer_result import PeerProbeSummary, peer_page

log = logging.getLogger(__name__)

SelfStoreOpt = Annotated[Path, typer.Option("--store", help="The self model's activation store (`innerprobe capture`).")]
PeerStoreOpt = Annotated[Path, typer.Option("--peer-store", help="The peer model's store of the same items.")]
TargetOpt = Annotated[str, typer.Option(help="Self-store label column to predict: answer_property | object_answer | ...")]
RunOpt = Annotated[str, typer.Option(help="Which prompt's activations: hypothetical | object.")]
PositionOpt = Annotated[str, typer.Option(help="Captured position: h_last | quote_last | o_last | ...")]
PeerLayersOpt = Annotated[str, typer.Option("--layers", help="Self-store layers, comma-separated (default: all captured).")]
DepthsOpt = Annotated[str, typer.Option(help="Relative depths in (0, 1], comma-separated, instead of --layers.")]
ProbeOpt = Annotated[str, typer.Option(help="Probe family: mass_mean | ridge | logistic.")]
FoldsOpt = Annotated[int, typer.Option(help="Grouped stratified CV folds.")]
MinItemsOpt = Annotated[int, typer.Option(help="Fewest usable joined items.")]


def _numbers(value: str, kind: type, what: str) -> tuple | None:
    parts = [v.strip() for v in value.split(",") if v.strip()]
    if not parts:
        return None
    try:
        return tuple(kind(v) for v in parts)
    except ValueError:
        raise DataError(f"{what} must be comma-separated numbers, got {value!r}") from None


def _summary_table(s: PeerProbeSummary) -> Table:
    table = Table(title=f"self vs peer · {s.target} · {s.n_items} items · {s.n_disagree} disagreement",
                  caption=s.selection)
    table.add_column("measure")
    table.add_column("value [95% CI]")
    mc = f"  McNemar p={s.mcnemar_disagree:.3g}" if s.mcnemar_disagree is not None else ""
    for name, value in (
        ("best layer (self / peer, depth)", f"{s.best_layer} / {s.best_peer_layer}, {s.best_depth:.2f}"),
        ("self − peer, disagreement items", fmt(s.gap_disagree) + mc),
        ("self − peer, all items", fmt(s.gap_all) + f"  McNemar p={s.mcnemar_all:.3g}"),
        ("self − peer, consensus items", fmt(s.gap_agree)),
        ("self probe, disagreement", fmt(s.self_disagree)),
        ("peer probe, disagreement", fmt(s.peer_disagree)),
        ("shuffled labels (self)", fmt(s.shuffled)),
        ("mode baseline", fmt(s.mode_baseline)),
        ("peer agrees with self", fmt(s.agreement)),
    ):
        table.add_row(name, value)
    return table


def peer_probe_cmd(
    store: SelfStoreOpt,
    peer_store: PeerStoreOpt,
    out: OutOpt = Path("runs/peer_probe"),
    target: TargetOpt = "answer_property",
    run: RunOpt = "hypothetical",
    site: SiteOpt = "resid_post",
    position: PositionOpt = "h_last",
    layers: PeerLayersOpt = "",
    depths: DepthsOpt = "",
    probe: ProbeOpt = "mass_mean",
    folds: FoldsOpt = 5,
    min_items: MinItemsOpt = 20,
    n_boot: NBootOpt = 1000,
    seed: SeedOpt = 0,
) -> None:
    """Probe the self model's behaviour from its own and from a peer's activations (E3b)."""

    try:
        config = PeerProbeConfig(
            target=target, run=run, site=site, position=position, layers=_numbers(layers, int, "--layers"),
            depths=_numbers(depths, float, "--depths"), probe=probe, folds=folds, min_items=min_items,
            n_boot=n_boot, seed=seed,
        )
        self_st, peer_st = ActivationStore.open(store), ActivationStore.open(peer_store)
        preflight(out, "peer_probe", None)
        with console.status("fitting self and peer probes"):
            result = run_peer_probes(self_st, peer_st, config)
        result.save(out)
        page = peer_page(result).write(out / "peer_probe.html")
    except InnerprobeError as e:
        fail(e)
        return
    out_console.print(_summary_table(result.summary))
    console.print(f"wrote {out}/: table.parquet, arrays.safetensors, result.json (PeerProbeResult.load), {page.name}")


def register(app: typer.Typer) -> None:
    app.command("peer-probe")(peer_probe_cmd)
