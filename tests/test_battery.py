"""The battery: resume, the report round-trip, self-contained HTML, config errors, a tiny run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from innerprobe.core.errors import DataError
from innerprobe.core.stats import Estimate
from innerprobe.core.tomlconfig import ConfigError
from innerprobe.study.battery import run_battery
from innerprobe.study.battery_config import BatteryConfig, load_battery_config
from innerprobe.study.battery_result import BatteryResult, BatterySummary
from innerprobe.study.battery_steps import StepContext
from innerprobe.study.decision import DecisionConfig
from innerprobe.study.evidence import Evidence
from innerprobe.study.report import load_report, write_report


def _fake_steps(calls: list[str]) -> dict:
    def make(exp: str):
        def step(ctx: StepContext) -> list[Evidence]:
            calls.append(exp)
            v = 3.0 if exp == "E2" else 0.5
            return [Evidence(exp, "main", exp, Estimate(v, v - 0.1, v + 0.1, ctx.n, "t"), Estimate(0.1, 0.05, 0.15, ctx.n, "t"),
                             ctx.n, unit="layers" if exp == "E2" else "proportion", model=ctx.role)]
        return step
    return {e: make(e) for e in ("E1", "E2", "E3", "E5", "E6")}


CFG = BatteryConfig(experiments=("E1", "E2", "E3", "E5", "E6"), n_items=30, n_boot=100, models=("M",))


def test_resume_skips_finished_experiments(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = _fake_steps(calls)
    first = run_battery(CFG, tmp_path, steps=steps)
    assert calls == ["E1", "E2", "E3", "E5", "E6"]
    second = run_battery(CFG, tmp_path, steps=steps)
    assert calls == ["E1", "E2", "E3", "E5", "E6"]
    assert second.table.equals(first.table)
    assert first.summary.verdicts[0].hypothesis == "self-simulation"


def test_interrupted_battery_resumes_from_finished(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = _fake_steps(calls)

    def boom(ctx: StepContext) -> list[Evidence]:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        run_battery(CFG, tmp_path, steps={**steps, "E5": boom})
    assert calls == ["E1", "E2", "E3"]
    assert not (tmp_path / "M" / "E5").exists()
    run_battery(CFG, tmp_path, steps=steps)
    assert calls == ["E1", "E2", "E3", "E5", "E6"]


def test_a_step_its_data_defeats_is_an_inconclusive_row_and_the_battery_goes_on(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = _fake_steps(calls)

    def degenerate(ctx: StepContext) -> list[Evidence]:
        raise DataError("class means need >= 2 classes with >= 3 items; got counts {'cat': 60}")

    result = run_battery(CFG, tmp_path, steps={**steps, "E6": degenerate})
    row = next(r for r in result.rows if r.experiment == "E6")
    assert row.effect is None and row.supports == "inconclusive" and "'cat': 60" in row.why
    assert calls == ["E1", "E2", "E3", "E5"]
    assert result.summary.verdicts[0].hypothesis == "inconclusive"  # E6 missing: no self-simulation verdict
    assert (tmp_path / "M" / "E6" / "evidence.json").is_file()  # recorded, so a resume does not retry it


def test_report_round_trips_and_is_self_contained(tmp_path: Path) -> None:
    result = run_battery(CFG, tmp_path / "run", steps=_fake_steps([]))
    html = write_report(result, tmp_path / "report.html")
    text = html.read_text()
    assert "<script src" not in text
    assert "Plotly" in text and text.index('<h2 id="verdict"') < text.index('<h3 id="e2"')
    ran = result.table.dropna(subset=["effect"])["experiment"].unique()
    # the overview figure, and one figure in each section of an experiment that has a number
    assert text.count('class="plotly-graph-div"') == 1 + len(ran) >= 3
    labels = list(result.figure("E2").data[0].y)
    assert labels and all(" E2 " in label for label in labels)
    for source in (html, tmp_path / "report.json"):
        back = load_report(source)
        assert back.table.equals(result.table)
        assert back.summary.verdicts == result.summary.verdicts


def test_bad_config_key_names_key_and_line(tmp_path: Path) -> None:
    p = tmp_path / "study.toml"
    p.write_text('[battery]\nmodel = "tiny"\nn_itmes = 5\n\n[battery.decision]\nmin_n = 3\n')
    with pytest.raises(ConfigError, match=r"study.toml:3: .*n_itmes"):
        load_battery_config(p)
    p.write_text('[battery]\nn_items = 5\n\n[battery.decision]\nmin_n = "x"\n')
    with pytest.raises(ConfigError, match=r"study.toml:5: .*min_n"):
        load_battery_config(p)
    p.write_text('[battery]\nn_items = 5\nexperiments = ["E1", "E3b"]\n[battery.decision]\nmin_n = 3\n')
    cfg = load_battery_config(p)
    assert cfg.n_items == 5 and cfg.experiments == ("E1", "E3b") and cfg.decision.min_n == 3


def test_default_study_config_loads() -> None:
    cfg = load_battery_config(Path(__file__).parents[1] / "experiments" / "default_study.toml")
    assert cfg.model == "smollm2-135m-instruct"


def test_tiny_model_end_to_end(tmp_path: Path) -> None:
    cfg = BatteryConfig(model="tiny-random", experiments=("E1", "E2", "E3b", "E6"), quick_n_items=12, n_boot=100,
                        peer="tiny-random")
    result = run_battery(cfg, tmp_path, quick=True)
    t = result.table
    e1 = t[t.experiment == "E1"]
    assert len(e1) >= 1 and e1["effect"].notna().all() and (e1["n"] > 0).all()
    assert t[t.experiment == "E3b"]["supports"].eq("inconclusive").all()
    e2 = t[t.experiment == "E2"]
    # the random tiny model's answers do not emerge in H: E2 must then say why, not report a number
    assert len(e2) >= 1
    assert (e2["effect"].notna() | e2["why"].str.contains("could not score|no item where both")).all()
    assert e2["effect"].isna().any()
    assert result.summary.verdicts[0].hypothesis == "inconclusive"


def test_the_default_config_is_the_default_study() -> None:
    """`innerprobe run` with no --config runs what experiments/default_study.toml says."""
    assert load_battery_config(Path(__file__).parents[1] / "experiments" / "default_study.toml") == BatteryConfig()
    assert BatteryConfig().models == ("M", "M1")


def test_a_rerun_with_other_settings_is_refused_but_thresholds_may_change(tmp_path: Path) -> None:
    calls: list[str] = []
    run_battery(CFG, tmp_path, steps=_fake_steps(calls))
    with pytest.raises(DataError, match=r"n_items: 30 -> 31"):
        run_battery(replace(CFG, n_items=31), tmp_path, steps=_fake_steps(calls))
    with pytest.raises(DataError, match="items_per_stage"):
        run_battery(CFG, tmp_path, quick=True, steps=_fake_steps(calls))
    calls.clear()
    looser = replace(CFG, decision=DecisionConfig(min_n=3), experiments=("E1", "E2"))
    run_battery(looser, tmp_path, steps=_fake_steps(calls))
    assert calls == []  # a new threshold and fewer experiments: every row is read back


def test_markdown_shows_differences_against_zero_and_not_run_rows() -> None:
    diff = Evidence("E3b", "gap", "self − peer", Estimate(0.2, 0.1, 0.3, 30, "t"), None, 30)
    missing = Evidence("E6", "ablation", "not run", None, None, 0, why="no subspace")
    side = Evidence("E3b", "gap", "sides", Estimate(0.5, 0.4, 0.6, 30, "t"), Estimate(0.3, 0.2, 0.4, 30, "t"), 30,
                    primary=False)
    result = BatteryResult([diff, missing, side], BatterySummary([], "d"))
    md = result.markdown().splitlines()
    assert md[2] == "| M | E3b | gap | 0.200 [0.100, 0.300] | 0 | 30 | inconclusive |"
    assert md[3] == "| M | E6 | ablation | no estimate: no subspace | — | 0 | inconclusive |" and len(md) == 4
    assert len(result.markdown(primary_only=False).splitlines()) == 5


def test_figure_labels_tell_a_difference_from_its_sides() -> None:
    diff = Evidence("E1", "self vs text-only", "self − text-only", Estimate(-0.4, -0.6, -0.3, 30, "t"), None, 30)
    side = Evidence("E1", "self vs text-only", "self vs text-only accuracy", Estimate(0.0, 0.0, 0.1, 30, "t"),
                    Estimate(0.4, 0.3, 0.6, 30, "t"), 30, primary=False)
    alone = Evidence("E2", "gap", "layers", Estimate(1.0, 0.5, 1.5, 30, "t"), None, 30)
    labels = list(BatteryResult([diff, side, alone], BatterySummary([], "d")).figure().data[0].y)
    assert len(set(labels)) == 3 and labels[2] == "M E2 gap"
    assert labels[0].endswith("· self − text-only")
