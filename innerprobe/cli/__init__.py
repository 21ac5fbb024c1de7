"""Floor 8, the top: the ``innerprobe`` command line, one module a verb.

:mod:`.ui` holds what every verb shares (consoles, progress bars, pre-flight checks, the error
exit); :mod:`.app` builds the typer app from the verb modules. Verbs only parse options into a
stage's config and call the stage: no method lives here.
"""

from __future__ import annotations

from innerprobe.cli.app import app
from innerprobe.cli.ui import console, out_console

__all__ = ["app", "console", "out_console"]
