"""The cross-check table (lib.crosscheck) on a small synthetic report, and on the stored one."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lib import crosscheck

STORED = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "crosscheck.json"
EXPECTED_ROWS = (
    ("bgd", "presynaptic-book", "bgd (reference initial means and test_mc inference)", "igolan/bgd",
     "final_by_inference/test_mc/average"),
    ("bgd", "presynaptic-book", "bgd (reference initial means)", "igolan/bgd", "final_by_inference/agg_softmax/average"),
    ("bgd", "presynaptic-book", "bgd", "igolan/bgd", "final_by_inference/agg_softmax/average"),
    ("ewc", "presynaptic-book", "ewc", "avalanche", "runs/500.0/average"),
    ("ewc", "presynaptic-book", "ewc", "avalanche", "runs/10.0/average"),
    ("presynaptic", "presynaptic-book", "presynaptic", "smonsays/presynaptic-stochasticity", "average"),
)


def side(implementation, run, measure="average"):
    return {"implementation": implementation, "run": run, "measure": measure}


@pytest.fixture
def report():
    ours = {"0": {"average": 0.80}, "1": {"average": 0.82}, "2": {"average": 0.84}}
    peer = {"0": {"final": {"avg": 0.70}}, "1": {"final": {"avg": 0.75}}}
    return {
        "comparisons": [
            {"name": "A", "method": "m", "ours": side("us", "a"), "peer": side("them", "b", "final/avg")},
            {"name": "missing peer", "method": "m", "ours": side("us", "a"), "peer": side("them", "nothing")},
            {"name": "one seed", "method": "m", "ours": side("us", "single"), "peer": side("us", "a")},
        ],
        "implementations": {"us": {"a": ours, "single": {"3": {"average": 0.5}}}, "them": {"b": peer}},
    }


def test_table_means_sems_difference_and_welch(report):
    frame = crosscheck.table(report)
    assert list(frame.columns) == list(crosscheck.COLUMNS)
    row = frame.iloc[0]
    assert row["ours_mean"] == pytest.approx(82.0)
    assert row["ours_sem"] == pytest.approx(np.std([80, 82, 84], ddof=1) / math.sqrt(3))
    assert row["peer_mean"] == pytest.approx(72.5)
    assert row["peer_sem"] == pytest.approx(2.5)
    assert row["difference"] == pytest.approx(9.5)
    assert (row["ours_seeds"], row["peer_seeds"]) == (3, 2)
    welch = stats.ttest_ind([0.80, 0.82, 0.84], [0.70, 0.75], equal_var=False).pvalue
    pooled = stats.ttest_ind([0.80, 0.82, 0.84], [0.70, 0.75]).pvalue
    assert row["p"] == pytest.approx(welch)
    assert not math.isclose(welch, pooled)  # Welch's test, not the pooled one


def test_table_by_hand_welch():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 9.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    nu = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert crosscheck.welch(a, b) == pytest.approx(2 * stats.t.sf(abs(t), nu))


def test_missing_side_and_single_seed(report):
    frame = crosscheck.table(report).set_index("comparison")
    assert frame.loc["missing peer", "peer_seeds"] == 0
    assert math.isnan(frame.loc["missing peer", "peer_mean"]) and math.isnan(frame.loc["missing peer", "p"])
    assert frame.loc["one seed", "ours_mean"] == pytest.approx(50.0)
    assert math.isnan(frame.loc["one seed", "ours_sem"]) and math.isnan(frame.loc["one seed", "p"])
    shown = crosscheck.cells(crosscheck.table(report)).set_index("comparison")
    assert shown.loc["A", "ours (%)"] == "82.00 ± 1.15"
    assert shown.loc["missing peer", "peer (%)"] == "–"
    assert shown.loc["one seed", "ours (%)"] == "50.00"
    lines = crosscheck.markdown(crosscheck.table(report)).splitlines()
    assert len(lines) == 2 + 3 and lines[2].startswith("| A | 82.00 ± 1.15 | 72.50 ± 2.50 | +9.50 |")


def test_findings_say_agree_or_differ(report):
    frame = crosscheck.table(report)
    lines = crosscheck.findings_markdown(frame).splitlines()
    assert len(lines) == 3
    p = frame.loc[0, "p"]
    assert f"p = {p:.2g}" in lines[0] and "+9.50 points" in lines[0]
    assert ("no difference" in lines[0]) == (p >= 0.05) and ("differ beyond" in lines[0]) == (p < 0.05)
    assert "differ beyond" in crosscheck.findings_markdown(frame, alpha=1.0).splitlines()[0]
    assert "no difference" in crosscheck.findings_markdown(frame, alpha=0.0).splitlines()[0]
    assert "not stored" in lines[1] and "too few seeds" in lines[2]


def test_training_seconds_adds_every_run(report):
    assert crosscheck.training_seconds(report) == 0.0
    report["implementations"]["us"]["a"]["0"]["wall_seconds"] = 2.5
    report["implementations"]["them"]["b"]["1"]["wall_seconds"] = 4.0
    assert crosscheck.training_seconds(report) == pytest.approx(6.5)


def test_table_reads_a_path(report, tmp_path):
    path = tmp_path / "crosscheck.json"
    path.write_text(json.dumps(report))
    assert crosscheck.table(path).equals(crosscheck.table(report))


def test_unknown_measure_fails(report):
    report["comparisons"][0]["peer"]["measure"] = "final/nope"
    with pytest.raises(KeyError):
        crosscheck.table(report)


def test_stored_crosscheck_has_every_row_with_three_seeds():
    report = crosscheck.load(STORED)
    assert report["scale"]["tasks"] == 10 and report["scale"]["train_examples_per_task"] == 2000
    assert report["seeds"] == [0, 1, 2]
    assert not report.get("failures")
    rows = [(c["method"], c["ours"]["implementation"], c["ours"]["run"], c["peer"]["implementation"],
             c["peer"]["measure"]) for c in report["comparisons"]]
    assert rows == list(EXPECTED_ROWS)
    frame = crosscheck.table(report)
    assert len(frame) == len(EXPECTED_ROWS)
    assert (frame["ours_seeds"] == 3).all() and (frame["peer_seeds"] == 3).all()
    for column in ("ours_mean", "peer_mean", "ours_sem", "peer_sem", "p"):
        assert np.isfinite(frame[column]).all(), column
    assert frame["ours_mean"].between(10, 100).all() and frame["peer_mean"].between(10, 100).all()


def test_negative_differences_are_shown_with_the_minus_sign(report):
    frame = crosscheck.table(report)
    frame.loc[0, "difference"] = -1.25
    assert crosscheck.cells(frame).loc[0, "difference (points)"] == "−1.25"
    assert "(−1.25 points" in crosscheck.findings_markdown(frame).splitlines()[0]
