"""``make reproduce``: its jobs cover every run the chapters show, and the workers of a Dask cluster run them."""
import ast
import io
import json
import logging
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from lib import cache, continual, energy_analysis, reproduce, tuning
from lib.continual import LifelongProtocol, RunSpec, chapter_specs, run_specs
from lib.data import data_root

BOOK = Path(__file__).resolve().parent.parent / "book"


def parameters(chapter: str) -> dict:
    """The values of a chapter's ``parameters`` cell."""
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    tree = ast.parse(cell.source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def test_the_jobs_train_what_the_chapters_show_at_paper_scale():
    scale = reproduce.Scale()
    energy, sparsity, fisher, lifelong = (parameters(c) for c in ("02_energy", "03_sparsity", "04_fisher", "05_continual"))
    assert tuple(energy["weight_decays"]) == scale.weight_decays and tuple(energy["seeds"]) == scale.seeds
    assert energy["epochs"] == sparsity["epochs"] == fisher["epochs"] == scale.energy_epochs
    assert sparsity["weight_decay"] == fisher["weight_decay"] == energy_analysis.ANALYSED_WEIGHT_DECAY
    assert tuple(sparsity["initial_ps"]) == reproduce.ROBUSTNESS_P_INIT
    assert set(lifelong["benchmarks"]) == set(scale.benchmarks)
    assert tuple(lifelong["methods"]) == continual.MAIN_METHODS and tuple(lifelong["ablations"]) == continual.ABLATION_METHODS
    assert (lifelong["epochs"], tuple(lifelong["seeds"]), lifelong["subset"]) == (scale.epochs_per_task, scale.seeds, None)
    assert (lifelong["search_benchmark"], lifelong["search_trials"]) == (scale.search_benchmark, scale.search_trials)
    beyond = parameters("07_beyond")  # the energy experiment on each dataset at chapter 2's scale
    assert beyond["weight_decays"] == energy["weight_decays"] and beyond["seeds"] == energy["seeds"]
    assert beyond["epochs"] == scale.energy_epochs and beyond["subset"] is None
    names = {job.name for job in reproduce.all_jobs(scale)}
    assert {f"energy {b} deterministic" for b in beyond["benchmarks"] if b != "mnist"} <= names
    assert (set(beyond["lifelong_benchmarks"]), tuple(beyond["lifelong_seeds"])) == (set(scale.benchmarks), scale.seeds)
    assert (beyond["epochs_per_task"], beyond["tuning_trials"]) == (scale.epochs_per_task, scale.tuning_trials)
    assert {f"{b} si tuned" for b in beyond["lifelong_benchmarks"]} <= names
    assert scale.long_sequence_tasks == beyond["long_sequence_tasks"]
    long_jobs = [name for name in names if name.startswith(f"perm_mnist {scale.long_sequence_tasks} tasks ")]
    assert sorted(m for name in long_jobs for m in name.split()[3:]) == sorted(reproduce.LONG_SEQUENCE_METHODS)
    assert tuple(beyond["widths"]) == scale.widths
    assert {f"perm_mnist width {w}" for w in scale.widths if w != 200} <= names and "perm_mnist width 200" not in names
    assert {f"{b} {m}" for b in beyond["signal_benchmarks"] for m in continual.SIGNAL_METHODS} | {"energy importance signals"} <= names


def test_chapter_7s_predicted_time_counts_each_of_its_jobs_in_one_study():
    jobs = reproduce.all_jobs()
    studies = [[job.name for job in jobs if any(t in job.name for t in texts)] for texts in reproduce.BEYOND_PAPER_STUDIES.values()]
    in_studies = [name for names in studies for name in names]
    assert all(studies) and len(in_studies) == len(set(in_studies))
    beyond = {job.name for job in reproduce.beyond_jobs(reproduce.Scale(), reproduce.tuning_jobs(reproduce.Scale(), []))}
    assert beyond | {job.name for job in reproduce.energy_jobs(benchmark="fmnist")} <= set(in_studies)
    assert not any(name.startswith(("split_mnist presynaptic", "perm_mnist ewc", "perm_mnist bgd")) for name in in_studies)
    minutes = reproduce.beyond_paper_minutes()
    assert sum(minutes.values()) == pytest.approx(sum(job.cost for job in jobs if job.name in in_studies) * reproduce.MINUTES_PER_COST)


def test_chapter_7s_wall_time_lies_between_its_work_shared_out_and_done_by_one_worker():
    hours = sum(reproduce.beyond_paper_minutes().values()) / 60
    assert reproduce.beyond_paper_wall_hours(workers=1) == pytest.approx(hours)
    assert hours / 2 <= reproduce.beyond_paper_wall_hours(workers=2) < 0.6 * hours


def test_every_chapter_run_is_in_exactly_one_job():
    jobs = [job for job in reproduce.lifelong_jobs() if not job.name.endswith("random search")]
    in_jobs = [(job.args[0].benchmark, spec) for job in jobs for spec in job.args[1]]
    assert len(in_jobs) == len(set(in_jobs))
    wanted = {(b, spec) for b in continual.LIFELONG_BENCHMARKS for spec in chapter_specs(b, (0, 1, 2)).values()}
    assert set(in_jobs) == wanted
    jobs = reproduce.all_jobs()
    costs = [job.cost for job in jobs]  # longest first among those that wait for none (the order with waits: test_tuning)
    assert costs[0] == max(job.cost for job in jobs if not job.after) and costs[0] > 10 * costs[-1]


def test_a_job_that_reads_a_search_waits_for_every_job_that_trains_one_of_its_trials():
    jobs = reproduce.all_jobs()
    claimed = {run: job.name for job in jobs for run in job.runs}
    compared = [job for job in jobs if job.function is reproduce._train_compared]
    assert {job.name for job in compared} >= {"perm_mnist width 100", "perm_mnist 30 tasks sgd ewc si"}
    for job in compared:
        methods, protocol, _, trials = job.args
        for method in filter(tuning.compared_tuned, methods):
            search = tuning.tuning_search(method, protocol, trials)
            trained_by = {claimed[(search.protocol, spec)] for spec in search.specs}  # every trial has its job
            assert trained_by <= set(job.after), (job.name, trained_by - set(job.after))
    # the own settings' first seed is a trial of EWC's search: its job is waited for too
    assert "perm_mnist ewc" in next(job for job in jobs if job.name == "perm_mnist width 100").after


def test_chapter_specs_merge_the_default_ewc_strength_into_the_grid():
    specs = chapter_specs("perm_mnist", (0, 1))
    assert specs[("ewc", continual.EWC_LAMBDA["perm"]), 1] == specs["ewc", 1] == RunSpec("ewc", 1)
    assert specs[("ewc", 1.0), 0] == RunSpec("ewc", 0, (("ewc_lambda", 1.0),))
    assert ("ghost", 0) in specs and ("ghost", 0) not in chapter_specs("perm_fmnist", (0,))
    unique = set(specs.values())
    assert len(unique) == 2 * (len(continual.MAIN_METHODS) + len(continual.ABLATION_METHODS) + len(continual.EWC_GRID["perm"]) - 1)


def _sleep(seconds: float, log: Path | None = None) -> None:
    start = time.time()
    time.sleep(seconds)
    if log is not None:
        log.write_text(f"{start} {time.time()}")


def _fail() -> None:
    raise RuntimeError("this job fails")


def _exit_once(flag: Path) -> None:
    """End this worker process abruptly the first time (as an out-of-memory kill would), succeed after."""
    if not flag.exists():
        flag.touch()
        os._exit(1)


def settings(results: Path) -> reproduce.WorkerSettings:
    """Jobs of the tests store their runs in ``results`` and do not compile."""
    return reproduce.WorkerSettings(results, data_root().resolve(), compile=False)


def _meet(folder: Path, name: str, other: str, seconds: float) -> None:
    """Note that job ``name`` started, then wait up to ``seconds`` for job ``other`` to start, and note
    whether it did: two jobs taken one after the other by the same worker never meet."""
    (folder / f"{name}.started").touch()
    deadline = time.time() + seconds
    while not (folder / f"{other}.started").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # (a job's recorded time is at least this)
    (folder / f"{name}.met").write_text(str((folder / f"{other}.started").exists()))


def test_workers_run_jobs_side_by_side_and_record_their_times(tmp_path, dask_workers):
    # the jobs wait for each other rather than sleep side by side: on a busy machine a worker may take
    # seconds to import what its first job needs, and two short sleeps would not overlap
    jobs = [reproduce.Job(name, 1.0, _meet, (tmp_path, name, other, 60.0)) for name, other in (("a", "b"), ("b", "a"))]
    record = reproduce.reproduce(jobs, dask_workers, settings(tmp_path))
    assert record["finished"] and set(record["jobs"]) == {"a", "b"} and record["retried"] == {}
    assert all(s >= 0.5 for s in record["jobs"].values()) and record["workers"] == 2
    assert [(tmp_path / f"{name}.met").read_text() for name in "ab"] == ["True", "True"], "the two jobs did not run at the same time"
    assert json.loads((tmp_path / "benchmarks" / "reproduce.json").read_text())["jobs"] == record["jobs"]


def test_local_workers_keep_the_memory_they_free(dask_workers):
    environments = dask_workers.run(lambda: dict(os.environ))
    assert environments and all(env["MALLOC_TRIM_THRESHOLD_"] == str(1 << 30) for env in environments.values())
    assert all(env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20) for env in environments.values())
    assert "PYTHONHASHSEED" in next(iter(environments.values()))  # Dask's other variables are kept


