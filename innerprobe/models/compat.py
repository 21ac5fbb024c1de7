"""Upstream compatibility: the tested dependency set, one narrow shim, and a generation self-check.

Why this module exists (read this before changing a pin)
--------------------------------------------------------
transformers 5.24 renamed the key/value-cache keyword that HF decoder layers pass to their
attention module from ``past_key_values`` to ``cache`` (the old name stays a deprecated alias of
the *model's* forward until 5.40, but the layers now call ``self_attn(..., cache=cache)``).
TransformerLens 4.3's bridged attention (``AttentionBridge._update_kv_cache`` in
``model_bridge/generalized_components/attention.py``) looks only for ``past_key_values`` or
``layer_past`` in the keyword arguments it receives. Under 5.24 it finds neither, so it never
appends the new keys/values to the cache: every decode step attends to itself alone. Greedy
generation is then right for the first token (the prompt pass needs no cache) and wrong after it
("T-----------------------"); forced-choice scoring that continues from a reused prompt cache is
wrong the same way. Nothing raises.

:func:`install_kv_cache_shim` wraps ``AttentionBridge._update_kv_cache`` so that a ``cache``
keyword is used as the cache when neither old name is present. It changes nothing when an old
name is passed (transformers <= 5.23) and nothing when no cache is passed at all (plain
forwards). :func:`check_generation` is the load-time canary: a few greedy tokens through the
cached path must equal an argmax loop without a cache, or loading stops with
:class:`GenerationCheckError` naming the versions.

The tested set is :data:`TESTED_VERSIONS`; the exact lock the test suite passes with is
``constraints.txt`` at the repository root, used by ``scripts/install.sh``.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

from innerprobe.core.errors import InnerprobeError

log = logging.getLogger(__name__)

TESTED_VERSIONS: dict[str, tuple[str, ...]] = {
    "transformers": ("5.23.0", "5.24.0"),
    "transformer-lens": ("4.3.0",),
}
"""Releases the test suite has passed with. Others get a warning at load (and the self-check)."""

_SELF_CHECK_PROMPT = "The capital of France is Paris. The capital of Italy is"
_SELF_CHECK_TOKENS = 4


class GenerationCheckError(InnerprobeError, RuntimeError):
    """Cached generation disagrees with the uncached reference: the installed stack is broken."""


def installed_version(package: str) -> str:
    """The installed version of ``package``, or ``"absent"``."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def untested_versions() -> dict[str, str]:
    """Installed versions outside :data:`TESTED_VERSIONS` (empty when all are tested)."""
    out = {}
    for pkg, tested in TESTED_VERSIONS.items():
        got = installed_version(pkg)
        if got not in tested:
            out[pkg] = got
    return out


