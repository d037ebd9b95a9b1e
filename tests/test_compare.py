"""``python -m lib compare``: two results folders compared run by run."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lib import compare
from lib.cache import STORED_RESULTS, TIMINGS


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
    _store(other, "energy", "f", {"energy": 1.0}, {"w0": np.arange(4.0) + [0, 0, 0.5, 0.25]})  # same result, other weights
    (reference / "benchmarks").mkdir()
    energy, lifelong = compare.compare_results(reference, other)
    assert energy == compare.Agreement("energy", compared=2, identical=1, largest_difference=0.5, missing=0,
                                       place="state/w0/2", reference_value=2.0, other_value=2.5)
    assert energy.relative_difference is None  # a signed weight has no true zero to compare with
    assert (lifelong.compared, lifelong.identical, lifelong.missing) == (2, 1, 1)
    assert lifelong.largest_difference == pytest.approx(0.01)
    assert (lifelong.place, lifelong.reference_value, lifelong.other_value) == ("accuracy/1/1", 0.95, 0.96)
    assert lifelong.quantity.unit == "fraction"
    assert lifelong.relative_difference == pytest.approx(0.01 / 0.95)
    _store(other, "lifelong", "c", {**run, "accuracy": [[0.9, 0.5]]})  # another structure: no number to compare
    structure = compare.compare_results(reference, other)[1]
    assert (structure.largest_difference, structure.place, structure.reference_value) == (float("inf"), "accuracy/1/0", None)
    assert structure.relative_difference is None
    table = compare.describe_agreement(compare.compare_results(reference, reference))
    assert "| lifelong | 0 | 0 | 3 | 0 |" in table  # a folder against itself: every trained run is a copy
    assert "| energy | 2 | 2 | 0 | 0 |" in table  # (a result without a training time is compared)
    assert "differs most" not in table  # no second table when every run is identical
    with pytest.raises(FileNotFoundError):
        compare.compare_results(tmp_path / "nowhere", other)
    with pytest.raises(FileNotFoundError):
        compare.compare_results(reference, tmp_path / "nowhere")


def test_a_run_copied_into_the_other_folder_is_counted_apart_from_the_runs_trained_again(tmp_path):
    reference, other = tmp_path / "stored", tmp_path / "again"
    run = {"average": 0.875, "seconds": 12.0}
    for root in (reference, other):
        _store(root, "lifelong", "copied", run)
        _store(root, "analysis", "computed twice", {"mean_p": 0.5})  # no training time: compared
    _store(reference, "lifelong", "trained twice", run)
    _store(other, "lifelong", "trained twice", {**run, "seconds": 12.5})
    analysis, lifelong = compare.compare_results(reference, other)
    assert (lifelong.compared, lifelong.identical, lifelong.copies, lifelong.missing) == (1, 1, 1, 0)
    assert (analysis.compared, analysis.identical, analysis.copies) == (1, 1, 0)
    assert "| lifelong | 1 | 1 | 1 | 0 |" in compare.describe_agreement([analysis, lifelong])


def test_a_nan_stored_in_both_folders_is_no_difference_and_a_nan_on_one_side_is(tmp_path):
    reference, other = tmp_path / "stored", tmp_path / "again"
    nan = float("nan")
    for root in (reference, other):
        _store(root, "analysis", "a", {"mean_w": {"important": nan, "other": 0.1}}, {"p0": np.array([nan, 0.5])})
    _store(reference, "analysis", "b", {"mean_w": {"important": nan, "other": 0.1}})
    _store(other, "analysis", "b", {"mean_w": {"important": 0.3, "other": 0.1}})
    _store(reference, "analysis", "c", {"accuracy": 0.9}, {"p0": np.array([0.25, 0.5])})
    _store(other, "analysis", "c", {"accuracy": 0.9}, {"p0": np.array([0.25, nan])})
    [agreement] = compare.compare_results(reference, other)
    assert (agreement.compared, agreement.identical) == (3, 1)
    assert agreement.largest_difference == float("inf")
    assert agreement.place in ("mean_w/important", "state/p0/1")
    assert agreement.reference_value is None and agreement.relative_difference is None


def test_a_stored_state_with_other_arrays_differs_by_an_infinite_amount(tmp_path):
    reference, other = tmp_path / "stored", tmp_path / "again"
    _store(reference, "energy", "e", {"energy": 1.0}, {"w0": np.zeros(3)})
    _store(other, "energy", "e", {"energy": 1.0}, {"w0": np.zeros(4)})
    [agreement] = compare.compare_results(reference, other)
    assert (agreement.identical, agreement.largest_difference, agreement.place) == (0, float("inf"), "state/w0")
    _store(other, "energy", "e", {"energy": 1.0}, {"w0": np.zeros(3), "p0": np.ones(3)})
    assert compare.compare_results(reference, other)[0].place == "state"


@pytest.mark.parametrize("place, unit, ratio_scale", [
    ("energy", "a.u.", True),
    ("mutual_information", "bits", True),
    ("train_loss/79", "nats", True),
    ("accuracy/3/4", "fraction", True),
    ("neurons/0/inputs/150", "synapses", True),
    ("neurons/1/n_high", "neurons", True),
    ("fisher/model/spearman", "Spearman ρ", False),
    ("lesion/magnitude_x_p/2", "fraction", True),
    ("state/w1/3/17", "a.u.", False),
    ("state/p2/0/0", "probability", True),
])
def test_every_number_has_its_unit(place, unit, ratio_scale):
    q = compare.quantity(place)
    assert (q.unit, q.ratio_scale) == (unit, ratio_scale)
    assert compare.quantity("/" + place) == q
    assert compare.quantity("something/new") is compare.UNLISTED


@pytest.mark.parametrize("place, final", [
    ("average", True), ("accuracy", True), ("accuracy/2/0", False), ("lesion/p/4", False),
    ("presynaptic/0/1/2", False), ("energy", False), ("mean_p/3", False),
])
def test_a_final_accuracy_is_a_test_accuracy_stored_as_one_number(place, final):
    assert compare.is_final_accuracy(place) is final


def test_the_labels_and_units_fit_in_a_markdown_table():
    assert not [q for _, q in compare.QUANTITIES + (("", compare.UNLISTED),) if "|" in q.label + q.unit]


def test_every_number_of_the_stored_runs_is_listed_with_its_unit():
    unlisted = set()
    for path in STORED_RESULTS.glob("*/*.json"):
        if path.parent.name != TIMINGS:
            for place, _ in compare._numbers(json.loads(path.read_text())["result"]):
                if compare.quantity(place) is compare.UNLISTED:
                    unlisted.add(f"{path.parent.name}: {re.sub(r'/[0-9]+', '/#', place)}")
    assert not unlisted, "add to lib.compare.QUANTITIES: " + ", ".join(sorted(unlisted))


def test_the_table_gives_the_number_that_differs_most_with_its_unit_and_relative_difference():
    agreements = [
        compare.Agreement("analysis", 3, 0, 459.0, 0, "neurons/0/inputs/150", 779.0, 320.0),
        compare.Agreement("energy", 45, 0, 0.5, 15, "state/w1/3/17", 2.0, 2.5),
        compare.Agreement("lifelong", 2, 1, float("inf"), 0, "accuracy/1/0"),
        compare.Agreement("perceptron", 5, 5, 0.0, 0),
    ]
    counts, differences = compare.describe_agreement(agreements).split("\n\n")
    assert "| perceptron | 5 | 5 | 0 | 0 |" in counts and "| energy | 45 | 0 | 0 | 15 |" in counts
    rows = differences.splitlines()
    assert rows[0] == "| experiment | number that differs most (unit) | reference → compared | difference (relative) |"
    assert rows[2] == ("| analysis | important incoming synapses of a neuron, `neurons/0/inputs/150` (synapses) "
                       "| 779 → 320 | −459 (−59\u00a0%) |")
    assert rows[3].endswith(" (a.u.) | 2 → 2.5 | +0.5 |")  # no relative difference of a signed weight
    assert rows[4].endswith(" (fraction) | — | structure or a non-numeric entry differs |")
    assert len(rows) == 5  # no row for an experiment whose runs are all identical


def test_the_test_accuracy_that_differs_most_gets_its_own_row_where_another_number_differs_more(tmp_path):
    reference, other = tmp_path / "stored", tmp_path / "again"
    run = {"accuracy": [[0.9, 0.5], [0.8, 0.95]], "average": 0.875, "train_loss": [2.0, 1.0]}
    for key, changed in (("a", {"train_loss": [2.0, 40.0], "average": 0.88}),  # a diverging loss, a small change
                         ("b", {"average": 0.8, "accuracy": [[0.9, 0.5], [0.7, 0.95]]}),  # the larger one
                         ("c", {"accuracy": [[0.9, 0.5], [0.1, 0.95]]}),  # an entry of the matrix: not final
                         ("d", {})):
        _store(reference, "lifelong", key, run)
        _store(other, "lifelong", key, {**run, **changed})
    _store(reference, "energy", "e", {"energy": 1.0, "accuracy": 0.5})
    _store(other, "energy", "e", {"energy": 2.0, "accuracy": 0.5})  # no test accuracy differs
    energy, lifelong = compare.compare_results(reference, other)
    assert (lifelong.identical, lifelong.place, lifelong.largest_difference) == (1, "train_loss/1", 39.0)
    assert (lifelong.accuracy_place, lifelong.accuracy_reference, lifelong.accuracy_other) == ("average", 0.875, 0.8)
    assert lifelong.accuracy_difference == pytest.approx(0.075)
    assert energy.accuracy_place is None and energy.accuracy_difference is None
    rows = compare.describe_agreement([energy, lifelong]).split("\n\n")[1].splitlines()[2:]
    assert rows[0].startswith("| energy | synaptic energy") and rows[1].startswith("| lifelong | training loss")
    assert rows[2] == ("| lifelong | of the final test accuracies: average test accuracy after the last task, "
                       "`average` (fraction) | 0.875 → 0.8 | −0.075 (−8.6\u00a0%) |")
    assert len(rows) == 3
    saved = tmp_path / "agreement.json"
    compare.save_agreement(saved, [lifelong])
    assert compare.load_agreement(saved) == [lifelong]


def test_a_table_saved_before_the_place_was_recorded_loads_and_says_so(tmp_path):
    saved = tmp_path / "agreement.json"
    saved.write_text(json.dumps([{"experiment": "energy", "compared": 45, "identical": 0,
                                  "largest_difference": 29.89599609375, "missing": 15}]))
    [agreement] = compare.load_agreement(saved)
    assert agreement.place is None and agreement.quantity is None and agreement.relative_difference is None
    assert "| energy | not recorded | — | 29.9 (absolute) |" in compare.describe_agreement([agreement])


def test_the_compare_command_prints_the_table_and_rejects_a_missing_folder(tmp_path, capsys):
    from lib.__main__ import main

    _store(tmp_path / "stored", "lifelong", "a", {"average": 0.5})
    _store(tmp_path / "again", "lifelong", "a", {"average": 0.5})
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "stored")]) == 0
    assert "| lifelong | 1 | 1 | 0 |" in capsys.readouterr().out
    saved = tmp_path / "agreement.json"
    _store(tmp_path / "again", "lifelong", "a", {"average": 0.6})
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "stored"), "--save", str(saved)]) == 0
    assert compare.load_agreement(saved) == [compare.Agreement("lifelong", 1, 0, pytest.approx(0.1), 0, "average", 0.5, 0.6,
                                                               pytest.approx(0.1), "average", 0.5, 0.6)]
    assert "| lifelong | average test accuracy after the last task, `average` (fraction) | 0.5 → 0.6 | +0.1 (+20\u00a0%) |" \
        in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "nowhere"), "--reference", str(tmp_path / "stored")]) == 1
    assert main(["compare", str(tmp_path / "again"), "--reference", str(tmp_path / "nowhere")]) == 1
    assert "no results folder" in capsys.readouterr().err


def _lifelong_run(root: Path, key: str, method: str, seed: int, machine: str, average: float, seconds: float) -> None:
    (root / "lifelong").mkdir(parents=True, exist_ok=True)
    config = {"method": method, "protocol": {"benchmark": "perm_mnist"}, "run": {"seed": seed}}
    (root / "lifelong" / f"{key}.json").write_text(
        json.dumps({"config": config, "machine": machine, "result": {"average": average, "seconds": seconds}}))


def test_runs_stored_in_two_folders_are_paired_and_tabled_per_method(tmp_path):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    for seed, (a, b) in enumerate([(0.80, 0.82), (0.81, 0.83), (0.79, 0.84)]):
        _lifelong_run(cpu, f"bgd{seed}", "bgd", seed, "CPU", a, 1500.0)
        _lifelong_run(gpu, f"bgd{seed}", "bgd", seed, "GPU", b, 50.0)
    _lifelong_run(cpu, "presyn0", "presynaptic", 0, "CPU", 0.86, 900.0)
    _lifelong_run(gpu, "presyn0", "presynaptic", 0, "GPU", 0.87, 30.0)
    _lifelong_run(gpu, "only-here", "presynaptic", 1, "GPU", 0.5, 30.0)  # no twin in the reference: left out
    pairs = compare.lifelong_pairs(cpu, gpu)
    assert [(p.method, p.seed) for p in pairs] == [("bgd", 0), ("bgd", 1), ("bgd", 2), ("presynaptic", 0)]
    assert pairs[0].machines == ("CPU", "GPU") and pairs[0].averages == pytest.approx((80.0, 82.0))
    table = compare.pairs_markdown(pairs).splitlines()
    bgd = next(line for line in table if "| BGD (3) |" in line)
    assert "| BGD (3) | 80.00 ± 0.58 | 83.00 ± 0.58 | +3.00 (p = " in bgd and bgd.endswith(") | 30× |")
    p = float(bgd.split("p = ")[1].split(")")[0])
    assert 0.01 < p < 0.05  # t = 3.67 with 4 degrees of freedom
    presynaptic = next(line for line in table if "| presynaptic (1) |" in line)
    assert presynaptic.endswith("| +1.00 | 30× |")  # one seed: no test
    assert compare.pairs_markdown([]) == "No run is stored in both folders."
