"""Every paper-scale training run of the book as jobs on a Dask cluster (``make reproduce``).

The book's training splits into jobs: one per (benchmark, method, setting) of chapter 5 with its seeds
trained together, and the energy runs of chapters 2-4. :func:`reproduce` hands the jobs, longest
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
import os
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import dask
import torch
from distributed import Client, LocalCluster, WorkerPlugin, get_worker

from . import cache, continual, data, energy, search
from .energy_analysis import ANALYSED_WEIGHT_DECAY
from .data import write_atomic

# Relative cost of one seed of one method, for the order of the jobs (longest first) and the time
# estimates. Measured on a 2-core CPU: a seed of a permuted benchmark takes about 5 min for the
# stochastic models, BGD about 5 times that, the deterministic networks about half.
BENCHMARK_COST = {"split_mnist": 0.5, "split_fmnist": 0.5, "perm_mnist": 5.5, "perm_fmnist": 5.5, "perm_mnist_cont": 5.5}
METHOD_COST = {"bgd": 5.0, "sgd": 0.45, "ewc": 0.45, "joint": 0.45}
ENERGY_RUN_COST = 1.2
# Minutes of one single-threaded worker per unit of cost: the 67 jobs of the timed make reproduce on
# the 2-core reference CPU (results/benchmarks/reproduce.json) took 521 job-minutes for 730 units.
MINUTES_PER_COST = 0.71
ROBUSTNESS_P_INIT = (0.25, 0.5, 0.75)  # chapter 3's initial release probabilities


@dataclass(frozen=True)
class Job:
    """One unit of work: ``function(*args)`` trains (or loads) some runs; ``cost`` orders the jobs."""

    name: str
    cost: float
    function: Callable
    args: tuple


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


def _train_lifelong(protocol: continual.LifelongProtocol, specs: tuple[continual.RunSpec, ...]) -> None:
    continual.run_specs(protocol, specs, progress=False)


def _train_energy(models: tuple[str, ...], weight_decays: tuple[float, ...], seeds: tuple[int, ...],
                  protocol: energy.EnergyProtocol) -> None:
    """Chapter 2's runs of ``models``; the fixed model needs the presynaptic runs first (its matched p)."""
    presynaptic_runs = None
    for model in models:
        fixed_p = energy.matched_release(weight_decays, presynaptic_runs) if model == "fixed" else None
        runs = energy.energy_sweep(model, weight_decays, seeds, protocol, fixed_p, progress=False)
        if model == "presynaptic":
            presynaptic_runs = runs


def _train_robustness(seeds: tuple[int, ...], protocol: energy.EnergyProtocol) -> None:
    """Chapter 3's presynaptic networks started from other release probabilities."""
    runs = [energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s, p_init=p0) for p0 in ROBUSTNESS_P_INIT for s in seeds]
    default = {energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s) for s in seeds}  # chapter 2's job trains these
    energy.run_energy([r for r in runs if r not in default], protocol, progress=False)


def _search(protocol: continual.LifelongProtocol, n_trials: int) -> None:
    search.random_search(protocol, n_trials, progress=False)


def lifelong_jobs(scale: Scale = Scale()) -> list[Job]:
    """One job per (benchmark, method, overrides) of chapter 5, its seeds trained together, and one
    for its random search."""
    jobs = []
    for benchmark in scale.benchmarks:
        protocol = continual.LifelongProtocol(benchmark, epochs=scale.epochs_per_task, subset=scale.subset,
                                              eval_samples=scale.eval_samples)
        groups: dict[tuple, list[continual.RunSpec]] = {}
        for spec in dict.fromkeys(continual.chapter_specs(benchmark, scale.seeds).values()):
            groups.setdefault((spec.method, spec.overrides), []).append(spec)
        for (method, overrides), specs in groups.items():
            setting = "".join(f" {k}={v:g}" for k, v in overrides)
            cost = BENCHMARK_COST[benchmark] * METHOD_COST.get(method, 1.0) * len(specs)
            jobs.append(Job(f"{benchmark} {method}{setting}", cost, _train_lifelong, (protocol, tuple(specs))))
    protocol = continual.LifelongProtocol(scale.search_benchmark, epochs=scale.epochs_per_task, subset=scale.subset,
                                          eval_samples=scale.eval_samples)
    cost = BENCHMARK_COST[scale.search_benchmark] * (scale.search_trials + 1)
    jobs.append(Job(f"{scale.search_benchmark} random search", cost, _search, (protocol, scale.search_trials)))
    return jobs


def energy_jobs(scale: Scale = Scale()) -> list[Job]:
    """Chapter 2's runs (presynaptic then fixed, deterministic) and chapter 3's robustness runs."""
    protocol = energy.EnergyProtocol(epochs=scale.energy_epochs, subset=scale.subset, eval_samples=scale.eval_samples)
    n = len(scale.weight_decays) * len(scale.seeds)
    cost = ENERGY_RUN_COST * scale.energy_epochs / 50
    return [
        Job("energy presynaptic, fixed", 2 * n * cost, _train_energy,
            (("presynaptic", "fixed"), scale.weight_decays, scale.seeds, protocol)),
        Job("energy deterministic", n * cost, _train_energy, (("deterministic",), scale.weight_decays, scale.seeds, protocol)),
        Job("energy robustness", (len(ROBUSTNESS_P_INIT) - 1) * len(scale.seeds) * cost, _train_robustness,
            (scale.seeds, protocol)),
    ]


def all_jobs(scale: Scale = Scale()) -> list[Job]:
    """Every job of the book, longest first (so that the last ones to finish are short)."""
    return sorted(energy_jobs(scale) + lifelong_jobs(scale), key=lambda job: -job.cost)


