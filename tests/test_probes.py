"""Per-layer probes: planted directions, batched vs scikit-learn, controls, transfer, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from innerprobe import probes as P
from innerprobe.core.errors import DataError, UnknownNameError


def _planted(n: int = 2000, d: int = 16, n_layers: int = 2, strength: float = 1.0, seed: int = 0):
    """Binary labels, isotropic noise, signal along one unit direction u at every layer."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, n_layers, d)) + (2 * y - 1)[:, None, None] * strength * u
    x += 10.0  # a constant offset, as residual streams have
    return torch.tensor(x, dtype=torch.float32), np.array(["no", "yes"])[y], u


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


FAST = P.ProbeConfig(folds=3, n_boot=200, controls=False)


def test_planted_direction_recovered_by_every_probe():
    x, y, u = _planted()
    res = P.run_probes({"O": x}, y, config=P.ProbeConfig(folds=3, n_boot=200, controls=False, probes=P.PROBES))
    for probe in ("mass_mean", "logistic", "ridge"):
        dirs = res.directions[f"{probe}/O"].numpy()  # [layer, class, d]
        for layer in range(dirs.shape[0]):
            theta = dirs[layer, 1] - dirs[layer, 0]  # "yes" − "no"
            assert _cos(theta, u) > 0.99, (probe, layer)
    acc = res.table
    assert (acc["value"] > 0.8).all()


def test_batched_logistic_matches_sklearn_on_same_folds():
    x, y, _ = P.synthetic_activations(n=300, n_layers=4, d=48, n_classes=5, seed=1, signal=[0.3, 0.8, 1.5, 2.5])
    lab = P.encode_labels(y, folds=4)
    fold = P.make_folds(lab.ids, None, 4, seed=0)
    w = P.fold_weights(fold, 4)
    fitted = P.fit_logistic(x.permute(1, 0, 2), torch.as_tensor(lab.ids), w, 5, C=0.1)
    oof, _ = P.heldout_predictions(fitted, x.permute(1, 0, 2), fold)
    acc_fast = (oof.numpy() == lab.ids).mean(1)
    ref = P.sklearn_logistic_oof(x, lab.ids, fold, C=0.1)
    acc_ref = (ref == lab.ids).mean(1)
    assert np.abs(acc_fast - acc_ref).max() <= 0.01, (acc_fast, acc_ref)
    assert acc_ref[-1] > acc_ref[0] + 0.2  # the data have real, layer-dependent signal
    assert (oof.numpy() == ref).mean() > 0.97


def test_folds_are_grouped_stratified_and_seeded():
    y = np.repeat(np.arange(3), 40)
    groups = np.arange(120) // 2  # pairs of duplicates
    f1 = P.make_folds(y, groups, 4, seed=0)
    assert (P.make_folds(y, groups, 4, seed=0) == f1).all()
    for g in np.unique(groups):
        assert len(set(f1[groups == g])) == 1
    for f in range(4):
        assert np.bincount(y[f1 == f], minlength=3).min() >= 8


