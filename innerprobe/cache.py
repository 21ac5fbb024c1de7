"""Where innerprobe keeps models and other derived files (never inside the git tree).

The root is ``$INNERPROBE_CACHE`` when set, else ``$XDG_CACHE_HOME/innerprobe``, else
``~/.cache/innerprobe``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("INNERPROBE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "innerprobe"


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache root, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
