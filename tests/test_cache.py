"""The results cache: keys, atomic round trips, and every stored run found under its configuration."""
import json

import numpy as np
import pytest

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