def _task_with_types(seed: int = 0, n: int = 400, d: int = 64):
    """Label = a function of the item, strong at layer 1; 25 word types shared across folds."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    dirs = rng.standard_normal((3, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    x = rng.standard_normal((n, 2, d))
    x[:, 1] += 3.0 * dirs[y]
    types = rng.integers(0, 25, n)
    return torch.tensor(x, dtype=torch.float32), np.array(["a", "b", "c"])[y], types


def test_controls_shuffled_near_chance_and_selectivity_positive():
    x, y, types = _task_with_types()
    res = P.run_probes({"O": x}, y, control_types=types, config=P.ProbeConfig(folds=4, n_boot=200))
    df = res.table
    strong = df[(df["layer"] == 1)]
    for r in strong.itertuples():
        assert r.value > 0.9
        assert abs(r.shuffled - 1 / 3) < 0.12
        assert r.selectivity > 0.3 and r.selectivity_ci_low > 0
        assert r.random_proj < r.value - 0.2
    weak = df[df["layer"] == 0]
    assert (weak["value"] < 0.5).all()
    assert {"ci_low", "ci_high", "n", "majority", "control_task", "split", "metric"} <= set(df.columns)
    assert (df["ci_low"] <= df["value"]).all() and (df["value"] <= df["ci_high"]).all()


def test_same_seed_same_numbers():
    x, y, types = _task_with_types(n=200)
    cfg = P.ProbeConfig(folds=3, n_boot=100)
    a = P.run_probes({"O": x}, y, control_types=types, config=cfg).table
    b = P.run_probes({"O": x}, y, control_types=types, config=cfg).table
    pd.testing.assert_frame_equal(a, b)


def _o_and_h(shared: bool, n: int = 400, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    dirs_o = rng.standard_normal((3, d))
    dirs_h = dirs_o if shared else rng.standard_normal((3, d))
    xo = rng.standard_normal((n, 1, d)) + 2.0 * dirs_o[y][:, None]
    xh = rng.standard_normal((n, 1, d)) + 2.0 * dirs_h[y][:, None] + 3.0  # H has its own offset
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"O": t(xo), "H:h_last": t(xh)}, np.array(["x", "y", "z"])[y]


@pytest.mark.parametrize("shared", [True, False])
def test_transfer_o_to_h(shared: bool):
    runs, y = _o_and_h(shared)
    df = P.run_probes(runs, y, config=FAST).table
    assert set(df["split"]) == {"O", "H:h_last", "O→H:h_last", "H:h_last→O"}
    within = df[(df["split"] == "H:h_last") & (df["probe"] == "mass_mean")]["value"].item()
    assert within > 0.9  # H alone always carries the label
    for items in ("held_out", "same"):
        tr = df[(df["split"] == "O→H:h_last") & (df["items"] == items) & (df["probe"] == "mass_mean")]
        acc = tr["value"].item()
        assert (acc > 0.9) if shared else (acc < 0.6), (items, acc)


def test_bad_input_errors():
    x = torch.randn(30, 1, 4)
    with pytest.raises(DataError, match="2 classes"):
        P.run_probes({"O": x}, ["cat"] * 30)
    y = ["cat"] * 2 + ["dog"] * 28
    with pytest.raises(DataError, match=r"class 'cat' has 2 items; 5-fold CV needs >= 5.*min_count"):
        P.run_probes({"O": x}, y)
    with pytest.raises(DataError, match="2 classes"):  # dropping 'cat' leaves one class
        P.run_probes({"O": x}, y, config=P.ProbeConfig(min_count=5))
    bad = x.clone()
    bad[3, 0, 1] = float("nan")
    with pytest.raises(DataError, match="NaN/inf"):
        P.run_probes({"O": bad}, ["a", "b"] * 15)
    with pytest.raises(DataError, match="rows must align"):
        P.run_probes({"O": x[:20]}, ["a", "b"] * 15)
    with pytest.raises(DataError, match="missing"):
        P.run_probes({"O": x}, ["a", None] * 15)


def test_min_count_drops_rare_classes_and_reports():
    x, y, _ = P.synthetic_activations(n=120, n_layers=1, d=8, n_classes=3, seed=0)
    y = y.astype(object)
    y[:3] = "rare"
    res = P.run_probes({"O": x}, y, config=P.ProbeConfig(folds=3, min_count=5, controls=False, n_boot=50))
    assert res.dropped_classes == {"rare": 3} and res.n_dropped == 3
    assert res.n_items == 117 and "rare" not in res.classes


class FakeStore:
    """Store-like object with the ActivationStore contract (rows, keys, layers, read)."""

    def __init__(self, runs: dict, rows: pd.DataFrame, layers: list[int]):
        self._runs, self.rows, self.layers = runs, rows, layers
        self.manifest = {"model": {"name": "fake"}}

    def keys(self):
        return list(self._runs)

    def read(self, run, site, position, layers=None):
        x = self._runs[(run, site, position)]
        idx = [self.layers.index(layer) for layer in (layers or self.layers)]
        return x[:, idx]


def _fake_store(n: int = 240) -> FakeStore:
    runs, y = _o_and_h(True, n=n)
    compliant = np.ones(n, dtype=bool)
    compliant[:12] = False
    y = y.astype(object)
    y[:12] = "junk"  # would break 5-fold CV if the non-compliant rows were kept
    rows = pd.DataFrame({
        "index": range(n), "id": [f"i{k}" for k in range(n)], "task": "animals",
        "group": [f"w{k % 30} g{k}" for k in range(n)], "object_answer": y, "object_compliant": compliant,
    })
    two = lambda t: torch.cat([t, t * 0.5], 1)  # noqa: E731
    return FakeStore(
        {("object", "resid_post", "o_last"): two(runs["O"]), ("hypothetical", "resid_post", "h_last"): two(runs["H:h_last"])},
        rows, [3, 7],
    )


def test_probe_store_filters_noncompliant_and_saves(tmp_path):
    store = _fake_store()
    res = P.probe_store(store, "object_answer", config=P.ProbeConfig(folds=3, n_boot=100))
    assert res.n_items == 228 and "junk" not in res.classes
    df = res.table
    assert sorted(df["layer"].unique()) == [3, 7]
    res.provenance = {"seed": 0}
    path = res.save(tmp_path / "probe")
    tensors = load_file(str(path / "arrays.safetensors"))
    assert tensors["directions/ridge/O"].shape == (2, 3, 32) and tensors["directions/mass_mean/O"].shape == (2, 3, 32)
    side = json.loads((path / "result.json").read_text())["fields"]
    assert side["classes"] == res.classes and side["provenance"]["seed"] == 0
    fig = res.figure()
    assert len(fig.data) > 4
    best = P.best_layers(df)
    assert set(best["split"]) == {"O", "H:h_last", "O→H:h_last", "H:h_last→O"}
    with pytest.raises(Exception, match="unknown target"):
        P.probe_store(store, "nope")


def test_cli_probe(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from innerprobe.cli import probe as cmd
    from innerprobe.cli.app import app

    monkeypatch.setattr(cmd, "_open_store", lambda path: _fake_store())
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["probe", "--store", str(tmp_path), "--folds", "3", "--n-boot", "50", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("table.parquet", "arrays.safetensors", "result.json", "results.parquet", "summary.json",
                 "layers_ridge.html", "layers_mass_mean.html"):
        assert (out / name).exists(), name
    df = pd.read_parquet(out / "results.parquet")
    assert {"selectivity", "control_task", "random_proj", "shuffled"} <= set(df.columns)
    saved = P.ProbeResult.load(out)
    pd.testing.assert_frame_equal(saved.table, df)
    assert saved.directions["ridge/O"].shape == (2, 3, 32) and saved.provenance["seed"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"] and "split B" in summary["best_selection"]
    fast = tmp_path / "fast"
    r = CliRunner().invoke(app, ["probe", "--store", str(tmp_path), "--folds", "3", "--n-boot", "50", "--standardise", "all",
                                 "--no-ridge-refine", "--out", str(fast)])
    assert r.exit_code == 0, r.output
    fast_result = P.ProbeResult.load(fast)
    assert fast_result.config.standardise == "all" and fast_result.config.ridge_refine is False
    bad = CliRunner().invoke(app, ["probe", "--store", str(tmp_path), "--folds", "100", "--out", str(out)])
    assert bad.exit_code == 2 and "fold" in bad.output
    bad = CliRunner().invoke(app, ["probe", "--store", str(tmp_path), "--probes", "ridge,lasso", "--out", str(out)])
    assert bad.exit_code == 2 and "lasso" in bad.output and "ridge" in bad.output


@pytest.mark.integration
def test_smol_batched_matches_sklearn(smol):
    """Real SmolLM2 activations at o_last, 3 layers: batched L-BFGS ≈ scikit-learn per layer."""
    from innerprobe.behavior.inference import left_pad
    from innerprobe.protocol.prompts import PromptSpec, object_prompt
    from innerprobe.protocol.tasks import item_meta, load_items

    items = load_items("animals", n=150, split="train", seed=0)
    prompts = [object_prompt(smol.tokenizer, q, PromptSpec()) for q in items["question"]]
    ids, mask, _ = left_pad([p.input_ids for p in prompts], smol.tokenizer.pad_token_id or 0)
    layers = [3, 12, 20]
    names = {f"blocks.{i}.hook_resid_post" for i in layers}
    acts = []
    with torch.no_grad():
        for s in range(0, len(prompts), 20):
            _, cache = smol.bridge.run_with_cache(
                ids[s:s + 20], attention_mask=mask[s:s + 20], names_filter=lambda n: n in names,
                stop_at_layer=max(layers) + 1,
            )
            acts.append(torch.stack([cache[f"blocks.{i}.hook_resid_post"][:, -1] for i in layers], 1))
    x = torch.cat(acts).float()
    # label: does the last input animal start with a-m? (lexical, so decodable at every layer)
    y = np.array([item_meta(r)["string"].split()[-1][0] <= "m" for r in items])
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, None, 3, seed=0)
    xl, w, y_t = x.permute(1, 0, 2), P.fold_weights(fold, 3), torch.as_tensor(lab.ids)
    fast = P.fit_logistic(xl, y_t, w, len(lab.classes))
    oof, _ = P.heldout_predictions(fast, xl, fold)
    acc_fast = (oof.numpy() == lab.ids).mean(1)
    acc_ref = (P.sklearn_logistic_oof(x, lab.ids, fold) == lab.ids).mean(1)
    assert np.abs(acc_fast - acc_ref).max() <= 0.01 + 1e-9, (acc_fast, acc_ref)
    # ridge: exact parity with scikit-learn's RidgeClassifier on real activations (n_train < d: dual)
    ridge_oof, _ = P.heldout_predictions(P.fit_ridge(xl, y_t, w, len(lab.classes), alpha=10.0), xl, fold)
    ridge_ref, _ = P.sklearn_ridge_oof(x, lab.ids, fold, alpha=10.0)
    assert (ridge_oof.numpy() == ridge_ref).mean() >= 0.99
    acc_ridge = (ridge_oof.numpy() == lab.ids).mean(1)
    logging.getLogger(__name__).info("smol o_last acc: logistic %s, sklearn %s, ridge %s", acc_fast, acc_ref, acc_ridge)
    assert acc_ridge.mean() >= acc_ref.mean() - 0.03, (acc_ridge, acc_ref)


@pytest.mark.parametrize("standardise", [True, False])
def test_mass_mean_is_nearest_class_mean(standardise: bool):
    x, y, _ = P.synthetic_activations(n=90, n_layers=2, d=12, n_classes=3, seed=2)
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, None, 3, seed=0)
    xl = x.permute(1, 0, 2).double()
    fitted = P.fit_mass_mean(xl, torch.as_tensor(lab.ids), P.fold_weights(fold, 3), 3, standardise=standardise)
    oof, _ = P.heldout_predictions(fitted, xl.float(), fold)
    for layer in range(2):
        for f in range(3):
            tr, te = fold != f, fold == f
            a = xl[layer].numpy()
            mu, sd = (a[tr].mean(0), a[tr].std(0)) if standardise else (0.0, 1.0)
            z = (a - mu) / sd
            means = np.stack([z[tr][lab.ids[tr] == c].mean(0) for c in range(3)])
            brute = ((z[te][:, None] - means[None]) ** 2).sum(-1).argmin(1)
            assert (oof[layer].numpy()[te] == brute).all()


def _oof_scores(fitted: P.LinearProbe, x: torch.Tensor, fold: np.ndarray, n_classes: int) -> np.ndarray:
    """Out-of-fold scores in scikit-learn's layout ([layer, n, 1] for two classes)."""
    logits = fitted.logits(x.double())  # [l, F+1, n, C]
    f = torch.as_tensor(fold)[None, None, :, None].expand(logits.shape[0], 1, -1, logits.shape[-1])
    s = logits.gather(1, f).squeeze(1).numpy()
    return s[..., 1:] if n_classes == 2 else s