def test_a_long_job_is_reported_while_it_runs(tmp_path, dask_workers, monkeypatch):
    monkeypatch.setattr(reproduce, "HEARTBEAT_SECONDS", 1.0)
    log = io.StringIO()
    reproduce.reproduce([reproduce.Job("long", 1.0, _sleep, (3.5,))], dask_workers, settings(tmp_path), log=log)
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith("[1/1] long: ")
    assert len(lines) >= 3 and all(line.startswith("[0/1] running: long (") for line in lines[:-1])
    assert all(line.endswith(" min left") for line in lines)


def test_a_job_running_past_its_estimate_is_named_in_the_time_left(tmp_path, dask_workers, monkeypatch):
    monkeypatch.setattr(reproduce, "HEARTBEAT_SECONDS", 1.0)
    log = io.StringIO()  # estimated at a thousandth of a unit of cost: well under a second
    reproduce.reproduce([reproduce.Job("overdue", 0.001, _sleep, (3.5,))], dask_workers, settings(tmp_path), log=log)
    running = [line for line in log.getvalue().splitlines() if line.startswith("[0/1] running: overdue (")]
    assert running and all(line.endswith("about 0 min left, and 1 running job(s) past their estimate") for line in running)


def test_a_job_starts_once_the_jobs_it_waits_for_have_finished(tmp_path, dask_workers):
    jobs = [reproduce.Job("first", 3.0, _sleep, (5.0, tmp_path / "first.log")),
            reproduce.Job("second", 2.0, _sleep, (0.1, tmp_path / "second.log"), after=("first",)),
            reproduce.Job("free", 1.0, _sleep, (0.1, tmp_path / "free.log"))]
    record = reproduce.reproduce(jobs, dask_workers, settings(tmp_path))
    assert record["finished"] and set(record["jobs"]) == {"first", "second", "free"}
    (_, first_end), (second_start, _), (free_start, _) = (
        map(float, (tmp_path / f"{name}.log").read_text().split()) for name in ("first", "second", "free"))
    assert second_start >= first_end and free_start < first_end  # the free job did not wait


