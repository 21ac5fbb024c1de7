"""Lens identities and a tuned lens that learns (tiny model), plus its save/load provenance."""

from __future__ import annotations

import pytest
import torch

from innerprobe.core.errors import DataError
from innerprobe.interventions.lens import (
    TunedLens,
    TunedLensConfig,
    logit_lens,
    residual_stream,
    self_distilled_rows,
    train_tuned_lens,
)


def _rows(tiny):
    tok = tiny.tokenizer
    return [tok(t, add_special_tokens=False)["input_ids"] for t in ("the cat sat on the mat", "red green blue")]


def test_the_last_layers_logit_lens_is_the_models_output(tiny):
    rows = _rows(tiny)
    stream = residual_stream(tiny, rows)
    for row, s in zip(rows, stream):
        ref = torch.log_softmax(tiny.hf_model(input_ids=torch.tensor([row])).logits[0].float(), -1)
        assert torch.allclose(logit_lens(tiny, s[-1]), ref, atol=1e-5)
        assert s.shape == (tiny.n_layers, len(row), tiny.d_model)


def test_an_untrained_tuned_lens_is_the_logit_lens_bit_exactly(tiny):
    s = residual_stream(tiny, _rows(tiny))[0]
    lens = TunedLens.identity(tiny)
    for layer in range(tiny.n_layers):
        assert torch.equal(lens(tiny, layer, s[layer]), logit_lens(tiny, s[layer]))


def test_training_lowers_the_kl_and_round_trips(tiny, tmp_path):
    rows = self_distilled_rows(tiny, _rows(tiny), max_new_tokens=12, seed=0)
    lens = train_tuned_lens(tiny, rows, TunedLensConfig(steps=30, lr=1e-2, tokens_per_step=64))
    assert lens.meta["kl_last"] < lens.meta["kl_first"]
    assert torch.count_nonzero(lens.weight[-1]) == 0  # the last layer needs no translator
    lens.save(tmp_path / "lens")
    back = TunedLens.load(tmp_path / "lens", tiny)
    assert torch.equal(back.weight, lens.weight) and back.meta["model"]["weights_sha256"] == tiny.fingerprint.weights_sha256


def test_bad_lens_settings_and_layers_are_named(tiny, tmp_path):
    with pytest.raises(DataError, match="steps must be >= 1"):
        TunedLensConfig(steps=0)
    with pytest.raises(DataError, match="lr must be a positive"):
        TunedLensConfig(lr=-1)
    with pytest.raises(DataError, match="outside the lens's layers 0..1"):
        TunedLens.identity(tiny).translate(5, torch.zeros(tiny.d_model))
    with pytest.raises(DataError, match="no tuned lens"):
        TunedLens.load(tmp_path)
