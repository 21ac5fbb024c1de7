"""Statistics that every reported effect carries: estimates with intervals.

Which interval for which number:

* **Proportions** (accuracy, compliance, the mode baseline: ``k`` hits out of ``n`` items) get
  the **Wilson score interval** (scipy's ``binomtest(k, n).proportion_ci(method="wilson")``).
  A percentile bootstrap of a proportion collapses at the edges: ``0/55`` resamples to 0 every
  time and "shows" ``[0.000, 0.000]``, while Wilson gives ``[0.000, 0.065]``. Wilson (not
  Jeffreys) because it has a closed form and its coverage stays near nominal for small ``n``.
* **Other means** (recoveries, logit differences) get a percentile bootstrap over *items*
  (prompts), the unit the paper reports over, with a seeded :class:`numpy.random.Generator`:
  resample the items with replacement ``n_boot`` times, compute the statistic on each resample
  and take the ``alpha/2`` and ``1 - alpha/2`` quantiles. The same seed gives the same numbers.
* **Paired differences** (self vs cross on the same items) get a paired bootstrap CI; when both
  sides are binary (correct / incorrect) an exact **McNemar** p-value (a two-sided binomial test
  on the discordant pairs) is reported beside it.
* **A "best" layer or cell** picked as the maximum of many noisy estimates is biased upwards
  (the winner's curse). :func:`select_and_estimate` selects on one half of the items and
  estimates on the other, disjoint half, and says so in its ``selection`` text.

Every :class:`Estimate` records its ``method``. Also here: the paper's mode baseline, the
calibration MAD of section 3.3, and normalised recovery for activation patching.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float
from scipy.stats import binomtest

from innerprobe.core.errors import DataError, check_at_least

__all__ = [
    "Estimate",
    "ModeBaseline",
    "PairedDiff",
    "Recovery",
    "Selected",
    "bootstrap_ci",
    "accuracy",
    "proportion",
    "mcnemar_exact",
    "split_halves",
    "select_and_estimate",
    "mode_baseline",
    "paired_bootstrap_diff",
    "calibration_curve",
    "calibration_mad",
    "calibration_from_distributions",
    "calibration_noise_floor",
    "empirical_distribution",
    "normalised_recovery",
    "proportion_ci_wilson",
]

# Resamples are drawn in chunks so that n_boot x n stays below this many indices.
_MAX_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a ``1 - alpha`` interval over ``n`` items."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict, for JSON reports and DataFrames."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n})"


def _as_finite_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    """Float 1-D array with no NaN/inf, or a DataError saying what is wrong."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise DataError(f"{what}: expected a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{what}: no items")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataError(f"{what}: {bad} of {arr.size} values are NaN or infinite; drop them first")
    return arr


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be in (0, 1), got {alpha}")