def test_a_failing_job_stops_the_call_with_its_name_and_starts_no_other(tmp_path, dask_workers):
    jobs = [reproduce.Job("fails", 1.0, _fail, ()), *(reproduce.Job(f"sleep {k}", 1.0, _sleep, (2.0,)) for k in range(5))]
    with pytest.raises(RuntimeError, match="this job fails") as failure:
        reproduce.reproduce(jobs, dask_workers, settings(tmp_path))
    assert "in job 'fails'" in "".join(failure.value.__notes__)
    record = json.loads((tmp_path / "benchmarks" / "reproduce.json").read_text())
    assert set(record["jobs"]) == {"sleep 0"} and not record["finished"]  # it ran beside the failing job


def test_worker_settings_travel_with_the_job_and_are_checked():
    with pytest.raises(ValueError, match="absolute"):
        reproduce.WorkerSettings(Path("results"), Path("/data"), compile=True)
    with pytest.raises(ValueError, match="threads"):
        reproduce.WorkerSettings(Path("/results"), Path("/data"), compile=True, threads=0)


def _interrupt_later(*delays: float) -> None:
    """Send SIGINT to this process after each delay (seconds from now), as a Ctrl-C would."""
    for delay in delays:
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()


def _sleep_noting_sigint(seconds: float, log: Path) -> None:
    """Sleep, then note whether this process ignores Ctrl-C."""
    time.sleep(seconds)
    log.write_text(str(signal.getsignal(signal.SIGINT) == signal.SIG_IGN))


