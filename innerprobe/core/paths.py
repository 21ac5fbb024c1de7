"""Where innerprobe keeps models and other derived files (never inside the git tree).

The root is ``$INNERPROBE_CACHE`` when set, else ``$XDG_CACHE_HOME/innerprobe``, else
``~/.cache/innerprobe``. The embedded models' weights (``models/``: dequantised GGUF files and
the tiny test model; ``gguf/``: assembled GGUF files) live under ``$INNERPROBE_MODEL_CACHE`` when
set, else under the root: they are slow to rebuild and the same for every run, so the test suite
points ``INNERPROBE_CACHE`` at a temporary directory (merged adapters go there) while reusing
the user's model cache in place.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_PARTS = ("models", "gguf")


def cache_root() -> Path:
    env = os.environ.get("INNERPROBE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "innerprobe"


def model_cache_root() -> Path:
    """Root of the embedded models' weights: ``$INNERPROBE_MODEL_CACHE``, else :func:`cache_root`."""
    env = os.environ.get("INNERPROBE_MODEL_CACHE")
    return Path(env).expanduser() if env else cache_root()


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache root (of the model cache for ``models``/``gguf``), created on demand."""
    root = model_cache_root() if parts[:1] and parts[0] in MODEL_PARTS else cache_root()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
