"""Answer directions from object-level activations, and the random controls they are read against.

Self-simulation says the hypothetical pass H recomputes the object answer; if so, the answer's
representation in O should be a *causal* handle on H. The handles are the simplest linear
summaries of that representation (Marks & Tegmark's mass-mean probes; Turner et al.'s activation
addition):

* **class mean** ``μ_c``: the mean residual over the O runs whose answer is ``c`` (a row column of
  the activation store such as ``object_answer``), at one layer, site and position;
* **difference of means** ``μ_t − μ_s``: the push that turns answer ``s`` into answer ``t``;
* **answer subspace**: the span of the ``k`` centred class means ``μ_c − μ̄`` of the most frequent
  classes, orthonormalised (QR), the subspace an ablation removes.

Every effect of such a handle is read beside a **control of the same size**:

* :func:`norm_matched` — a random direction with exactly the handle's norm (a uniformly random
  unit vector times ``‖v‖``): anything a push of that size does by itself;
* :func:`random_subspace` — a random ``k``-dimensional subspace **matched in variance**: the
  activations' projection onto it carries the same variance as their projection onto the answer
  subspace. A uniformly random subspace of a residual stream carries far less variance than a
  class-mean one (the stream is anisotropic), so ablating it would be a weak straw man. Instead
  the basis is drawn from ``N(0, Σ^α)`` (``Σ`` the activations' covariance) and ``α`` is bisected
  until the projected variance matches: ``α = 0`` is isotropic, larger ``α`` leans toward the top
  principal components.

Every :class:`Direction` / :class:`Subspace` records its provenance: the store's manifest digest,
model weights hash and items digest, the layer, site, position, label column, classes and ``n``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.core.errors import DataError

__all__ = [
    "ClassMeans",
    "Direction",
    "Subspace",
    "check_vector",
    "class_means",
    "complement_basis",
    "norm_matched",
    "outside_span",
    "projected_variance",
    "random_subspace",
    "store_class_means",
    "store_provenance",
]


def check_vector(v: Tensor, d_model: int | None = None, what: str = "direction") -> None:
    """``DataError`` unless ``v`` is a finite 1-D vector (of width ``d_model`` when given)."""
    if v.ndim != 1:
        raise DataError(f"{what} must be 1-D [d_model], got shape {tuple(v.shape)}")
    if d_model is not None and v.shape[0] != d_model:
        raise DataError(f"{what} has width {v.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(v).all():
        raise DataError(f"{what} has non-finite entries (NaN or inf)")


@dataclass(frozen=True)
class Direction:
    """A vector in the residual stream and where it came from.

    ``kind``: ``class_mean`` | ``diff_means`` | ``random``; ``label``: the class (``"deer"``), the
    pair (``"deer-cat"``, target minus source) or the seed of a random one; ``n``: the items it
    was estimated from.
    """

    vector: Float[Tensor, " d_model"]
    kind: str
    label: str
    n: int
    layer: int | None = None
    site: str = ""
    position: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_vector(self.vector, what=f"{self.kind} direction {self.label!r}")

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    @property
    def width(self) -> int:
        return int(self.vector.shape[0])

    def record(self) -> dict[str, Any]:
        """Everything but the vector, for a result's JSON."""
        return {"kind": self.kind, "label": self.label, "n": self.n, "layer": self.layer, "site": self.site,
                "position": self.position, "norm": self.norm, "provenance": self.provenance}


@dataclass(frozen=True)
class Subspace:
    """An orthonormal basis ``[k, d_model]`` (rows) and where it came from.

    Rank 0 is allowed here (an empty basis is the identity ablation); rank above ``d_model``, a
    non-finite basis or rows that are not orthonormal are refused.
    """

    basis: Float[Tensor, "k d_model"]
    kind: str
    layer: int | None = None
    classes: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.basis.ndim != 2:
            raise DataError(f"subspace basis must be [k, d_model], got shape {tuple(self.basis.shape)}")
        k, d = self.basis.shape
        if k > d:
            raise DataError(f"subspace rank {k} is above d_model={d}")
        if not torch.isfinite(self.basis).all():
            raise DataError("subspace basis has non-finite entries (NaN or inf)")
        gram = self.basis.double() @ self.basis.double().T
        if k and not torch.allclose(gram, torch.eye(k, dtype=torch.float64), atol=1e-4):
            raise DataError("subspace basis rows are not orthonormal: build it with orthonormal_rows()")

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])

    @property
    def width(self) -> int:
        return int(self.basis.shape[1])

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "rank": self.rank, "layer": self.layer, "classes": list(self.classes),
                "provenance": self.provenance}


