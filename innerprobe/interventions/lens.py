"""Logit lens and tuned lens: read a next-token distribution off any layer's residual stream.

**Logit lens** (nostalgebraist 2020): apply the model's own final norm and unembedding to the
residual ``h_l`` at layer ``l``, as if the layers above were skipped. At the last layer's
output this *is* the model's prediction; earlier it is a biased view, because the basis the
middle layers write in drifts from the unembedding's.

**Tuned lens** (Belrose et al. 2023): one affine *translator* per layer, ``h ↦ h + A_l h + b_l``,
trained so that ``unembed(norm(translator_l(h_l)))`` matches the model's final distribution
(``KL(p_final ‖ p_lens_l)``, averaged over tokens). ``A_l`` and ``b_l`` start at zero, so an
untrained tuned lens is exactly the logit lens. No corpus can be downloaded here, so the
training text is **self-distilled**: continuations the model samples from prompts (any task's
questions), or any ``datasets`` text the caller passes. Translators are saved as safetensors
with the model fingerprint and the training settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from innerprobe.behavior.inference import generate, left_pad
from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_path, provenance, read_json, write_json
from innerprobe.models.loaded import LoadedModel, original_module


def final_norm(model: LoadedModel) -> torch.nn.Module:
    """The model's final norm module (the HF module, not its bridge wrapper: no hooks fire)."""
    inner = getattr(model.hf_model, "model", None) or model.hf_model.base_model
    return original_module(inner.norm)


