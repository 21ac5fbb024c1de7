"""The sweep's results on disk: one Parquet dataset, one file and one status per cell.

Layout of a sweep directory::

    sweep.json                 the plan: the config and every cell (id, axes, options)
    cells/<cell_id>.parquet    the cell's metric rows (one row per metric)
    status/<cell_id>.json      done | failed, with the error's type and message, wall time, attempts

``cells/`` is a Parquet dataset (``pandas.read_parquet("cells")`` or ``pyarrow.dataset`` read it
whole); every row carries the cell's labels (:data:`~innerprobe.study.cells.CELL_COLUMNS`), the
metric and its interval and ``n``, the model fingerprint and the config hash.

**Why nothing is lost or duplicated.** A cell is written in two atomic steps (temporary file +
``os.replace``, :func:`innerprobe.core.io.atomic_path`): first its Parquet file, then its status.
A cell is *done* only when both exist and the status says so. A kill between or during the steps
leaves the cell pending (a half-written file never has the final name), and the re-run writes it
again under the same name, replacing rather than adding. One file per cell id means one copy of
each cell, whatever the order or number of runs. A failed cell keeps its error in its status and
is retried by the next run (``retry_failed``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from innerprobe.core.errors import DataError
from innerprobe.core.io import prepare_out_dir, provenance, read_json, write_json, write_parquet
from innerprobe.study.cells import CELL_COLUMNS, METRIC_COLUMNS, Cell, CellOutcome

PLAN = "sweep.json"
CELLS = "cells"
STATUS = "status"
ROW_COLUMNS = (*CELL_COLUMNS, *METRIC_COLUMNS, "model_fingerprint", "config_hash")
"""The columns of the stored table, in order."""


@dataclass(frozen=True)
class StoreStatus:
    """Which cells are done, failed and pending (ids, in plan order)."""

    done: list[str]
    failed: list[str]
    pending: list[str]

    @property
    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "failed": len(self.failed), "pending": len(self.pending)}

    @property
    def complete(self) -> bool:
        return not self.failed and not self.pending


class ResultsStore:
    """A sweep directory (see the module docstring). ``ResultsStore(path)`` opens one."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | Path, cells: Sequence[Cell], config: dict[str, Any]) -> ResultsStore:
        """Claim ``root`` for a sweep (resuming one already there) and write the plan."""
        root = prepare_out_dir(root, "sweep")
        write_json(root / PLAN, {"config": config, "cells": [c.to_dict() for c in cells], **provenance()})
        (root / CELLS).mkdir(exist_ok=True)
        (root / STATUS).mkdir(exist_ok=True)
        return cls(root)

    def plan(self) -> list[Cell]:
        """The cells of the last plan written here."""
        path = self.root / PLAN
        if not path.is_file():
            raise DataError(f"{self.root} is not a sweep directory ({PLAN} missing)")
        return [Cell.from_dict(c) for c in read_json(path)["cells"]]

    def _cell_file(self, cell_id: str) -> Path:
        return self.root / CELLS / f"{cell_id}.parquet"

    def _status_file(self, cell_id: str) -> Path:
        return self.root / STATUS / f"{cell_id}.json"

    def read_status(self, cell_id: str) -> dict[str, Any] | None:
        path = self._status_file(cell_id)
        return read_json(path) if path.is_file() else None

    def state(self, cell_id: str) -> str:
        """``done`` (rows and status written), ``failed`` (error recorded) or ``pending``."""
        status = self.read_status(cell_id)
        if status is None:
            return "pending"
        if status["state"] == "done":
            return "done" if self._cell_file(cell_id).is_file() else "pending"
        return str(status["state"])

    def record(self, cell: Cell, outcome: CellOutcome) -> None:
        """Write one cell's outcome: rows then status (done), or the error (failed)."""
        previous = self.read_status(cell.id) or {}
        status: dict[str, Any] = {
            "cell_id": cell.id, "experiment": cell.experiment, "wall_s": outcome.wall_s,
            "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "attempts": int(previous.get("attempts", 0)) + 1, "fingerprint": outcome.fingerprint,
        }
        if outcome.ok:
            frame = pd.DataFrame(outcome.rows or [], columns=list(METRIC_COLUMNS))
            for name, value in cell.labels().items():
                frame[name] = value
            frame["model_fingerprint"] = outcome.fingerprint
            frame["config_hash"] = cell.config_hash
            write_parquet(self._cell_file(cell.id), frame[list(ROW_COLUMNS)])
            write_json(self._status_file(cell.id), {**status, "state": "done", "n_rows": len(frame)})
        else:
            write_json(self._status_file(cell.id), {**status, "state": "failed", "error_type": outcome.error_type,
                                                    "error_message": outcome.error_message})

    def status(self, cells: Sequence[Cell] | None = None) -> StoreStatus:
        """done / failed / pending over ``cells`` (default: the plan)."""
        groups: dict[str, list[str]] = {"done": [], "failed": [], "pending": []}
        for cell in self.plan() if cells is None else cells:
            groups[self.state(cell.id)].append(cell.id)
        return StoreStatus(**groups)

    def table(self, cells: Sequence[Cell] | None = None) -> pd.DataFrame:
        """Every done cell's rows (of ``cells``, default the plan), in plan order."""
        ids = [c.id for c in (self.plan() if cells is None else cells) if self.state(c.id) == "done"]
        if not ids:
            return pd.DataFrame(columns=list(ROW_COLUMNS))
        # one Arrow table, then pandas: the same dtypes as reading the saved table back
        tables = [pq.read_table(self._cell_file(i)) for i in ids]
        return pa.concat_tables(tables, promote_options="default").to_pandas()

    def errors(self, cells: Sequence[Cell] | None = None) -> pd.DataFrame:
        """One row per failed cell: its id, experiment, error type and message, attempts."""
        rows = []
        for cell in self.plan() if cells is None else cells:
            s = self.read_status(cell.id)
            if s is not None and s["state"] == "failed":
                rows.append({k: s.get(k) for k in ("cell_id", "experiment", "error_type", "error_message", "attempts")})
        return pd.DataFrame(rows, columns=["cell_id", "experiment", "error_type", "error_message", "attempts"])

    def stray_files(self) -> list[str]:
        """Files in ``cells/`` that no status names (left by an older plan); never read as results."""
        known = {f"{p.stem}.parquet" for p in (self.root / STATUS).glob("*.json")}
        return sorted(n for n in os.listdir(self.root / CELLS) if not n.startswith(".") and n not in known)


__all__ = ["ResultsStore", "StoreStatus", "ROW_COLUMNS", "PLAN", "CELLS", "STATUS"]
