"""Self-vs-peer probes (E3b) on synthetic stores: a planted self-only signal shows only where the
models disagree; no signal gives a gap whose CI covers 0; bad inputs fail naming the options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from innerprobe.activations.writer import StoreWriter
from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.html import read_json_block
from innerprobe.probes.peer import run_peer_probes
from innerprobe.probes.peer_config import PeerProbeConfig, match_layers
from innerprobe.probes.peer_result import PeerProbeResult
from innerprobe.protocol.tasks import load_items
from innerprobe.study import steps_peer
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.step_context import StepContext

N, CLASSES = 150, ("a", "b", "c")
CFG = PeerProbeConfig(target="answer_property", n_boot=300, min_items=20)


def _store(path: Path, x: np.ndarray, labels: list[str | None], ids: list[str], n_layers: int,
           layers: list[int]) -> object:
    """A complete one-shard store of H activations at h_last, with an ``answer_property`` column."""
    n, _, d = x.shape
    rows = pd.DataFrame({"index": range(n), "id": ids, "task": "animals", "group": [f"q{i}" for i in ids],
                         "answer_property": labels, "object_compliant": [v is not None for v in labels]})
    manifest = {"sites": ["resid_post"], "layers": layers, "positions": {"object": [], "hypothetical": ["h_last"]},
                "d_model": d, "n_items": n, "shard_size": n, "model": {"name": path.name, "n_layers": n_layers}}
    writer = StoreWriter.create(path, manifest, rows)
    writer.write_shard(0, slice(0, n), {"hypothetical/resid_post/h_last": torch.tensor(x, dtype=torch.float32)})
    return writer.finish()


def _encode(labels: np.ndarray, n_layers: int, d: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Isotropic noise plus ``strength`` along one of orthonormal random directions per class."""
    dirs = np.linalg.qr(rng.standard_normal((d, len(CLASSES))))[0].T
    x = rng.standard_normal((len(labels), n_layers, d))
    return x + strength * dirs[labels][:, None, :]


