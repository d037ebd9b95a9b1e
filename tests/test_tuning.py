"""Chapter 5's tuning protocol: the searches' best settings, transferred, and the jobs that make them."""
import math

import pytest

from lib import continual, reproduce, tuning
from lib.cache import ENV_VAR
from lib.continual import LifelongProtocol, RunSpec, chapter_specs, run_specs
from lib.search import default_space, draw_trials, random_search, trial_specs
from tests.test_continual import PROTOCOL, rules  # noqa: F401  (the synthetic benchmark fixture)


def test_a_search_is_its_trials_and_the_methods_own_settings():
    search = tuning.Search(LifelongProtocol("perm_mnist"), "ewc", 5)
    assert search.specs == trial_specs(5, "ewc") and search.specs[-1] == RunSpec("ewc", 0)
    assert [spec.overrides for spec in search.specs[:-1]] == draw_trials(5, space=default_space("ewc"))
    assert tuning.tuning_search("bgd", LifelongProtocol("split_fmnist", epochs=2)).protocol == LifelongProtocol("perm_mnist", epochs=2)
    assert tuning.oracle_search("ewc", LifelongProtocol("perm_fmnist")) is None
    for bad, message in ((dict(method="sgd"), "no tuning of method 'sgd'"), (dict(method="ewc", n_trials=0), "positive integer")):
        with pytest.raises(ValueError, match=message):
            tuning.Search(LifelongProtocol("perm_mnist"), **bad)


