"""What a self-vs-peer probe run reads and how it fits: :class:`PeerProbeConfig`, and layer matching.

Two models of different depth (SmolLM2-135M has 30 blocks, Gemma-3-270M 18) are compared at the
same *relative depth*: block ``l`` of an ``L``-block model sits at depth ``(l + 1) / L`` (its
``resid_post`` is the output of ``l + 1`` of the ``L`` blocks; the last block is depth 1).
:func:`match_layers` pairs every chosen self layer (or every point of a depth grid) with the
captured peer layer of nearest depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from innerprobe.activations.config import resolve_position_names, resolve_sites
from innerprobe.activations.store import RUNS
from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.probes.config import PROBES, ProbeConfig

__all__ = ["PEER_MISSING", "PeerProbeConfig", "LayerPair", "relative_depth", "match_layers"]

PEER_MISSING = ("disagree", "drop")
"""What an item is when the peer has no label (non-compliant): a disagreement, or left out."""


@dataclass(frozen=True)
class PeerProbeConfig:
    """Knobs of a self-vs-peer probe run (recorded in the result).

    Attributes:
        target: the label column of the *self* store's rows the probes predict (the self model's
            object behaviour: ``answer_property``, ``object_answer``, ``property_value``...). The
            peer store's column of the same name is the peer's own behaviour, which decides the
            disagreement items.
        run, site, position: which activations of both stores: ``run`` one of ``object`` /
            ``hypothetical``, a hook ``site``, a captured ``position`` (``h_last``, ``o_last``...).
        layers: self-store layers to probe (default: every captured one); each is matched to the
            peer layer of nearest relative depth. Exclusive with ``depths``.
        depths: a relative-depth grid in ``(0, 1]`` instead: each point picks the nearest captured
            layer of each model.
        probe: the probe family (one of ``ridge``, ``logistic``, ``mass_mean``). The default is
            ``mass_mean`` because the peer probe learns from labels that are noisy *for its
            representation* (on disagreement items the peer's activations point at another
            class): a discriminative probe fits that noise and loses accuracy on consensus items
            too, which inflates the gap everywhere (measured on the planted synthetic stores of
            ``tests/test_peer_probes.py``, 60% agreement: ridge's peer probe reaches 0.70-0.75
            on consensus items, a consensus gap of +0.16..+0.31; difference-in-means reaches
            0.97-0.98, a consensus gap of 0.00..+0.04 with CIs covering 0).
        folds: grouped stratified CV folds; ``C`` (logistic) and ``ridge_alpha`` (ridge) the L2
            strengths, as in :class:`~innerprobe.probes.config.ProbeConfig`.
        min_count: classes of the target with fewer items are dropped (default: ``folds``).
        min_items: fewer usable items (after the join and the drops) is an error.
        min_overlap: the share of the self store's usable items the peer store must also hold.
        min_disagree: with fewer disagreement items the best layer is selected on all items.
        peer_missing: an item the peer has no label for counts as a ``disagree`` item or is
            ``drop``-ped.
        n_boot, alpha, seed: bootstrap resamples, ``1 - alpha`` intervals, the seed of folds,
            shuffled labels, the selection split and the resamples.
    """

    target: str = "answer_property"
    run: str = "hypothetical"
    site: str = "resid_post"
    position: str = "h_last"
    layers: tuple[int, ...] | None = None
    depths: tuple[float, ...] | None = None
    probe: str = "mass_mean"
    folds: int = 5
    C: float = 0.1
    ridge_alpha: float = 10.0
    min_count: int | None = None
    min_items: int = 20
    min_overlap: float = 0.8
    min_disagree: int = 4
    peer_missing: str = "disagree"
    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise DataError(f"PeerProbeConfig.target must name a label column, got {self.target!r}")
        check_choice("run", self.run, RUNS)
        resolve_sites([self.site])
        object.__setattr__(self, "position", resolve_position_names(self.run, [self.position])[0])
        if self.layers is not None and self.depths is not None:
            raise DataError("PeerProbeConfig: give layers or depths, not both")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(v) for v in self.layers))
            if not self.layers:
                raise DataError("PeerProbeConfig.layers is empty; give layers, or None for every captured layer")
        if self.depths is not None:
            object.__setattr__(self, "depths", tuple(float(v) for v in self.depths))
            bad = [d for d in self.depths if not 0 < d <= 1]
            if bad or not self.depths:
                raise DataError(f"PeerProbeConfig.depths must be relative depths in (0, 1], got {list(self.depths)}")
        check_choice("probe", self.probe, PROBES)
        check_choice("peer_missing", self.peer_missing, PEER_MISSING)
        check_at_least("PeerProbeConfig.folds", self.folds, 2)
        check_at_least("PeerProbeConfig.min_count", self.min_count, 1, allow_none=True)
        check_at_least("PeerProbeConfig.min_items", self.min_items, 2 * self.folds)
        check_at_least("PeerProbeConfig.min_disagree", self.min_disagree, 2)
        check_at_least("PeerProbeConfig.n_boot", self.n_boot, 1)
        check_at_least("PeerProbeConfig.seed", self.seed, 0)
        if not 0 < self.min_overlap <= 1:
            raise DataError(f"PeerProbeConfig.min_overlap must be in (0, 1], got {self.min_overlap!r}")
        if not 0 < self.alpha < 1:
            raise DataError(f"PeerProbeConfig.alpha must be in (0, 1) (0.05 gives 95% intervals), got {self.alpha!r}")
        self.probe_config()  # C, ridge_alpha: checked where they are defined

    def probe_config(self) -> ProbeConfig:
        """The :class:`ProbeConfig` the fits run with (one family, no controls of its own)."""
        return ProbeConfig(folds=self.folds, seed=self.seed, C=self.C, ridge_alpha=self.ridge_alpha,
                           probes=(self.probe,), controls=False, n_boot=self.n_boot, alpha=self.alpha)

    @property
    def class_min_count(self) -> int:
        return self.folds if self.min_count is None else self.min_count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerPair:
    """A self layer, the peer layer matched to it, and both relative depths."""

    self_layer: int
    peer_layer: int
    self_depth: float
    peer_depth: float


def relative_depth(layer: int, n_layers: int) -> float:
    """Depth of block ``layer``'s output in an ``n_layers``-block model: ``(layer + 1) / n_layers``."""
    return (int(layer) + 1) / int(n_layers)


