"""The ``innerprobe`` command line: one verb per stage.

``innerprobe behave`` runs the paper's behavioural measurement; ``tasks``, ``properties`` and
``models`` list what exists. Results go to ``--out`` (Parquet table + JSON summary, written
atomically), a rich summary table goes to the terminal, progress bars to stderr.
"""

from __future__ import annotations

import logging

import typer
from rich.logging import RichHandler
from transformers.utils import logging as hf_logging

from innerprobe.cli import (
    ablate,
    behave,
    capture,
    finetune,
    inject,
    lens,
    listing,
    patch,
    peer_probe,
    probe,
    report,
    run,
    selftrain,
    steer,
    sweep,
    zoo,
)
from innerprobe.cli.ui import console

app = typer.Typer(
    help="innerprobe: mechanistic interpretability of language-model self-reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # transformers' own weight-loading bars would interleave with ours
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


for _verbs in (run, behave, listing, capture, probe, peer_probe, patch, lens, steer, ablate, inject, finetune, selftrain,
               sweep, report, zoo):
    _verbs.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
