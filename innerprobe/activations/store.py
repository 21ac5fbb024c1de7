"""The on-disk activation store: a manifest, a row table and safetensors shards.

A capture (:mod:`innerprobe.activations.capture`) writes one directory::

    manifest.json                 what made it (model fingerprint, versions, numerics mode, dtype,
                                  template hash, seed, property, sites, layers, positions per run,
                                  d_model, n_items, shard_size, items_digest, complete, shards)
    rows.parquet                  one row per item: index, id, task, group + label columns
    shard-00000.safetensors       tensors "{run}/{site}/{position}", each [rows_in_shard, n_layers, d_model]
    shard-00001.safetensors       ...

Items are split into consecutive shards of ``shard_size`` rows. Each shard is written to a
temporary file and renamed into place, and the manifest (rewritten the same way) lists a shard
only once its file is complete, so a crash leaves a store that resumes from the last listed shard.

Integrity: the manifest lists each shard's sha256 and the row table's, and carries
``manifest_sha256`` over its own content. Readers check each shard (once per store object) and
the row table before use, and the manifest digest on open, so a truncated, replaced or garbage
file, or a hand-edited manifest (false provenance), raises ``DataError`` /
``StoreMismatchError`` naming the file instead of running.

Readers never load more than one tensor of one shard at a time: :meth:`ActivationStore.read`
concatenates the shards of one ``(run, site, position)``; :meth:`ActivationStore.iter_shards`
streams them, so peak memory is one shard whatever ``n_items``.

The store is the capture stage's :class:`~innerprobe.core.result.Result`: ``.table`` is the row
table, ``.summary`` a :class:`~innerprobe.activations.report.CaptureSummary`, ``.figure()`` the
mean residual norm per layer and position, ``.save(dir)`` a copy of the store (hard links where
the file system allows) and ``ActivationStore.load(dir)`` the same as :meth:`ActivationStore.open`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from jaxtyping import Float
from safetensors import safe_open
from torch import Tensor

from innerprobe.activations.report import (
    CaptureSummary,
    capture_summary,
    copy_store,
    layer_norms,
    norm_figure,
)
from innerprobe.core.errors import DataError, StoreMismatchError, UnknownNameError
from innerprobe.core.io import _jsonable
from innerprobe.core.result import Result

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "rows.parquet"
RUNS = ("object", "hypothetical")
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Manifest fields that must agree for a capture to resume into (or a reader to trust) a store.
REQUEST_FIELDS = (
    "template_hash",
    "property",
    "sites",
    "layers",
    "positions",
    "dtype",
    "d_model",
    "n_items",
    "shard_size",
    "items_digest",
    "seed",
)
# The parts of a model fingerprint that change the numbers (versions may differ).
FINGERPRINT_FIELDS = ("weights_sha256", "dtype", "numerics_mode")


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def tensor_key(run: str, site: str, position: str | int) -> str:
    """Name of one tensor inside a shard: ``{run}/{site}/{position}``."""
    return f"{run}/{site}/{position}"


def fingerprint_dict(fingerprint: Any) -> dict[str, Any]:
    if fingerprint is None:
        return {}
    return fingerprint.to_dict() if hasattr(fingerprint, "to_dict") else dict(fingerprint)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the store at ``path``, its JSON and digest checked."""
    file = path / MANIFEST
    if not file.exists():
        raise DataError(f"{path} is not an activation store (no {MANIFEST})")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{file}: invalid manifest JSON ({e}); the store is damaged: capture it again") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise DataError(f"{file}: not an activation-store manifest (no shard list); capture it again")
    recorded = manifest.get("manifest_sha256")
    if recorded is not None and recorded != manifest_digest(manifest):
        raise StoreMismatchError(
            f"{file} was edited after the capture (manifest_sha256 does not match its content), so its "
            "provenance cannot be trusted; restore it or capture again"
        )
    return manifest