def _bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield index matrices (rows = resamples) covering ``n_boot`` resamples of ``n`` items."""
    if n_boot < 1:
        raise DataError(f"n_boot must be >= 1, got {n_boot}")
    rows = max(1, _MAX_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def _row_stat(stat: Callable[..., float], samples: np.ndarray) -> np.ndarray:
    """Apply ``stat`` to every row, vectorised when it takes ``axis`` (np.mean, np.median...)."""
    try:
        out = np.asarray(stat(samples, axis=1), dtype=float)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([stat(row) for row in samples], dtype=float)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    stat: Callable[..., float] = np.mean,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Estimate:
    """Percentile-bootstrap interval of ``stat`` over items.

    With one item every resample is that item, so the interval is degenerate
    (``ci_low == value == ci_high``): the data say nothing about spread.
    """
    _check_alpha(alpha)
    x = _as_finite_1d(values, "bootstrap_ci")
    value = float(stat(x))
    method = f"percentile bootstrap (n_boot={n_boot}, seed={seed})"
    if x.size == 1:
        return Estimate(value, value, value, 1, method)
    rng = np.random.default_rng(seed)
    resamples = _bootstrap_indices(x.size, n_boot, rng)
    boots = np.concatenate([_row_stat(stat, x[idx]) for idx in resamples])
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(low), float(high), int(x.size), method)


def proportion(k: int, n: int, *, alpha: float = 0.05) -> Estimate:
    """``k`` successes out of ``n`` items as an :class:`Estimate` with a Wilson interval."""
    low, high = proportion_ci_wilson(k, n, alpha)
    return Estimate(k / n, low, high, int(n), "Wilson score interval")


def accuracy(
    correct: Sequence[bool] | np.ndarray, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> Estimate:
    """Fraction correct, with a Wilson score interval over items.

    ``n_boot`` and ``seed`` are accepted for call-compatibility and unused: the interval of a
    proportion is computed, not resampled (see the module docstring for why).
    """
    hits = np.asarray(correct)
    if hits.ndim != 1 or hits.size == 0:
        raise DataError(f"accuracy: expected a non-empty 1-D sequence of booleans, got shape {hits.shape}")
    hits = hits.astype(bool)
    return proportion(int(hits.sum()), int(hits.size), alpha=alpha)


@dataclass(frozen=True)
class ModeBaseline:
    """The paper's mode baseline for one (task, property).

    ``mode`` is the most common object-level property value (ties broken by the
    lexicographically smallest value); ``estimate`` is the fraction of items whose
    value equals it, i.e. the accuracy of always guessing the mode.
    """

    mode: str | None
    estimate: Estimate
    counts: dict[str, int]


def mode_baseline(
    values: Sequence[str | None], *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> ModeBaseline:
    """Mode baseline over the non-``None`` property values of one (task, property).

    ``None`` values (non-compliant or out-of-range items) are left out, as the
    paper drops them before scoring. ``counts`` is ordered from most to least
    common. The interval is Wilson's (``n_boot`` and ``seed`` are unused).
    """
    kept = [v for v in values if v is not None]
    if not kept:
        raise DataError("mode_baseline: no non-None values")
    counter = Counter(kept)
    counts = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
    mode = next(iter(counts))
    return ModeBaseline(mode, proportion(counts[mode], len(kept), alpha=alpha), counts)


@dataclass(frozen=True)
class PairedDiff:
    """Mean of ``a``, mean of ``b``, their difference ``a - b``, and p-values.

    ``p_value`` is the paired-bootstrap p-value. For binary scores (correct / incorrect) also
    ``mcnemar_p``, the exact McNemar p-value, and the discordant counts it is computed from:
    ``n_a_only`` items where only ``a`` is 1, ``n_b_only`` where only ``b`` is. For binary scores
    ``a`` and ``b`` carry Wilson intervals; the difference keeps its paired-bootstrap interval.
    """

    a: Estimate
    b: Estimate
    diff: Estimate
    p_value: float
    mcnemar_p: float | None = None
    n_a_only: int | None = None
    n_b_only: int | None = None

    @property
    def n(self) -> int:
        return self.diff.n


def mcnemar_exact(a: Sequence[bool] | np.ndarray, b: Sequence[bool] | np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar test of paired binary outcomes: ``(p_value, n_a_only, n_b_only)``.

    Only discordant items carry information about ``P(a) - P(b)``: under the null each of the
    ``n_a_only + n_b_only`` discordant items is equally likely to favour either side, so
    ``n_a_only ~ Binomial(n_a_only + n_b_only, 1/2)``; the p-value is the two-sided binomial
    test of that (``scipy.stats.binomtest``). No discordant item gives p = 1.
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise DataError(f"mcnemar_exact: a has shape {x.shape}, b has {y.shape}; pairs must align")
    a_only, b_only = int(np.count_nonzero(x & ~y)), int(np.count_nonzero(~x & y))
    if a_only + b_only == 0:
        return 1.0, 0, 0
    return float(binomtest(a_only, a_only + b_only, 0.5).pvalue), a_only, b_only


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def paired_bootstrap_diff(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDiff:
    """Compare two scores measured on the *same* items (self vs cross prediction).

    Each resample draws one set of item indices and uses it for both ``a`` and
    ``b``, so item difficulty cancels out of the difference. The two-sided
    p-value is twice the share of resampled differences on the far side of 0
    (``<= 0`` when the observed difference is positive, ``>= 0`` otherwise),
    clipped to 1. Counts get the usual +1 correction, ``(k + 1) / (n_boot + 1)``,
    so p is never exactly 0: its floor is about ``2 / n_boot``. When both inputs
    are 0/1 the exact McNemar p-value (:func:`mcnemar_exact`) is added and the
    two marginal accuracies get Wilson intervals.
    """
    _check_alpha(alpha)
    x = _as_finite_1d(a, "paired_bootstrap_diff a")
    y = _as_finite_1d(b, "paired_bootstrap_diff b")
    if x.size != y.size:
        raise DataError(
            f"paired_bootstrap_diff: a has {x.size} items, b has {y.size}; pairs must align"
        )
    rng = np.random.default_rng(seed)
    resamples = _bootstrap_indices(x.size, n_boot, rng)
    chunks = [(x[idx].mean(axis=1), y[idx].mean(axis=1)) for idx in resamples]
    boot_a = np.concatenate([c[0] for c in chunks])
    boot_b = np.concatenate([c[1] for c in chunks])
    boot_d = boot_a - boot_b
    method = f"paired percentile bootstrap (n_boot={n_boot}, seed={seed})"
    q = [alpha / 2, 1 - alpha / 2]

    def estimate(point: float, boots: np.ndarray) -> Estimate:
        low, high = np.quantile(boots, q)
        return Estimate(float(point), float(low), float(high), int(x.size), method)

    below = (np.count_nonzero(boot_d <= 0) + 1) / (n_boot + 1)
    above = (np.count_nonzero(boot_d >= 0) + 1) / (n_boot + 1)
    p_value = min(1.0, 2 * min(below, above))
    diff = estimate(x.mean() - y.mean(), boot_d)
    if not (_is_binary(x) and _is_binary(y)):
        return PairedDiff(estimate(x.mean(), boot_a), estimate(y.mean(), boot_b), diff, float(p_value))
    p_mc, a_only, b_only = mcnemar_exact(x == 1, y == 1)
    return PairedDiff(
        a=proportion(int(x.sum()), x.size, alpha=alpha),
        b=proportion(int(y.sum()), y.size, alpha=alpha),
        diff=diff,
        p_value=float(p_value),
        mcnemar_p=p_mc,
        n_a_only=a_only,
        n_b_only=b_only,
    )


# ------------------------------------------------------------------ best of many (selection)


@dataclass(frozen=True)
class Selected:
    """The best of ``k`` candidates (layers, cells), chosen and estimated honestly.

    ``index``: the chosen candidate (argmax on the selection half). ``estimate``: its score on
    the disjoint estimation half, with an interval not inflated by the choice. ``naive``: the
    usual max over all items at the naively chosen candidate, kept for comparison (biased up).
    ``selection`` says in words what was done, with both halves' sizes.
    """

    index: int
    estimate: Estimate
    naive_index: int
    naive: Estimate
    selection: str
    n_select: int
    n_estimate: int


def split_halves(n: int, *, seed: int = 0, groups: Sequence[object] | None = None) -> Bool[np.ndarray, " n"]:
    """A seeded random half of ``n`` items (True = selection half, False = estimation half).

    With ``groups``, whole groups go to one half, so duplicates of an item never sit on both
    sides. Needs at least two items (two groups).
    """
    keys = np.arange(n) if groups is None else np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)[1]
    if len(keys) != n:
        raise DataError(f"split_halves: {len(keys)} groups for {n} items")
    n_groups = int(keys.max()) + 1 if n else 0
    if n_groups < 2:
        raise DataError(f"split_halves: need >= 2 items (groups) to split, got {n_groups}")
    rng = np.random.default_rng([seed, 7])
    chosen = rng.permutation(n_groups)[: n_groups // 2]
    return np.isin(keys, chosen)


def _column_estimate(col: np.ndarray, binary: bool, n_boot: int, alpha: float, seed: int) -> Estimate:
    col = col[np.isfinite(col)]
    if col.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "no finite values")
    if binary:
        return proportion(int(col.sum()), col.size, alpha=alpha)
    return bootstrap_ci(col, n_boot=n_boot, alpha=alpha, seed=seed)


def _nanargmax(means: np.ndarray) -> int:
    if not np.isfinite(means).any():
        raise DataError("select_and_estimate: no candidate has a finite score")
    return int(np.argmax(np.where(np.isfinite(means), means, -np.inf)))


def select_and_estimate(
    scores: Float[np.ndarray, "n k"],
    *,
    seed: int = 0,
    groups: Sequence[object] | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    what: str = "candidate",
) -> Selected:
    """Pick the best of ``k`` candidates on one half of the items, estimate it on the other.

    ``scores[i, j]`` is item ``i``'s score under candidate ``j`` (1/0 correctness per layer, a
    recovery per cell; NaN = missing). The naive report, "the max over ``k`` of the item means,
    with that candidate's CI", is biased upwards: with 30 pure-noise layers the max sits about
    two standard errors above chance, and its CI excludes chance. Here the argmax of the
    item means is taken on a seeded random half (:func:`split_halves`), and the chosen
    candidate's score is estimated on the other half only, where the choice did not look;
    its interval (Wilson for 0/1 scores, percentile bootstrap otherwise) therefore covers the
    chosen candidate's true score at the nominal rate. The price: half the items per step.
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataError(f"select_and_estimate: expected scores [items, {what}s], got shape {x.shape}")
    n, k = x.shape
    binary = _is_binary(x[np.isfinite(x)])
    with np.errstate(all="ignore"):
        naive_j = _nanargmax(np.nanmean(x, axis=0)) if n else 0
    naive = _column_estimate(x[:, naive_j], binary, n_boot, alpha, seed)
    sel = split_halves(n, seed=seed, groups=groups)
    with np.errstate(all="ignore"):
        j = _nanargmax(np.nanmean(x[sel], axis=0))
    est = _column_estimate(x[~sel, j], binary, n_boot, alpha, seed)
    n_a, n_b = int(sel.sum()), int((~sel).sum())
    text = (
        f"best of {k} {what}s selected on split A (n={n_a}), estimated on the disjoint split B "
        f"(n={n_b}; {est.method}); seed {seed}"
    )
    return Selected(j, est, naive_j, naive, text, n_a, n_b)