@pytest.mark.parametrize("n_classes,d,solver,mixed", [
    (5, 48, "primal", True), (5, 48, "dual", True), (2, 48, "auto", True),
    (4, 200, "primal", False), (4, 200, "dual", False), (4, 200, "auto", True),
])
def test_ridge_matches_sklearn_ridgeclassifier(n_classes: int, d: int, solver: str, mixed: bool):
    """Same folds, same alpha: identical predictions and decision values (massive dims included)."""
    x, y, _ = P.synthetic_activations(n=150, n_layers=2, d=d, n_classes=n_classes, seed=3, signal=[0.5, 2.0])
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, [f"g{i // 2}" for i in range(150)], 3, seed=0)
    xl = x.permute(1, 0, 2)
    fitted = P.fit_ridge(xl, torch.as_tensor(lab.ids), P.fold_weights(fold, 3), n_classes, alpha=3.0, solver=solver, mixed=mixed)
    oof, _ = P.heldout_predictions(fitted, xl, fold)
    ref, dec = P.sklearn_ridge_oof(x, lab.ids, fold, alpha=3.0)
    assert (oof.numpy() == ref).mean() >= 0.99
    np.testing.assert_allclose(_oof_scores(fitted, xl, fold, n_classes), dec, rtol=1e-4, atol=1e-6 * np.abs(dec).max())


