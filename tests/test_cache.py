"""The results cache: keys, atomic round trips, and every stored run found under its configuration."""
import json

import numpy as np
import pytest

import lib
from lib import cache
from lib.cache import STORED_RESULTS, cache_path, config_key, load_arrays, load_cached, store, store_arrays


@pytest.fixture
def results_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    return tmp_path


def test_cache_key_depends_on_every_setting(results_in_tmp):
    a = {"run": {"seed": 0, "lr": 0.05}}
    assert cache_path("x", a) == cache_path("x", {"run": {"lr": 0.05, "seed": 0}})
    assert cache_path("x", a) != cache_path("x", {"run": {"seed": 1, "lr": 0.05}})
    assert cache_path("x", a) == results_in_tmp / "x" / f"{config_key(a)}.json"


def test_store_and_load_round_trip_and_reject_other_configs(results_in_tmp):
    config = {"run": {"seed": 0, "sizes": (1, 2)}}
    path = store("x", config, {"accuracy": 0.5})
    assert load_cached("x", config) == {"accuracy": 0.5}
    stored = json.loads(path.read_text())
    assert stored["version"] and stored["machine"]
    stored["config"]["run"]["seed"] = 9  # a file whose content does not match its name is not used
    path.write_text(json.dumps(stored))
    assert load_cached("x", config) is None


def test_arrays_are_kept_beside_a_run(results_in_tmp):
    config = {"run": {"seed": 3}}
    assert load_arrays("x", config) is None
    path = store_arrays("x", config, {"w0": np.arange(6.0).reshape(2, 3), "p0": np.ones(2, np.float32)})
    assert path == cache_path("x", config).with_suffix(".npz")
    arrays = load_arrays("x", config)
    assert sorted(arrays) == ["p0", "w0"] and np.array_equal(arrays["w0"], np.arange(6.0).reshape(2, 3))
    assert arrays["p0"].dtype == np.float32


def test_a_run_under_another_name_is_found_misnamed(results_in_tmp):
    good, edited, renamed = ({"run": {"seed": s}} for s in (0, 1, 2))
    store("x", good, {"accuracy": 0.5})
    path = store("x", edited, {"accuracy": 0.6})
    payload = json.loads(path.read_text())
    payload["config"]["run"]["lr"] = 0.1  # its configuration changed, its name did not
    path.write_text(json.dumps(payload))
    moved = store("y", renamed, {"accuracy": 0.7})
    moved.rename(moved.with_name("0123456789abcdef.json"))
    (results_in_tmp / cache.TIMINGS).mkdir()
    (results_in_tmp / cache.TIMINGS / "throughput.json").write_text("{}")  # a timing record, not a run
    assert [experiment for experiment, _, _ in cache.stored_runs()] == ["x", "x", "y"]
    assert sorted(cache.misnamed_runs()) == sorted([path, moved.with_name("0123456789abcdef.json")])


def test_every_stored_run_loads_under_its_current_key(monkeypatch):
    # The key of a run is recomputed from the configuration in its file with this library version:
    # a change of config_key, of the version or of a stored file would leave the run unreachable.
    monkeypatch.setenv(cache.ENV_VAR, str(STORED_RESULTS))
    runs = list(cache.stored_runs())
    assert {experiment for experiment, _, _ in runs} >= {"energy", "lifelong", "analysis", "perceptron"}
    assert not cache.misnamed_runs(), "stored runs not named by their configuration's key"
    for experiment, path, payload in runs:
        assert cache_path(experiment, payload["config"]) == path
        assert load_cached(experiment, payload["config"]) == payload["result"], path


ENERGY_RUN = {"protocol": {"epochs": 2, "sizes": [4, 3]}, "run": {"seed": 1, "lr": 0.05}}
LIFELONG_RUN = {"protocol": {"benchmark": "split_mnist"}, "method": "sgd", "run": {"seed": 0}}


def store_two_runs(root):
    store("energy", ENERGY_RUN, {"accuracy": 0.9, "train_loss": [0.5, 0.25], "seconds": 3.0})
    store("lifelong", LIFELONG_RUN, {"average": 0.75, "accuracy": [[0.9, 0.1], [0.8, 0.7]], "mean_p": [1.0, 1.0],
                                     "fisher": {"true": {"spearman": 0.5, "histogram": [0.2, 0.8]}}})
    (root / cache.TIMINGS).mkdir()
    (root / cache.TIMINGS / "reproduce.json").write_text("{}")


def test_every_stored_run_becomes_one_flat_record(results_in_tmp):
    store_two_runs(results_in_tmp)
    first, second = cache.results_records()  # from $PRESYN_RESULTS, experiments in name order
    assert first == {"experiment": "energy", "key": config_key(ENERGY_RUN), "version": first["version"],
                     "machine": cache.machine(), "protocol.epochs": 2, "protocol.sizes": (4, 3), "run.lr": 0.05,
                     "run.seed": 1, "result.accuracy": 0.9, "result.seconds": 3.0, "result.train_loss[-1]": 0.25}
    assert second["method"] == "sgd" and second["result.average"] == 0.75 and second["result.mean_p[-1]"] == 1.0
    assert second["result.fisher.true.spearman"] == 0.5  # nested numbers stay, matrices and histograms do not
    assert not any("accuracy" in name or "histogram" in name for name in second)
    assert lib.results_frame is cache.results_frame  # imported on first use


def test_the_frame_has_a_row_per_stored_run(results_in_tmp):
    pd = pytest.importorskip("pandas")
    store_two_runs(results_in_tmp)
    frame = cache.results_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame["experiment"]) == ["energy", "lifelong"]
    assert frame.loc[1, "result.average"] == 0.75 and pd.isna(frame.loc[0, "result.average"])