def test_a_first_interrupt_lets_the_running_jobs_finish_and_starts_no_other(tmp_path, dask_workers):
    jobs = [reproduce.Job(f"sleep {k}", 1.0, _sleep_noting_sigint, (2.0, tmp_path / f"{k}.log")) for k in range(4)]
    callers_handler = signal.getsignal(signal.SIGINT)  # (ignored where pytest runs in the background)
    _interrupt_later(1.0)  # the first two jobs are handed out at once; the interrupt comes while they run
    log = io.StringIO()
    record = reproduce.reproduce(jobs, dask_workers, settings(tmp_path), log=log)
    assert not record["finished"] and set(record["jobs"]) == {"sleep 0", "sleep 1"}
    assert [(tmp_path / f"{k}.log").read_text() for k in range(2)] == ["True", "True"]  # workers leave Ctrl-C to us
    assert not (tmp_path / "2.log").exists() and not (tmp_path / "3.log").exists()
    assert "2 running job(s) finish first, 2 not started" in log.getvalue()
    assert json.loads((tmp_path / "benchmarks" / "reproduce.json").read_text())["jobs"] == record["jobs"]
    assert signal.getsignal(signal.SIGINT) is callers_handler  # the caller's handler is back
    resumed = reproduce.reproduce(jobs[2:], dask_workers, settings(tmp_path))  # the next call runs the rest
    assert resumed["finished"] and resumed["calls"] == 2 and set(resumed["jobs"]) == {j.name for j in jobs}


def test_tiny_lifelong_jobs_store_every_run_in_the_callers_folder_and_resume(tmp_path, monkeypatch, dask_workers):
    scale = reproduce.Scale(seeds=(0,), epochs_per_task=1, subset=200, eval_samples=1, benchmarks=("split_mnist",))
    jobs = [job for job in reproduce.lifelong_jobs(scale) if job.name.split()[1] in ("presynaptic", "sgd", "bgd")]
    assert len(jobs) == 3
    reproduce.reproduce(jobs, dask_workers, settings(tmp_path))  # the workers' own $PRESYN_RESULTS is elsewhere
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    protocol = LifelongProtocol("split_mnist", epochs=1, subset=200, eval_samples=1)
    specs = [spec for job in jobs for spec in job.args[1]]
    assert all(r is not None for r in run_specs(protocol, specs, train=False))
    again = reproduce.reproduce(jobs, dask_workers, settings(tmp_path))  # everything stored: nothing is trained again
    assert max(again["jobs"].values()) < 5.0 and again["calls"] == 1


def test_a_call_counts_only_its_own_jobs_in_a_record_that_holds_others(tmp_path, dask_workers):
    path = tmp_path / "benchmarks" / "reproduce.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"jobs": {"other 0": 1.0, "other 1": 1.0}, "finished": False, "calls": 1, "wall_seconds": 2.0}))
    log = io.StringIO()
    record = reproduce.reproduce([reproduce.Job("sleep 0", 1.0, _sleep, (0.1,))], dask_workers, settings(tmp_path), log=log)
    assert set(record["jobs"]) == {"other 0", "other 1", "sleep 0"}
    lines = log.getvalue().splitlines()
    assert any(line.startswith("[1/1] sleep 0: ") for line in lines) and not any("finished by earlier" in line for line in lines)


def test_a_resumed_call_continues_the_record_of_an_interrupted_one(tmp_path, dask_workers):
    path = tmp_path / "benchmarks" / "reproduce.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"jobs": {"sleep 0": 100.0}, "finished": False, "calls": 1, "wall_seconds": 200.0}))
    jobs = [reproduce.Job(f"sleep {k}", 1.0, _sleep, (0.1,)) for k in range(2)]
    log = io.StringIO()
    record = reproduce.reproduce(jobs, dask_workers, settings(tmp_path), log=log)
    assert record["calls"] == 2 and record["finished"] and record["wall_seconds"] > 200.0
    lines = log.getvalue().splitlines()  # one line for the jobs of earlier calls, none for each of them
    assert lines[0].startswith("[1/2] finished by earlier calls") and not any("sleep 0:" in line for line in lines)
    assert any(line.startswith("[2/2] sleep 1: ") for line in lines)
    assert record["jobs"]["sleep 0"] == 100.0 and record["jobs"]["sleep 1"] < 100.0  # the earlier time is kept
    fresh = reproduce.reproduce(jobs, dask_workers, settings(tmp_path))  # after a finished call, a new record
    assert fresh["calls"] == 1 and fresh["wall_seconds"] < 200.0