def orthonormal_rows(rows: Float[Tensor, "k d_model"], what: str = "subspace") -> Float[Tensor, "k d_model"]:
    """QR-orthonormalised rows spanning the same space; ``DataError`` on rank 0, rank > d or dependence."""
    if rows.ndim != 2:
        raise DataError(f"{what} rows must be [k, d_model], got shape {tuple(rows.shape)}")
    k, d = rows.shape
    if k == 0 or k > d:
        raise DataError(f"{what} rank {k} is not between 1 and d_model={d}")
    if not torch.isfinite(rows).all():
        raise DataError(f"{what} rows have non-finite entries (NaN or inf)")
    q, r = torch.linalg.qr(rows.double().T)
    scale = max(1e-30, float(r.abs().max()))
    rank = int((r.diagonal().abs() > 1e-7 * scale).sum())
    if rank < k:
        raise DataError(f"{what} has {k} rows but rank {rank}: drop dependent rows (fewer classes)")
    return q.T.to(rows.dtype).contiguous()


# ------------------------------------------------------------------------------ class means


@dataclass(frozen=True)
class ClassMeans:
    """Per-class mean activations at one layer/site/position, classes sorted by count (desc)."""

    classes: tuple[str, ...]
    means: Float[Tensor, "n_classes d_model"]
    counts: tuple[int, ...]
    grand_mean: Float[Tensor, " d_model"]
    n: int
    layer: int | None = None
    site: str = ""
    position: str = ""
    label_column: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def d_model(self) -> int:
        return int(self.means.shape[1])

    def _index(self, label: str) -> int:
        if label not in self.classes:
            raise DataError(f"no class {label!r} among the {len(self.classes)} classes: {', '.join(self.classes)}")
        return self.classes.index(label)

    def _where(self) -> dict[str, Any]:
        return {"layer": self.layer, "site": self.site, "position": self.position,
                "provenance": {**self.provenance, "label_column": self.label_column}}

    def mean(self, label: str) -> Direction:
        """The class mean ``μ_label`` (centred: ``μ_label − μ̄``)."""
        i = self._index(label)
        return Direction(self.means[i] - self.grand_mean, "class_mean", label, self.counts[i], **self._where())

    def difference(self, target: str, source: str) -> Direction:
        """``μ_target − μ_source``: the push from answer ``source`` to answer ``target``."""
        i, j = self._index(target), self._index(source)
        if i == j:
            raise DataError(f"difference of means needs two classes; got {target!r} twice")
        v = self.means[i] - self.means[j]
        return Direction(v, "diff_means", f"{target}-{source}", self.counts[i] + self.counts[j], **self._where())

    def subspace(self, k: int | None = None) -> Subspace:
        """The span of the ``k`` most frequent centred class means (default ``n_classes − 1``)."""
        k = len(self.classes) - 1 if k is None else k
        if not 1 <= k <= len(self.classes) - 1:
            raise DataError(
                f"answer subspace rank {k}: needs 1 <= k <= n_classes - 1 = {len(self.classes) - 1} "
                f"(classes: {', '.join(self.classes)})"
            )
        if k > self.d_model:
            raise DataError(f"answer subspace rank {k} is above d_model={self.d_model}")
        basis = orthonormal_rows(self.means[:k] - self.grand_mean, "answer subspace")
        return Subspace(basis, "answer", self.layer, self.classes[:k], dict(self._where()["provenance"]))


def class_means(
    acts: Float[Tensor, "n d_model"] | np.ndarray,
    labels: Sequence[Any],
    *,
    min_count: int = 1,
    layer: int | None = None,
    site: str = "",
    position: str = "",
    label_column: str = "",
    provenance: dict[str, Any] | None = None,
) -> ClassMeans:
    """Class means of raw activations ``acts`` by ``labels`` (None / NaN labels are skipped).

    Classes with fewer than ``min_count`` items are dropped; at least two must remain. The grand
    mean is over the kept items.
    """
    x = torch.as_tensor(np.asarray(acts) if not isinstance(acts, Tensor) else acts).float()
    if x.ndim != 2:
        raise DataError(f"activations must be [n, d_model], got shape {tuple(x.shape)}")
    if len(labels) != x.shape[0]:
        raise DataError(f"{x.shape[0]} activation rows but {len(labels)} labels")
    if not torch.isfinite(x).all():
        bad = torch.nonzero(~torch.isfinite(x).all(-1)).flatten()[:5].tolist()
        raise DataError(f"activations have non-finite rows (first: {bad})")
    if min_count < 1:
        raise DataError(f"min_count must be >= 1, got {min_count}")
    keys = [None if lab is None or (isinstance(lab, float) and math.isnan(lab)) else str(lab) for lab in labels]
    counts = Counter(k for k in keys if k is not None)
    kept = sorted((c for c, m in counts.items() if m >= min_count), key=lambda c: (-counts[c], c))
    if len(kept) < 2:
        raise DataError(
            f"class means need >= 2 classes with >= {min_count} items; got counts {dict(counts.most_common(8))}"
        )
    rows = [i for i, k in enumerate(keys) if k in set(kept)]
    means = torch.stack([x[[i for i, k in enumerate(keys) if k == c]].mean(0) for c in kept])
    return ClassMeans(tuple(kept), means, tuple(counts[c] for c in kept), x[rows].mean(0), len(rows),
                      layer, site, position, label_column, dict(provenance or {}))