def test_ridge_primal_dual_and_precisions_agree_and_check_input():
    x, y, _ = P.synthetic_activations(n=90, n_layers=2, d=70, n_classes=3, seed=4)
    lab = P.encode_labels(y, folds=3)
    w = P.fold_weights(P.make_folds(lab.ids, None, 3, seed=0), 3)
    xl, y_t = x.permute(1, 0, 2), torch.as_tensor(lab.ids)
    ref = P.fit_ridge(xl, y_t, w, 3, solver="dual", mixed=False)
    for solver in ("primal", "dual"):
        for mixed in (True, False):
            got = P.fit_ridge(xl, y_t, w, 3, solver=solver, mixed=mixed)
            torch.testing.assert_close(got.W, ref.W, rtol=1e-7, atol=1e-9 * float(ref.W.abs().max()))
            torch.testing.assert_close(got.b, ref.b, rtol=1e-7, atol=1e-7)
    # training sets whose held-out items overlap (not a partition): the primal path downdates instead
    g = torch.Generator().manual_seed(1)
    overlap = (torch.rand(4, 90, generator=g) > 0.3).to(w.dtype)
    assert int(((overlap == 0).sum(0) > 1).sum()) > 0
    ref = P.fit_ridge(xl, y_t, overlap, 3, solver="dual", mixed=False)
    got = P.fit_ridge(xl, y_t, overlap, 3, solver="primal", mixed=False)
    torch.testing.assert_close(got.W, ref.W, rtol=1e-7, atol=1e-9 * float(ref.W.abs().max()))
    two = w[:2]  # a partition's blocks plus items never held out (the third fold's)
    ref = P.fit_ridge(xl, y_t, two, 3, solver="dual", mixed=False)
    got = P.fit_ridge(xl, y_t, two, 3, solver="primal", mixed=False)
    torch.testing.assert_close(got.W, ref.W, rtol=1e-7, atol=1e-9 * float(ref.W.abs().max()))
    with pytest.raises(Exception, match="unknown ridge solver.*primal"):
        P.fit_ridge(xl, y_t, w, 3, solver="qr")
    with pytest.raises(DataError, match="0/1"):
        P.fit_ridge(xl, y_t, w * 0.5, 3)
    with pytest.raises(DataError, match="ridge_alpha"):
        P.ProbeConfig(ridge_alpha=0)


