"""The result protocol's storage layer: every value round-trips, nothing is unpickled."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
import torch

from innerprobe.core.errors import DataError
from innerprobe.core.result import RESULT_JSON, Result, decode, encode
from innerprobe.core.stats import Estimate, PairedDiff, Recovery, mode_baseline


@dataclass
class _DemoResult(Result):
    table: pd.DataFrame
    weights: torch.Tensor | None = None
    by_layer: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""
    est: Estimate | None = None


def test_encode_decode_round_trips_nested_dataclasses_tuples_and_nan():
    est = Estimate(0.5, 0.25, 0.75, 12, "Wilson")
    value = {
        "diff": PairedDiff(est, est, Estimate(0.0, -0.1, 0.1, 12, "paired bootstrap"), 1.0, 1.0, 2, 2),
        "span": (3, 7),
        "nan": float("nan"),
        "mode": mode_baseline(["a", "a", "b"]),
        "rec": Recovery([0.5, 1.0], 1),
        "list": [1, "x", None],
    }
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["diff"] == value["diff"] and isinstance(back["diff"].a, Estimate)
    assert back["span"] == (3, 7) and isinstance(back["span"], tuple)
    assert math.isnan(back["nan"])
    assert back["mode"] == value["mode"] and back["rec"] == value["rec"] and back["list"] == [1, "x", None]


def test_decode_refuses_classes_outside_innerprobe():
    with pytest.raises(DataError, match="only innerprobe classes"):
        decode({"__dataclass__": "os:system", "command": "true"})


def test_a_result_subclass_round_trips_tables_arrays_and_fields(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    obj = _DemoResult(table=frame, weights=torch.arange(6.0).reshape(2, 3),
                      by_layer={"0": np.ones(3), "1": np.zeros(3)}, note="hi", est=Estimate(1, 0, 1, 2, "w"))
    obj.save(tmp_path / "r")
    back = _DemoResult.load(tmp_path / "r")
    pd.testing.assert_frame_equal(back.table, frame)
    assert torch.equal(back.weights, obj.weights) and isinstance(back.weights, torch.Tensor)
    np.testing.assert_array_equal(back.by_layer["1"], np.zeros(3))
    assert back.note == "hi" and back.est == obj.est
    assert not list((tmp_path / "r").glob("*.pkl"))


def test_loading_into_the_wrong_class_names_both(tmp_path):
    _DemoResult(table=pd.DataFrame({"a": [1]})).save(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / RESULT_JSON).read_text())
    assert meta["type"].endswith(":_DemoResult")
    with pytest.raises(DataError, match="only innerprobe classes"):
        _OtherResult.load(tmp_path / "r")
    with pytest.raises(DataError, match="no saved result"):
        Result.load(tmp_path / "missing")


@dataclass
class _OtherResult(Result):
    table: pd.DataFrame
