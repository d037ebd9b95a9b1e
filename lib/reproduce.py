"""Every paper-scale training run of the book as jobs on a Dask cluster (``make reproduce``).

The book's training splits into jobs: one per (benchmark, method, setting) of chapter 5 with its seeds
trained together, and the energy runs of chapters 2-4 and 7. :func:`reproduce` hands the jobs, longest
first, to the single-threaded workers of a Dask cluster: by default a ``LocalCluster`` of one worker
process per core (per GPU with CUDA), else an existing scheduler or a SLURM cluster
(:func:`dask_client`). On a small CPU this beats one process using every core, because the
784-200-200 matrices are too small to spread well over threads. Every job stores its runs in the
results cache as soon as they finish (atomic writes: nothing half written is ever read), so a second
call goes on from there; the chapters then find every run stored and only plot and analyse
(chapters 3, 4 and 6 compute their analyses and the perceptron, minutes in all, when the book is
built).
"""
from __future__ import annotations

import concurrent.futures
import heapq
import importlib.util
import json
import logging
import math
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import dask
import torch
from distributed import Client, LocalCluster, WorkerPlugin, get_worker

from . import cache, continual, data, energy, importance, search, tuning
from .energy_analysis import ANALYSED_WEIGHT_DECAY
from .data import write_atomic
from .tasks import N_PERMUTATIONS

# Relative cost of one seed of one method, for the order of the jobs (longest first) and the time
# estimates. Measured on a 2-core CPU: a seed of a permuted benchmark takes about 5 min for the
# stochastic models, the deterministic networks about half. BGD: a run of Permuted MNIST took 62 and 65
# min on its own (its search's trials) on a 2-core Intel Xeon where three presynaptic runs took 26 min
# together: about 7 times a stochastic run (K = 10 weight samples per step; batching BGD runs does not
# pay). On the reference CPU (AMD EPYC) BGD's jobs took about 0.7 of that and EWC's about 1.2; the
# costs stay as they are because they also size the search jobs, whose names the timing records keep.
BENCHMARK_COST = {"split_mnist": 0.5, "split_fmnist": 0.5, "perm_mnist": 5.5, "perm_fmnist": 5.5, "perm_mnist_cont": 5.5}
METHOD_COST = {"bgd": 7.0, "sgd": 0.45, "ewc": 0.45, "si": 0.45, "joint": 0.45}
# A search's trial of EWC or SI costs this many times a seed of the method's own settings (measured
# 1.5-2.1 in the timed make reproduce of results/benchmarks/reproduce.json; why is not known).
DETERMINISTIC_TRIAL_COST = 1.6
# The evaluation of one task's test set, in epochs of training of the same runs (784-200-200-10, 10 test
# passes, one thread; measured): 1.5 for stochastic runs, 0.1 for deterministic ones (one pass counted
# ten times). A sequence of T tasks evaluates T tasks after each (T**2), or only those seen (T(T+1)/2).
EVALUATION_EPOCHS = {True: 1.5, False: 0.1}
ENERGY_RUN_COST = 1.2
IMPORTANCE_RUN_COST = 4.2  # an energy run trained again, its signals and six lesion curves (measured: 8.7 min for three)
# Minutes of one single-threaded worker per unit of cost, fitted to the timed make reproduce of all 148
# jobs on the 2-core reference CPU (AMD EPYC, December 2026; results/benchmarks/reproduce.json).
MINUTES_PER_COST = 0.69
ROBUSTNESS_P_INIT = (0.25, 0.5, 0.75)  # chapter 3's initial release probabilities
LONG_SEQUENCE_METHODS = ("presynaptic", "sgd", "ewc", "si")  # chapter 7's long Permuted MNIST sequence
WIDTH_METHODS = ("presynaptic", "sgd", "ewc")  # chapter 7's networks of other widths


# A search's trials are split into jobs of about this cost (about 12 minutes of a worker), so that an
# interrupted search loses little: three presynaptic runs of a permuted benchmark, a single BGD run.
SEARCH_JOB_COST = 16.5
# A job done in less time trained nothing: its runs were stored by another job (the presynaptic model's
# tuned runs are its own runs when its own settings win its search).
LOADING_SECONDS = 10.0


