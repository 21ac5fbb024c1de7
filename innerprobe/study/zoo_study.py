"""``run_zoo_study``: build every zoo model, verify its route, run the battery on it, score the verdict.

The battery earns trust on models whose mechanism is known (:mod:`innerprobe.zoo`): each grid
point of :class:`~innerprobe.study.zoo_study_config.ZooStudyConfig` is

1. built (cached by its config digest, so a rerun trains nothing),
2. checked by :func:`~innerprobe.zoo.check.run_zoo_check`, the route test that does not use the
   battery (an exact answer-subspace ablation against a variance-matched random one),
3. measured by :func:`~innerprobe.study.battery.run_battery` (model M only; the peer is the same
   construction at the next seed, a near-identical M′),
4. scored against :mod:`~innerprobe.study.zoo_expectations` (the expected reading of each row
   and the expected verdict, written from the construction before any run).

Everything lands under ``out_dir/<model name>/`` (``check/``, ``battery/``), each step atomic
and resumed on rerun; the confusion table is returned as a :class:`ZooStudyResult`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from innerprobe.core.errors import DataError
from innerprobe.core.io import read_json, write_json
from innerprobe.study.battery import Progress, run_battery
from innerprobe.study.battery_result import BatteryResult
from innerprobe.study.decision import DecisionConfig, experiment_readings, reading
from innerprobe.study.evidence import Evidence
from innerprobe.study.zoo_expectations import Expectation, expectations, expected_verdict, matches
from innerprobe.study.zoo_result import ZooModelOutcome, ZooStudyResult, frame, summarise
from innerprobe.study.zoo_study_config import ZooStudyConfig
from innerprobe.zoo import (
    CheckConfig,
    ZooCheckResult,
    ZooConfig,
    ZooModel,
    build_zoo_model,
    run_zoo_check,
)

log = logging.getLogger(__name__)
CHECK_TIME = "check_seconds.json"


def checked(zoo: ZooModel, out: Path, n_boot: int) -> tuple[ZooCheckResult, float]:
    """The route check of ``zoo`` saved under ``out`` (read back when it is there) and its wall time.

    A saved check of another build (the folder's model was built with other settings) is refused,
    as the battery refuses a folder measured with other settings.
    """
    if (out / CHECK_TIME).exists():
        saved = read_json(out / CHECK_TIME)
        if saved.get("digest") != zoo.config.digest():
            raise DataError(f"{out} holds the route check of another build of {zoo.config.name} "
                            f"(digest {saved.get('digest')} vs {zoo.config.digest()}); use another output folder")
        return ZooCheckResult.load(out), float(saved["seconds"])
    t0 = time.perf_counter()
    result = run_zoo_check(zoo, CheckConfig(n_boot=n_boot, seed=zoo.config.seed))
    dt = time.perf_counter() - t0
    result.save(out)
    write_json(out / CHECK_TIME, {"seconds": dt, "digest": zoo.config.digest()})
    return result, dt


def observed(exp: Expectation, rows: list[Evidence], decision: DecisionConfig) -> tuple[str, Evidence | None]:
    """The battery's reading of one scored row (a named sub row, or the whole experiment) and the row shown."""
    mine = [r for r in rows if r.experiment == exp.experiment and r.primary]
    if exp.sub is not None:
        row = next((r for r in mine if r.sub == exp.sub), None)
        return ("inconclusive", None) if row is None else (reading(row, decision)[0], row)
    got = experiment_readings(mine, decision).get(exp.experiment, "inconclusive")
    shown = next((r for r in mine if reading(r, decision)[0] == got), mine[0] if mine else None)
    return got, shown


def score_rows(zoo: ZooConfig, battery: BatteryResult, decision: DecisionConfig, base: dict) -> list[dict]:
    """One table row per scored expectation of ``zoo``, then its verdict row."""
    out = []
    for exp in expectations(zoo.task_kind, zoo.route):
        got, row = observed(exp, battery.rows, decision)
        e = None if row is None else row.effect
        out.append(base | {
            "row": exp.label, "expected": exp.expected, "observed": got, "match": matches(exp.expected, got),
            "effect": None if e is None else e.value, "ci_low": None if e is None else e.ci_low,
            "ci_high": None if e is None else e.ci_high,
            "control": None if row is None or e is None else (0.0 if row.control is None else row.control.value),
            "n": 0 if row is None else row.n, "why": exp.why if row is None else f"{exp.why}; battery: {row.why}",
        })
    verdict = battery.summary.verdicts[0]
    want = expected_verdict(zoo.task_kind, zoo.route)
    out.append(base | {"row": "verdict", "expected": want, "observed": verdict.hypothesis,
                       "match": verdict.hypothesis == want, "effect": None, "ci_low": None, "ci_high": None,
                       "control": None, "n": 0, "why": verdict.why})
    return out


def run_zoo_study(config: ZooStudyConfig, out_dir: str | Path, *, progress: Progress = None) -> ZooStudyResult:
    """Build, check and measure every zoo model of ``config`` into ``out_dir`` (resuming); score them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "zoo_study.json", config.to_dict())
    grid = config.grid()
    advance = progress("zoo models", 3 * len(grid)) if progress else None
    built: dict[tuple[str, str, int], ZooModel] = {}
    for zc in grid:
        built[(zc.task_kind, zc.route, zc.seed)] = build_zoo_model(zc)
        if advance:
            advance(1)
    records, outcomes = [], []
    for zc in grid:
        zoo = built[(zc.task_kind, zc.route, zc.seed)]
        check, check_s = checked(zoo, out / zc.name / "check", config.n_boot)
        if advance:
            advance(1)
        ps = config.peer_seed(zc.seed)
        peer = None if ps is None else built[(zc.task_kind, zc.route, ps)].path
        battery = run_battery(config.battery_config(zoo.path, peer, zc), out / zc.name / "battery")
        if advance:
            advance(1)
        verified = bool(check.summary.route_verified)
        base = {"model": zc.name, "task_kind": zc.task_kind, "route": zc.route, "seed": zc.seed,
                "held_out": zc.seed in config.held_out, "route_verified": verified}
        records += score_rows(zc, battery, config.decision, base)
        v = battery.summary.verdicts[0]
        outcomes.append(ZooModelOutcome(
            zc.name, zc.task_kind, zc.route, zc.seed, str(zoo.path), verified, check.summary.why,
            expected_verdict(zc.task_kind, zc.route), v.hypothesis, v.why,
            float(zoo.record.get("build_seconds", 0.0)), check_s, sum(battery.summary.stage_seconds.values()),
        ))
        log.info("%s: verdict %s (expected %s), route verified %s", zc.name, v.hypothesis,
                 expected_verdict(zc.task_kind, zc.route), verified)
    table = frame(records)
    return ZooStudyResult(table, summarise(table, outcomes, list(config.held_out), config.to_dict()))


__all__ = ["checked", "observed", "run_zoo_study", "score_rows"]
