"""``load_model``: the single front door from a name, a directory, a hub id, a bridge or an HF model.

It accepts

* an embedded model name (:mod:`innerprobe.models.embedded`; ``smollm2-135m-instruct`` is the
  default),
* a local Hugging Face directory (``config.json`` + weights + tokenizer), or a LoRA adapter
  directory written by :mod:`innerprobe.training.finetune` (merged into its base on load),
* a Hugging Face hub id (needs network; the same ``boot_transformers`` path as a directory),
* a ``TransformerBridge`` the caller already built,
* a Hugging Face ``PreTrainedModel`` object the caller already holds (quantised, edited,
  finetuned in memory...), with its ``tokenizer=``.

**Bring your own model, in memory.** An HF model object is wrapped where it lies, never saved
and reloaded: TransformerLens 4.3's ``TransformerBridge.boot_transformers(name, hf_model=...,
tokenizer=...)`` builds the bridge config from ``hf_model.config`` (no hub or disk access),
selects the architecture adapter and replaces the model's submodules by bridge components that
keep the originals (``..._original_component``). The weights are neither copied, moved nor cast:
the bridge's ``original_model`` *is* the object passed in, now hookable, and its attention is
switched to the eager kernel (hooks need the pattern). Its fingerprint records the source
``hf-model:<ClassName>`` and a hash of its parameters
(:func:`~innerprobe.models.fingerprint.hash_parameters`, the same before and after wrapping).

Every loaded model carries a :class:`~innerprobe.models.fingerprint.ModelFingerprint` and is
checked at load (:func:`innerprobe.models.compat.check_generation`): cached greedy decoding must
equal the no-cache reference, or the stack is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import PreTrainedModel

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.models.adapters import is_adapter_dir, merged_model_dir
from innerprobe.models.checks import _check_hub_id, check_device, check_model_spec
from innerprobe.models.compat import check_generation, install_kv_cache_shim, warn_untested_versions
from innerprobe.models.embedded import DEFAULT_MODEL, embedded_model_dir
from innerprobe.models.fingerprint import _fingerprint, hash_parameters, hash_weight_files
from innerprobe.models.loaded import LoadedModel

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MODEL_KINDS = (
    "an embedded model name",
    "a local Hugging Face directory",
    "a LoRA adapter directory",
    "a Hugging Face hub id",
    "a TransformerBridge",
    "a transformers PreTrainedModel with tokenizer=",
)
"""What :func:`load_model` takes, for error messages."""


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise UnknownNameError("dtype", dtype, _DTYPES)
    return _DTYPES[dtype]


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _prepare_tokenizer(tok: Any) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _boot(path_or_id: str, device: str, dtype: torch.dtype, device_map: Any) -> Any:
    install_kv_cache_shim()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    else:
        kwargs["device"] = device
    if not Path(path_or_id).exists():
        _check_hub_id(path_or_id)
    try:
        return TransformerBridge.boot_transformers(path_or_id, **kwargs)
    except OSError as e:  # transformers' "couldn't connect" / "not a valid model identifier"
        raise DataError(f"could not load model {path_or_id!r}: {e}") from e


def load_model(
    model: str | Path | Any = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
    device_map: str | dict[str, Any] | None = None,
    compatibility_mode: bool = False,
    tokenizer: Any = None,
    self_check: bool = True,
) -> LoadedModel:
    """Load ``model`` as a ``TransformerBridge`` with tokenizer and fingerprint.

    Args:
        model: an embedded name (see :func:`list_models`), a local HF directory, a HF hub id,
            a directory holding a LoRA adapter saved by :mod:`innerprobe.training.finetune` (merged into
            its base on load), a ``TransformerBridge``, or a Hugging Face ``PreTrainedModel``
            (wrapped in memory, see the module docstring; pass ``tokenizer=``).
        device: ``"cpu"``, ``"cuda"``, ... (default: cuda when available). Ignored when
            ``device_map`` is given (multi-GPU / offload placement passed to transformers).
        dtype: parameter dtype (``float32`` default; ``float16``/``bfloat16`` on GPU). A model
            object passed in keeps its own device and dtype (``device`` and ``dtype`` are not
            applied to it).
        compatibility_mode: call ``enable_compatibility_mode()`` (TransformerLens numerics:
            folded LN, centred weights). Recorded in the fingerprint; probes do not transfer
            between modes.
        tokenizer: required with a ``PreTrainedModel``; with a bridge, replaces its tokenizer
            (required when the bridge has none). Not used for names and paths.
        self_check: run :func:`innerprobe.models.compat.check_generation` (a few greedy tokens, cached
            vs uncached) and refuse a stack whose cached generation is wrong.

    Raises:
        UnknownNameError: a name that is neither embedded, nor a directory, nor hub-id shaped.
        DataError: an object of another kind (an int, a peft model, ...), or a model object
            without a tokenizer: the message names what was passed and :data:`MODEL_KINDS`.
        DataError: a local path that does not exist, an unreachable or unknown hub id, or a
            device this machine does not have (see :func:`check_model_spec`, :func:`check_device`).
        GenerationCheckError: cached generation disagrees with the no-cache reference.
    """
    warn_untested_versions()
    loaded = _load(model, device, dtype, device_map, compatibility_mode, tokenizer)
    if self_check:
        check_generation(loaded.hf_model, loaded.tokenizer)
    return loaded


def _load(
    model: str | Path | Any,
    device: str | None,
    dtype: str | torch.dtype,
    device_map: str | dict[str, Any] | None,
    compatibility_mode: bool,
    tokenizer: Any,
) -> LoadedModel:
    torch_dtype = _resolve_dtype(dtype)
    device = check_device(device) if device and device_map is None else device or _default_device()
    if isinstance(model, PreTrainedModel):
        return _wrap_hf_model(model, tokenizer, compatibility_mode)
    if not isinstance(model, (str, Path)):
        return _wrap_bridge(model, tokenizer, compatibility_mode)
    spec = str(model)
    path = Path(spec).expanduser()
    kind = check_model_spec(spec, reach_hub=False)
    if kind == "embedded":
        model_dir = embedded_model_dir(spec)
        name, source, sha = spec, str(model_dir), hash_weight_files(model_dir)
        bridge = _boot(str(model_dir), device, torch_dtype, device_map)
    elif kind == "dir":
        model_dir = merged_model_dir(path) if is_adapter_dir(path) else path
        name, source, sha = path.name, str(path.resolve()), hash_weight_files(model_dir)
        bridge = _boot(str(model_dir), device, torch_dtype, device_map)
    else:  # a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct": the real download path
        bridge = _boot(spec, device, torch_dtype, device_map)
        name, source, sha = spec, f"hub:{spec}", hash_parameters(bridge.original_model)
    _prepare_tokenizer(bridge.tokenizer)
    if compatibility_mode:
        bridge.enable_compatibility_mode(disable_warnings=True)
    fp = _fingerprint(name, source, bridge, sha, compatibility_mode)
    return LoadedModel(bridge=bridge, tokenizer=bridge.tokenizer, fingerprint=fp, name=name)


def _kinds() -> str:
    return "; valid kinds: " + ", ".join(MODEL_KINDS)


def _wrap_bridge(bridge: Any, tokenizer: Any, compatibility_mode: bool) -> LoadedModel:
    install_kv_cache_shim()
    if not hasattr(bridge, "original_model") or not hasattr(bridge, "cfg"):
        what = type(bridge).__name__
        hint = " (a peft model: merge_and_unload() it first)" if hasattr(bridge, "merge_and_unload") else ""
        raise DataError(f"cannot load a model from a {what} ({bridge!r:.60}){hint}{_kinds()}")
    if tokenizer is not None:
        bridge.tokenizer = tokenizer
    if getattr(bridge, "tokenizer", None) is None:
        raise DataError(f"the {type(bridge).__name__} has no tokenizer: pass tokenizer=...{_kinds()}")
    name = getattr(bridge.cfg, "model_name", None) or "bridge"
    return _finish(bridge, str(name), "bridge", compatibility_mode)


def _wrap_hf_model(hf_model: Any, tokenizer: Any, compatibility_mode: bool) -> LoadedModel:
    """A bridge around ``hf_model`` built in memory (see the module docstring)."""
    install_kv_cache_shim()
    cls = type(hf_model).__name__
    if tokenizer is None:
        raise DataError(
            f"a {cls} was passed without its tokenizer: pass tokenizer=AutoTokenizer.from_pretrained(...)"
            f"{_kinds()}"
        )
    if not getattr(hf_model.config, "architectures", None):
        # A model built from a config (not from_pretrained) names no architecture; the bridge
        # picks its adapter by that name.
        hf_model.config.architectures = [cls]
    first = next(hf_model.parameters())
    name = str(getattr(hf_model.config, "_name_or_path", "") or cls)
    try:
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, device=first.device, dtype=first.dtype
        )
    except (ValueError, KeyError, NotImplementedError) as e:  # no adapter for this architecture, ...
        raise DataError(f"TransformerLens cannot wrap this {cls}: {e}") from e
    short = Path(name).name if Path(name).exists() else name
    return _finish(bridge, short, f"hf-model:{cls}", compatibility_mode)


def _finish(bridge: Any, name: str, source: str, compatibility_mode: bool) -> LoadedModel:
    """Tokenizer padding, numerics mode, then the fingerprint over the parameters as they are now."""
    _prepare_tokenizer(bridge.tokenizer)
    if compatibility_mode and not getattr(bridge, "compatibility_mode", False):
        bridge.enable_compatibility_mode(disable_warnings=True)
    compat = bool(getattr(bridge, "compatibility_mode", False))
    fp = _fingerprint(name, source, bridge, hash_parameters(bridge.original_model), compat)
    return LoadedModel(bridge=bridge, tokenizer=bridge.tokenizer, fingerprint=fp, name=name)
