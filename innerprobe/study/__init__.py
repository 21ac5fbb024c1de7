"""Floor 7: whole studies built from the floors below (battery, sweeps, report).

Sweeps, one concept a module, in data-flow order::

    cells           Cell (one experiment on one point of the axes, stable id), CellOutcome, metric rows
    stages          the stage kinds' cell functions: behave, probes
    registry        stage kind -> (config builder, canonical form, cell function)
    sweep_config    the TOML schema ([sweep] axes, [experiments.<name>]) and its expansion into cells
    runner          run one cell where it lands (one model cache per process), errors caught
    results_store   the sweep directory: a Parquet dataset, one file and one status per cell
    executors       local (sequential) and a process pool (one torch thread per worker)
    ray_executor    Ray: a running cluster or a local one, model-holding actors
    sweep           run_sweep -> SweepResult (table, summary, figure, save/load)
    sweep_report    one self-contained HTML page of a sweep's cells

The battery (one model, task and property through E1-E8 and E3b, to a verdict)::

    evidence        Evidence: one effect beside its control, with n and the hypothesis it supports
    decision        DecisionConfig and the decision rule: rows -> readings -> Verdict
    battery_config  BatteryConfig (and its TOML loader)
    step_context    StepContext: what one step gets (settings, role, model, work folder)
    battery_steps   the per-experiment adapters (STEPS)
    battery         run_battery (atomic per experiment, resumable) -> BatteryResult
    report          the self-contained HTML report and its JSON

The battery on the zoo (models with planted mechanisms, :mod:`innerprobe.zoo`)::

    zoo_expectations    the expected reading of each row and the expected verdict, per construction
    zoo_study_config    ZooStudyConfig: the grid (task kinds × routes × seeds) and battery sizes
    zoo_result          ZooStudyResult: planted mechanism vs verdict, row by row, with match rates
    zoo_study           run_zoo_study: build → route check → battery → scoring, resumable
    zoo_report          the zoo study's self-contained HTML page and JSON

    from innerprobe.study import BatteryConfig, run_battery, write_report
    result = run_battery(BatteryConfig(), "runs/study"); write_report(result, "runs/study/report.html")

    from innerprobe.study import load_sweep, run_sweep
    result = run_sweep(load_sweep("experiments/sweep_example.toml"), "runs/sweep", executor="pool")
"""

from __future__ import annotations

from innerprobe.study.battery import run_battery
from innerprobe.study.battery_config import BatteryConfig, load_battery_config
from innerprobe.study.battery_result import BatteryResult, BatterySummary
from innerprobe.study.cells import Cell, CellOutcome
from innerprobe.study.decision import DecisionConfig, Verdict, decide
from innerprobe.study.evidence import Evidence
from innerprobe.study.executors import EXECUTORS, LocalExecutor, PoolExecutor
from innerprobe.study.ray_executor import RayExecutor
from innerprobe.study.registry import KINDS, StageKind, get_kind, register_kind
from innerprobe.study.report import load_report, write_report
from innerprobe.study.results_store import ResultsStore, StoreStatus
from innerprobe.study.stages import ProbeCellOptions
from innerprobe.study.sweep import SweepResult, SweepSummary, make_executor, run_sweep, sweep_result
from innerprobe.study.sweep_config import (
    ExperimentSpec,
    SweepAxes,
    SweepConfig,
    load_sweep,
    sweep_from_mapping,
)
from innerprobe.study.sweep_report import write_sweep_report

__all__ = [
    "BatteryConfig", "BatteryResult", "BatterySummary", "DecisionConfig", "Evidence", "Verdict", "decide",
    "load_battery_config", "load_report", "run_battery", "write_report",
    "Cell", "CellOutcome", "EXECUTORS", "LocalExecutor", "PoolExecutor", "RayExecutor", "KINDS", "StageKind",
    "get_kind", "register_kind", "ResultsStore", "StoreStatus", "ProbeCellOptions", "SweepResult",
    "SweepSummary", "make_executor", "run_sweep", "sweep_result", "ExperimentSpec", "SweepAxes", "SweepConfig",
    "load_sweep", "sweep_from_mapping", "write_sweep_report",
]