@dataclass(frozen=True)
class Job:
    """One unit of work: ``function(*args)`` trains (or loads) some runs; ``cost`` orders the jobs.

    ``runs`` holds the (shared protocol, spec) pairs of the lifelong runs the job trains, so that no
    other job trains them again; a job starts only when the jobs named in ``after`` have finished
    (it needs their runs).
    """

    name: str
    cost: float
    function: Callable
    args: tuple
    runs: frozenset = frozenset()
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scale:
    """The chapters' training settings; the defaults are their ``parameters`` cells (paper scale)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs_per_task: int = 10
    energy_epochs: int = 50
    subset: int | None = None
    eval_samples: int = 10
    benchmarks: tuple[str, ...] = continual.LIFELONG_BENCHMARKS
    weight_decays: tuple[float, ...] = energy.PAPER_WEIGHT_DECAYS
    search_benchmark: str = "split_mnist"
    search_trials: int = 24
    tuning_trials: int = tuning.TRIALS
    long_sequence_tasks: int = 30
    widths: tuple[int, ...] = (50, 100, 200, 400)


def _max_batch(specs: Sequence[continual.RunSpec]) -> int | None:
    """BGD's runs train one at a time: batching them does not pay on the 2-core CPU (one thread: 3,626
    samples/s for one run, 2,917 in all for four), and a run of about an hour, not a batch of three, is
    then what an interrupted job loses. The others train all together (the results are the same)."""
    return 1 if any(spec.method == "bgd" for spec in specs) else None


# Every job's function trains the runs of its job that are not stored yet, or, with train=False,
# nothing; either way it returns whether all of them are stored (python -m lib reproduce --dry-run).
def _train_lifelong(protocol: continual.LifelongProtocol, specs: tuple[continual.RunSpec, ...], train: bool = True) -> bool:
    return all(r is not None for r in continual.run_specs(protocol, specs, progress=False, train=train,
                                                          max_batch=_max_batch(specs)))


def _train_energy(models: tuple[str, ...], weight_decays: tuple[float, ...], seeds: tuple[int, ...],
                  protocol: energy.EnergyProtocol, train: bool = True) -> bool:
    """Chapter 2's runs of ``models``; the fixed model needs the presynaptic runs first (its matched p)."""
    presynaptic_runs = None
    for model in models:
        if model == "fixed" and (presynaptic_runs is None or None in presynaptic_runs):
            return False  # (only without training) its release probabilities are not known yet
        fixed_p = energy.matched_release(weight_decays, presynaptic_runs) if model == "fixed" else None
        runs = energy.energy_sweep(model, weight_decays, seeds, protocol, fixed_p, progress=False, train=train)
        if model == "presynaptic":
            presynaptic_runs = runs
        if None in runs:
            return False
    return True


def _train_robustness(seeds: tuple[int, ...], protocol: energy.EnergyProtocol, train: bool = True) -> bool:
    """Chapter 3's presynaptic networks started from other release probabilities."""
    runs = [energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s, p_init=p0) for p0 in ROBUSTNESS_P_INIT for s in seeds]
    default = {energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s) for s in seeds}  # chapter 2's job trains these
    return None not in energy.run_energy([r for r in runs if r not in default], protocol, progress=False, train=train)


def _importance(seeds: tuple[int, ...], protocol: energy.EnergyProtocol, train: bool = True) -> bool:
    """Chapter 7's importance signals of the networks that chapters 3 and 4 analyse."""
    runs = [energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s) for s in seeds]
    return all(importance.importance_signals(run, protocol, train=train, progress=False) is not None for run in runs)


def _search(protocol: continual.LifelongProtocol, n_trials: int, train: bool = True) -> bool:
    rows = search.random_search(protocol, n_trials, progress=False, train=train)
    return not any(math.isnan(row["average"]) for row in rows)


def _train_chosen(chosen_by: tuning.Search, protocol: continual.LifelongProtocol, method: str,
                  seeds: tuple[int, ...], train: bool = True) -> bool:
    """The runs of ``method`` on ``protocol``'s benchmark with the best settings of the search
    ``chosen_by``, whose trials the jobs before this one stored."""
    overrides = chosen_by.best()
    if overrides is None:
        if not train:
            return False
        raise RuntimeError(f"the search of {method} on {chosen_by.protocol.benchmark} has "
                           f"{chosen_by.n_stored()} of its {chosen_by.n_trials + 1} runs stored, not all")
    specs = [continual.RunSpec(method, s, overrides) for s in seeds]
    return all(r is not None for r in continual.run_specs(protocol, specs, progress=False, train=train,
                                                          max_batch=_max_batch(specs)))


def stored_jobs(jobs: Sequence[Job]) -> set[str]:
    """The names of the jobs whose runs are all stored (they would only load them)."""
    return {job.name for job in jobs if job.function(*job.args, train=False)}


def _run_cost(benchmark: str, method: str) -> float:
    return BENCHMARK_COST[benchmark] * METHOD_COST.get(method, 1.0)


def sequence_cost_factor(protocol: continual.LifelongProtocol, stochastic: bool) -> float:
    """How many times a run of ``protocol`` (a permuted benchmark of ``protocol.n_tasks`` tasks) costs a
    run of the 10-task sequence at the same epochs per task: training grows with the number of tasks,
    evaluation (:data:`EVALUATION_EPOCHS` per task evaluated) with its square, or, evaluating only the
    tasks seen so far, with half of it."""
    def cost(n: int, unseen: bool) -> float:
        evaluations = n * n if unseen else n * (n + 1) // 2
        return protocol.epochs * n + EVALUATION_EPOCHS[stochastic] * evaluations

    return cost(protocol.n_tasks or N_PERMUTATIONS, protocol.evaluate_unseen) / cost(N_PERMUTATIONS, True)