def warn_untested_versions() -> None:
    """Warn once per process when transformers / TransformerLens are outside the tested set."""
    bad = untested_versions()
    if bad and not getattr(warn_untested_versions, "_done", False):
        warn_untested_versions._done = True  # type: ignore[attr-defined]
        listed = "; ".join(
            f"{pkg} {got} (tested: {', '.join(TESTED_VERSIONS[pkg])})" for pkg, got in bad.items()
        )
        warnings.warn(
            f"innerprobe runs on untested versions: {listed}. The load-time generation check "
            "still runs; `bash scripts/install.sh` installs the locked set (constraints.txt).",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- the shim


def _shimmed(original: Any) -> Any:
    @functools.wraps(original)
    def _update_kv_cache(self: Any, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> Any:
        if kwargs.get("past_key_values") is None and kwargs.get("layer_past") is None:
            cache = kwargs.get("cache")
            if cache is not None and hasattr(cache, "update"):
                kwargs["past_key_values"] = cache
        return original(self, k, v, **kwargs)

    _update_kv_cache._innerprobe_shim = True  # type: ignore[attr-defined]
    _update_kv_cache._innerprobe_original = original  # type: ignore[attr-defined]
    return _update_kv_cache


def _attention_bridge_class() -> Any:

    return AttentionBridge


def install_kv_cache_shim() -> bool:
    """Make TransformerLens's bridged attention honour transformers >= 5.24's ``cache`` keyword.

    Idempotent. Returns True when the shim is (now) installed, False when this TransformerLens
    has no ``AttentionBridge._update_kv_cache`` to wrap (a release that reorganised it; the
    generation self-check then decides whether the stack is usable).
    """
    cls = _attention_bridge_class()
    original = getattr(cls, "_update_kv_cache", None)
    if original is None:
        return False
    if not getattr(original, "_innerprobe_shim", False):
        cls._update_kv_cache = _shimmed(original)
    return True


def uninstall_kv_cache_shim() -> None:
    """Restore TransformerLens's own ``_update_kv_cache`` (tests use this to see the break)."""
    cls = _attention_bridge_class()
    current = getattr(cls, "_update_kv_cache", None)
    original = getattr(current, "_innerprobe_original", None)
    if original is not None:
        cls._update_kv_cache = original


# --------------------------------------------------------------------------- the self-check


@torch.inference_mode()
def uncached_greedy(
    hf_model: Any, ids: Sequence[int], n_new: int, stop_ids: Sequence[int] = (), suppress_ids: Sequence[int] = ()
) -> list[int]:
    """Greedy tokens by an argmax loop that re-runs the whole sequence each step (no cache).

    Stops after a token in ``stop_ids`` (kept), as ``generate`` does at end-of-sequence; tokens in
    ``suppress_ids`` are never chosen, as ``generate(min_new_tokens=n)`` forbids end-of-sequence.
    """
    device = next(hf_model.parameters()).device
    seq = list(ids)
    out: list[int] = []
    for _ in range(n_new):
        x = torch.tensor([seq], device=device)
        logits = hf_model(input_ids=x, use_cache=False).logits[0, -1].clone()
        if suppress_ids:
            logits[list(suppress_ids)] = float("-inf")
        tok = int(torch.argmax(logits))
        out.append(tok)
        seq.append(tok)
        if tok in stop_ids:
            break
    return out


def eos_ids(hf_model: Any) -> list[int]:
    """The end-of-sequence ids ``generate`` stops at (and ``min_new_tokens`` suppresses)."""
    eos = getattr(getattr(hf_model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


@torch.inference_mode()
def cached_greedy(hf_model: Any, ids: Sequence[int], n_new: int) -> list[int]:
    """Greedy tokens through ``generate`` with the key/value cache (the fast path we use)."""
    device = next(hf_model.parameters()).device
    x = torch.tensor([list(ids)], device=device)
    gen = hf_model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=n_new,
        min_new_tokens=n_new,
        do_sample=False,
        use_cache=True,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=getattr(hf_model.config, "pad_token_id", None) or 0,
    )
    return [int(t) for t in gen[0, x.shape[1] :]]


def check_generation(hf_model: Any, tokenizer: Any, n_new: int = _SELF_CHECK_TOKENS) -> None:
    """Raise :class:`GenerationCheckError` if cached greedy decoding differs from the reference.

    Costs ``n_new + 1`` short forwards (well under a second on SmolLM2 on a CPU). Under the
    transformers 5.24 / TransformerLens 4.3 break, the cached path repeats one token after the
    first, which this catches on the second token.
    """
    ids = tokenizer(_SELF_CHECK_PROMPT)["input_ids"]
    # the cached call forbids end-of-sequence for all n_new tokens (min_new_tokens), so the reference
    # must too: a model that ends its turn early would otherwise continue past its own end token.
    ref = uncached_greedy(hf_model, ids, n_new, suppress_ids=eos_ids(hf_model))
    got = cached_greedy(hf_model, ids, n_new)
    if got != ref:
        versions = ", ".join(
            f"{p} {installed_version(p)}" for p in ("torch", "transformers", "transformer-lens")
        )
        raise GenerationCheckError(
            "cached generation disagrees with the no-cache reference "
            f"(cached {tokenizer.decode(got)!r} vs reference {tokenizer.decode(ref)!r}) on "
            f"{versions}. Install the tested set with `bash scripts/install.sh` "
            f"(constraints.txt; tested transformers: {', '.join(TESTED_VERSIONS['transformers'])})."
        )
