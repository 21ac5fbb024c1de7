"""Writing an activation store: create or resume a directory, commit shards atomically, in order.

The layout and the integrity rules are those of :mod:`innerprobe.activations.store`: each shard
is written to a temporary file and renamed into place, then listed (with its sha256) in the
manifest, itself rewritten the same way with its own digest. A crash therefore leaves a store
whose manifest lists only complete shards, and :meth:`StoreWriter.resume` continues after them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from safetensors.torch import save_file
from torch import Tensor

from innerprobe.activations.store import (
    FORMAT_VERSION,
    MANIFEST,
    REQUEST_FIELDS,
    ROWS,
    ActivationStore,
    file_sha256,
    manifest_differences,
    manifest_digest,
    shard_name,
)
from innerprobe.core.errors import DataError, StoreMismatchError
from innerprobe.core.io import atomic_path, write_json, write_parquet


class StoreWriter:
    """Creates or resumes a store directory and commits shards atomically, in order."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def create(cls, path: str | Path, manifest: dict[str, Any], rows: pd.DataFrame) -> StoreWriter:
        """Start an empty store (any stale shard files of an unlisted run are overwritten later)."""

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        manifest = {**manifest, "format_version": FORMAT_VERSION, "complete": False, "shards": []}
        write_parquet(path / ROWS, rows)
        manifest["rows_sha256"] = file_sha256(path / ROWS)
        writer = cls(path, manifest)
        writer._write_manifest()
        return writer

    @classmethod
    def resume(cls, path: str | Path, request: dict[str, Any]) -> StoreWriter:
        """Reopen a store whose manifest matches ``request``; else ``StoreMismatchError``."""
        store = ActivationStore.open(path)
        diffs = manifest_differences(
            store.manifest, {k: request.get(k) for k in ("model", *REQUEST_FIELDS)}
        )
        if diffs:
            raise StoreMismatchError(
                f"{path} already holds a different capture; use another --out or delete it. "
                "Differences: " + "; ".join(diffs)
            )
        return cls(Path(path), store.manifest)

    @property
    def n_done(self) -> int:
        return len(self.manifest["shards"])

    def _write_manifest(self) -> None:
        self.manifest["manifest_sha256"] = manifest_digest(self.manifest)
        write_json(self.path / MANIFEST, self.manifest)

    def write_shard(self, k: int, rows: slice, tensors: dict[str, Tensor]) -> None:
        """Write shard ``k`` (rows ``rows``) then list it in the manifest, both atomically."""
        if k != self.n_done:
            raise DataError(f"shard {k} written out of order (next is {self.n_done})")
        n = rows.stop - rows.start
        for name, t in tensors.items():
            if t.shape[0] != n:
                raise DataError(f"tensor {name} has {t.shape[0]} rows, shard {k} has {n}")
        with atomic_path(self.path / shard_name(k)) as tmp:
            save_file({name: t.contiguous() for name, t in sorted(tensors.items())}, str(tmp))
            digest = file_sha256(tmp)
        self.manifest["shards"].append({"file": shard_name(k), "rows": [rows.start, rows.stop], "sha256": digest})
        self._write_manifest()

    def finish(self) -> ActivationStore:
        self.manifest["complete"] = True
        self._write_manifest()
        return ActivationStore(self.path, self.manifest)


__all__ = ["StoreWriter"]
