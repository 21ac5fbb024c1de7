"""The zoo study: expectations written from the constructions, scoring, config, and a tiny end-to-end run.

The expected readings are the ground truth the battery is tested against, so they are pinned
here row by row; scoring is tested on synthetic battery rows whose readings are known; the
end-to-end test builds four tiny zoo models (a few training steps: their routes do not take,
which is exactly what ``route_verified`` must then say) and runs three experiments on each.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from innerprobe.cli.app import app
from innerprobe.core.errors import DataError, UnknownNameError
from innerprobe.core.stats import Estimate
from innerprobe.core.tomlconfig import ConfigError
from innerprobe.study.battery_result import BatteryResult, BatterySummary
from innerprobe.study.decision import DecisionConfig, decide, read_rows
from innerprobe.study.evidence import Evidence
from innerprobe.study.zoo_expectations import NOT_POSITIVE, expectations, expected_verdict, matches
from innerprobe.study.zoo_report import load_zoo_report, write_zoo_report
from innerprobe.study.zoo_result import ZooStudyResult
from innerprobe.study.zoo_study import run_zoo_study, score_rows
from innerprobe.study.zoo_study_config import ZooStudyConfig, load_zoo_study
from innerprobe.zoo import ZooConfig

TINY_BUILD = {"d_model": 16, "n_layers": 2, "n_heads": 2, "n_train": 12, "n_test": 6, "batch_size": 4,
              "n_text_pool": 8, "object_steps": 3, "readout_steps": 3, "subspace_every": 2}


def test_expected_verdicts_follow_the_constructions():
    assert expected_verdict("text", "simulation") == "self-simulation"
    assert expected_verdict("memorised", "simulation") == "self-simulation"
    assert expected_verdict("memorised", "direct") == "privileged"
    assert expected_verdict("text", "direct") == "inconclusive"  # public information: never "privileged"
    with pytest.raises(UnknownNameError, match="valid routes: direct, simulation"):
        expected_verdict("text", "oracle")


def test_expected_rows_differ_by_route_and_task_kind():
    def by(kind, route):
        return {e.label: e.expected for e in expectations(kind, route)}

    sim, direct = by("memorised", "simulation"), by("memorised", "direct")
    assert sim["E3"] == "positive" and direct["E3"] == NOT_POSITIVE
    assert sim["E6"] == "positive" and direct["E6"] == "negative"
    assert by("memorised", "direct")["E1 · self vs cross-model (peer)"] == "positive"
    assert by("text", "direct")["E1 · self vs cross-model (peer)"] == NOT_POSITIVE
    assert all(e.why for e in expectations("text", "simulation"))


def test_matching_a_reading():
    assert matches("positive", "positive") and not matches("positive", "inconclusive")
    assert matches("negative", "negative") and not matches("negative", "inconclusive")
    assert matches(NOT_POSITIVE, "negative") and matches(NOT_POSITIVE, "inconclusive")
    assert not matches(NOT_POSITIVE, "positive")


def _est(v, lo, hi, n=40):
    return Estimate(v, lo, hi, n, "test")


def _battery(rows):
    read = read_rows(rows)
    return BatteryResult(read, BatterySummary([decide(read)], "x", {}))


def _simulation_like_rows():
    """Rows whose readings are those of a planted simulation route on a memorised task."""
    pos = _est(0.6, 0.4, 0.8)
    return [
        Evidence("E1", "self vs mode baseline", "self", _est(0.9, 0.8, 0.95), _est(0.3, 0.2, 0.4), 40),
        Evidence("E1", "self vs cross-model (peer)", "self - peer", pos, None, 40),
        Evidence("E2", "property after answer", "gap", _est(2.0, 1.5, 2.5), None, 40, unit="layers"),
        Evidence("E3", "O->H transfer", "acc", _est(0.8, 0.7, 0.9), _est(0.3, 0.2, 0.4), 40),
        Evidence("E5", "O->H transplant", "shift", pos, None, 40, unit="recovery"),
        Evidence("E6", "answer-subspace ablation", "drop", pos, None, 40),
    ]


def test_score_rows_marks_each_row_and_the_verdict():
    battery = _battery(_simulation_like_rows())
    sim = score_rows(ZooConfig(task_kind="memorised", route="simulation"), battery, DecisionConfig(), {"model": "m"})
    assert [r["match"] for r in sim] == [True] * 7
    assert sim[-1]["row"] == "verdict" and sim[-1]["observed"] == "self-simulation"
    direct = score_rows(ZooConfig(task_kind="memorised", route="direct"), battery, DecisionConfig(), {"model": "m"})
    wrong = {r["row"] for r in direct if not r["match"]}
    assert wrong == {"E2", "E3", "E5", "E6", "verdict"}  # the same rows are wrong for a direct model
    assert next(r for r in direct if r["row"] == "E3")["effect"] == pytest.approx(0.8)


def test_a_missing_row_is_inconclusive_not_a_match_for_positive():
    battery = _battery(_simulation_like_rows()[:1])
    rows = score_rows(ZooConfig(task_kind="memorised", route="simulation"), battery, DecisionConfig(), {})
    e3 = next(r for r in rows if r["row"] == "E3")
    assert e3["observed"] == "inconclusive" and not e3["match"] and e3["n"] == 0


def test_config_names_bad_values(tmp_path):
    with pytest.raises(DataError, match="n_test"):
        ZooStudyConfig(n_items=49)
    with pytest.raises(DataError, match="held_out_seeds"):
        ZooStudyConfig(seeds=(0, 1), held_out_seeds=(2,))
    with pytest.raises(UnknownNameError, match="valid build keys: .*object_steps"):
        ZooStudyConfig(build={"objet_steps": 3})
    path = tmp_path / "zoo.toml"
    path.write_text('[zoo]\nseeds = [0, 1]\n\n[zoo.build]\nd_model = "wide"\n')
    with pytest.raises(ConfigError, match=r"zoo.toml:5: \[zoo.build\] d_model"):
        load_zoo_study(path)


def test_the_shipped_zoo_study_is_the_default_with_its_build():
    from pathlib import Path

    cfg = load_zoo_study(Path(__file__).parents[1] / "experiments" / "zoo_study.toml")
    assert cfg == ZooStudyConfig(seeds=(0, 1, 2, 3, 4, 5), held_out_seeds=(2, 3, 4, 5),
                                 build={"object_steps": 1500, "readout_steps": 600, "d_model": 64, "n_layers": 3})
    assert len(cfg.grid()) == 24 and cfg.peer_seed(0) == 1 and cfg.peer_seed(5) == 0 and cfg.held_out == (2, 3, 4, 5)
    ten = load_zoo_study(Path(__file__).parents[1] / "experiments" / "zoo_study_10words.toml")
    assert ten == replace(cfg, build={**cfg.build, "answer_words": 10})
    same = [a.digest() == b.digest() for a, b in zip(cfg.grid(), ten.grid())]
    assert same == [z.task_kind == "text" for z in cfg.grid()]  # the text models are shared


def test_the_shipped_smollm2_zoo_study_patches_every_adapted_block():
    from pathlib import Path

    cfg = load_zoo_study(Path(__file__).parents[1] / "experiments" / "zoo_study_smollm2.toml")
    grid = cfg.grid()
    assert [z.name for z in grid] == [f"smollm2-{k}-{r}-s{s}" for k in ("text", "memorised")
                                      for r in ("simulation", "direct") for s in (0, 1)]
    assert all(z.pretrained and z.n_trainable == 4 for z in grid)
    assert (cfg.peer_seed(0), cfg.peer_seed(1)) == (1, 0)  # each seed's sibling is the other's peer
    adapted = set(range(30 - grid[0].n_trainable, 30))
    assert adapted <= {int(x) for x in cfg.patch_layers.split(",")}
    assert cfg.held_out == cfg.seeds  # no threshold was chosen on these models


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    cfg = ZooStudyConfig(task_kinds=("memorised",), seeds=(0, 1), build=TINY_BUILD, n_items=6,
                         experiments=("E1", "E3", "E6"), n_boot=200)
    out = tmp_path_factory.mktemp("zoo_study")
    return cfg, out, run_zoo_study(cfg, out)


def test_tiny_zoo_study_scores_every_model(tiny_study):
    cfg, out, result = tiny_study
    t = result.table
    assert list(dict.fromkeys(t["model"])) == ["memorised-simulation-s0", "memorised-simulation-s1",
                                              "memorised-direct-s0", "memorised-direct-s1"]
    assert (t.groupby("model").size() == 7).all()
    verdicts = t[t["row"] == "verdict"]
    # 3 training steps plant nothing: no route check passes, and no verdict may claim a mechanism
    assert not verdicts["route_verified"].any()
    assert set(verdicts["observed"]) == {"inconclusive"}
    assert list(verdicts["match"]) == [False, False, False, False]
    assert result.summary.verdict_match.value == 0.0 and result.summary.verdict_match.n == 4
    assert result.summary.verdict_match_verified is None
    assert (out / "memorised-direct-s1" / "battery" / "M" / "E3" / "evidence.json").is_file()
    assert all(o.battery_seconds > 0 for o in result.summary.outcomes)


def test_tiny_zoo_study_uses_the_sibling_as_peer_and_resumes(tiny_study):
    cfg, out, result = tiny_study
    import json

    settings = json.loads((out / "memorised-simulation-s0" / "battery" / "battery.json").read_text())
    assert settings["peer"].endswith(cfg.grid()[1].digest())  # seed 1 is seed 0's peer
    before = (out / "memorised-direct-s0" / "battery" / "M" / "E1" / "evidence.json").stat().st_mtime_ns
    again = run_zoo_study(cfg, out)
    assert (out / "memorised-direct-s0" / "battery" / "M" / "E1" / "evidence.json").stat().st_mtime_ns == before
    assert again.table.equals(result.table)


def test_a_rerun_with_another_build_is_refused(tiny_study):
    cfg, out, _ = tiny_study
    other = ZooStudyConfig(task_kinds=("memorised",), seeds=(0, 1), build={**TINY_BUILD, "readout_steps": 4},
                           n_items=6, experiments=("E1", "E3", "E6"), n_boot=200)
    with pytest.raises(DataError, match="route check of another build"):
        run_zoo_study(other, out)


def test_zoo_report_round_trips_and_saves(tiny_study, tmp_path):
    _, _, result = tiny_study
    html = write_zoo_report(result, tmp_path / "zoo_report.html")
    assert html.read_text().count("plotly-graph-div") >= 1
    for source in (html, tmp_path / "zoo_report.json"):
        back = load_zoo_report(source)
        assert back.table.equals(result.table) and back.summary.verdict_match == result.summary.verdict_match
    loaded = ZooStudyResult.load(result.save(tmp_path / "result"))
    assert loaded.summary.outcomes[0].name == "memorised-simulation-s0"
    assert "✗ inconclusive (exp. self-simulation)" in result.markdown()
    assert result.confusion().values.sum() == 4


def test_cli_zoo_run(tmp_path):
    toml = tmp_path / "zoo.toml"
    build = "\n".join(f"{k} = {v}" for k, v in TINY_BUILD.items())
    toml.write_text(f'[zoo]\ntask_kinds = ["text"]\nroutes = ["direct"]\nseeds = [0]\nn_items = 6\n'
                    f'experiments = ["E3", "E6"]\nn_boot = 200\n\n[zoo.build]\n{build}\n')
    res = CliRunner().invoke(app, ["zoo", "run", "--config", str(toml), "--out", str(tmp_path / "z")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "z" / "zoo_report.html").is_file() and (tmp_path / "z" / "confusion.md").is_file()
    bad = CliRunner().invoke(app, ["zoo", "run", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code != 0 and "missing.toml" in bad.output
