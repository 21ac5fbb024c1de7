"""Floor 1: loading models as TransformerLens bridges, with fingerprints.

Embedded GGUF weights, local HF directories, hub ids, LoRA adapter directories and bridges the
caller built all go through :func:`load_model`; the version shim and load-time generation check
live in :mod:`innerprobe.models.compat`; :mod:`innerprobe.models.tiny` builds the test model.
"""

from __future__ import annotations

from innerprobe.models.adapters import (
    ADAPTER_META,
    adapter_base,
    is_adapter_dir,
    merged_model_dir,
    quiet_peft,
)
from innerprobe.models.checks import VALID_MODELS, available_devices, check_device, check_model_spec
from innerprobe.models.embedded import (
    DEFAULT_MODEL,
    SMOLLM2_GGUF_SHA256,
    EmbeddedModel,
    dequantise_gguf,
    embedded_model_dir,
    list_models,
)
from innerprobe.models.fingerprint import (
    ModelFingerprint,
    hash_parameters,
    hash_weight_files,
    sha256_file,
)
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.models.tiny import (
    CHATML_TEMPLATE,
    SPECIAL_TOKENS,
    build_tiny_model_dir,
    build_tokenizer,
)

__all__ = ['ADAPTER_META', 'quiet_peft', 'is_adapter_dir', 'adapter_base', 'merged_model_dir', 'VALID_MODELS', 'available_devices', 'check_device', 'check_model_spec', 'SMOLLM2_GGUF_SHA256', 'DEFAULT_MODEL', 'EmbeddedModel', 'list_models', 'dequantise_gguf', 'embedded_model_dir', 'ModelFingerprint', 'sha256_file', 'hash_weight_files', 'hash_parameters', 'load_model', 'LoadedModel', 'CHATML_TEMPLATE', 'SPECIAL_TOKENS', 'build_tokenizer', 'build_tiny_model_dir']