def test_ridge_accuracy_close_to_sklearn_logistic():
    """Different estimator, same folds: ridge (default alpha) is not worse than logistic regression."""
    x, y, _ = P.synthetic_activations(n=300, n_layers=4, d=48, n_classes=5, seed=1, signal=[0.3, 0.8, 1.5, 2.5])
    lab = P.encode_labels(y, folds=5)
    fold = P.make_folds(lab.ids, None, 5, seed=0)
    xl = x.permute(1, 0, 2)
    fitted = P.fit_ridge(xl, torch.as_tensor(lab.ids), P.fold_weights(fold, 5), 5, alpha=P.ProbeConfig().ridge_alpha)
    oof, _ = P.heldout_predictions(fitted, xl, fold)
    acc_ridge = (oof.numpy() == lab.ids).mean(1)
    acc_lr = (P.sklearn_logistic_oof(x, lab.ids, fold, C=0.1, tol=1e-4) == lab.ids).mean(1)
    assert acc_ridge.mean() >= acc_lr.mean() - 0.01, (acc_ridge, acc_lr)
    assert np.abs(acc_ridge - acc_lr).max() <= 0.05, (acc_ridge, acc_lr)


@pytest.mark.parametrize("n_classes,mixed", [(4, True), (2, True), (4, False)])
def test_ridge_all_items_standardised_matches_sklearn(n_classes: int, mixed: bool):
    """standardise="all": the shared-kernel dual equals StandardScaler(all items) + RidgeClassifier."""
    x, y, _ = P.synthetic_activations(n=150, n_layers=2, d=200, n_classes=n_classes, seed=5, signal=[0.5, 2.0])
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, [f"g{i // 2}" for i in range(150)], 3, seed=0)
    xl = x.permute(1, 0, 2)
    fitted = P.fit_ridge(xl, torch.as_tensor(lab.ids), P.fold_weights(fold, 3), n_classes, alpha=3.0,
                         solver="dual", mixed=mixed, standardise="all")
    oof, _ = P.heldout_predictions(fitted, xl, fold)
    ref, dec = P.sklearn_ridge_oof(x, lab.ids, fold, alpha=3.0, standardise="all")
    fold_ref, fold_dec = P.sklearn_ridge_oof(x, lab.ids, fold, alpha=3.0)
    assert not np.allclose(dec, fold_dec, rtol=1e-3)  # the two scopes are different problems
    assert (oof.numpy() == ref).mean() >= 0.99
    np.testing.assert_allclose(_oof_scores(fitted, xl, fold, n_classes), dec, rtol=1e-4, atol=1e-6 * np.abs(dec).max())


