"""``run_battery``: every experiment once per model, saved atomically, resumed on rerun, then decided.

Each (model role, experiment) writes ``out_dir/<role>/<experiment>/evidence.json`` through an
atomic directory; a rerun into the same ``out_dir`` reads finished experiments back instead of
running them again, so an interrupted battery resumes from its finished experiments (and a
rerun with other settings is refused, :func:`check_resumable`). Every
role (``M``, and ``M1``: M after a short LoRA self-training, see
:mod:`innerprobe.study.m1_model`) runs every step the same way. The rows
are then read by the decision rule (:mod:`innerprobe.study.decision`) into one verdict per model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_dir, library_versions, read_json, write_json
from innerprobe.core.result import decode, encode
from innerprobe.study.battery_config import BatteryConfig
from innerprobe.study.battery_result import BatteryResult, BatterySummary
from innerprobe.study.battery_steps import STEPS
from innerprobe.study.decision import decide, read_rows
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext

log = logging.getLogger(__name__)
Progress = Callable[[str, int], Callable[[int], None]] | None
EVIDENCE = "evidence.json"
SETTINGS = "battery.json"


def _load_rows(path: Path) -> list[Evidence]:
    return decode(read_json(path)["rows"])


def check_resumable(config: BatteryConfig, out: Path, n: int) -> None:
    """Refuse to resume into ``out`` when its finished rows were measured with other settings.

    The folder's ``battery.json`` records :meth:`BatteryConfig.evidence_settings`; a rerun whose
    settings differ (another model, item count or ``--quick``, seed, peer ...) would mix rows of two studies,
    so it stops with the keys that differ. A folder without the file is adopted as it is.
    """
    path = out / SETTINGS
    now = json.loads(json.dumps(config.evidence_settings() | {"items_per_stage": n}, default=str))
    if path.exists():
        before = read_json(path)
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if diff:
            shown = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff)
            raise DataError(f"{out} holds a battery measured with other settings ({shown}); "
                            "use another output folder, or delete this one to start over")
        return
    write_json(path, now)


def run_step(step: Callable[[StepContext], list[Evidence]], experiment: str, ctx: StepContext) -> list[Evidence]:
    """One experiment's rows; a step the model's data defeats becomes an inconclusive row saying why.

    A :class:`DataError` is the library's word for "these inputs cannot be measured" (a model that
    gives one answer to every item has no class means to ablate, too few pairs to patch, ...): the
    experiment is then inconclusive *for this model*, which is a result, and the battery goes on.
    Any other exception is a bug and propagates.
    """
    try:
        return step(ctx)
    except DataError as e:
        log.warning("%s %s: not measurable (%s)", ctx.role, experiment, e)
        return [not_run(experiment, "not measurable", f"{type(e).__name__}: {e}", model=ctx.role)]


def run_battery(
    config: BatteryConfig,
    out_dir: str | Path,
    *,
    quick: bool = False,
    progress: Progress = None,
    steps: Mapping[str, Callable[[StepContext], list[Evidence]]] | None = None,
) -> BatteryResult:
    """Run the battery of ``config`` into ``out_dir`` (resuming) and return its verdict table."""
    steps = dict(STEPS if steps is None else steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = config.items(quick)
    check_resumable(config, out, n)
    rows: list[Evidence] = []
    seconds: dict[str, float] = {}
    advance = progress("battery", len(config.models) * len(config.experiments)) if progress else None
    common: dict = {}
    for role in config.models:
        ctx = StepContext(config, n, role, work_dir=out / role / "_work", cache_dir=out / "_common", common=common)
        for exp in config.experiments:
            done = out / role / exp / EVIDENCE
            if done.exists():
                got = _load_rows(done)
                seconds[f"{role}/{exp}"] = float(read_json(done).get("seconds", 0.0))
            elif exp not in steps:
                raise DataError(f"no battery step for {exp}; steps: {', '.join(steps)}")
            else:
                t0 = time.perf_counter()
                got = run_step(steps[exp], exp, ctx)
                dt = time.perf_counter() - t0
                with atomic_dir(out / role / exp) as tmp:
                    write_json(tmp / EVIDENCE, {"rows": encode(got), "seconds": dt})
                seconds[f"{role}/{exp}"] = dt
                log.info("%s %s: %.1f s", role, exp, dt)
            rows.extend(got)
            if advance:
                advance(1)
    read = read_rows(rows, config.decision)
    verdicts = [decide(read, config.decision, model=role) for role in config.models]
    summary = BatterySummary(verdicts, config.digest(), seconds)
    return BatteryResult(read, summary, config=encode(asdict(config)) | {"quick": quick},
                         provenance={"library_versions": library_versions(), "model": config.model})


__all__ = ["SETTINGS", "check_resumable", "run_battery", "run_step"]