def lifelong_jobs(scale: Scale = Scale()) -> list[Job]:
    """One job per (benchmark, method, overrides) of chapter 5, its seeds trained together, and one
    for its random search (after the job that trains the method's own settings, a candidate of it)."""
    jobs = []
    for benchmark in scale.benchmarks:
        protocol = _protocol(scale, benchmark)
        groups: dict[tuple, list[continual.RunSpec]] = {}
        for spec in dict.fromkeys(continual.chapter_specs(benchmark, scale.seeds).values()):
            groups.setdefault((spec.method, spec.overrides), []).append(spec)
        for (method, overrides), specs in groups.items():
            setting = "".join(f" {k}={v:g}" for k, v in overrides)
            jobs.append(Job(f"{benchmark} {method}{setting}", _run_cost(benchmark, method) * len(specs), _train_lifelong,
                            (protocol, tuple(specs)), frozenset((protocol, spec) for spec in specs)))
    protocol = _protocol(scale, scale.search_benchmark)
    claimed = {run: job.name for job in jobs for run in job.runs}
    runs = {(protocol, spec) for spec in search.trial_specs(scale.search_trials)}
    mine = frozenset(runs - set(claimed))  # the method's own settings are (usually) a run of the chapter's
    jobs.append(Job(f"{scale.search_benchmark} random search", BENCHMARK_COST[scale.search_benchmark] * len(mine),
                    _search, (protocol, scale.search_trials), mine, tuple(sorted({claimed[r] for r in runs - mine}))))
    return jobs


def _protocol(scale: Scale, benchmark: str) -> continual.LifelongProtocol:
    return continual.LifelongProtocol(benchmark, epochs=scale.epochs_per_task, subset=scale.subset,
                                      eval_samples=scale.eval_samples)


def _jobs_training(search: tuning.Search, claimed: dict) -> set[str]:
    """The names of the jobs that train a trial of ``search``, by the runs they claim (``claimed``: run → job)."""
    return {claimed[(search.protocol, spec)] for spec in search.specs if (search.protocol, spec) in claimed}