def manifest_differences(stored: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Human-readable ``field: store has X, request has Y`` lines (empty when compatible).

    ``requested`` holds only the fields the caller cares about; ``model`` (a fingerprint dict)
    is compared on weights, dtype and numerics mode.
    """
    diffs = []
    model = requested.get("model")
    if model:
        have = stored.get("model", {})
        for f in FINGERPRINT_FIELDS:
            if have.get(f) != model.get(f):
                diffs.append(f"model.{f}: store has {have.get(f)!r}, request has {model.get(f)!r}")
    for f, want in requested.items():
        if f == "model" or want is None:
            continue
        if stored.get(f) != want:
            diffs.append(f"{f}: store has {stored.get(f)!r}, request has {want!r}")
    return diffs


@dataclass(eq=False, repr=False)
class ActivationStore(Result):
    """Read access to a capture directory (see the module docstring for the layout).

    ``ActivationStore(path, manifest)`` wraps a manifest already read; :meth:`open` reads and
    checks one. Two stores are equal only if they are the same object.
    """

    stage: ClassVar[str] = "capture"

    path: Path
    manifest: dict[str, Any]
    _rows: pd.DataFrame | None = field(default=None, init=False)
    _verified: set[tuple[str, int, int]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open a store directory; ``DataError`` if it has no manifest."""
        path = Path(path)
        manifest = _read_manifest(path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StoreMismatchError(
                f"{path}: store format {manifest.get('format_version')!r}, this innerprobe reads {FORMAT_VERSION}"
            )
        missing = [n for n in (ROWS, *(sh["file"] for sh in manifest["shards"])) if not (path / n).is_file()]
        if missing:
            raise DataError(
                f"activation store {path} is damaged: {', '.join(missing)} listed in {MANIFEST} but missing; "
                "capture it again"
            )
        return cls(path, manifest)

    # ------------------------------------------------------------------ description

    @property
    def rows(self) -> pd.DataFrame:
        """One row per item: index, id, task, group and the label columns."""
        if self._rows is None:
            file = self._verify(ROWS, self.manifest.get("rows_sha256"))
            try:
                self._rows = pd.read_parquet(file)
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise DataError(f"{file}: unreadable row table ({e}); capture the store again") from e
        return self._rows

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def positions(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.manifest["positions"].items()}

    def files(self) -> list[str]:
        """The files that make the store: manifest, row table and the shards written so far."""
        return [MANIFEST, ROWS, *(sh["file"] for sh in self.manifest["shards"])]

    def keys(self) -> list[tuple[str, str, str]]:
        """Every stored ``(run, site, position)``."""
        return [
            (run, site, pos)
            for run in RUNS
            for site in self.sites
            for pos in self.manifest["positions"].get(run, [])
        ]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{len(self.manifest['shards'])} shards so far"
        return (
            f"ActivationStore({self.path}, {self.n_items} items, {len(self.layers)} layers, "
            f"{len(self.keys())} tensors, {state})"
        )

    # ------------------------------------------------------------------ the result protocol

    @property
    def table(self) -> pd.DataFrame:
        """The row table (:attr:`rows`): one row per item, the tidy table of a capture."""
        return self.rows

    @property
    def summary(self) -> CaptureSummary:
        """Counts, what was captured, its size on disk and the object compliance of the items."""
        return capture_summary(self)

    def norms(self, site: str | None = None) -> pd.DataFrame:
        """Mean L2 norm per ``run, site, position, layer`` (streamed shard by shard)."""
        return layer_norms(self, site)

    def figure(self, site: str | None = None) -> Any:
        """Plotly figure: mean activation norm by layer, one line per run and position."""
        return norm_figure(self.norms(site), title=f"{self.path.name}: mean norm by layer")

    def save(self, directory: str | Path) -> Path:
        """Copy the store into ``directory`` (hard links where possible) and return it.

        Store files are never modified in place, only replaced by rename, so a hard link is as
        safe as a copy. ``directory`` must be new, empty, or a copy of this same capture.
        """
        return copy_store(self.path, Path(directory), self.manifest, self.files(), MANIFEST)

    @classmethod
    def load(cls, directory: str | Path) -> ActivationStore:
        """Open the store at ``directory`` (the same as :meth:`open`)."""
        return cls.open(directory)

    # ------------------------------------------------------------------ checks

    def check_compatible(
        self,
        fingerprint: Any = None,
        template_hash: str | None = None,
        sites: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        positions: dict[str, Sequence[str]] | None = None,
        dtype: str | None = None,
        **fields: Any,
    ) -> None:
        """Raise ``StoreMismatchError`` naming every field that differs from the request.

        Only the arguments given are compared; ``fingerprint`` (a ``ModelFingerprint`` or its
        dict) is compared on weights hash, parameter dtype and numerics mode.
        """
        requested: dict[str, Any] = {
            "model": fingerprint_dict(fingerprint) or None,
            "template_hash": template_hash,
            "sites": list(sites) if sites is not None else None,
            "layers": [int(x) for x in layers] if layers is not None else None,
            "positions": {k: [str(p) for p in v] for k, v in positions.items()} if positions else None,
            "dtype": dtype,
            **fields,
        }
        diffs = manifest_differences(self.manifest, requested)
        if diffs:
            raise StoreMismatchError(f"activation store {self.path} does not match: " + "; ".join(diffs))

    def _check_key(self, run: str, site: str, position: str | int) -> str:
        position = str(position)
        if run not in self.manifest["positions"]:
            raise UnknownNameError("run", run, self.manifest["positions"])
        if site not in self.sites:
            raise UnknownNameError("site", site, self.sites)
        if position not in self.manifest["positions"][run]:
            raise UnknownNameError(f"{run} position", position, self.manifest["positions"][run])
        return tensor_key(run, site, position)

    def _layer_index(self, layers: Sequence[int] | None) -> list[int] | None:
        if layers is None:
            return None
        where = {layer: i for i, layer in enumerate(self.layers)}
        out = []
        for layer in layers:
            if int(layer) not in where:
                raise UnknownNameError("layer", layer, [str(x) for x in self.layers])
            out.append(where[int(layer)])
        return out

    # ------------------------------------------------------------------ integrity

    def _verify(self, name: str, sha256: str | None) -> Path:
        """``path / name`` after checking it exists and matches ``sha256`` (once per file state)."""
        file = self.path / name
        if not file.is_file():
            raise DataError(f"{file} is missing from activation store {self.path}; capture it again")
        stat = file.stat()
        state = (name, stat.st_size, stat.st_mtime_ns)
        if sha256 is not None and state not in self._verified:
            got = file_sha256(file)
            if got != sha256:
                raise StoreMismatchError(
                    f"{file} does not match the manifest (sha256 {got[:12]}…, manifest {sha256[:12]}…): "
                    "the file is truncated, damaged or from another capture; capture the store again"
                )
        self._verified.add(state)
        return file

    def _shard_tensor(self, shard: dict[str, Any], key: str) -> Tensor:
        file = self._verify(shard["file"], shard.get("sha256"))
        try:
            with safe_open(str(file), framework="pt") as f:
                return f.get_tensor(key)
        except Exception as e:  # safetensors raises SafetensorError / OSError on a damaged file
            raise DataError(f"{file}: unreadable shard ({e}); capture the store again") from e

    # ------------------------------------------------------------------ reading

    def iter_shards(
        self, run: str, site: str, position: str | int, layers: Sequence[int] | None = None
    ) -> Iterator[tuple[slice, Float[Tensor, "rows layer d_model"]]]:
        """Yield ``(row_slice, tensor)`` per written shard, float32, one shard in memory."""
        key = self._check_key(run, site, position)
        sel = self._layer_index(layers)
        for shard in self.manifest["shards"]:
            start, stop = shard["rows"]
            t = self._shard_tensor(shard, key)
            if sel is not None:
                t = t[:, sel]
            yield slice(start, stop), t.float()

    def read(
        self, run: str, site: str, position: str | int, *, layers: Sequence[int] | None = None
    ) -> Float[Tensor, "n_items layer d_model"]:
        """All items of one ``(run, site, position)`` as float32 ``[n_items, n_layers_sel, d_model]``.

        Raises ``DataError`` when the store is incomplete (resume the capture first).
        """
        if not self.complete:
            raise DataError(f"activation store {self.path} is incomplete: rerun the capture to resume it")
        parts = [t for _, t in self.iter_shards(run, site, position, layers)]
        return torch.cat(parts, dim=0)
