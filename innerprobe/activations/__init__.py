"""Floor 4: residual activations of object and hypothetical prompts, hooked and stored.

:class:`CaptureConfig` says what to capture (sites, layers, positions, batching, stored dtype);
:func:`capture` runs one padded, masked forward per batch and writes a sharded safetensors
store with a manifest (:class:`StoreWriter`); :class:`ActivationStore` reads it back by site,
layer and position, and is the stage's result (``.table``, ``.summary``, ``.figure()``,
``.save()``, ``.load()``).
"""

from __future__ import annotations

from innerprobe.activations.capture import Gather, capture, capture_prompts, position_span
from innerprobe.activations.config import (
    LAYER_FORMS,
    NAMED_POSITIONS,
    RESERVED_COLUMNS,
    SITE_ORDER,
    SITES,
    CaptureConfig,
    hook_name,
    parse_layers,
    resolve_layers,
    resolve_position_names,
    resolve_sites,
)
from innerprobe.activations.report import CaptureSummary, layer_norms, norm_figure
from innerprobe.activations.store import (
    FINGERPRINT_FIELDS,
    FORMAT_VERSION,
    MANIFEST,
    REQUEST_FIELDS,
    ROWS,
    RUNS,
    STORE_DTYPES,
    ActivationStore,
    file_sha256,
    fingerprint_dict,
    manifest_differences,
    manifest_digest,
    shard_name,
    tensor_key,
)
from innerprobe.activations.writer import StoreWriter

__all__ = [
    "FINGERPRINT_FIELDS", "FORMAT_VERSION", "LAYER_FORMS", "MANIFEST", "NAMED_POSITIONS", "REQUEST_FIELDS",
    "RESERVED_COLUMNS", "ROWS", "RUNS", "SITES", "SITE_ORDER", "STORE_DTYPES", "ActivationStore", "CaptureConfig",
    "CaptureSummary", "Gather", "StoreWriter", "capture", "capture_prompts", "file_sha256", "fingerprint_dict",
    "hook_name", "layer_norms", "manifest_differences", "manifest_digest", "norm_figure", "parse_layers",
    "position_span", "resolve_layers", "resolve_position_names", "resolve_sites", "shard_name", "tensor_key",
]
