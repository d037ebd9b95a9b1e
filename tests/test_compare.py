"""``python -m lib compare``: two results folders compared run by run."""
import json
from pathlib import Path

import numpy as np
import pytest

from lib import compare


def _store(root: Path, experiment: str, key: str, result: dict, state: dict | None = None) -> None:
    (root / experiment).mkdir(parents=True, exist_ok=True)
    (root / experiment / f"{key}.json").write_text(json.dumps({"config": {}, "result": result}))
    if state is not None:
        np.savez(root / experiment / f"{key}.npz", **state)


def test_compare_results_counts_identical_runs_and_the_largest_difference(tmp_path):
    reference, other = tmp_path / "stored", tmp_path / "again"
    run = {"accuracy": [[0.9, 0.5], [0.8, 0.95]], "average": 0.875, "seconds": 12.0}
    for root, seconds in ((reference, 12.0), (other, 99.0)):  # training times may differ
        _store(root, "lifelong", "a", {**run, "seconds": seconds})
        _store(root, "energy", "e", {"energy": 1.0}, {"w0": np.arange(4.0)})
    _store(reference, "lifelong", "b", run)
    _store(other, "lifelong", "b", {**run, "accuracy": [[0.9, 0.5], [0.8, 0.96]]})
    _store(reference, "lifelong", "c", run)  # not in the second folder
    _store(reference, "energy", "f", {"energy": 1.0}, {"w0": np.arange(4.0)})
    _store(other, "energy", "f", {"energy": 1.0}, {"w0": np.arange(4.0) + 0.5})  # same result, other weights
    (reference / "benchmarks").mkdir()
    energy, lifelong = compare.compare_results(reference, other)
    assert energy == compare.Agreement("energy", compared=2, identical=1, largest_difference=0.5, missing=0)
    assert (lifelong.compared, lifelong.identical, lifelong.missing) == (2, 1, 1)
    assert lifelong.largest_difference == pytest.approx(0.01)
    _store(other, "lifelong", "c", {**run, "accuracy": [[0.9, 0.5]]})  # another structure: no number to compare
    assert compare.compare_results(reference, other)[1].largest_difference == float("inf")
    table = compare.describe_agreement(compare.compare_results(reference, reference))
    assert "| lifelong | 3 | 3 | 0 | 0 |" in table
    with pytest.raises(FileNotFoundError):
        compare.compare_results(tmp_path / "nowhere", other)
    with pytest.raises(FileNotFoundError):
        compare.compare_results(reference, tmp_path / "nowhere")


def test_the_compare_command_prints_the_table_and_rejects_a_missing_folder(tmp_path, capsys):
    from lib.__main__ import main

    _store(tmp_path / "stored", "lifelong", "a", {"average": 0.5})
    _store(tmp_path / "again", "lifelong", "a", {"average": 0.5})
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "stored")]) == 0
    assert "| lifelong | 1 | 1 | 0 | 0 |" in capsys.readouterr().out
    saved = tmp_path / "agreement.json"
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "stored"), "--save", str(saved)]) == 0
    assert compare.load_agreement(saved) == [compare.Agreement("lifelong", 1, 1, 0.0, 0)]
    assert main(["compare", str(tmp_path / "nowhere"), "--reference", str(tmp_path / "stored")]) == 1
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "nowhere")]) == 1
    assert "no results folder" in capsys.readouterr().err
