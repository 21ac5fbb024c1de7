"""Atomic, pickle-free artifact writing with provenance.

Every file innerprobe writes goes to a temporary name in the same directory and is renamed into
place (``os.replace`` is atomic on POSIX), so an interrupt never leaves a half-written table.
Files get the permissions a plain ``open()`` would give (``0666`` less the umask), not the
owner-only ``0600`` of ``tempfile``.

:func:`prepare_out_dir` checks an ``--out`` before a stage starts: writable, a directory, and not
holding another stage's results (a small stage marker records which stage owns it; re-running
the same stage into its own directory is allowed, which is how resumption works).
Manifests record what made an artifact: model fingerprint, library versions, numerics mode,
dtype, prompt-template hash, seed, and the platform (CPU kernels, threads) the numbers came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from innerprobe.core.errors import OutDirError

STAGE_MARKER = ".innerprobe-stage.json"
# Files that identify a stage's output directory (for directories written before the marker).
STAGE_FILES: dict[str, tuple[str, ...]] = {
    "behave": ("behavior.parquet",),
    "capture": ("manifest.json", "rows.parquet"),
    "probe": ("results.parquet", "directions.safetensors"),
    "patch": ("o_map.parquet", "h_map.parquet", "transplant.parquet"),
    "steer": ("tracking.parquet",),
    "ablate": (),  # identified by its stage marker only (table.parquet and result.json are generic)
    "finetune": ("adapter_config.json", "loss_curve.json", "train.jsonl", "checkpoints"),
    "lens": ("lens_trace.html",),
    "inject": ("conditions.parquet",),
    "selftrain": ("selftrain_config.json",),
    "sweep": ("sweep.json",),
    "peer_probe": ("peer_probe.html",),
}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_mode(path: str | Path, base: int) -> None:
    """Give ``path`` the mode ``open()``/``mkdir()`` would: ``base`` less the umask."""
    os.chmod(path, base & ~_umask())



@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _plain_mode(tmp, 0o666)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    _plain_mode(tmp, 0o777)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing ancestor of ``path``; ``OutDirError`` if it is not a directory."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutDirError(f"--out {path}: {parent} is a file, not a directory; pass a path below a directory")
            return parent
    raise OutDirError(f"--out {path}: no existing parent directory")  # pragma: no cover


def _probe_writable(directory: Path, out: Path) -> None:
    """Create and remove a file in ``directory``; ``OutDirError`` naming ``out`` if that fails."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".innerprobe-write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutDirError(f"--out {out}: cannot write in {directory} ({e.strerror}); choose a writable directory") from e


def _stage_of(path: Path) -> str | None:
    """The stage that wrote ``path``: its marker, else the first stage whose files it holds."""
    marker = path / STAGE_MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["stage"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise OutDirError(f"--out {path}: unreadable stage marker {marker}; delete it or use another --out") from e
    names = {p.name for p in path.iterdir()}
    return next((stage for stage, files in STAGE_FILES.items() if names & set(files)), None)


def prepare_out_dir(path: str | Path, stage: str) -> Path:
    """Check that ``stage`` may write its results into ``path``, create it, and mark it.

    Raises ``OutDirError`` when ``path`` is an existing file, lies below a file, cannot be
    written, or holds another stage's results. Re-running ``stage`` into its own directory
    (resuming) is allowed.
    """
    if stage not in STAGE_FILES:
        raise OutDirError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGE_FILES)}")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutDirError(f"--out {path} is an existing file; pass a directory (new or from an earlier {stage})")
    if path.is_dir():
        owner = _stage_of(path)
        if owner not in (None, stage):
            raise OutDirError(
                f"--out {path} holds the output of `innerprobe {owner}`; "
                f"use a new directory (or one written by `innerprobe {stage}`)"
            )
        _probe_writable(path, path)
    else:
        _probe_writable(_writable_ancestor(path), path)
        path.mkdir(parents=True, exist_ok=True)
    if not (path / STAGE_MARKER).exists():
        write_json(path / STAGE_MARKER, {"stage": stage})
    return path


def save_model_dir(path: str | Path, model: Any, tokenizer: Any) -> Path:
    """``save_pretrained`` a model and its tokenizer into ``path``, atomically."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def library_versions() -> dict[str, str]:
    """Installed versions of the packages whose changes move innerprobe's numbers."""
    out = {}
    for pkg in ("innerprobe", "torch", "transformers", "transformer-lens", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def compute_platform() -> dict[str, Any]:
    """Where the numbers were computed: a float result can change with the CPU kernels torch picks
    (its vector capability and the CPU they run on: the same seeded zoo build, bit-identical on one
    machine, trained another model on another Xeon) and with torch's thread count."""
    return {"machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}


def provenance(
    fingerprint: Any = None,
    *,
    seed: int | None = None,
    template_hash: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance block every manifest and summary carries."""
    out: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "platform": compute_platform(),
        "seed": seed,
        "template_hash": template_hash,
    }
    if fingerprint is not None:
        fp = fingerprint.to_dict() if hasattr(fingerprint, "to_dict") else dict(fingerprint)
        out["model"] = fp
        out["numerics_mode"] = fp.get("numerics_mode")
        out["dtype"] = fp.get("dtype")
    out.update(extra)
    return out