def tuning_jobs(scale: Scale, earlier: Sequence[Job]) -> list[Job]:
    """Chapters 5 and 7's tuning (:mod:`lib.tuning`): the searches of every searched method, in jobs of about
    :data:`SEARCH_JOB_COST` (a trial that an ``earlier`` job trains is left to it), then per benchmark
    the method's tuned runs and, where searched, its oracle runs, each after the jobs it needs."""
    claimed = {run: job.name for job in earlier for run in job.runs}
    jobs: list[Job] = []

    def search_jobs(chosen_by: tuning.Search) -> tuple[str, ...]:
        """Jobs for the trials of ``chosen_by`` that no job trains yet; the names of every job it needs."""
        protocol, method = chosen_by.protocol, chosen_by.method
        needed = _jobs_training(chosen_by, claimed)
        todo = [spec for spec in chosen_by.specs if (protocol, spec) not in claimed]
        per_job = max(1, int(SEARCH_JOB_COST // _run_cost(protocol.benchmark, method)))
        trial_cost = _run_cost(protocol.benchmark, method) * (DETERMINISTIC_TRIAL_COST if method in ("ewc", "si") else 1.0)
        for start in range(0, len(todo), per_job):
            chunk = tuple(todo[start:start + per_job])
            name = f"{protocol.benchmark} {method} search {start + 1}-{start + len(chunk)}"
            runs = frozenset((protocol, spec) for spec in chunk)
            jobs.append(Job(name, trial_cost * len(chunk), _train_lifelong, (protocol, chunk), runs))
            claimed.update(dict.fromkeys(runs, name))
            needed.add(name)
        return tuple(sorted(needed))

    for method in tuning.SEARCHED_METHODS:
        tuned_by = tuning.tuning_search(method, _protocol(scale, tuning.TUNING_BENCHMARK), scale.tuning_trials)
        needs_tuning = search_jobs(tuned_by)
        for benchmark in scale.benchmarks:
            protocol = _protocol(scale, benchmark)
            main = tuple(claimed[(protocol, continual.RunSpec(method, s))] for s in scale.seeds
                         if (protocol, continual.RunSpec(method, s)) in claimed)
            cost = _run_cost(benchmark, method) * len(scale.seeds)
            jobs.append(Job(f"{benchmark} {method} tuned", cost, _train_chosen, (tuned_by, protocol, method, scale.seeds),
                            after=tuple(sorted({*needs_tuning, *main}))))
            oracle_by = tuning.oracle_search(method, protocol, scale.tuning_trials) if method in tuning.TUNED_METHODS else None
            if oracle_by is not None and oracle_by != tuned_by:  # (chapter 5 shows the oracle rows of its methods)
                needs_oracle = search_jobs(oracle_by)
                jobs.append(Job(f"{benchmark} {method} oracle", cost, _train_chosen, (oracle_by, protocol, method, scale.seeds),
                                after=tuple(sorted({*needs_oracle, *main}))))
    return jobs


def _train_compared(methods: tuple[str, ...], protocol: continual.LifelongProtocol, seeds: tuple[int, ...],
                    n_trials: int, train: bool = True) -> bool:
    """Chapter 7's runs of ``methods`` (:func:`lib.tuning.compared_specs`), whose searches the jobs
    before this one stored."""
    specs = tuning.compared_specs(methods, protocol, seeds, n_trials)
    if specs is None:
        if not train:
            return False
        raise RuntimeError(f"a search of {', '.join(methods)} is incomplete")
    return all(r is not None for r in continual.run_specs(protocol, specs, progress=False, train=train,
                                                          max_batch=_max_batch(specs)))


def beyond_jobs(scale: Scale, earlier: Sequence[Job]) -> list[Job]:
    """Chapter 7's runs beyond the paper: the importance signals of the energy experiment's networks
    (:mod:`lib.importance`), the consolidation signals on the ablations' benchmarks, and, each job after
    the ``earlier`` jobs that train the searches of the tuned methods it compares, the long Permuted
    MNIST sequence (a job for the stochastic runs and one for the deterministic ones; each holds the 30
    tasks' data, about 7 GB) and one job per network width other than the paper's."""
    claimed = {run: job.name for job in earlier for run in job.runs}

    def compared_job(name: str, methods: tuple[str, ...], protocol: continual.LifelongProtocol, size: float) -> Job:
        """The runs of ``methods`` on ``protocol``, ``size`` times as costly as on Permuted MNIST, after every
        job that trains a trial of a search they read (its search jobs, and the job of the method's own
        settings, whose first seed is a trial)."""
        searches = [tuning.tuning_search(m, protocol, scale.tuning_trials) for m in methods if tuning.compared_tuned(m)]
        needed = set().union(*(_jobs_training(search, claimed) for search in searches))
        cost = sum(_run_cost("perm_mnist", m) for m in methods) * len(scale.seeds) * size
        return Job(name, cost, _train_compared, (methods, protocol, scale.seeds, scale.tuning_trials), after=tuple(sorted(needed)))

    paper = _protocol(scale, "perm_mnist")
    jobs = [Job("energy importance signals", IMPORTANCE_RUN_COST * scale.energy_epochs / 50 * len(scale.seeds),
                _importance, (scale.seeds, _energy_protocol(scale)))]
    for benchmark in continual.ABLATION_BENCHMARKS:
        protocol = _protocol(scale, benchmark)
        for method in continual.SIGNAL_METHODS:
            specs = tuple(continual.RunSpec(method, s) for s in scale.seeds)
            jobs.append(Job(f"{benchmark} {method}", _run_cost(benchmark, method) * len(specs), _train_lifelong,
                            (protocol, specs), frozenset((protocol, spec) for spec in specs)))
    long_sequence = replace(paper, n_tasks=scale.long_sequence_tasks, evaluate_unseen=False)
    for stochastic in (True, False):  # they train in separate batches anyway; one job each runs both side by side
        methods = tuple(m for m in LONG_SEQUENCE_METHODS
                        if continual.method_config(m, long_sequence.benchmark, 0).stochastic == stochastic)
        jobs.append(compared_job(f"perm_mnist {scale.long_sequence_tasks} tasks {' '.join(methods)}", methods,
                                 long_sequence, sequence_cost_factor(long_sequence, stochastic)))
    for width in scale.widths:
        if (width, width) == paper.hidden:
            continue  # the paper's width: chapter 5's runs
        size = _parameters(width) / _parameters(paper.hidden[0])  # the cost of a step grows with the weights
        jobs.append(compared_job(f"perm_mnist width {width}", WIDTH_METHODS, replace(paper, hidden=(width, width)), size))
    return jobs


def _parameters(width: int) -> int:
    """The weights of a 784-width-width-10 network."""
    return 784 * width + width * width + width * 10


def _energy_protocol(scale: Scale, benchmark: str = "mnist") -> energy.EnergyProtocol:
    return energy.EnergyProtocol(benchmark=benchmark, epochs=scale.energy_epochs, subset=scale.subset,
                                 eval_samples=scale.eval_samples)


def energy_jobs(scale: Scale = Scale(), benchmark: str = "mnist") -> list[Job]:
    """The energy experiment's runs on ``benchmark`` (presynaptic then fixed, deterministic): chapter 2
    on MNIST, with chapter 3's robustness runs; chapter 7 on Fashion-MNIST."""
    protocol = _energy_protocol(scale, benchmark)
    n = len(scale.weight_decays) * len(scale.seeds)
    cost = ENERGY_RUN_COST * scale.energy_epochs / 50
    prefix = "energy" if benchmark == "mnist" else f"energy {benchmark}"
    jobs = [
        Job(f"{prefix} presynaptic, fixed", 2 * n * cost, _train_energy,
            (("presynaptic", "fixed"), scale.weight_decays, scale.seeds, protocol)),
        Job(f"{prefix} deterministic", n * cost, _train_energy, (("deterministic",), scale.weight_decays, scale.seeds, protocol)),
    ]
    if benchmark == "mnist":
        jobs.append(Job("energy robustness", (len(ROBUSTNESS_P_INIT) - 1) * len(scale.seeds) * cost, _train_robustness,
                        (scale.seeds, protocol)))
    return jobs


def all_jobs(scale: Scale = Scale()) -> list[Job]:
    """Every job of the book, those with the longest chain of work ahead of them first (a job's own
    cost plus that of the longest chain of jobs that wait for it), so that the last ones to finish
    are short."""
    lifelong = lifelong_jobs(scale)
    tuned = tuning_jobs(scale, lifelong)
    jobs = energy_jobs(scale) + energy_jobs(scale, "fmnist") + lifelong + tuned + beyond_jobs(scale, lifelong + tuned)
    names = {job.name for job in jobs}
    if len(names) < len(jobs) or any(a not in names for job in jobs for a in job.after):
        raise ValueError("job names must be unique, and every job waited for must be one of the jobs")
    waiting_for = {job.name: [j for j in jobs if job.name in j.after] for job in jobs}
    chain: dict[str, float] = {}

    def ahead(job: Job) -> float:
        if job.name not in chain:
            chain[job.name] = job.cost + max((ahead(j) for j in waiting_for[job.name]), default=0.0)
        return chain[job.name]

    return sorted(jobs, key=lambda job: -ahead(job))


# Chapter 7's studies, by what the names of their jobs contain.
BEYOND_PAPER_STUDIES = {
    "energy on Fashion-MNIST": ("energy fmnist",),
    "importance signals": ("importance signals", " signal_"),
    "Synaptic Intelligence": (" si ",),
    "30 tasks": (" tasks",),
    "widths": (" width ",),
}


def _beyond_paper(jobs: Sequence[Job], texts: Sequence[str]) -> list[Job]:
    return [job for job in jobs if any(text in job.name for text in texts)]


def beyond_paper_minutes(scale: Scale = Scale()) -> dict[str, float]:
    """Chapter 7's predicted training time per study: minutes of one single-threaded worker of the
    2-core reference CPU, by the cost model of ``--dry-run``."""
    jobs = all_jobs(scale)
    return {study: sum(job.cost for job in _beyond_paper(jobs, texts)) * MINUTES_PER_COST
            for study, texts in BEYOND_PAPER_STUDIES.items()}


def beyond_paper_wall_hours(scale: Scale = Scale(), workers: int = 2) -> float:
    """Chapter 7's predicted wall time in hours on ``workers`` single-threaded workers of the reference
    CPU (``make reproduce`` starts one per core), every other job of the book counted as done."""
    jobs = all_jobs(scale)
    chapter = _beyond_paper(jobs, [text for texts in BEYOND_PAPER_STUDIES.values() for text in texts])
    others = {job.name for job in jobs} - {job.name for job in chapter}
    return _makespan(chapter, workers, others) * MINUTES_PER_COST / 60


def selected(jobs: Sequence[Job], patterns: Sequence[str]) -> list[Job]:
    """The jobs whose names contain one of ``patterns``, and every job they wait for (and so on), in
    the order of ``jobs``; a pattern that names no job raises :class:`ValueError`."""
    unmatched = [p for p in patterns if not any(p in job.name for job in jobs)]
    if unmatched:
        raise ValueError(f"no job's name contains {', '.join(map(repr, unmatched))} (python -m lib reproduce --dry-run lists them)")
    by_name = {job.name: job for job in jobs}
    chosen = {job.name for job in jobs if any(p in job.name for p in patterns)}
    todo = list(chosen)
    while todo:
        for name in by_name[todo.pop()].after:
            if name not in chosen:
                chosen.add(name)
                todo.append(name)
    return [job for job in jobs if job.name in chosen]


# ------------------------------------------------------------------------------ the jobs on a Dask cluster
COMPILE_ENV_VAR = "PRESYN_COMPILE"  # read by lib.train: "0" switches torch.compile off
WORKER_ENVIRONMENT = "distributed.nanny.pre-spawn-environ"
# glibc's allocator kept from handing freed memory back during training (see worker_environment)
TRAINING_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
POLL_SECONDS = 0.5  # how often the scheduling loop looks for an interrupt while it waits for jobs
DASK_LOGS = logging.getLogger("distributed")
HEARTBEAT_SECONDS = 300  # a line on the running jobs after this long without one


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the job itself, sent along with every job.

    A worker on another machine shares neither the caller's environment variables nor its working
    folder, so the caller's results folder, data folder and compile switch travel as these values
    (both folders must be on a file system that every worker sees); ``threads`` is the number of
    torch threads of a job.
    """

    results: Path
    data: Path
    compile: bool
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("results", "data"):
            if not Path(getattr(self, name)).is_absolute():
                raise ValueError(f"the {name} folder must be an absolute path (workers may run elsewhere), "
                                 f"got {getattr(self, name)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {self.threads!r}")

    @classmethod
    def of_this_process(cls, threads: int = 1) -> WorkerSettings:
        """The folders and compile switch this process would use itself (``$PRESYN_RESULTS``,
        ``$PRESYN_DATA``, ``$PRESYN_COMPILE`` or their defaults)."""
        return cls(cache.results_root().resolve(), data.data_root().resolve(),
                   os.environ.get(COMPILE_ENV_VAR, "1") != "0", threads)


class IgnoreInterrupts(WorkerPlugin):
    """Makes a local worker process ignore Ctrl-C, which the terminal sends to every process of the
    command: the caller decides what an interrupt stops (see :func:`reproduce`)."""

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _settings_applied(settings: WorkerSettings) -> Iterator[None]:
    """The library's environment variables and torch's thread count set from ``settings`` for one
    job (and restored after it); with several GPUs, worker ``k`` of a local cluster uses GPU ``k``."""
    variables = {cache.ENV_VAR: str(settings.results), data.ENV_VAR: str(settings.data),
                 COMPILE_ENV_VAR: "1" if settings.compile else "0"}
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    torch.set_num_threads(settings.threads)
    if torch.cuda.is_available() and isinstance(index := get_worker().name, int):  # LocalCluster names: 0, 1, ...
        torch.cuda.set_device(index % torch.cuda.device_count())
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_on_worker(job: Job, settings: WorkerSettings) -> tuple[float, str]:
    """Run ``job`` on this Dask worker with ``settings``; its wall time (seconds) and the machine."""
    with _settings_applied(settings):
        start = time.perf_counter()
        job.function(*job.args)
        return time.perf_counter() - start, cache.machine()


def default_workers() -> int:
    """One worker per core on the CPU; one per GPU when GPUs do the work."""
    return torch.cuda.device_count() if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def dashboard_available() -> bool:
    """Whether Dask can serve its dashboard here (it needs bokeh, which is optional)."""
    return importlib.util.find_spec("bokeh") is not None


@contextmanager
def dask_client(scheduler: str | None = None, cluster: str = "local", workers: int | None = None) -> Iterator[Client]:
    """A Dask client: of the scheduler at ``scheduler`` (e.g. ``tcp://host:8786``) if given, else of a
    cluster started here and closed on exit.

    ``cluster="local"`` starts a ``LocalCluster`` of ``workers`` (default :func:`default_workers`)
    single-threaded worker processes without a memory limit, ``cluster="slurm"`` a ``SLURMCluster``
    of ``dask-jobqueue`` configured by Dask's configuration (``jobqueue.yaml``: queue, cores, memory,
    walltime, ...) and scaled to ``workers`` workers.
    """
    if cluster not in ("local", "slurm"):
        raise ValueError(f"unknown cluster {cluster!r}; valid clusters: local, slurm")
    level = DASK_LOGS.level  # (:func:`reproduce` raises it when it ends workers; their cluster is closed here)
    try:
        if scheduler is not None:
            with Client(scheduler) as client:
                yield client
            return
        with dask.config.set({WORKER_ENVIRONMENT: worker_environment()}), _started_cluster(cluster, workers) as started:
            with Client(started) as client:
                yield client
    finally:
        DASK_LOGS.setLevel(level)


def worker_environment() -> dict[str, str]:
    """The environment variables a nanny sets before it starts a worker process: Dask's, with glibc's
    allocator set for training (``TRAINING_MALLOC``).

    Dask sets glibc's trim threshold to 64 KiB so that idle workers give memory back. A training step
    allocates and frees tensors of megabytes in the worker's task thread, so with that threshold every
    step hands pages back to the system and faults them in again. Measured on the 2-core CPU (300
    eager steps of three runs in a thread): user 8.9 s and system 22.4 s with Dask's setting, 7.4 s
    and 3.6 s with glibc's adaptive default, 5.8 s and 0.0 s when freed memory is kept (trim
    threshold 1 GiB) and blocks up to 32 MiB come from the heap instead of fresh mappings. A worker
    then holds the memory of its largest job until it ends.
    """
    return {**dask.config.get(WORKER_ENVIRONMENT, {}), **TRAINING_MALLOC}


@contextmanager
def _started_cluster(cluster: str, workers: int | None) -> Iterator[Any]:
    """A ``LocalCluster`` or ``SLURMCluster`` (:func:`dask_client`), closed on exit."""
    if cluster == "local":
        started = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                               memory_limit=0, dashboard_address=":8787" if dashboard_available() else None,
                               plugins={IgnoreInterrupts()})
    else:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise ImportError("a SLURM cluster needs dask-jobqueue: pip install .[cluster]") from None
        started = SLURMCluster()
        started.scale(workers or 1)
    with started:
        yield started


def _makespan(jobs: Sequence[Job], workers: int, done: set[str] = frozenset()) -> float:
    """When the last of ``jobs`` ends if ``workers`` workers take them as :func:`reproduce` does: each
    free worker the first job in this order whose jobs ``after`` have ended (those named in ``done``
    ended before); in the unit of the jobs' costs."""
    free = [0.0] * max(1, workers)
    end = dict.fromkeys(done, 0.0)
    waiting = [job for job in jobs if job.name not in end]
    while waiting:
        now = heapq.heappop(free)
        job = next((j for j in waiting if all(end.get(a, math.inf) <= now for a in j.after)), None)
        if job is None:  # this worker waits until a job it could take may start
            later = [t for t in end.values() if t > now]
            if not later:
                raise ValueError(f"no order of the jobs lets {waiting[0].name!r} start: it waits for {waiting[0].after}")
            heapq.heappush(free, min(later))
            continue
        waiting.remove(job)
        end[job.name] = now + job.cost
        heapq.heappush(free, end[job.name])
    return max(end.values(), default=0.0)


def seconds_per_cost(timings: Sequence[tuple[float, float]]) -> float:
    """Seconds of a worker per unit of cost, to estimate the time the jobs left need, from the timed
    jobs' ``(seconds, cost)``: the median of their ratios once three are timed, so that a single job far
    from its cost (a search trial that diverges and skips the rest of its training, a job beside other
    work) does not swing it; the reference CPU's (:data:`MINUTES_PER_COST`) before. Jobs done in less
    than :data:`LOADING_SECONDS` only loaded runs that another job had trained, and do not count."""
    ratios = [seconds / cost for seconds, cost in timings if cost > 0 and seconds >= LOADING_SECONDS]
    return statistics.median(ratios) if len(ratios) >= 3 else 60 * MINUTES_PER_COST


def seconds_left(running: Sequence[tuple[Job, float]], waiting: Sequence[Job], workers: int, pace: float,
                 done: set[str] = frozenset()) -> float:
    """Seconds until the last job ends: the ``running`` jobs, each with the seconds it has run, need the
    part of their cost not yet spent at ``pace`` seconds per unit of cost (none once they have run
    longer than their cost), then the ``waiting`` ones follow as :func:`_makespan` orders them."""
    rest = [replace(job, cost=max(0.0, job.cost - elapsed / pace)) for job, elapsed in running]
    return _makespan(rest + list(waiting), workers, done) * pace


def _times_redone(client: Client, key: str) -> int:
    """How often the scheduler handed the task ``key`` to another worker because its worker died."""
    def suspicious(dask_scheduler: Any) -> int:  # a closure is sent by value: the scheduler need not import lib
        task = dask_scheduler.tasks.get(key)
        return 0 if task is None else task.suspicious

    return client.run_on_scheduler(suspicious)


def reproduce(jobs: Sequence[Job], client: Client, settings: WorkerSettings, *, log=sys.stderr,
              whole: bool = True) -> dict:
    """Run every job on the workers of ``client``'s cluster with ``settings``; return the timings.

    Jobs start in the order given, each once the jobs it waits for (``after``) have finished, one per
    free worker thread (the cluster may grow while they run).
    A job whose worker dies (out of memory, a lost node) is redone on another worker, up to Dask's
    ``distributed.scheduler.allowed-failures`` times (3), and the record counts it under
    ``retried``; a job that raises starts no further job and, once the running ones finished, stops
    the call with its error, which names the job.

    The timings (seconds per job, wall time) are written to ``<results>/benchmarks/reproduce.json``
    after every job, so an interrupted call leaves its record too. A call that resumes an
    unfinished one continues its record: the earlier calls' wall time is added to ``wall_seconds``,
    and jobs they finished keep their times (here they only load their stored runs, in a second or
    two, and print no line). One line per finished job on ``log`` gives its time and the estimated time left
    (:func:`seconds_left`, at the :func:`seconds_per_cost` of the jobs timed so far, by this call and
    earlier ones), and a line on the running jobs, with the time left, follows every
    ``HEARTBEAT_SECONDS`` without one (a long job is alive). With ``whole=False`` the jobs are a part
    of the book's (:func:`selected`): the record is never marked finished, so that the next call, of
    the rest, continues it.

    Stopping: a first interrupt (Ctrl-C, SIGINT) starts no further job, lets the running ones finish
    and be recorded, and returns the record with ``finished`` false; a second interrupt, or SIGTERM,
    ends the worker processes of the running jobs at once (their jobs are lost, to be redone by the
    next call) and raises :class:`KeyboardInterrupt`.
    """
    path = Path(settings.results) / "benchmarks" / "reproduce.json"
    earlier = json.loads(path.read_text()) if path.is_file() else None
    resumed = earlier is not None and not earlier["finished"]
    record = {"machine": cache.machine(), "workers": len(client.nthreads()), "threads": settings.threads,
              "jobs": dict(earlier["jobs"]) if resumed else {},
              "retried": dict(earlier.get("retried", {})) if resumed else {},
              "finished": False, "calls": earlier["calls"] + 1 if resumed else 1}
    names = {job.name for job in jobs}
    done_before = names.intersection(record["jobs"])  # (the record may also hold jobs that this call did not select)
    earlier_seconds = earlier["wall_seconds"] if resumed else 0.0
    start = time.perf_counter()

    def save() -> None:
        record["wall_seconds"] = earlier_seconds + time.perf_counter() - start
        write_atomic(path, json.dumps(record, indent=1).encode())

    stopping = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping or signum != signal.SIGINT:
            raise KeyboardInterrupt
        stopping = True

    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, interrupt) for s in handled}
    call = uuid.uuid4().hex[:8]  # task keys of this call: never those of an earlier call on the same scheduler
    executor = client.get_executor(pure=False)
    waiting = list(jobs)
    running: dict[concurrent.futures.Future, tuple[Job, str]] = {}
    started: dict[str, float] = {}  # when each running job was submitted
    last_line = time.perf_counter()
    machines: set[str] = set()
    cost = {job.name: job.cost for job in jobs}
    failure: BaseException | None = None
    announced = False
    if done_before:
        print(f"[{len(done_before)}/{len(jobs)}] finished by earlier calls (their jobs only load their runs)",
              file=log, flush=True)

    def time_left(now: float, workers: int) -> str:
        """The estimate of the time left, and how many running jobs it cannot count (past their own estimate)."""
        pace = seconds_per_cost([(t, cost[name]) for name, t in record["jobs"].items() if name in cost])
        elapsed = [(j, now - started[k]) for j, k in running.values()]
        left = seconds_left(elapsed, [j for j in waiting if j.name not in done_before], workers, pace, set(record["jobs"]))
        overdue = sum(seconds > job.cost * pace for job, seconds in elapsed)
        return f"about {left / 60:.0f} min left" + (f", and {overdue} running job(s) past their estimate" if overdue else "")
    try:
        while waiting or running:
            workers = sum(client.nthreads().values())
            while not stopping and failure is None and len(running) < workers:
                job = next((j for j in waiting if all(name in record["jobs"] for name in j.after)), None)
                if job is None:
                    break
                waiting.remove(job)
                key = f"{job.name}-{call}"
                running[executor.submit(run_on_worker, job, settings, key=key)] = (job, key)
                started[key] = time.perf_counter()
            if stopping and not announced:
                announced = True
                print(f"interrupted: {len(running)} running job(s) finish first, {len(waiting)} not started; "
                      "interrupt again to stop at once", file=log, flush=True)
            if not running:
                if stopping or failure is not None:
                    break
                if waiting and workers:
                    raise RuntimeError(f"no job can start: {waiting[0].name!r} waits for {waiting[0].after}")
                time.sleep(POLL_SECONDS)  # no worker yet: the cluster is starting
                continue
            done, _ = concurrent.futures.wait(running, POLL_SECONDS, concurrent.futures.FIRST_COMPLETED)
            if not done and time.perf_counter() - last_line > HEARTBEAT_SECONDS:
                last_line = time.perf_counter()
                jobs_running = ", ".join(f"{job.name} ({(last_line - started[key]) / 60:.0f} min)"
                                         for job, key in running.values())
                print(f"[{len(names.intersection(record['jobs']))}/{len(jobs)}] running: {jobs_running}; "
                      f"{time_left(last_line, workers)}", file=log, flush=True)
            for future in done:
                job, key = running.pop(future)
                if future.exception() is not None:
                    future.exception().add_note(f"in job {job.name!r} of python -m lib reproduce")
                    failure = failure or future.exception()
                    continue
                seconds, machine = future.result()
                machines.add(machine)
                record["jobs"].setdefault(job.name, seconds)
                if redone := _times_redone(client, key):
                    record["retried"][job.name] = record["retried"].get(job.name, 0) + redone
                record["machine"] = "; ".join(sorted(machines))
                record["workers"] = max(record["workers"], workers)
                save()
                if job.name in done_before:
                    continue  # it only loaded its runs: no line of its own
                now = time.perf_counter()
                redone_text = f", redone {redone} time(s) after its worker died" if redone else ""
                print(f"[{len(names.intersection(record['jobs']))}/{len(jobs)}] {job.name}: {seconds / 60:.1f} min{redone_text}; "
                      f"{(now - start) / 60:.1f} min since the start of this call, {time_left(now, workers)}",
                      file=log, flush=True)
                last_line = time.perf_counter()
        if failure is not None:
            save()
            raise failure
    except KeyboardInterrupt:
        keys = {key for _, key in running.values()}
        busy = [worker for worker, processing in client.processing().items() if keys.intersection(processing)]
        executor.shutdown(wait=False)  # cancels the running jobs, then their worker processes end now
        if busy:  # (a nanny starts a fresh worker in place of each)
            DASK_LOGS.setLevel(logging.CRITICAL)  # the scheduler and nannies would log these intended ends as errors
            client.run(os._exit, 1, workers=busy, on_error="ignore")
        save()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    record["finished"] = whole and not waiting
    save()
    return record