def _nearest(depth: float, layers: Sequence[int], n_layers: int) -> int:
    return min(layers, key=lambda v: (abs(relative_depth(v, n_layers) - depth), v))


def match_layers(
    self_layers: Sequence[int], n_self: int, peer_layers: Sequence[int], n_peer: int, config: PeerProbeConfig,
) -> list[LayerPair]:
    """Pair self layers with peer layers by relative depth (see the module docstring).

    ``self_layers`` / ``peer_layers`` are the captured layers of each store, ``n_self`` /
    ``n_peer`` the models' block counts. A requested self layer that was not captured is an
    error naming the captured ones; a depth grid keeps each self layer once.
    """
    if config.layers is not None:
        missing = [v for v in config.layers if v not in self_layers]
        if missing:
            raise DataError(f"self store has no layer(s) {missing}; captured layers: {list(self_layers)}")
        chosen = list(dict.fromkeys(config.layers))
    elif config.depths is not None:
        chosen = list(dict.fromkeys(_nearest(d, self_layers, n_self) for d in config.depths))
    else:
        chosen = list(self_layers)
    pairs = []
    for layer in chosen:
        depth = relative_depth(layer, n_self)
        peer = _nearest(depth, peer_layers, n_peer)
        pairs.append(LayerPair(int(layer), int(peer), depth, relative_depth(peer, n_peer)))
    return pairs
