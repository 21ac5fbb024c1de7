"""Checks on a model spec and a device, made before anything is loaded.

A missing local path, a file, a directory that is neither a HF model nor an adapter, an
unreachable or unknown hub id and a device this machine lacks each fail at once with an error
naming the bad value and the valid ones, instead of after a download attempt or deep in torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import huggingface_hub
import torch
from huggingface_hub.errors import RepositoryNotFoundError

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.models.adapters import is_adapter_dir
from innerprobe.models.embedded import EMBEDDED

VALID_MODELS = (*EMBEDDED, "<local HF directory>", "<hub id org/name>")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def available_devices() -> list[str]:
    """The devices this machine can run on: ``cpu``, ``cuda``/``cuda:N`` per GPU, ``mps``."""
    out = ["cpu"]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n:
        out += ["cuda", *(f"cuda:{i}" for i in range(n))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def check_device(device: str) -> str:
    """``device`` if this machine has it; else ``DataError`` naming it and the devices it has."""
    here = available_devices()
    if device in here:
        return device
    kind, _, index = device.partition(":")
    known = (kind == "cuda" and (not index or index.isdigit())) or (device == "mps")
    why = "is not available on this machine" if known else "is not a device name (use cpu, cuda, cuda:N or mps)"
    cuda = "" if torch.version.cuda else f" (torch {torch.__version__} is built without CUDA)"
    raise DataError(f"device {device!r} {why}{cuda if kind == 'cuda' else ''}; valid devices here: {', '.join(here)}")


def _looks_like_path(spec: str) -> bool:
    """A spec meant as a local path: ``./x``, ``/x``, ``~/x``, ``a/b/c`` or ``dir/x`` with ``dir`` existing."""
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return True
    first = spec.split(os.sep)[0]
    return os.sep in spec and Path(first).exists()


def _no_such_model_dir(spec: str, path: Path) -> DataError:
    return DataError(
        f"model path {spec!r} does not exist ({path.resolve()} not found); valid models: {', '.join(VALID_MODELS)}"
    )


def check_model_spec(spec: str, *, reach_hub: bool = True) -> str:
    """What a model spec names, ``"embedded"``, ``"dir"`` or ``"hub"``, checked without loading.

    A missing local path (``./m1``, ``/x/y``, ``~/m``, ``runs/m1`` when ``runs`` exists), a file,
    a directory that is neither a HF model nor an adapter, an unreachable or unknown hub id, and
    any other name raise ``DataError`` / ``UnknownNameError`` listing the valid models. With
    ``reach_hub=False`` a hub id is checked for shape only (:func:`_boot` reaches the hub).
    """
    path = Path(spec).expanduser()
    if spec in EMBEDDED:
        return "embedded"
    if path.is_dir():
        if not is_adapter_dir(path) and not (path / "config.json").exists():
            raise DataError(f"{path} is a directory but has no config.json (not a HF model dir or LoRA adapter dir)")
        return "dir"
    if path.exists():
        raise DataError(f"model {spec!r} is a file; pass its directory. Valid models: {', '.join(VALID_MODELS)}")
    if _looks_like_path(spec):
        raise _no_such_model_dir(spec, path)
    if _HUB_ID.fullmatch(spec):
        if reach_hub:
            _check_hub_id(spec)
        return "hub"
    raise UnknownNameError("model", spec, VALID_MODELS)


def _check_hub_id(spec: str) -> None:
    """Fail in a second, not after 30 s of retries, when a hub id cannot be fetched."""
    if os.environ.get("HF_HUB_OFFLINE") or isinstance(huggingface_hub.try_to_load_from_cache(spec, "config.json"), str):
        return  # offline mode or already cached: transformers reads the local copy
    try:
        huggingface_hub.model_info(spec, timeout=10)
    except RepositoryNotFoundError as e:
        raise DataError(
            f"hub model {spec!r} not found on the Hugging Face hub (or private/gated: log in with `hf auth login`); "
            f"valid models: {', '.join(VALID_MODELS)}"
        ) from e
    except Exception as e:  # no network, DNS, proxy, timeout: httpx/requests raise their own types
        raise DataError(
            f"cannot reach the Hugging Face hub to load {spec!r} ({type(e).__name__}: {e}): no network? "
            f"Offline, use an embedded model ({', '.join(EMBEDDED)}), a local HF directory or a hub id in the HF cache"
        ) from e