def _pair(tmp_path: Path, *, self_signal: float, peer_signal: float, seed: int = 0):
    """Self encodes its own label; the peer encodes the *peer's* label (== self's on 60% of items)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, N)
    agree = rng.random(N) < 0.6
    y_peer = np.where(agree, y, (y + rng.integers(1, 3, N)) % 3)
    ids = [f"i{k}" for k in range(N)]
    s = _store(tmp_path / "self", _encode(y, 4, 24, self_signal, rng), [CLASSES[v] for v in y], ids, 8, [1, 3, 5, 7])
    order = rng.permutation(N)  # the peer store lists the items in another order: joined on id
    xp = _encode(y_peer, 3, 16, peer_signal, rng)[order]
    p = _store(tmp_path / "peer", xp, [CLASSES[v] for v in y_peer[order]], [ids[k] for k in order], 9, [2, 5, 8])
    return s, p, agree


def test_planted_self_only_signal_shows_on_disagreement_items_only(tmp_path):
    s, p, agree = _pair(tmp_path, self_signal=4.0, peer_signal=4.0)
    res = run_peer_probes(s, p, CFG)
    m = res.summary
    assert m.n_disagree == int((~agree).sum()) and m.n_items == N
    assert m.gap_disagree is not None and m.gap_disagree.ci_low > 0.5
    assert m.self_disagree.value > 0.9 and m.peer_disagree.value < 0.2
    assert m.mcnemar_disagree < 1e-3
    assert m.gap_agree is not None and m.gap_agree.ci_low <= 0 <= m.gap_agree.ci_high and abs(m.gap_agree.value) < 0.05
    assert m.shuffled.value < 0.6 and m.mode_baseline.value < 0.6  # controls at chance beside the effect
    t = res.table
    gaps = t[(t.probe == "self-peer")].set_index(["layer", "subset"])["value"]
    for layer in (1, 3, 5, 7):  # every layer: the gap is on disagreement items, ~0 on consensus items
        assert gaps[(layer, "disagree")] > 0.6 and abs(gaps[(layer, "agree")]) < 0.1
    assert set(t.subset) == {"all", "disagree", "agree"} and set(t.peer_layer) == {2, 5, 8}


def test_no_planted_signal_gap_covers_zero(tmp_path):
    s, p, _ = _pair(tmp_path, self_signal=0.0, peer_signal=0.0, seed=1)
    m = run_peer_probes(s, p, CFG).summary
    assert m.gap_disagree.ci_low <= 0 <= m.gap_disagree.ci_high
    assert m.gap_all.ci_low <= 0 <= m.gap_all.ci_high
    assert m.self_all.ci_low <= 1 / 3 <= m.self_all.ci_high  # chance, with its interval


def test_layers_matched_by_relative_depth():
    cfg = PeerProbeConfig(depths=(0.5, 1.0))
    pairs = match_layers([1, 3, 5, 7], 8, [2, 5, 8], 9, cfg)
    assert [(q.self_layer, q.peer_layer) for q in pairs] == [(3, 5), (7, 8)]
    assert pairs[0].self_depth == 0.5 and pairs[0].peer_depth == pytest.approx(6 / 9)
    assert [q.self_layer for q in match_layers([1, 3, 5, 7], 8, [2, 5, 8], 9, PeerProbeConfig())] == [1, 3, 5, 7]
    with pytest.raises(DataError, match="captured layers: \\[1, 3, 5, 7\\]"):
        match_layers([1, 3, 5, 7], 8, [2, 5, 8], 9, PeerProbeConfig(layers=(2,)))


def test_bad_inputs_name_the_options(tmp_path):
    s, p, _ = _pair(tmp_path, self_signal=1.0, peer_signal=1.0)
    with pytest.raises(UnknownNameError, match="answer_property"):
        run_peer_probes(s, p, PeerProbeConfig(target="nope"))
    with pytest.raises(UnknownNameError, match="hypothetical/resid_post/h_last"):
        run_peer_probes(s, p, PeerProbeConfig(position="quote_last"))
    rng = np.random.default_rng(0)
    other = _store(tmp_path / "other", rng.standard_normal((N, 3, 16)), ["a"] * N, [f"x{k}" for k in range(N)], 9,
                   [2, 5, 8])
    with pytest.raises(DataError, match=r"ids missing from the peer store: \['i0', 'i1'"):
        run_peer_probes(s, other, CFG)
    with pytest.raises(UnknownNameError, match="hypothetical"):
        PeerProbeConfig(run="middle")
    with pytest.raises(DataError, match="layers or depths"):
        PeerProbeConfig(layers=(1,), depths=(0.5,))
    with pytest.raises(UnknownNameError, match="ridge"):
        PeerProbeConfig(probe="svm")


def test_save_load_round_trip(tmp_path):
    s, p, _ = _pair(tmp_path, self_signal=2.0, peer_signal=2.0)
    res = run_peer_probes(s, p, PeerProbeConfig(depths=(0.5, 1.0), n_boot=200, min_items=20))
    back = PeerProbeResult.load(res.save(tmp_path / "out"))
    assert back.summary == res.summary and back.config == res.config and back.pairs == res.pairs
    pd.testing.assert_frame_equal(back.table, res.table)
    for k, v in res.correct.items():
        np.testing.assert_array_equal(back.correct[k], v)
    np.testing.assert_array_equal(back.disagree, res.disagree)
    fig = back.figure()
    assert {tr.name for tr in fig.data} >= {"self", "peer", "shuffled_self", "majority"}
    assert "measure" in back.summary.table and "gap_disagree" in set(back.summary.table.measure)


def test_cli_writes_result_and_page(tmp_path):
    _pair(tmp_path, self_signal=4.0, peer_signal=4.0)
    out = tmp_path / "pp"
    args = ["peer-probe", "--store", str(tmp_path / "self"), "--peer-store", str(tmp_path / "peer"), "--out", str(out),
            "--n-boot", "200", "--depths", "0.5,1.0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    res = PeerProbeResult.load(out)
    assert res.summary.gap_disagree.ci_low > 0 and [q.self_layer for q in res.pairs] == [3, 7]
    data = read_json_block(out / "peer_probe.html")
    assert data["summary"]["gap_disagree"]["value"] == pytest.approx(res.summary.gap_disagree.value)
    bad = CliRunner().invoke(app, [*args[:5], "--out", str(tmp_path / "bad"), "--target", "nope"])
    assert bad.exit_code == 2 and "answer_property" in bad.output


def test_battery_step_without_peer_package_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(steps_peer, "PEER_PACKAGE", "no_such_peer_package")
    rows = steps_peer.e3b_peer_probes(StepContext(BatteryConfig(model="tiny-random"), 12, work_dir=tmp_path))
    assert len(rows) == 1 and not rows[0].ran and rows[0].experiment == "E3b"
    assert "gemma-3-270m not installed" in rows[0].why


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_as_its_own_peer_has_no_gap(smol, tmp_path):
    """Real weights through the battery's capture path: a model is its own perfect peer."""
    ctx = StepContext(BatteryConfig(), 24, work_dir=tmp_path)
    items = load_items("animals", n=24, split="train", seed=0)
    store = steps_peer.peer_store(smol, items, ctx, tmp_path / "self")
    assert store.layers == [5, 11, 17, 23, 29] and store.complete
    assert store.rows["object_answer"].notna().all()  # forced choice: every item has an answer
    with pytest.MonkeyPatch.context() as mp:  # a complete store is reused: no second reading
        mp.setattr(steps_peer, "own_answer_labels", lambda *a, **k: pytest.fail("store was not reused"))
        again = steps_peer.peer_store(smol, items, ctx, tmp_path / "self")
    assert again.manifest == store.manifest
    cfg = PeerProbeConfig(folds=2, min_count=2, min_items=4, n_boot=200, depths=(0.6, 1.0))
    res = run_peer_probes(store, store, cfg)
    s = res.summary
    assert s.n_disagree == 0 and s.gap_disagree is None
    assert s.gap_all.value == 0 and s.gap_all.ci_low == 0 == s.gap_all.ci_high
    assert [q.peer_layer for q in res.pairs] == [q.self_layer for q in res.pairs] == [17, 29]
