"""Planted routes verified by the exact intervention, independently of the battery (slow: real builds).

Two zoo models are built from scratch here, deterministically (seeded weights, batch order and
CPU kernels), and checked by :func:`~innerprobe.zoo.check.run_zoo_check`: a small memorised /
simulation model (its self-prediction must collapse when O's answer subspace is projected out
of H, and survive a random subspace of the same rank drawn outside it) and the full-size
memorised / direct model of seed 0 (its self-prediction must survive the same ablation), and
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


def test_the_memorised_direct_model_does_not_need_the_answer_code(tmp_path):
    zoo = build_zoo_model(ZooConfig(task_kind="memorised", route="direct", seed=0), tmp_path / "direct")
    s = run_zoo_check(zoo, CheckConfig(n_boot=1000)).summary
    assert s.route_verified, s.why
    assert s.self_accuracy.ci_low > s.mode_baseline.value and s.drop.diff.ci_high < 0.15
    assert s.object_ablated.value < 0.2  # the same subspace is O's answer code: removing it breaks O


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
    assert s.ablated_self.value <= s.mode_baseline.value and s.random_self.value > 0.8