def store_provenance(store: Any) -> dict[str, Any]:
    """What identifies a store: its manifest digest, model weights hash, items digest and path."""
    m = store.manifest
    return {"store": str(store.path), "manifest_sha256": m.get("manifest_sha256"),
            "weights_sha256": (m.get("model") or {}).get("weights_sha256"), "items_digest": m.get("items_digest")}


def _store_labels(store: Any, label_column: str) -> list[Any]:
    rows = store.rows
    if label_column not in rows:
        cols = [c for c in rows.columns if c not in ("index", "id", "task", "group")]
        raise DataError(f"store has no row column {label_column!r}; label columns: {', '.join(cols)}")
    labels = rows[label_column].tolist()
    if "object_compliant" in rows:
        labels = [lab if ok else None for lab, ok in zip(labels, rows["object_compliant"].tolist())]
    return labels


def store_class_means(
    store: Any,
    layers: Sequence[int],
    *,
    label_column: str = "object_answer",
    site: str = "resid_post",
    position: str = "o_last",
    run: str = "object",
    min_count: int = 2,
) -> dict[int, ClassMeans]:
    """Class means per layer from the O runs of an activation store (one read for all layers).

    Labels come from the row column ``label_column``; rows with ``object_compliant`` False are
    skipped. ``DataError`` / ``UnknownNameError`` name the valid columns, layers and positions.
    """
    labels = _store_labels(store, label_column)
    acts = store.read(run, site, position, layers=list(layers))
    prov = store_provenance(store)
    return {
        int(layer): class_means(acts[:, i], labels, min_count=min_count, layer=int(layer), site=site,
                                position=position, label_column=label_column, provenance=prov)
        for i, layer in enumerate(layers)
    }


# ------------------------------------------------------------------------------ random controls


def norm_matched(direction: Direction, seed: int) -> Direction:
    """A uniformly random direction with ``direction``'s norm (same layer, site and position)."""
    g = torch.Generator().manual_seed(int(seed))
    r = torch.randn(direction.width, generator=g, dtype=torch.float64)
    v = (r / r.norm() * direction.norm).to(direction.vector.dtype)
    return Direction(v, "random", f"random(seed={seed}) ~ {direction.label}", direction.n, direction.layer,
                     direction.site, direction.position, {**direction.provenance, "norm_of": direction.label})


def projected_variance(acts: Float[Tensor, "n d_model"], basis: Float[Tensor, "k d_model"]) -> float:
    """Total variance of the activations' projection onto ``span(basis)`` (orthonormal rows)."""
    if basis.shape[0] == 0:
        return 0.0
    centred = acts.double() - acts.double().mean(0)
    return float(((centred @ basis.double().T) ** 2).sum(0).sum() / max(1, acts.shape[0] - 1))


def _shaped_basis(eigvec: Tensor, eigval: Tensor, g: Tensor, alpha: float) -> Tensor:
    """Orthonormal rows spanning ``Σ^{α/2} G`` (``Σ = U diag(λ) Uᵀ``)."""
    w = eigval.clamp(min=float(eigval.max()) * 1e-6) ** (alpha / 2)
    return orthonormal_rows(((eigvec * w) @ (eigvec.T @ g)).T, "random subspace")


def complement_basis(basis: Float[Tensor, "k d_model"]) -> Float[Tensor, "m d_model"]:
    """Orthonormal rows spanning the orthogonal complement of ``span(basis)`` (orthonormal rows; ``m = d − k``)."""
    d = basis.shape[1]
    proj = torch.eye(d, dtype=torch.float64) - basis.double().T @ basis.double()
    eigval, eigvec = torch.linalg.eigh(proj)
    return eigvec[:, eigval > 0.5].T.to(basis.dtype)


def outside_span(
    basis: Float[Tensor, "k d_model"], spared: Float[Tensor, "p d_model"], *, keep: float = 0.5
) -> Float[Tensor, "m d_model"]:
    """Orthonormal rows spanning the part of ``span(basis)`` that lies outside ``span(spared)``.

    Both arguments are orthonormal rows. The rows of ``basis`` are projected off ``span(spared)``
    and the result's right singular vectors with singular value above ``keep`` are returned: a
    direction of ``span(basis)`` survives only if more than ``keep`` of its length lies outside
    the spared span. When ``span(spared) ⊂ span(basis)`` (a property's class means are averages
    of its answers' class means) the singular values are 1 or 0 and ``m = k − p``. Used to ablate
    an answer's *identity* while sparing its property: what remains of the answer code once the
    directions that encode the property itself are left in place.
    """
    b, sp = basis.double(), spared.double()
    rest = b - (b @ sp.T) @ sp
    _, sv, vh = torch.linalg.svd(rest, full_matrices=False)
    return vh[sv > keep].to(basis.dtype).contiguous()