def unembed(model: LoadedModel, h: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
    """Final norm, unembedding and (Gemma) logit soft-capping of a residual vector."""
    head = original_module(model.hf_model.get_output_embeddings())
    logits = head(final_norm(model)(h.to(head.weight.dtype)))
    cap = getattr(model.hf_model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def logit_lens(model: LoadedModel, h: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
    """Log-probabilities the logit lens reads off ``h``."""
    return torch.log_softmax(unembed(model, h).float(), dim=-1)


def _keeper(store: dict[str, Tensor], name: str) -> Callable[[Tensor, Any], None]:
    def keep(act: Tensor, hook: Any) -> None:
        store[name] = act.detach()

    return keep


def residual_stream(
    model: LoadedModel, rows: Sequence[Sequence[int]], *, batch_size: int = 8
) -> list[Float[Tensor, "layer seq d_model"]]:
    """``resid_post`` of every layer at every real token of each row (left-padded batches)."""
    out: list[Tensor] = []
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.n_layers)]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask, _ = left_pad(chunk, model.tokenizer.pad_token_id, model.device)
        grabbed: dict[str, Tensor] = {}

        with torch.inference_mode():
            model.bridge.run_with_hooks(ids, attention_mask=mask, return_type=None,
                                        fwd_hooks=[(n, _keeper(grabbed, n)) for n in names])
        stacked = torch.stack([grabbed[n] for n in names], dim=1)  # [batch, layer, seq, d]
        for r in range(len(chunk)):
            out.append(stacked[r][:, mask[r].bool()].float())
    return out


@dataclass
class TunedLensConfig:
    """Training settings of a tuned lens (validated on construction)."""

    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 0.0
    tokens_per_step: int = 512
    max_tokens: int = 4096
    """Token positions kept (a seeded subsample): the final distributions are held as a
    ``[tokens, vocab]`` float32 array (4096 × 49152 for SmolLM2: 0.8 GB)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "tokens_per_step", "max_tokens"):
            if getattr(self, name) < 1:
                raise DataError(f"tuned lens {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DataError(f"tuned lens lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise DataError(f"tuned lens weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class TunedLens:
    """Per-layer affine translators ``h ↦ h + A_l h + b_l`` (zeros: the logit lens)."""

    weight: Float[Tensor, "layer d_model d_model"]
    bias: Float[Tensor, "layer d_model"]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def identity(cls, model: LoadedModel) -> TunedLens:
        d, n = model.d_model, model.n_layers
        return cls(torch.zeros(n, d, d), torch.zeros(n, d), {"model": model.fingerprint.to_dict(), "trained": False})

    def translate(self, layer: int, h: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        if not 0 <= layer < self.weight.shape[0]:
            raise DataError(f"layer {layer} is outside the lens's layers 0..{self.weight.shape[0] - 1}")
        w, b = self.weight[layer].to(h.device, h.dtype), self.bias[layer].to(h.device, h.dtype)
        return h + h @ w.T + b

    def __call__(self, model: LoadedModel, layer: int, h: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab"]:
        """Log-probabilities of the tuned lens at ``layer``."""
        return logit_lens(model, self.translate(layer, h))

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "tuned_lens.safetensors") as tmp:
            save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(tmp))
        write_json(out / "tuned_lens.json", self.meta)
        return out

    @classmethod
    def load(cls, directory: str | Path, model: LoadedModel | None = None) -> TunedLens:
        d = Path(directory)
        if not (d / "tuned_lens.safetensors").exists():
            raise DataError(f"{d} holds no tuned lens (tuned_lens.safetensors missing)")
        t = load_file(str(d / "tuned_lens.safetensors"))
        meta = read_json(d / "tuned_lens.json")
        if model is not None and not model.fingerprint.compatible_with(meta.get("model", {})):
            raise DataError(f"{d} was trained on {meta.get('model', {}).get('name')!r} weights "
                            f"({str(meta.get('model', {}).get('weights_sha256'))[:12]}), not {model.fingerprint.short}")
        return cls(t["weight"], t["bias"], meta)


def self_distilled_rows(
    model: LoadedModel, prompts: Sequence[Sequence[int]], *, max_new_tokens: int = 48, seed: int = 0
) -> list[list[int]]:
    """Prompt + a T=1 continuation the model samples itself: the tuned lens's training text."""
    texts = generate(model.hf_model, model.tokenizer, prompts, max_new_tokens=max_new_tokens,
                     do_sample=True, seed=seed)
    tok = model.tokenizer
    return [list(p) + tok(t[0], add_special_tokens=False)["input_ids"] for p, t in zip(prompts, texts)]


def _fit(
    model: LoadedModel, resid: Tensor, target: Tensor, w: Tensor, b: Tensor, opt: torch.optim.Optimizer,
    gen: torch.Generator, config: TunedLensConfig, progress: Callable[[int], None] | None,
) -> list[float]:
    n_layers, n_tokens, _ = resid.shape
    history = []
    for _ in range(config.steps):
        idx = torch.randint(n_tokens, (min(config.tokens_per_step, n_tokens),), generator=gen)
        p_final = target[idx].exp()
        opt.zero_grad()
        kl_sum = 0.0
        for layer in range(n_layers - 1):  # one layer's graph at a time: [batch, vocab] each
            h = resid[layer, idx]
            logp = torch.log_softmax(unembed(model, h + h @ w[layer].T + b[layer]).float(), dim=-1)
            kl = (p_final * (target[idx] - logp)).sum(-1).mean()
            kl.backward()
            kl_sum += float(kl.detach())
        opt.step()
        history.append(kl_sum / (n_layers - 1))
        if progress is not None:
            progress(1)
    return history


def train_tuned_lens(
    model: LoadedModel,
    rows: Sequence[Sequence[int]],
    config: TunedLensConfig = TunedLensConfig(),
    *,
    progress: Callable[[int], None] | None = None,
) -> TunedLens:
    """Fit every layer's translator to ``KL(p_final ‖ p_lens)`` on the tokens of ``rows``.

    The residuals and the final distributions are computed once (the model is frozen); each
    step samples ``tokens_per_step`` token positions and takes one Adam step on every layer.
    The last layer's translator is left at zero: its logit lens already is the model's output.
    """
    if not rows:
        raise DataError("train_tuned_lens needs at least one row of tokens")
    streams = residual_stream(model, rows)
    resid = torch.cat(streams, dim=1)  # [layer, tokens, d]
    if resid.shape[1] > config.max_tokens:
        keep = torch.randperm(resid.shape[1], generator=torch.Generator().manual_seed(config.seed))
        resid = resid[:, keep[: config.max_tokens].sort().values]
    with torch.no_grad():
        target = logit_lens(model, resid[-1])  # [tokens, vocab]
    n_layers, n_tokens, d = resid.shape
    lens = TunedLens.identity(model)
    w = torch.zeros(n_layers - 1, d, d, requires_grad=True)
    b = torch.zeros(n_layers - 1, d, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    frozen = [(p, p.requires_grad) for p in model.hf_model.parameters()]
    for p, _ in frozen:  # the model stays frozen (and its .grad untouched); restored below
        p.requires_grad_(False)
    try:
        history = _fit(model, resid, target, w, b, opt, gen, config, progress)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    lens.weight[:-1] = w.detach()
    lens.bias[:-1] = b.detach()
    lens.meta = {
        **provenance(model.fingerprint, seed=config.seed),
        "trained": True, "config": config.__dict__, "n_tokens": int(n_tokens), "n_rows": len(rows),
        "kl_first": history[0], "kl_last": history[-1],
    }
    return lens


__all__ = [
    "TunedLens", "TunedLensConfig", "final_norm", "logit_lens", "residual_stream", "self_distilled_rows",
    "train_tuned_lens", "unembed",
]