def test_the_time_estimates_take_the_jobs_longest_first_on_every_worker():
    jobs = [reproduce.Job(name, cost, _sleep, ()) for name, cost in (("a", 6.0), ("b", 4.0), ("c", 3.0), ("d", 3.0))]
    assert reproduce._makespan(jobs, 2) == 9.0 and reproduce._makespan(jobs, 4) == 6.0
    lines = reproduce.describe(jobs, 2).splitlines()
    assert "minutes" in lines[0] and lines[1].split() == [f"{6 * reproduce.MINUTES_PER_COST:.1f}", "a"]
    assert lines[-1].startswith("total: 4 jobs, 0 of them stored; the other 4: ")
    assert f"about {9.0 * reproduce.MINUTES_PER_COST / 60:.1f} h of wall time on 2 worker(s)" in lines[-1]
    lines = reproduce.describe(jobs, 2, stored={"a"}).splitlines()  # b, c and d left: 4 | 3 + 3
    assert lines[1].endswith("a  (stored)") and lines[-1].startswith("total: 4 jobs, 1 of them stored; the other 3: ")
    assert f"about {6.0 * reproduce.MINUTES_PER_COST / 60:.1f} h" in lines[-1]


def test_the_dry_run_finds_the_jobs_whose_runs_are_stored(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    scale = reproduce.Scale(seeds=(0,), epochs_per_task=1, subset=200, eval_samples=1, benchmarks=("split_mnist",))
    jobs = [job for job in reproduce.all_jobs(scale) if job.name in ("split_mnist sgd", "split_mnist joint",
                                                                     "split_mnist ewc tuned")]
    assert len(jobs) == 3 and reproduce.stored_jobs(jobs) == set()
    sgd = next(job for job in jobs if job.name == "split_mnist sgd")
    assert sgd.function(*sgd.args) is True  # trains its run
    assert reproduce.stored_jobs(jobs) == {"split_mnist sgd"}


def test_a_job_whose_worker_dies_is_redone_on_a_fresh_worker(tmp_path, disposable_dask_workers):
    jobs = [reproduce.Job("dies once", 1.0, _exit_once, (tmp_path / "died",)), reproduce.Job("sleep", 1.0, _sleep, (0.1,))]
    record = reproduce.reproduce(jobs, disposable_dask_workers, settings(tmp_path))
    assert record["finished"] and set(record["jobs"]) == {"dies once", "sleep"}
    assert record["retried"] == {"dies once": 1}


def test_a_second_interrupt_ends_the_running_jobs_at_once(tmp_path, disposable_dask_workers, caplog):
    jobs = [reproduce.Job(f"sleep {k}", 1.0, _sleep, (30.0, tmp_path / f"{k}.log")) for k in range(2)]
    _interrupt_later(1.0, 1.5)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce(jobs, disposable_dask_workers, settings(tmp_path))
    assert time.perf_counter() - start < 15.0, "the workers were not ended"
    record = json.loads((tmp_path / "benchmarks" / "reproduce.json").read_text())
    assert record["jobs"] == {} and not record["finished"] and record["wall_seconds"] > 1.0
    time.sleep(1.0)
    assert not list(tmp_path.glob("*.log"))
    # the workers it ends are not reported as errors by the scheduler and their nannies
    # the workers it ends are not reported as errors or restarts by the scheduler and their nannies
    reports = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert not reports, reports


def test_a_longer_sequence_costs_its_training_plus_evaluations_that_grow_with_its_square():
    ten = LifelongProtocol("perm_mnist")
    assert reproduce.sequence_cost_factor(ten, True) == reproduce.sequence_cost_factor(ten, False) == 1.0
    for stochastic in (True, False):
        every = reproduce.sequence_cost_factor(replace(ten, n_tasks=30), stochastic)
        seen = reproduce.sequence_cost_factor(replace(ten, n_tasks=30, evaluate_unseen=False), stochastic)
        assert 3 < seen < every  # more than three times the training; evaluating 465 tasks, not 900
    # a stochastic run's evaluation is most of its cost, a deterministic one's is not
    assert reproduce.sequence_cost_factor(replace(ten, n_tasks=30), True) > 5 > reproduce.sequence_cost_factor(
        replace(ten, n_tasks=30), False)
    jobs = {job.name: job for job in reproduce.all_jobs()}
    # each job of the 30 tasks costs more than three times the 10-task runs of its methods
    assert jobs["perm_mnist 30 tasks presynaptic"].cost > 3 * jobs["perm_mnist presynaptic"].cost
    assert jobs["perm_mnist 30 tasks sgd ewc si"].cost > 3 * 3 * jobs["perm_mnist sgd"].cost


def test_bgd_jobs_train_their_runs_one_at_a_time_the_others_all_together(monkeypatch):
    limits = {}

    def recorded(protocol, specs, **kwargs):
        limits[specs[0].method] = kwargs.get("max_batch")
        return [{}] * len(specs)

    monkeypatch.setattr(continual, "run_specs", recorded)
    jobs = {job.name: job for job in reproduce.all_jobs()}
    for name in ("perm_mnist bgd", "perm_mnist presynaptic", "perm_mnist sgd"):
        assert jobs[name].function(*jobs[name].args)
    assert limits == {"bgd": 1, "presynaptic": None, "sgd": None}


def test_the_time_left_is_estimated_from_the_median_pace_of_the_timed_jobs():
    reference = 60 * reproduce.MINUTES_PER_COST
    assert reproduce.seconds_per_cost([]) == reference
    assert reproduce.seconds_per_cost([(10.0, 1.0), (30.0, 1.0)]) == reference  # two jobs tell too little
    # a diverged search trial (a tenth of its cost) does not swing the pace of three jobs near 2 s per unit
    assert reproduce.seconds_per_cost([(800.0, 400.0), (300.0, 1000.0), (2200.0, 1000.0)]) == 2.0
    assert reproduce.seconds_per_cost([(800.0, 400.0), (300.0, 1000.0), (2200.0, 1000.0), (3000.0, 1000.0)]) == pytest.approx(2.1)
    # nor do jobs that only loaded runs another job trained (a job of no cost counts not either)
    timed = [(20.0, 1.0), (22.0, 1.0), (24.0, 1.0)]
    assert reproduce.seconds_per_cost(timed + [(0.1, 1.0), (0.2, 1.0), (0.3, 1.0), (1.0, 0.0)]) == 22.0
    assert reproduce.seconds_per_cost(timed[:2] + [(0.1, 1.0)]) == reference


def test_the_time_left_counts_what_the_running_jobs_have_done():
    a, b, c = (reproduce.Job(name, cost, _sleep, ()) for name, cost in (("a", 10.0), ("b", 10.0), ("c", 4.0)))
    # at 2 s per unit: a is half done (5 units left), b just started; c follows a: 5 + 4 < 10 units
    assert reproduce.seconds_left([(a, 10.0), (b, 0.0)], [c], 2, 2.0) == 20.0
    assert reproduce.seconds_left([(a, 0.0), (b, 0.0)], [c], 2, 2.0) == 28.0  # c after one of them: 14 units
    # a job that has run longer than its cost counts as ending now; done jobs are not waited for
    assert reproduce.seconds_left([(a, 50.0)], [c], 1, 2.0) == 8.0
    assert reproduce.seconds_left([], [replace(c, after=("a",))], 1, 2.0, done={"a"}) == 8.0


def test_a_chart_of_many_jobs_shows_the_longest_and_sums_the_others():
    seconds = {"a": 5.0, "b": 50.0, "c": 20.0, "d": 20.0, "e": 1.0}
    assert reproduce.longest_jobs(seconds, most=5) == [("b", 50.0), ("c", 20.0), ("d", 20.0), ("a", 5.0), ("e", 1.0)]
    assert reproduce.longest_jobs(seconds, most=3) == [("b", 50.0), ("c", 20.0), ("the other 3 jobs", 26.0)]
    assert reproduce.longest_jobs({}) == []