def random_subspace(
    k: int,
    d_model: int,
    *,
    seed: int,
    acts: Float[Tensor, "n d_model"] | None = None,
    target_variance: float | None = None,
    tol: float = 0.01,
    outside: Float[Tensor, "r d_model"] | None = None,
) -> Subspace:
    """A random ``k``-dimensional subspace; matched in variance when ``acts`` and a target are given.

    Without ``acts`` the basis is uniformly random (Haar). With ``acts`` and ``target_variance``
    (e.g. :func:`projected_variance` of the answer subspace), the basis spans ``Σ^{α/2} G`` for a
    fixed seeded Gaussian ``G [d, k]``, and ``α ∈ [-8, 8]`` is bisected until the projected
    variance is within ``tol`` (relative) of the target; the achieved variance and ``α`` are
    recorded. A target above what the top-``k`` principal components carry is unreachable; the
    closest is kept and its ratio recorded.

    ``outside`` (orthonormal rows, e.g. the answer subspace itself) draws the subspace inside the
    orthogonal complement of ``span(outside)``, so the control shares no direction with what it
    controls for. This matters when ``k`` is a large share of the width (a 30-class answer code in
    a 64-wide model): a variance-matched subspace of the whole space must then overlap the answer
    subspace and ablates much of it, and "answer vs random" compares the code with itself. In the
    complement the variance is matched as far as the complement allows (its ratio is recorded).
    ``DataError`` when the complement is narrower than ``k``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_model:
        raise DataError(f"random subspace rank {k!r} is not between 1 and d_model={d_model}")
    if outside is not None and outside.shape[0]:
        comp = complement_basis(outside.double())
        if comp.shape[0] < k:
            raise DataError(f"random subspace rank {k} does not fit outside a rank-{outside.shape[0]} subspace "
                            f"of d_model={d_model} (complement width {comp.shape[0]})")
        inner = random_subspace(k, comp.shape[0], seed=seed, acts=None if acts is None else acts.double() @ comp.T,
                                target_variance=target_variance, tol=tol)
        prov = {**inner.provenance, "outside_rank": int(outside.shape[0])}
        return Subspace((inner.basis.double() @ comp).float(), "random", provenance=prov)
    gen = torch.Generator().manual_seed(int(seed))
    g = torch.randn(d_model, k, generator=gen, dtype=torch.float64)
    if acts is None or target_variance is None:
        return Subspace(orthonormal_rows(g.T).float(), "random", provenance={"seed": seed, "matched": False})
    if acts.shape[-1] != d_model:
        raise DataError(f"activations have width {acts.shape[-1]}, the subspace d_model is {d_model}")
    alpha, basis, var = _match_variance(acts, g, target_variance, tol)
    prov = {"seed": seed, "matched": True, "alpha": alpha, "variance": var, "target_variance": target_variance,
            "variance_ratio": var / max(target_variance, 1e-30)}
    return Subspace(basis.float(), "random", provenance=prov)


def _match_variance(acts: Tensor, g: Tensor, target: float, tol: float) -> tuple[float, Tensor, float]:
    """Bisect ``α`` so that ``span(Σ^{α/2} G)`` carries ``target`` variance; ``(α, basis, variance)``.

    An ``α`` whose shaped rows are numerically dependent (a rank-deficient ``Σ`` raised to a large
    power flattens some directions to 0) is stepped back toward 0, where the rows are ``G``'s own.
    """
    centred = acts.double() - acts.double().mean(0)
    eigval, eigvec = torch.linalg.eigh(centred.T @ centred / max(1, acts.shape[0] - 1))
    lo, hi = -8.0, 8.0
    best: tuple[float, float, Tensor | None] = (math.inf, 0.0, None)
    for _ in range(40):
        alpha = (lo + hi) / 2
        try:
            basis = _shaped_basis(eigvec, eigval, g, alpha)
        except DataError:
            lo, hi = (lo, alpha) if alpha > 0 else (alpha, hi)
            continue
        var = projected_variance(acts, basis)
        gap = abs(var - target) / max(target, 1e-30)
        if gap < best[0]:
            best = (gap, alpha, basis)
        if gap <= tol:
            break
        lo, hi = (alpha, hi) if var < target else (lo, alpha)
    _, alpha, basis = best
    if basis is None:
        basis = orthonormal_rows(g.T, "random subspace")
        alpha = 0.0
    return alpha, basis, projected_variance(acts, basis)
