"""Results cache and the energy experiment: stored once, reused, resumed, never half written."""
import json

import pytest

from lib import experiments
from lib.data import is_complete
from lib.experiments import EnergyProtocol, cache_path, energy_run, load_cached, run_energy, store

needs_mnist = pytest.mark.skipif(not is_complete("mnist"), reason="MNIST not fetched")
TINY = EnergyProtocol(epochs=1, subset=300, eval_samples=2)


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(experiments.ENV_VAR, str(tmp_path))


def test_cache_key_depends_on_every_setting():
    a = {"run": {"seed": 0, "lr": 0.05}}
    assert cache_path("x", a) == cache_path("x", {"run": {"lr": 0.05, "seed": 0}})
    assert cache_path("x", a) != cache_path("x", {"run": {"seed": 1, "lr": 0.05}})


def test_store_and_load_round_trip_and_reject_other_configs():
    config = {"run": {"seed": 0, "sizes": (1, 2)}}
    path = store("x", config, {"accuracy": 0.5})
    assert load_cached("x", config) == {"accuracy": 0.5}
    stored = json.loads(path.read_text())
    stored["config"]["run"]["seed"] = 9  # a file whose content does not match its name is not used
    path.write_text(json.dumps(stored))
    assert load_cached("x", config) is None


def test_energy_run_rejects_bad_input():
    with pytest.raises(ValueError, match="valid models"):
        energy_run("stochastic", 0.0, 0)
    with pytest.raises(ValueError, match="weight decay"):
        energy_run("presynaptic", -0.1, 0)
    assert energy_run("fixed", 0.01, 2, fixed_p=0.3).p_init == 0.3


@needs_mnist
def test_sweep_trains_only_missing_runs_and_resumes(monkeypatch):
    runs = [energy_run("presynaptic", 0.0, 0), energy_run("deterministic", 0.01, 1)]
    first = run_energy(runs[:1], TINY, progress=False)
    trained = []
    real_fit = experiments.fit
    monkeypatch.setattr(experiments, "fit", lambda net, *a, **k: trained.append(net.n_runs) or real_fit(net, *a, **k))
    both = run_energy(runs, TINY, progress=False)
    assert trained == [1]  # the stored run was reused, only the new one trained
    assert both[0] == first[0] and 0 < both[1]["accuracy"] <= 1 and both[1]["mean_p"] == 1.0
    assert run_energy(runs, TINY, progress=False) == both and trained == [1]
    assert experiments.load_state(runs[0], TINY)["probs"][0].shape == (200, 784)
    assert experiments.load_state(runs[1], TINY) is None  # deterministic: nothing to analyse


@needs_mnist
def test_uncached_runs_store_nothing(tmp_path):
    run_energy([energy_run("presynaptic", 0.0, 0)], TINY, progress=False, cache=False)
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
    run = energy_run("presynaptic", 0.0, 0)
    first = experiments.analyse_energy_run(run, TINY, n_samples=2)  # trains the run on the way
    assert sum(first["p_histogram"]) == pytest.approx(1.0)
    assert set(first["lesion"]) == {"p", "random", "magnitude", "magnitude_x_p", "fisher_true", "fisher_model"}
    assert all(len(v) == len(experiments.LESION_FRACTIONS) for v in first["lesion"].values())
    assert len({v[0] for v in first["lesion"].values()}) == 1  # nothing removed: the same network everywhere
    assert [len(n["inputs"]) for n in first["neurons"]] == [200, 200]
    assert -1 <= first["fisher"]["true"]["spearman"] <= 1
    monkeypatch.setattr(experiments, "load_state", lambda *a: pytest.fail("the cached analysis was recomputed"))
    assert experiments.analyse_energy_run(run, TINY, n_samples=2) == json.loads(json.dumps(first))
