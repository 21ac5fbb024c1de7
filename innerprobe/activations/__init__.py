"""Floor 4: residual activations of object and hypothetical prompts, hooked and stored.

:func:`capture` runs one padded, masked forward per batch and writes a sharded safetensors
store with a manifest; :class:`ActivationStore` reads it back by site, layer and position.
"""

from __future__ import annotations

from innerprobe.activations.capture import (
    NAMED_POSITIONS,
    RESERVED_COLUMNS,
    SITE_ORDER,
    SITES,
    Gather,
    capture_prompts,
    hook_name,
    position_span,
    resolve_layers,
    resolve_position_names,
    resolve_sites,
)
from innerprobe.activations.store import (
    FINGERPRINT_FIELDS,
    FORMAT_VERSION,
    MANIFEST,
    REQUEST_FIELDS,
    ROWS,
    RUNS,
    STORE_DTYPES,
    ActivationStore,
    StoreWriter,
    file_sha256,
    fingerprint_dict,
    manifest_differences,
    manifest_digest,
    shard_name,
    tensor_key,
)

__all__ = ['SITES', 'SITE_ORDER', 'NAMED_POSITIONS', 'RESERVED_COLUMNS', 'hook_name', 'resolve_sites', 'resolve_layers', 'resolve_position_names', 'position_span', 'Gather', 'capture_prompts', 'FORMAT_VERSION', 'MANIFEST', 'ROWS', 'RUNS', 'STORE_DTYPES', 'REQUEST_FIELDS', 'FINGERPRINT_FIELDS', 'shard_name', 'tensor_key', 'fingerprint_dict', 'file_sha256', 'manifest_digest', 'manifest_differences', 'ActivationStore', 'StoreWriter']
