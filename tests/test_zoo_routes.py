"""Planted routes verified by the exact intervention, independently of the battery (slow: real builds).

Zoo models are built from scratch here, deterministically on one machine (seeded weights, batch
order, one thread; another CPU's kernels round differently, so a seed's model can differ between
machines), and checked by :func:`~innerprobe.zoo.check.run_zoo_check`: a small memorised /
simulation model (its self-prediction must collapse when O's answer subspace is projected out
of H, and survive a random subspace of the same rank drawn outside it) and the full-size
memorised / direct model at seeds 0 and 2 (its self-prediction must survive the same ablation on
at least one; the test says why not on every seed), and
the two text models of seed 1 (the answer is P's last word: the simulating H collapses under
the ablation, the direct one does not). The routes of the other zoo models, and the battery's
verdicts on them, are in ``experiments/results/zoo_confusion.md``.
"""

from __future__ import annotations

import pytest

from innerprobe.zoo import CheckConfig, ZooConfig, build_zoo_model, run_zoo_check

pytestmark = pytest.mark.slow

SMALL = {"d_model": 48, "n_layers": 3, "n_heads": 4, "n_train": 48, "n_test": 24, "object_steps": 800,
         "readout_steps": 400}


def test_a_small_memorised_simulation_model_reads_its_answer_code(tmp_path):
    zoo = build_zoo_model(ZooConfig(task_kind="memorised", route="simulation", **SMALL), tmp_path / "sim")
    s = run_zoo_check(zoo, CheckConfig(n_boot=1000)).summary
    assert s.route_verified, s.why
    assert s.object_accuracy.value == 1.0 and s.self_accuracy.ci_low > s.mode_baseline.value
    assert s.ablated_self.value <= s.mode_baseline.value  # the answer code gone, the self-report goes
    assert s.random_self.value == pytest.approx(s.self_accuracy.value, abs=0.05)  # another subspace: no loss
    assert s.self_minus_text.diff.ci_low > 0  # the memorised answer: no text-only third party knows it


def test_the_memorised_direct_construction_gives_a_model_that_does_not_need_the_answer_code(tmp_path):
    """Seeds 0 and 2 of the full-size memorised / direct model: on every one, H keeps far more of
    its self-prediction under O's answer-subspace ablation than O keeps of its answer; at least one
    passes the full route check (self-prediction unchanged, drop CI high < 0.15).

    Why two seeds and ``any``: the construction does not force the route on every seed (four of six
    verified in ``experiments/results/zoo_confusion.md``), and which seeds it does depends on the
    machine: a build is deterministic on one CPU, but float rounding differs between CPU kernels
    and moves the training path (seed 0 verified in CI and earlier sessions, not on the Emerald
    Rapids Xeon of 2026-12-08, where it gave drop CI high 0.33).
    """
    checks = []
    for seed in (0, 2):
        zoo = build_zoo_model(ZooConfig(task_kind="memorised", route="direct", seed=seed), tmp_path / f"direct-{seed}")
        s = run_zoo_check(zoo, CheckConfig(n_boot=1000, seed=seed)).summary
        assert s.object_ablated.value < 0.2  # the same subspace is O's answer code: removing it breaks O
        assert s.ablated_self.value - s.object_ablated.value > 0.4, s.why  # H does not go through it as O does
        checks.append(s)
    assert any(s.route_verified for s in checks), [s.why for s in checks]


def test_the_text_direct_model_reads_the_quote_without_the_answer_code(tmp_path):
    zoo = build_zoo_model(ZooConfig(task_kind="text", route="direct", seed=1), tmp_path / "text-direct")
    s = run_zoo_check(zoo, CheckConfig(n_boot=1000, seed=1)).summary
    assert s.route_verified, s.why
    assert s.object_accuracy.value > 0.9 and s.self_accuracy.ci_low > s.mode_baseline.value
    assert s.drop.diff.ci_high < 0.15 and s.object_ablated.value < 0.2


def test_the_text_simulation_model_recomputes_the_last_word(tmp_path):
    zoo = build_zoo_model(ZooConfig(task_kind="text", route="simulation", seed=1), tmp_path / "text-sim")
    s = run_zoo_check(zoo, CheckConfig(n_boot=1000, seed=1)).summary
    assert s.route_verified, s.why
    assert s.ablated_self.value <= s.mode_baseline.value  # the answer code gone, the self-report goes
    assert s.random_self.value >= s.self_accuracy.value - 0.1  # another subspace of the same rank: no real loss