def test_the_best_candidate_is_chosen_only_when_every_one_is_stored(rules, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    search = tuning.Search(PROTOCOL, "ewc", 3)
    assert search.best() is None and search.n_stored() == 0
    run_specs(PROTOCOL, search.specs[:2], benchmark=rules)
    assert search.best() is None and search.n_stored() == 2
    rows = random_search(PROTOCOL, 3, method="ewc", benchmark=rules)  # trains the rest
    averages = search.averages()
    assert search.n_stored() == 4 and sorted(averages, reverse=True) == [row["average"] for row in rows]
    best = search.best()
    winner = rows[0]
    if winner["own"] or winner["average"] <= averages[-1] + tuning.MIN_GAIN:
        assert best == ()
    else:
        assert best == search.specs[averages.index(max(averages))].overrides
        assert best == tuple((k, winner[k]) for k, _ in search.specs[0].overrides)


def test_a_drawn_trial_must_beat_the_methods_own_settings_by_the_margin(monkeypatch):
    search = tuning.Search(PROTOCOL, "presynaptic", 2)
    own = 0.7
    for drawn, chosen in (([0.5, 0.7], ()), ([0.7 + tuning.MIN_GAIN / 2, 0.5], ()),  # a tie; within the margin
                          ([0.7 + 2 * tuning.MIN_GAIN, 0.5], search.specs[0].overrides),
                          ([0.8, 0.8], search.specs[0].overrides),  # the first of equal trials
                          ([0.5, 0.8], search.specs[1].overrides)):
        monkeypatch.setattr(tuning.Search, "averages", lambda self, d=drawn: [*d, own])
        assert search.best() == chosen, drawn
    monkeypatch.setattr(tuning.Search, "averages", lambda self: [0.7, math.nan, 0.5])
    assert search.best() is None


def test_chapter_specs_add_the_tuned_and_oracle_runs_and_share_the_methods_own():
    chosen = (("lr", 0.002), ("ewc_mode", "online"))
    specs = chapter_specs("split_mnist", (0, 1), tuned={"ewc": chosen, "bgd": ()}, oracle={"ewc": ()})
    assert specs[("tuned", "ewc"), 1] == RunSpec("ewc", 1, chosen)
    assert specs[("tuned", "bgd"), 0] == specs["bgd", 0] and specs[("oracle", "ewc"), 1] == specs["ewc", 1]
    stored = continual.chapter_runs([PROTOCOL], (0,), ("ewc",), (), {"split": ()}, tuned={"ewc": chosen})
    assert stored.n_runs == 2 and set(stored.results["split_mnist"]) == {"ewc", ("ewc", 1000.0), ("tuned", "ewc")}
    assert "--batch-size 20 --set lr=0.002 --set ewc_mode=online --json" in stored.status_markdown()


def test_a_run_may_have_a_protocol_of_its_own(rules, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    larger = RunSpec("sgd", 0, (("batch_size", 40), ("lr", 0.01)))
    assert larger.protocol(PROTOCOL).batch_size == 40 and larger.config("split_mnist").lr == 0.01
    (result,) = run_specs(PROTOCOL, [larger], benchmark=rules)
    (same,) = run_specs(PROTOCOL.__class__(**{**PROTOCOL.__dict__, "batch_size": 40}), [RunSpec("sgd", 0, (("lr", 0.01),))],
                        train=False)
    assert same == result  # stored under the protocol it trained with


# ------------------------------------------------------------------------------ the jobs of make reproduce
def test_every_run_of_the_searches_is_trained_by_exactly_one_job_before_the_runs_that_need_it():
    jobs = reproduce.all_jobs()
    position = {job.name: k for k, job in enumerate(jobs)}
    runs = [run for job in jobs for run in job.runs]
    assert len(runs) == len(set(runs))
    trained = set(runs)
    protocol = LifelongProtocol(tuning.TUNING_BENCHMARK)
    for method in tuning.TUNED_METHODS:
        search = tuning.tuning_search(method, protocol)
        assert all((search.protocol, spec) in trained for spec in search.specs)
        for benchmark in reproduce.Scale().benchmarks:
            tuned = next(job for job in jobs if job.name == f"{benchmark} {method} tuned")
            needed = {name for name, job in ((j.name, j) for j in jobs)
                      if any((search.protocol, spec) in job.runs for spec in search.specs)}
            assert needed <= set(tuned.after) and f"{benchmark} {method}" in tuned.after
            oracle = tuning.oracle_search(method, LifelongProtocol(benchmark))
            has_oracle = any(job.name == f"{benchmark} {method} oracle" for job in jobs)
            assert has_oracle == (oracle is not None and benchmark != tuning.TUNING_BENCHMARK)
    for job in jobs:  # a job comes after every job it waits for
        assert all(position[name] < position[job.name] for name in job.after), job.name
    # the book's presynaptic search on Split MNIST holds the first trials of the oracle search there
    oracle = next(job for job in jobs if job.name == "split_mnist presynaptic oracle")
    assert "split_mnist random search" in oracle.after


def test_the_time_estimate_lets_a_job_wait_for_the_jobs_it_needs():
    job = lambda name, cost, after=(): reproduce.Job(name, cost, print, (), after=after)  # noqa: E731
    jobs = [job("a", 2.0), job("c", 1.0), job("b", 1.0, ("a",))]
    assert reproduce._makespan(jobs, 2) == 3.0  # b waits for a on the worker that ran c
    assert reproduce._makespan(jobs, 2, done={"a"}) == 1.0
    with pytest.raises(ValueError, match="waits for"):
        reproduce._makespan([job("b", 1.0, ("a",))], 1)


def test_a_selection_of_jobs_brings_the_jobs_they_need(capsys):
    jobs = reproduce.all_jobs()
    chosen = reproduce.selected(jobs, ["perm_fmnist ewc tuned"])
    names = [job.name for job in chosen]
    assert names[-1] == "perm_fmnist ewc tuned" and "perm_fmnist ewc" in names and "perm_mnist ewc" in names
    assert sum(name.startswith("perm_mnist ewc search") for name in names) == 3 and len(names) == 6
    assert [job.name for job in jobs if job.name in names] == names  # in the order of all jobs
    with pytest.raises(ValueError, match="no job's name contains 'bogus'"):
        reproduce.selected(jobs, ["ewc", "bogus"])
    from tests.test_cli import one_line_error
    assert "no job's name contains 'bogus'" in one_line_error(capsys, ["reproduce", "--only", "bogus", "--dry-run"])
    capsys.readouterr()
    from lib.__main__ import main
    assert main(["reproduce", "--only", "split_mnist ewc oracle", "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1].startswith("total: 3 jobs") and listed[1].split()[-3:] == ["ewc", "search", "1-16"]


def test_a_partial_call_leaves_the_record_open_for_the_rest(tmp_path, dask_workers):
    from tests.test_reproduce import _sleep, settings
    jobs = [reproduce.Job(f"sleep {k}", 1.0, _sleep, (0.1,)) for k in range(3)]
    part = reproduce.reproduce(jobs[:1], dask_workers, settings(tmp_path), whole=False)
    assert not part["finished"] and part["calls"] == 1
    rest = reproduce.reproduce(jobs, dask_workers, settings(tmp_path))
    assert rest["finished"] and rest["calls"] == 2 and set(rest["jobs"]) == {job.name for job in jobs}


def test_the_keys_of_the_chapter_have_names_for_the_page_and_for_the_check_output():
    assert continual.what_label("ewc") == "EWC" and continual.what_label(("tuned", "bgd")) == "BGD, tuned"
    assert continual.what_label(("oracle", "ewc")) == "EWC, tuned on this benchmark"
    assert continual.what_label(("ewc", 30.0)) == "EWC, $\\lambda$ = 30"
    assert [continual.what_name(w) for w in ("sgd", ("tuned", "ewc"), ("ewc", 10.0))] == ["sgd", "tuned:ewc", "ewc_lambda=10"]


def test_the_comparison_takes_the_tuned_runs_once_every_seed_is_stored():
    run = {"average": 0.5, "accuracy": [[0.5]]}
    stored = continual.ChapterRuns((0, 1), {"split_mnist": PROTOCOL},
                                   {"split_mnist": {"ewc": {0: run, 1: run}, ("tuned", "ewc"): {0: run},
                                                    "bgd": {0: run, 1: run}, ("tuned", "bgd"): {0: run, 1: run}}},
                                   {("split_mnist", "ewc", (("lr", 0.1),)): (1,)}, 8)
    assert stored.compared("split_mnist", "ewc") == "ewc" and stored.compared("split_mnist", "bgd") == ("tuned", "bgd")
    assert stored.compared("split_mnist", "presynaptic") == "presynaptic"


def test_the_spaces_and_the_searches_are_described_from_their_values(monkeypatch):
    text = tuning.spaces_markdown()
    assert all(default_space(m).describe() in text for m in tuning.TUNED_METHODS)
    assert "[1, 100000]" in text and "p_freeze = 0.9353" in text and "ewc_lambda = 10," in text
    searches = tuning.chapter_searches([LifelongProtocol("split_mnist"), LifelongProtocol("perm_fmnist")], 2)
    assert set(searches.tuning) == set(tuning.TUNED_METHODS) and set(searches.oracles) == {"split_mnist"}
    assert all(s.protocol.benchmark == "perm_mnist" for s in searches.tuning.values())
    values = {"presynaptic": [0.8, 0.9, 0.85], "ewc": [0.6, math.nan, 0.7], "bgd": [0.5, 0.6, 0.7]}
    monkeypatch.setattr(tuning.Search, "averages", lambda self: values[self.method])
    rows = searches.markdown().splitlines()
    assert rows[2].startswith("| presynaptic | 3 of 3 | 85.00 | 90.00 | p_up = ")
    assert rows[3] == "| EWC | 2 of 3 | 70.00 | 60.00 | not yet: the search is incomplete |"
    assert rows[4] == "| BGD | 3 of 3 | 70.00 | 60.00 | its own settings |"
    assert searches.tuned == {"presynaptic": searches.tuning["presynaptic"].specs[1].overrides, "bgd": ()}


def test_tuned_results_wait_for_the_whole_search_then_load_the_chosen_settings_for_every_seed(monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "run_specs", lambda protocol, specs, train=True: calls.append((protocol, specs, train)) or
                        [{"average": 0.5}] * len(specs))
    monkeypatch.setattr(tuning.Search, "best", lambda self: None)
    assert tuning.tuned_results("si", PROTOCOL, (0, 1)) is None and calls == []
    chosen = (("si_c", 3.0),)
    monkeypatch.setattr(tuning.Search, "best", lambda self: chosen)
    assert tuning.tuned_results("si", PROTOCOL, (0, 1), 4) == [{"average": 0.5}] * 2
    assert calls == [(PROTOCOL, [RunSpec("si", 0, chosen), RunSpec("si", 1, chosen)], False)]
    calls.clear()
    tuning.tuned_results("si", PROTOCOL, (0,), 4, train=True)  # trains the search's candidates first
    search = tuning.tuning_search("si", PROTOCOL, 4)
    assert calls[0] == (search.protocol, search.specs, True) and calls[1][1] == [RunSpec("si", 0, chosen)]
    with pytest.raises(ValueError, match="no tuning of method 'sgd'"):
        tuning.tuned_results("sgd", PROTOCOL, (0,))