def test_ridge_kernel_equals_primal_with_all_items_scaler():
    """The shared kernel and the primal solve give the same weights, for partitions and overlaps."""
    x, y, _ = P.synthetic_activations(n=90, n_layers=2, d=70, n_classes=3, seed=4)
    lab = P.encode_labels(y, folds=3)
    xl, y_t = x.permute(1, 0, 2), torch.as_tensor(lab.ids)
    g = torch.Generator().manual_seed(1)
    overlap = (torch.rand(4, 90, generator=g) > 0.3).double()
    for w in (P.fold_weights(P.make_folds(lab.ids, None, 3, seed=0), 3), overlap):
        ref = P.fit_ridge(xl, y_t, w, 3, solver="primal", mixed=False, standardise="all")
        for mixed in (True, False):
            got = P.fit_ridge(xl, y_t, w, 3, solver="dual", mixed=mixed, standardise="all")
            torch.testing.assert_close(got.W, ref.W, rtol=1e-7, atol=1e-9 * float(ref.W.abs().max()))
            torch.testing.assert_close(got.b, ref.b, rtol=1e-7, atol=1e-7)
    fold_fit = P.fit_ridge(xl, y_t, w, 3, solver="primal", mixed=False)
    assert not torch.allclose(fold_fit.W, ref.W, rtol=1e-3)
    with pytest.raises(UnknownNameError, match="standardisation scope 'train'.*all, fold"):
        P.fit_ridge(xl, y_t, w, 3, standardise="train")
    with pytest.raises(UnknownNameError, match="standardisation scope 'both'.*all, fold"):
        P.ProbeConfig(standardise="both")


def test_logistic_and_mass_mean_all_items_scaler_match_references():
    x, y, _ = P.synthetic_activations(n=120, n_layers=2, d=16, n_classes=3, seed=6, signal=[0.4, 1.2])
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, None, 3, seed=0)
    xl, w, y_t = x.permute(1, 0, 2), P.fold_weights(fold, 3), torch.as_tensor(lab.ids)
    oof, _ = P.heldout_predictions(P.fit_logistic(xl, y_t, w, 3, C=0.1, tol=1e-6, max_iter=500, standardise="all"), xl, fold)
    ref = P.sklearn_logistic_oof(x, lab.ids, fold, C=0.1, standardise="all")
    assert (oof.numpy() == ref).mean() >= 0.99
    oof, _ = P.heldout_predictions(P.fit_mass_mean(xl.double(), y_t, w, 3, scope="all"), xl, fold)
    a = xl.double().numpy()
    for layer in range(2):
        z = (a[layer] - a[layer].mean(0)) / a[layer].std(0)
        for f in range(3):
            tr, te = fold != f, fold == f
            means = np.stack([z[tr][lab.ids[tr] == c].mean(0) for c in range(3)])
            brute = ((z[te][:, None] - means[None]) ** 2).sum(-1).argmin(1)
            assert (oof[layer].numpy()[te] == brute).all()


@pytest.mark.parametrize("standardise,solver", [("all", "dual"), ("fold", "primal"), ("fold", "dual")])
def test_ridge_unrefined_float32_is_close_and_predicts_alike(standardise: str, solver: str):
    """refine_answers=False keeps the float32 answer: near the float64 one, same predictions."""
    x, y, _ = P.synthetic_activations(n=150, n_layers=2, d=120, n_classes=4, seed=7, signal=[0.5, 2.0])
    lab = P.encode_labels(y, folds=3)
    fold = P.make_folds(lab.ids, None, 3, seed=0)
    xl, w, y_t = x.permute(1, 0, 2), P.fold_weights(fold, 3), torch.as_tensor(lab.ids)
    exact = P.fit_ridge(xl, y_t, w, 4, solver=solver, mixed=False, standardise=standardise)
    fast = P.fit_ridge(xl, y_t, w, 4, solver=solver, standardise=standardise, refine_answers=False)
    err = float((fast.W.double() - exact.W).abs().max() / exact.W.abs().max())
    assert 0 < err < 1e-3, err  # float32-sized error: not refined away, not large
    ref, _ = P.sklearn_ridge_oof(x, lab.ids, fold, alpha=1.0, standardise=standardise)
    assert (P.heldout_predictions(fast, xl, fold)[0].numpy() == ref).mean() >= 0.99
