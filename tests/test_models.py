"""load_model: embedded names, local directories, hub ids, bridges; fingerprints; errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.models import embedded, fingerprint
from innerprobe.models import load as models
from innerprobe.models.embedded import embedded_model_dir
from innerprobe.models.fingerprint import ModelFingerprint
from innerprobe.models.load import load_model


def test_tiny_model_boots_with_fingerprint(tiny):
    fp = tiny.fingerprint
    assert isinstance(fp, ModelFingerprint)
    assert fp.numerics_mode == "hf" and fp.dtype == "float32"
    assert fp.n_layers == tiny.bridge.cfg.n_layers == 2
    assert len(fp.weights_sha256) == 64
    assert tiny.tokenizer.pad_token_id is not None
    assert tiny.tokenizer.chat_template


def test_local_directory_path_gives_same_weights(tiny):
    """A HF directory goes through the same boot_transformers path a hub id does."""
    d = embedded_model_dir("tiny-random")
    again = load_model(str(d), device="cpu")
    assert again.fingerprint.weights_sha256 == tiny.fingerprint.weights_sha256
    assert again.fingerprint.source == str(Path(d).resolve())
    ids = torch.tensor([[1, 5, 9, 12]])
    torch.testing.assert_close(again.bridge(ids), tiny.bridge(ids))


def test_hub_id_goes_to_boot_transformers(monkeypatch, tiny):
    seen = {}

    def fake_boot(spec, device, dtype, device_map):
        seen["spec"] = spec
        return tiny.bridge

    monkeypatch.setattr(models, "_boot", fake_boot)
    m = load_model("HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu")
    assert seen["spec"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert m.fingerprint.source == "hub:HuggingFaceTB/SmolLM2-135M-Instruct"


def test_wrap_existing_bridge(tiny):
    wrapped = load_model(tiny.bridge)
    assert wrapped.bridge is tiny.bridge
    assert wrapped.fingerprint.source == "bridge"
    assert len(wrapped.fingerprint.weights_sha256) == 64


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        load_model("no-such-model")
    msg = str(e.value)
    assert "no-such-model" in msg and "smollm2-135m-instruct" in msg and "tiny-random" in msg


def test_unknown_dtype():
    with pytest.raises(UnknownNameError, match="float32"):
        load_model("tiny-random", dtype="float8")


def test_directory_without_config(tmp_path):
    with pytest.raises(DataError, match="config.json"):
        load_model(str(tmp_path))


def test_gguf_sha_mismatch_refused(tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"not a gguf")
    with pytest.raises(DataError, match="sha256 mismatch"):
        embedded.dequantise_gguf(fake, tmp_path / "out", expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_hash_weight_files_changes_with_content(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    h1 = fingerprint.hash_weight_files(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert fingerprint.hash_weight_files(tmp_path) != h1


def test_fingerprint_compatibility(tiny):
    fp = tiny.fingerprint
    assert fp.compatible_with(fp.to_dict())
    assert not fp.compatible_with({**fp.to_dict(), "numerics_mode": "tl-compat"})


@pytest.mark.integration
def test_smollm2_embedded_loads(smol):
    fp = smol.fingerprint
    assert fp.n_layers == 30 and fp.d_model == 576
    assert fp.architecture == "LlamaForCausalLM"
    tok = smol.tokenizer
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = smol.bridge(ids)
        hf = smol.hf_model(ids).logits
    torch.testing.assert_close(logits, hf)
    assert tok.decode(logits[0, -1].argmax()).strip() == "Paris"