# ------------------------------------------------------------------------------ the jobs on a Dask cluster
COMPILE_ENV_VAR = "PRESYN_COMPILE"  # read by lib.train: "0" switches torch.compile off
WORKER_ENVIRONMENT = "distributed.nanny.pre-spawn-environ"
# glibc's allocator kept from handing freed memory back during training (see worker_environment)
TRAINING_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
POLL_SECONDS = 0.5  # how often the scheduling loop looks for an interrupt while it waits for jobs
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
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    if cluster not in ("local", "slurm"):
        raise ValueError(f"unknown cluster {cluster!r}; valid clusters: local, slurm")
    with dask.config.set({WORKER_ENVIRONMENT: worker_environment()}), _started_cluster(cluster, workers) as started:
        with Client(started) as client:
            yield client


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


def _makespan(costs: Sequence[float], workers: int) -> float:
    """When the last of jobs with ``costs`` ends if ``workers`` workers take them in this order, each
    the next one as soon as it is free (in the costs' unit)."""
    free = [0.0] * max(1, workers)
    for cost in costs:
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free)


def predicted_hours(jobs: Sequence[Job], workers: int) -> float:
    """The wall time of ``jobs`` on ``workers`` single-threaded workers of the 2-core reference CPU."""
    return _makespan([job.cost for job in jobs], workers) * MINUTES_PER_COST / 60


def _times_redone(client: Client, key: str) -> int:
    """How often the scheduler handed the task ``key`` to another worker because its worker died."""
    def suspicious(dask_scheduler: Any) -> int:  # a closure is sent by value: the scheduler need not import lib
        task = dask_scheduler.tasks.get(key)
        return 0 if task is None else task.suspicious

    return client.run_on_scheduler(suspicious)


def reproduce(jobs: Sequence[Job], client: Client, settings: WorkerSettings, *, log=sys.stderr) -> dict:
    """Run every job on the workers of ``client``'s cluster with ``settings``; return the timings.

    Jobs start in the order given, one per free worker thread (the cluster may grow while they run).
    A job whose worker dies (out of memory, a lost node) is redone on another worker, up to Dask's
    ``distributed.scheduler.allowed-failures`` times (3), and the record counts it under
    ``retried``; a job that raises starts no further job and, once the running ones finished, stops
    the call with its error, which names the job.

    The timings (seconds per job, wall time) are written to ``<results>/benchmarks/reproduce.json``
    after every job, so an interrupted call leaves its record too. A call that resumes an
    unfinished one continues its record: the earlier calls' wall time is added to ``wall_seconds``,
    and jobs they finished keep their times (here they only load their stored runs, in a second or
    two). One line per finished job on ``log`` gives its time and the estimated time left, and a line
    on the running jobs follows every ``HEARTBEAT_SECONDS`` without one (a long job is alive).

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
    done_before = set(record["jobs"])
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
    trained = {"seconds": 0.0, "cost": 0.0}  # the jobs of this call that trained (for the time left)
    failure: BaseException | None = None
    announced = False
    try:
        while waiting or running:
            workers = sum(client.nthreads().values())
            while waiting and not stopping and failure is None and len(running) < workers:
                job = waiting.pop(0)
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
                time.sleep(POLL_SECONDS)  # no worker yet: the cluster is starting
                continue
            done, _ = concurrent.futures.wait(running, POLL_SECONDS, concurrent.futures.FIRST_COMPLETED)
            if not done and time.perf_counter() - last_line > HEARTBEAT_SECONDS:
                last_line = time.perf_counter()
                jobs_running = ", ".join(f"{job.name} ({(last_line - started[key]) / 60:.0f} min)"
                                         for job, key in running.values())
                print(f"[{len(record['jobs'])}/{len(jobs)}] running: {jobs_running}", file=log, flush=True)
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
                if job.name not in done_before:
                    trained["seconds"] += seconds
                    trained["cost"] += job.cost
                left = [j.cost for j, _ in running.values()] + [j.cost for j in waiting if j.name not in done_before]
                seconds_per_cost = trained["seconds"] / trained["cost"] if trained["cost"] else 60 * MINUTES_PER_COST
                redone_text = f", redone {redone} time(s) after its worker died" if redone else ""
                print(f"[{len(record['jobs'])}/{len(jobs)}] {job.name}: {seconds / 60:.1f} min{redone_text}; "
                      f"{(time.perf_counter() - start) / 60:.1f} min since the start of this call, about "
                      f"{_makespan(left, workers) * seconds_per_cost / 60:.0f} min left", file=log, flush=True)
                last_line = time.perf_counter()
        if failure is not None:
            save()
            raise failure
    except KeyboardInterrupt:
        keys = {key for _, key in running.values()}
        busy = [worker for worker, processing in client.processing().items() if keys.intersection(processing)]
        executor.shutdown(wait=False)  # cancels the running jobs, then their worker processes end now
        if busy:  # (a nanny starts a fresh worker in place of each)
            client.run(os._exit, 1, workers=busy, on_error="ignore")
        save()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    record["finished"] = not waiting
    save()
    return record


def describe(jobs: Sequence[Job], workers: int) -> str:
    """The jobs and their estimated times, one per line, and the predicted total (``--dry-run``)."""
    lines = [f"{'minutes':>8}  job (estimated time on one single-threaded worker of the 2-core reference CPU)"]
    lines += [f"{job.cost * MINUTES_PER_COST:8.1f}  {job.name}" for job in jobs]
    total = sum(job.cost for job in jobs) * MINUTES_PER_COST / 60
    lines.append(f"total: {len(jobs)} jobs, {total:.1f} worker-hours; about {predicted_hours(jobs, workers):.1f} h "
                 f"of wall time on {workers} worker(s), longest job first")
    return "\n".join(lines)