# ------------------------------------------------------------------------ calibration


def calibration_curve(
    object_probs: Sequence[float] | np.ndarray,
    hypothetical_probs: Sequence[float] | np.ndarray,
    *,
    n_bins: int = 10,
) -> pd.DataFrame:
    """Per-bin means of object-level and hypothetical probabilities.

    Items are put into ``n_bins`` equal-frequency bins of their object-level
    probability (``pd.qcut``). Bins whose edges coincide (many ties) are merged,
    so there can be fewer bins than asked. Columns: ``bin``, ``object_mean``,
    ``hypothetical_mean``, ``count``, ``abs_diff``.
    """
    obj = _as_finite_1d(object_probs, "calibration object_probs")
    hyp = _as_finite_1d(hypothetical_probs, "calibration hypothetical_probs")
    if obj.size != hyp.size:
        raise DataError(f"calibration: {obj.size} object probs but {hyp.size} hypothetical probs")
    if n_bins < 1:
        raise DataError(f"n_bins must be >= 1, got {n_bins}")
    codes = pd.qcut(obj, q=n_bins, labels=False, duplicates="drop")
    codes = np.zeros(obj.size, dtype=int) if np.isnan(codes).any() else codes.astype(int)
    frame = pd.DataFrame({"bin": codes, "object": obj, "hypothetical": hyp})
    curve = frame.groupby("bin").agg(
        object_mean=("object", "mean"),
        hypothetical_mean=("hypothetical", "mean"),
        count=("object", "size"),
    )
    curve["abs_diff"] = (curve["object_mean"] - curve["hypothetical_mean"]).abs()
    return curve.reset_index()


