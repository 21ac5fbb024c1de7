"""Tests for innerprobe.core.stats: intervals, baselines, paired tests, calibration, recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from innerprobe.core.errors import DataError
from innerprobe.core.stats import (
    Estimate,
    accuracy,
    bootstrap_ci,
    calibration_curve,
    calibration_from_distributions,
    calibration_mad,
    calibration_noise_floor,
    empirical_distribution,
    mode_baseline,
    normalised_recovery,
    paired_bootstrap_diff,
    proportion_ci_wilson,
)

# ------------------------------------------------------------------------ bootstrap


def test_bootstrap_covers_true_mean_at_nominal_rate() -> None:
    rng = np.random.default_rng(123)
    covered = 0
    for i in range(200):
        sample = rng.normal(loc=1.0, scale=2.0, size=60)
        est = bootstrap_ci(sample, n_boot=1000, seed=i)
        covered += est.ci_low <= 1.0 <= est.ci_high
    assert 0.9 <= covered / 200 <= 0.99


def test_bootstrap_is_seeded() -> None:
    x = np.random.default_rng(0).random(50)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_bootstrap_edge_cases() -> None:
    with pytest.raises(DataError):
        bootstrap_ci([])
    with pytest.raises(DataError):
        bootstrap_ci([1.0, float("nan")])
    one = bootstrap_ci([0.7])
    assert (one.value, one.ci_low, one.ci_high, one.n) == (0.7, 0.7, 0.7, 1)


def test_bootstrap_other_stats() -> None:
    x = np.arange(101, dtype=float)
    med = bootstrap_ci(x, stat=np.median, n_boot=500)
    assert med.value == 50.0 and med.ci_low < 50 < med.ci_high
    # A stat without an axis argument falls back to a per-resample loop.
    rng_free = bootstrap_ci(x, stat=lambda v: float(max(v) - min(v)), n_boot=50)
    assert rng_free.value == 100.0 and rng_free.ci_high <= 100.0


def test_estimate_str_and_dict() -> None:
    est = Estimate(0.4123, 0.3181, 0.5049, 100, "m")
    assert str(est) == "0.412 [0.318, 0.505] (n=100)"
    assert est.to_dict() == {"value": 0.4123, "ci_low": 0.3181, "ci_high": 0.5049, "n": 100, "method": "m"}


def test_accuracy() -> None:
    est = accuracy([True] * 30 + [False] * 70)
    assert est.value == pytest.approx(0.3)
    assert est.ci_low < 0.3 < est.ci_high
    assert est.n == 100


# -------------------------------------------------------------------- mode baseline


def test_mode_baseline() -> None:
    base = mode_baseline(["a", "b", "a", None, "c", "a", "b", None])
    assert base.mode == "a"
    assert base.estimate.value == pytest.approx(3 / 6)
    assert base.estimate.n == 6
    assert base.counts == {"a": 3, "b": 2, "c": 1}
    assert list(base.counts) == ["a", "b", "c"]


def test_mode_baseline_tie_break_and_empty() -> None:
    assert mode_baseline(["z", "m", "z", "m"]).mode == "m"
    with pytest.raises(DataError):
        mode_baseline([None, None])


# ------------------------------------------------------------------- paired bootstrap


def test_paired_identical_arrays() -> None:
    a = np.random.default_rng(1).integers(0, 2, 80)
    result = paired_bootstrap_diff(a, a)
    assert result.diff.value == 0.0
    assert result.diff.ci_low == result.diff.ci_high == 0.0
    assert result.p_value == 1.0


def test_paired_clear_difference() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(200) < 0.6
    b = rng.random(200) < 0.3
    result = paired_bootstrap_diff(a, b, seed=5)
    assert result.p_value < 0.01
    assert result.diff.value == pytest.approx(a.mean() - b.mean())
    assert result.diff.ci_low > 0
    assert result.a.value == pytest.approx(a.mean()) and result.b.value == pytest.approx(b.mean())
    assert paired_bootstrap_diff(b, a, seed=5).p_value == result.p_value


def test_paired_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(100) < 0.5
    b = rng.random(100) < 0.5
    assert paired_bootstrap_diff(a, b).p_value > 0.05


def test_paired_uses_same_items() -> None:
    # b is a plus a constant: the paired difference has no sampling spread at all.
    a = np.random.default_rng(4).normal(size=50)
    result = paired_bootstrap_diff(a + 1.0, a)
    assert result.diff.ci_low == pytest.approx(1.0) and result.diff.ci_high == pytest.approx(1.0)


def test_paired_length_mismatch() -> None:
    with pytest.raises(DataError, match="align"):
        paired_bootstrap_diff([1, 0, 1], [1, 0])


# ----------------------------------------------------------------------- calibration


def test_mad_zero_when_calibrated() -> None:
    p = np.random.default_rng(5).random(300)
    assert calibration_mad(p, p) == 0.0


def test_mad_two_bin_hand_computed() -> None:
    obj = [0.1, 0.2, 0.8, 0.9]
    hyp = [0.3, 0.2, 0.5, 0.6]
    # bin 1: |0.15 - 0.25| = 0.10; bin 2: |0.85 - 0.55| = 0.30; mean 0.20 -> 20 pp.
    assert calibration_mad(obj, hyp, n_bins=2) == pytest.approx(20.0)
    curve = calibration_curve(obj, hyp, n_bins=2)
    assert list(curve["count"]) == [2, 2]
    assert list(curve["object_mean"]) == pytest.approx([0.15, 0.85])


def test_calibration_ties_and_errors() -> None:
    same = [0.5] * 6
    assert calibration_mad(same, [0.2] * 6) == pytest.approx(30.0)
    assert len(calibration_curve([0.0, 0.0, 0.0, 1.0], [0, 0, 0, 1], n_bins=4)) <= 2
    with pytest.raises(DataError):
        calibration_mad([0.1, 0.2], [0.1])


def test_calibration_from_distributions() -> None:
    obj = [{"a": 0.6, "b": 0.4}, {"c": 1.0}, {"a": 0.5, "d": 0.3, "e": 0.2}]
    hyp = [{"a": 0.6, "b": 0.4}, {"c": 1.0}, {"a": 0.5, "d": 0.5}]
    assert calibration_from_distributions(obj, hyp, top_k=1, n_bins=1) == pytest.approx(0.0)
    # top 2: item 1 b (0.4 vs 0.4), item 2 has none, item 3 d (0.3 vs 0.5); one bin.
    assert calibration_from_distributions(obj, hyp, top_k=2, n_bins=1) == pytest.approx(10.0)
    # A value the hypothetical never gives counts as probability 0.
    assert calibration_from_distributions([{"x": 1.0}], [{"y": 1.0}], n_bins=1) == pytest.approx(100.0)
    with pytest.raises(DataError):
        calibration_from_distributions(obj, hyp, top_k=4)


def test_empirical_distribution() -> None:
    assert empirical_distribution(["a", "b", "a", None]) == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert empirical_distribution([None]) == {}


# -------------------------------------------------------------------------- recovery


def test_normalised_recovery() -> None:
    values, excluded = normalised_recovery([1.0, 0.5, 2.0, 3.0], [0.0, 0.0, 1.0, 3.0], [2.0, 1.0, 3.0, 3.0])
    assert values[:3] == pytest.approx([0.5, 0.5, 0.5])
    assert math.isnan(values[3]) and excluded == 1
    scalar = normalised_recovery([0.0, 1.0, 1.5], 0.0, 1.0)
    assert list(scalar.values) == pytest.approx([0.0, 1.0, 1.5]) and scalar.n_excluded == 0


# ---------------------------------------------------------------------------- wilson


def test_wilson() -> None:
    low, high = proportion_ci_wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    low0, high0 = proportion_ci_wilson(0, 10)
    assert low0 == 0.0 and 0.25 < high0 < 0.35
    with pytest.raises(DataError):
        proportion_ci_wilson(5, 0)
    with pytest.raises(DataError):
        proportion_ci_wilson(11, 10)


def test_calibration_noise_floor_is_about_what_a_perfect_predictor_scores() -> None:
    """A predictor stating each item's true distribution scores about the floor (which errs low, as
    documented); a miscalibrated one clears it; more samples lower it."""
    n_samples, perfect, floors = 10, [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        truth = [{"a": p, "b": 1 - p} for p in rng.uniform(0.2, 0.95, 80)]
        sampled = [empirical_distribution(list(rng.choice(["a", "b"], n_samples, p=[d["a"], d["b"]]))) for d in truth]
        perfect.append(calibration_from_distributions(sampled, truth))
        floors.append(calibration_noise_floor(sampled, n_samples, seed=0, n_sim=60))
    assert 0.6 * np.mean(perfect) <= np.mean([f.value for f in floors]) <= 1.05 * np.mean(perfect)
    assert all(f.n == 80 and f.ci_low < f.value < f.ci_high for f in floors)
    flat = calibration_from_distributions(sampled, [{"a": 0.5, "b": 0.5}] * 80)
    assert flat > floors[-1].ci_high + 5  # a miscalibrated predictor clears the floor
    more = calibration_noise_floor(sampled, 100, seed=0, n_sim=60)
    assert more.value < floors[-1].value / 2  # ten times the samples: a much lower floor
    assert calibration_noise_floor(sampled, n_samples, seed=0, n_sim=60) == floors[-1]  # seeded
    with pytest.raises(DataError, match="n_samples"):
        calibration_noise_floor(sampled, 0)
    with pytest.raises(DataError, match="no item"):
        calibration_noise_floor([{}, {}], 5)
