"""``innerprobe tasks | properties | models``: what exists, as tables."""

from __future__ import annotations

import typer
from rich.table import Table

from innerprobe.cli.ui import out_console
from innerprobe.models.embedded import list_models
from innerprobe.protocol.properties import list_properties
from innerprobe.protocol.tasks import get_task, list_tasks


def tasks() -> None:
    """List the built-in task generators."""

    table = Table(title="tasks")
    for col in ("name", "kind", "vocabulary", "items", "object prompt"):
        table.add_column(col)
    for t in map(get_task, list_tasks()):
        vocab = f"{len(t.vocabulary)} words" if t.vocabulary else "–"
        source = "generated" if t.can_generate else "release/loader"
        table.add_row(t.name, t.kind, vocab, source, t.template.replace("\n", "⏎")[:60])
    out_console.print(table)


def properties() -> None:
    """List the behavioural properties."""

    table = Table(title="properties")
    for col in ("name", "compliance", "applies to", "hypothetical question"):
        table.add_column(col)
    for p in list_properties():
        table.add_row(p.name, p.compliance, ", ".join(sorted(p.kinds)), p.hypothetical_question()[:70])
    out_console.print(table)


def models() -> None:
    """List the embedded models (any HF directory or hub id also works)."""

    table = Table(title="models")
    for col in ("name", "description", "install"):
        table.add_column(col)
    for m in list_models():
        table.add_row(m.name, m.description, m.install_hint)
    out_console.print(table)


def register(app: typer.Typer) -> None:
    for verb in (tasks, properties, models):
        app.command()(verb)
