"""What identifies the numbers a model produces: weights hash, dtype, numerics mode, versions.

Every artifact innerprobe writes records a :class:`ModelFingerprint`, because a probe or a
steering vector fitted on one set of weights or one numerics mode does not transfer to another:
``enable_compatibility_mode()`` folds layer norms and recentres weights in place, which moves the
residual-stream coordinates. Weight files are hashed once and the digest memoised beside them
(by size and mtime); a model built in memory is hashed over its state dict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from innerprobe.core.errors import DataError
from innerprobe.core.io import library_versions


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the numbers a model produces.

    Attributes:
        name: the name the model was asked for by.
        source: where the weights came from: a directory, ``hub:<id>``, ``bridge`` (a
            ``TransformerBridge`` passed in) or ``hf-model:<ClassName>`` (a Hugging Face model
            object passed in).
        weights_sha256: sha256 over the weight files, or over the parameters
            (:func:`hash_parameters`) for a model passed in or downloaded from the hub.
        dtype: parameter dtype, e.g. ``"float32"``.
        numerics_mode: ``"hf"`` (raw HF weights, the bridge default) or ``"tl-compat"``
            (after ``enable_compatibility_mode()``).
        n_layers, d_model, architecture: shape facts.
        versions: torch / transformers / transformer-lens versions.
    """

    name: str
    source: str
    weights_sha256: str
    dtype: str
    numerics_mode: str
    n_layers: int
    d_model: int
    architecture: str
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def short(self) -> str:
        return f"{self.name}@{self.weights_sha256[:12]}/{self.dtype}/{self.numerics_mode}"

    def compatible_with(self, other: ModelFingerprint | dict[str, Any]) -> bool:
        """Same weights, dtype and numerics mode (versions may differ)."""
        o = other if isinstance(other, dict) else other.to_dict()
        return all(o.get(k) == getattr(self, k) for k in ("weights_sha256", "dtype", "numerics_mode"))



def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_weight_files(model_dir: Path) -> str:
    """sha256 over the weight files of a HF directory, in name order (cached by size + mtime)."""
    files = sorted(
        p for p in model_dir.iterdir() if p.suffix in {".safetensors", ".bin", ".pt", ".gguf"}
    )
    if not files:
        raise DataError(f"no weight files (*.safetensors, *.bin) in {model_dir}")
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = model_dir / ".innerprobe_hash.json"
    try:
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == stamp:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(bytes.fromhex(sha256_file(p)))
    digest = h.hexdigest()
    try:
        memo.write_text(json.dumps({"stamp": stamp, "sha256": digest}))
    except OSError:  # read-only directory: fine, just slower next time
        pass
    return digest


WRAPPER = "._original_component"
"""The name TransformerLens gives the HF module a bridge component wraps (dropped when hashing)."""


def hash_parameters(module: torch.nn.Module) -> str:
    """sha256 over a module's parameters (names, shapes, dtypes, bytes), in name order.

    Names are the Hugging Face ones: a bridge wraps each HF submodule in a component that keeps
    it as ``_original_component`` and adds aliases (``attn.q`` for ``self_attn.q_proj``, ...).
    Tied and aliased parameters are counted once (``named_parameters`` drops duplicates) and
    the ``._original_component`` segments are removed, so a model hashes the same before and
    after :func:`innerprobe.models.load.load_model` wraps it. Buffers are left out: they are
    derived from the config (rotary frequencies) or added by the bridge (a zero unembedding
    bias), not learned.
    """
    h = hashlib.sha256()
    named = {name.replace(WRAPPER, ""): p for name, p in module.named_parameters()}
    for name, t in sorted(named.items()):
        h.update(name.encode())
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _fingerprint(
    name: str, source: str, bridge: Any, weights_sha: str, compat: bool
) -> ModelFingerprint:
    p = next(bridge.original_model.parameters())
    return ModelFingerprint(
        name=name,
        source=source,
        weights_sha256=weights_sha,
        dtype=str(p.dtype).removeprefix("torch."),
        numerics_mode="tl-compat" if compat else "hf",
        n_layers=int(bridge.cfg.n_layers),
        d_model=int(bridge.cfg.d_model),
        architecture=type(bridge.original_model).__name__,
        versions=library_versions(),
    )