def describe(jobs: Sequence[Job], workers: int, stored: set[str] = frozenset()) -> str:
    """The jobs and their estimated times, one per line, those named in ``stored`` marked as such, and
    the predicted total of the others (``--dry-run``)."""
    lines = [f"{'minutes':>8}  job (estimated time on one single-threaded worker of the 2-core reference CPU)"]
    lines += [f"{job.cost * MINUTES_PER_COST:8.1f}  {job.name}{'  (stored)' if job.name in stored else ''}" for job in jobs]
    pending = [job for job in jobs if job.name not in stored]
    total = sum(job.cost for job in pending) * MINUTES_PER_COST / 60
    lines.append(f"total: {len(jobs)} jobs, {len(jobs) - len(pending)} of them stored; the other {len(pending)}: "
                 f"{total:.1f} worker-hours, about {_makespan(pending, workers, set(stored)) * MINUTES_PER_COST / 60:.1f} h "
                 f"of wall time on {workers} worker(s)")
    return "\n".join(lines)


def longest_jobs(seconds: dict[str, float], most: int = 40) -> list[tuple[str, float]]:
    """The timed jobs (name: seconds), longest first: all of them, or the ``most`` - 1 longest and, last,
    the others summed under the name "the other N jobs", so that a chart of a long job list stays
    readable and its total stays the record's."""
    ranked = sorted(seconds.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) <= most:
        return ranked
    rest = ranked[most - 1:]
    return ranked[:most - 1] + [(f"the other {len(rest)} jobs", sum(t for _, t in rest))]