def calibration_mad(
    object_probs: Sequence[float] | np.ndarray,
    hypothetical_probs: Sequence[float] | np.ndarray,
    *,
    n_bins: int = 10,
) -> float:
    """The paper's calibration error: mean absolute deviation over bins, in percentage points.

    MAD = mean over equal-frequency bins of ``|mean object prob - mean
    hypothetical prob|`` x 100. Bins are weighted equally. 0 is perfect
    calibration; the paper reports e.g. 23.0 (untrained Llama 70B) vs 8.7 (self-trained).
    """
    curve = calibration_curve(object_probs, hypothetical_probs, n_bins=n_bins)
    return float(curve["abs_diff"].mean() * 100)


def empirical_distribution(samples: Sequence[str | None]) -> dict[str, float]:
    """Share of each value among the non-``None`` samples (e.g. 20 samples at T=1)."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return {}
    return {value: count / len(kept) for value, count in Counter(kept).items()}


def _kth_most_likely(dist: dict[str, float], k: int) -> str | None:
    ranked = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    ranked = [kv for kv in ranked if kv[1] > 0]
    return ranked[k - 1][0] if len(ranked) >= k else None


def calibration_from_distributions(
    object_dists: Sequence[dict[str, float]],
    hyp_dists: Sequence[dict[str, float]],
    top_k: int = 1,
    n_bins: int = 10,
) -> float:
    """Calibration MAD for the ``top_k``-th most likely object-level behaviour.

    For each item, take the value ranked ``top_k`` by object-level probability
    (1 = most likely; ties by value), pair its object-level probability with the
    hypothetical probability of that same value (0 if never given), and compute
    :func:`calibration_mad`. Items with fewer than ``top_k`` values of non-zero
    probability are skipped: they have no such behaviour.
    """
    if len(object_dists) != len(hyp_dists):
        raise DataError(
            f"calibration: {len(object_dists)} object dists "
            f"but {len(hyp_dists)} hypothetical dists"
        )
    if top_k < 1:
        raise DataError(f"top_k must be >= 1, got {top_k}")
    obj_p: list[float] = []
    hyp_p: list[float] = []
    for obj, hyp in zip(object_dists, hyp_dists, strict=True):
        value = _kth_most_likely(obj, top_k)
        if value is not None:
            obj_p.append(obj[value])
            hyp_p.append(hyp.get(value, 0.0))
    if not obj_p:
        raise DataError(f"calibration: no item has a rank-{top_k} object-level value")
    return calibration_mad(obj_p, hyp_p, n_bins=n_bins)


def calibration_noise_floor(
    object_dists: Sequence[dict[str, float]],
    n_samples: int,
    *,
    n_sim: int = 200,
    seed: int = 0,
    top_k: int = 1,
    n_bins: int = 10,
    alpha: float = 0.05,
) -> Estimate:
    """The calibration MAD a *perfect* self-predictor would score, given ``n_samples`` samples.

    The object-level distribution is only known through ``n_samples`` draws at T=1, so even a
    predictor that states each item's true distribution has a MAD above 0. This estimates that
    floor by simulation. Each simulation draws, for every item, a plausible true distribution
    from the Jeffreys posterior of its sample counts (``Dirichlet(counts + 1/2)``, with one more
    cell for values never sampled, so an item whose samples all agree is not taken to be
    certain), redraws ``n_samples`` object samples from it, and scores the true distribution as
    the hypothetical against the redrawn one with :func:`calibration_from_distributions` (same
    ``top_k`` and bins, so the top value is picked from the noisy draw as in the real measure).
    A measured MAD is evidence of miscalibration only where it clears this floor.

    The floor errs low: the posterior draws treat items independently, so they spread the true
    probabilities wider than they are and the binning's regression to the mean is understated
    (30 simulated sets of 80 two-valued items, true top probability uniform in [0.2, 0.95],
    10 samples each: a perfect predictor scored 7.9 pp on average, the floor 6.3). Read a MAD
    as clearing the floor only above the floor's upper bound. Returns the
    mean over ``n_sim`` simulations with their central ``1 - alpha`` range; ``n`` is the number
    of items.
    """
    check_at_least("n_samples", n_samples, 1)
    check_at_least("n_sim", n_sim, 1)
    _check_alpha(alpha)
    dists = [d for d in object_dists if d]
    if not dists:
        raise DataError("calibration_noise_floor: no item has a sampled object distribution")
    rng = np.random.default_rng(seed)
    unseen = "\x00unseen"  # a value outside every label set
    values_of = [sorted(d) + [unseen] for d in dists]
    counts_of = [np.array([d[v] for v in vs[:-1]] + [0.0]) / sum(d.values()) * n_samples for d, vs in zip(dists, values_of)]
    sims = np.empty(n_sim)
    for b in range(n_sim):
        truths = [rng.dirichlet(c + 0.5) for c in counts_of]
        redrawn = [dict(zip(vs, rng.multinomial(n_samples, t) / n_samples)) for vs, t in zip(values_of, truths)]
        stated = [dict(zip(vs, t)) for vs, t in zip(values_of, truths)]
        sims[b] = calibration_from_distributions(redrawn, stated, top_k=top_k, n_bins=n_bins)
    low, high = np.quantile(sims, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(sims.mean()), float(low), float(high), len(dists),
                    f"noise floor: {n_sim} simulations of {n_samples} samples per item from the Jeffreys posterior")


# ------------------------------------------------------------------------- patching


class Recovery(NamedTuple):
    """Normalised recovery per item, and how many items were excluded (NaN)."""

    values: np.ndarray
    n_excluded: int


def normalised_recovery(
    patched: Sequence[float] | np.ndarray | float,
    corrupt: Sequence[float] | np.ndarray | float,
    clean: Sequence[float] | np.ndarray | float,
    *,
    eps: float = 1e-8,
) -> Recovery:
    """Share of the clean-vs-corrupt gap restored: ``(patched - corrupt) / (clean - corrupt)``.

    1 means the patch fully restores clean behaviour, 0 means no effect; values
    outside [0, 1] are kept (overshoot is informative). Inputs broadcast, so a
    scalar clean/corrupt baseline works. Items whose gap ``|clean - corrupt|`` is
    below ``eps`` have no meaningful denominator: they become NaN and are counted
    in ``n_excluded``, so callers report them instead of silently averaging
    exploding ratios (use ``np.nanmean`` on ``values``).
    """
    p, c, k = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (patched, corrupt, clean)))
    gap = k - c
    tiny = np.abs(gap) < eps
    safe_gap = np.where(tiny, 1.0, gap)
    values = np.where(tiny, np.nan, (p - c) / safe_gap)
    return Recovery(values=values, n_excluded=int(np.count_nonzero(tiny)))


def proportion_ci_wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials.

    It inverts the score test: the interval holds every ``p`` for which ``|k/n - p|`` is within
    ``z·sqrt(p(1-p)/n)``, which solves to
    ``(p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)``. Unlike the normal
    approximation (or a percentile bootstrap) it does not collapse at ``k = 0`` or ``k = n``:
    ``0/10`` gives ``[0, 0.278]``. Computed by ``scipy.stats.binomtest(...).proportion_ci``.
    """
    _check_alpha(alpha)
    if n <= 0:
        raise DataError(f"proportion_ci_wilson: n must be positive, got {n}")
    if not 0 <= k <= n:
        raise DataError(f"proportion_ci_wilson: k={k} is outside [0, n={n}]")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="wilson")
    low = 0.0 if k == 0 else max(0.0, float(ci.low))  # exact ends, free of round-off
    high = 1.0 if k == n else min(1.0, float(ci.high))
    return low, high
