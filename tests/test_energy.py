"""The energy experiment (Fig. 1) and the analyses of its networks (chapters 3 and 4): stored once, reused, resumed."""
import json

import numpy as np

import pytest

from lib import analysis, cache, energy, energy_analysis
from lib.data import is_complete
from lib.energy import EnergyProtocol, energy_config, run_energy

needs_mnist = pytest.mark.skipif(not is_complete("mnist"), reason="MNIST not fetched")
TINY = EnergyProtocol(epochs=1, subset=300, eval_samples=2)


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))


def test_energy_run_rejects_bad_input():
    with pytest.raises(ValueError, match="valid models"):
        energy_config("stochastic", 0.0, 0)
    with pytest.raises(ValueError, match="weight decay"):
        energy_config("presynaptic", -0.1, 0)
    assert energy_config("fixed", 0.01, 2, fixed_p=0.3).p_init == 0.3


@needs_mnist
def test_sweep_trains_only_missing_runs_and_resumes(monkeypatch):
    runs = [energy_config("presynaptic", 0.0, 0), energy_config("deterministic", 0.01, 1)]
    first = run_energy(runs[:1], TINY, progress=False)
    trained = []
    real_fit = energy.fit
    monkeypatch.setattr(energy, "fit", lambda net, *a, **k: trained.append(net.n_runs) or real_fit(net, *a, **k))
    both = run_energy(runs, TINY, progress=False)
    assert trained == [1]  # the stored run was reused, only the new one trained
    assert both[0] == first[0] and 0 < both[1]["accuracy"] <= 1 and both[1]["mean_p"] == 1.0
    assert run_energy(runs, TINY, progress=False) == both and trained == [1]
    assert energy.load_state(runs[0], TINY).probs[0].shape == (200, 784)
    assert energy.load_state(runs[1], TINY) is None  # deterministic: nothing to analyse


@needs_mnist
def test_uncached_runs_store_nothing(tmp_path):
    run_energy([energy_config("presynaptic", 0.0, 0)], TINY, progress=False, cache=False)
    assert not any(tmp_path.rglob("*.json"))


@needs_mnist
def test_energy_command_line(tmp_path, capsys):
    from lib.__main__ import main

    out = tmp_path / "energy.json"
    args = ["energy", "--model", "fixed", "--fixed-p", "0.5", "--weight-decay", "0", "0.01", "--seeds", "3",
            "--epochs", "1", "--subset", "300", "--json", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())["runs"]
    assert [(r["model"], r["weight_decay"], r["seed"], r["p"]) for r in rows] == [("fixed", 0.0, 3, 0.5), ("fixed", 0.01, 3, 0.5)]
    assert all({"accuracy", "mutual_information", "energy", "mean_p"} <= r.keys() for r in rows)


@pytest.mark.parametrize("bad", [["--model", "bayesian"], ["--model", "fixed", "--epochs", "-2"], ["--model", "fixed", "--weight-decay", "-1"]])
def test_energy_command_line_rejects_bad_input(tmp_path, bad, capsys):
    from lib.__main__ import main

    with pytest.raises(SystemExit):
        main(["energy", *bad, "--json", str(tmp_path / "x.json")])
    assert "error" in capsys.readouterr().err


@needs_mnist
def test_analysis_of_a_run_is_complete_and_cached(monkeypatch):
    run = energy_config("presynaptic", 0.0, 0)
    first = energy_analysis.analyse_energy_run(run, TINY, n_samples=2)  # trains the run on the way
    assert sum(first["p_histogram"]) == pytest.approx(1.0)
    assert set(first["lesion"]) == {"p", "random", "magnitude", "magnitude_x_p", "fisher_true", "fisher_model"}
    assert all(len(v) == len(analysis.LESION_FRACTIONS) for v in first["lesion"].values())
    assert len({v[0] for v in first["lesion"].values()}) == 1  # nothing removed: the same network everywhere
    assert [len(n["inputs"]) for n in first["neurons"]] == [200, 200]
    assert -1 <= first["fisher"]["true"]["spearman"] <= 1
    monkeypatch.setattr(energy_analysis, "load_state", lambda *a: pytest.fail("the cached analysis was recomputed"))
    assert energy_analysis.analyse_energy_run(run, TINY, n_samples=2) == json.loads(json.dumps(first))


def test_sweep_arrays_and_best_information_per_energy():
    # two weight decays x three seeds, lambda-major as energy_sweep returns them
    results = [{"accuracy": 0.9, "mutual_information": mi, "energy": e, "activity": 2 * e, "mean_p": 0.3}
               for mi, e in [(2.0, 100.0), (2.1, 100.0), (2.2, 110.0), (1.5, 50.0), (1.0, 50.0), (1.8, 90.0)]]
    arrays = energy.sweep_arrays(results, 2)
    assert set(arrays) == set(energy.SWEEP_METRICS) and arrays["energy"].shape == (2, 3)
    assert arrays["mutual_information"][1].tolist() == [1.5, 1.0, 1.8]
    best = energy.best_information_per_energy(arrays)
    assert best.tolist() == pytest.approx([0.03, 0.021, 0.02])  # seed 0 best at the second lambda, seed 1 at the first
    assert energy.best_information_per_energy(arrays, "activity") == pytest.approx(best / 2)
    assert energy.matched_release([0.0, 0.1], results) == {0.0: 0.3, 0.1: 0.3}


def test_model_sweeps_check_fixed_p_and_leave_the_matched_fixed_runs_until_the_presynaptic_ones_exist():
    for bad in (0.0, 1.5, "0.4", "mean"):
        with pytest.raises(ValueError, match="fixed_p must be"):
            energy.model_sweeps([0.0], [0], TINY, bad, train=False)
    runs = energy.model_sweeps([0.0, 0.01], [0, 1], TINY, train=False)  # nothing stored, nothing trained
    assert list(runs) == ["presynaptic", "fixed", "deterministic"] and all(rs == [None] * 4 for rs in runs.values())


@needs_mnist
def test_model_sweeps_train_the_fixed_model_at_the_presynaptic_models_mean_p():
    runs = energy.model_sweeps([0.0], [0], TINY, progress=False)
    matched = energy.matched_release([0.0], runs["presynaptic"])
    assert runs["fixed"] == energy.energy_sweep("fixed", [0.0], [0], TINY, matched, train=False)
    assert runs["fixed"] != energy.energy_sweep("fixed", [0.0], [0], TINY, {0.0: 0.4}, train=False)  # not stored: None


def test_the_efficiency_ranking_and_the_tests_against_the_presynaptic_model():
    best = {"presynaptic": np.array([3.0, 3.2, 2.9]), "fixed": np.array([1.0, 1.1, 0.9]), "deterministic": np.array([3.5, 3.6, 3.4])}
    assert energy.efficiency_ranking(best) == ("deterministic", "presynaptic", "fixed")
    rows = {row["model"]: row for row in energy.presynaptic_against_others(best)}
    assert set(rows) == {"fixed", "deterministic"}
    assert rows["fixed"]["ratio"] == pytest.approx(9.1 / 3 / 1.0) and rows["fixed"]["t"] > 0 and rows["fixed"]["p"] < 0.01
    assert rows["deterministic"]["t"] < 0 and rows["deterministic"]["p"] < 0.05
    one_seed = energy.presynaptic_against_others({"presynaptic": np.array([2.0]), "fixed": np.array([1.0])})
    assert one_seed[0]["ratio"] == 2.0 and np.isnan(one_seed[0]["t"]) and np.isnan(one_seed[0]["p"])
