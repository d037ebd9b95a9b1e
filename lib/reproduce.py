"""Every paper-scale training run of the book, on several worker processes at once (``make reproduce``).

The book's training splits into jobs: one per (benchmark, method, setting) of chapter 5 with its seeds
trained together, and the energy runs of chapters 2-4. :func:`reproduce` hands the jobs, longest
first, to ``workers`` processes of ``threads`` threads each. On a small CPU this beats one process
using every core, because the 784-200-200 matrices are too small to spread well over threads.
Every job stores its runs in the results cache as soon as they finish, so a second call goes on from
there; the chapters then find every run stored and only plot and analyse (chapters 3, 4 and 6
compute their analyses and the perceptron, minutes in all, when the book is built).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from . import continual, experiments, search
from .data import write_atomic

# Relative cost of one seed of one method, for the order of the jobs only (longest first). Measured
# on a 2-core CPU: a seed of a permuted benchmark takes about 5 min for the stochastic models, BGD
# about 5 times that, the deterministic networks about half.
BENCHMARK_COST = {"split_mnist": 0.5, "split_fmnist": 0.5, "perm_mnist": 5.5, "perm_fmnist": 5.5, "perm_mnist_cont": 5.5}
METHOD_COST = {"bgd": 5.0, "sgd": 0.45, "ewc": 0.45, "joint": 0.45}
ENERGY_RUN_COST = 1.2
ROBUSTNESS_P_INIT = (0.25, 0.5, 0.75)  # chapter 3's initial release probabilities
ANALYSED_WEIGHT_DECAY = 0.01           # chapters 3 and 4 analyse the networks of this lambda


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
    weight_decays: tuple[float, ...] = experiments.PAPER_WEIGHT_DECAYS
    search_benchmark: str = "split_mnist"
    search_trials: int = 24


def _train_lifelong(protocol: continual.LifelongProtocol, specs: tuple[continual.RunSpec, ...]) -> None:
    continual.run_specs(protocol, specs, progress=False)


def _train_energy(models: tuple[str, ...], weight_decays: tuple[float, ...], seeds: tuple[int, ...],
                  protocol: experiments.EnergyProtocol) -> None:
    """Chapter 2's runs of ``models``; the fixed model needs the presynaptic runs first (its matched p)."""
    presynaptic_runs = None
    for model in models:
        fixed_p = experiments.matched_release(weight_decays, presynaptic_runs) if model == "fixed" else None
        runs = experiments.energy_sweep(model, weight_decays, seeds, protocol, fixed_p, progress=False)
        if model == "presynaptic":
            presynaptic_runs = runs


def _train_robustness(seeds: tuple[int, ...], protocol: experiments.EnergyProtocol) -> None:
    """Chapter 3's presynaptic networks started from other release probabilities."""
    runs = [experiments.energy_run("presynaptic", ANALYSED_WEIGHT_DECAY, s, p_init=p0) for p0 in ROBUSTNESS_P_INIT for s in seeds]
    default = {experiments.energy_run("presynaptic", ANALYSED_WEIGHT_DECAY, s) for s in seeds}  # chapter 2's job trains these
    experiments.run_energy([r for r in runs if r not in default], protocol, progress=False)


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
    protocol = experiments.EnergyProtocol(epochs=scale.energy_epochs, subset=scale.subset, eval_samples=scale.eval_samples)
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


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle (see reproduce)


def _timed(job: Job) -> float:
    start = time.perf_counter()
    job.function(*job.args)
    return time.perf_counter() - start


def default_workers() -> int:
    """One worker per core on the CPU; one worker when a GPU does the work."""
    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now, whatever they are doing."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def reproduce(jobs: Sequence[Job], workers: int = 1, threads: int = 1, *, log=sys.stderr) -> dict:
    """Run every job on ``workers`` processes of ``threads`` threads each; return the timings.

    Jobs start in the order given, one per free worker. The timings (seconds per job, wall time)
    are also written to ``<results>/benchmarks/reproduce.json`` after every job, so an interrupted
    call leaves its record too. A call that resumes an unfinished one continues its record: the
    earlier calls' wall time is added to ``wall_seconds``, and jobs they finished keep their times
    (here they only load their stored runs, in a second or two).

    Stopping: a first interrupt (Ctrl-C, SIGINT) starts no further job, lets the running ones finish
    and be recorded, and returns the record with ``finished`` false; a second interrupt, or SIGTERM,
    ends the workers at once (their jobs are lost, to be redone by the next call) and raises
    :class:`KeyboardInterrupt`. The workers are spawned interpreters, so a script that calls this
    needs the usual ``if __name__ == "__main__":`` guard (``python -m lib reproduce`` has it).
    """
    if workers < 1 or threads < 1:
        raise ValueError(f"workers and threads must be positive, got {workers} and {threads}")
    path = experiments.results_root() / "benchmarks" / "reproduce.json"
    earlier = json.loads(path.read_text()) if path.is_file() else None
    resumed = earlier is not None and not earlier["finished"]
    record = {"machine": experiments.machine(), "workers": workers, "threads": threads,
              "jobs": dict(earlier["jobs"]) if resumed else {}, "finished": False,
              "calls": earlier["calls"] + 1 if resumed else 1}
    earlier_seconds = earlier["wall_seconds"] if resumed else 0.0
    start = time.perf_counter()

    def save() -> None:
        record["wall_seconds"] = earlier_seconds + time.perf_counter() - start
        write_atomic(path, json.dumps(record, indent=1).encode())

    waiting = list(jobs)
    running: dict[Future, Job] = {}
    stopping = False

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping or signum != signal.SIGINT:
            raise KeyboardInterrupt
        stopping = True
        print(f"interrupted: {len(running)} running job(s) finish first, {len(waiting)} not started; "
              "interrupt again to stop at once", file=log, flush=True)

    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, interrupt) for s in handled}
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited thread state
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    n_done = 0
    try:
        while waiting or running:
            while waiting and not stopping and len(running) < workers:
                job = waiting.pop(0)
                running[pool.submit(_timed, job)] = job
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                seconds = future.result()  # a failed job stops the call: its error is raised here
                record["jobs"].setdefault(job.name, seconds)
                save()
                n_done += 1
                elapsed = (time.perf_counter() - start) / 60
                print(f"[{n_done}/{len(jobs)}] {job.name}: {seconds / 60:.1f} min "
                      f"({elapsed:.1f} min since the start of this call)", file=log, flush=True)
    except KeyboardInterrupt:
        _terminate_workers(pool)
        save()
        raise
    finally:  # after an error, the other running jobs finish (and store their runs); no new one starts
        pool.shutdown(wait=True, cancel_futures=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    record["finished"] = not waiting
    save()
    return record


def describe(jobs: Sequence[Job]) -> str:
    """The jobs and their relative costs, one per line (``--dry-run``)."""
    return "\n".join(f"{job.cost:7.1f}  {job.name}" for job in jobs)


# ------------------------------------------------------------------------------ agreement of two results folders
@dataclass(frozen=True)
class Agreement:
    """How the runs of one experiment stored in a second results folder compare with a reference folder.

    A run is *identical* when every number of its result (all but the training ``seconds``) and every
    array of its stored network state are equal bit for bit. ``largest_difference`` is the largest
    absolute difference of one number among the runs that differ (0 when none does).
    """

    experiment: str
    compared: int
    identical: int
    largest_difference: float
    missing: int  # runs of the reference folder that the other one lacks


def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of a stored result as (path, value) pairs, its training times left out."""
    if isinstance(value, dict):
        for key in sorted(value):
            if key != "seconds":
                yield from _numbers(value[key], f"{path}/{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _numbers(item, f"{path}/{k}")
    else:
        yield path, value


def _result_difference(a: dict, b: dict) -> float | None:
    """None when the results ``a`` and ``b`` are equal bit for bit, else the largest absolute difference
    of a number (infinite when their structure or a non-numeric entry differs)."""
    left, right = list(_numbers(a)), list(_numbers(b))
    if [p for p, _ in left] != [p for p, _ in right]:
        return float("inf")
    differences = [(x, y) for (_, x), (_, y) in zip(left, right) if x != y]
    if not differences:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for pair in differences for v in pair):
        return float("inf")
    return max(abs(x - y) for x, y in differences)


def _state_difference(a: Path, b: Path) -> float | None:
    """As :func:`_result_difference`, for two stored network states (``.npz``)."""
    with np.load(a) as x, np.load(b) as y:  # each array read once (an NpzFile reads on every access)
        left, right = dict(x.items()), dict(y.items())
    if sorted(left) != sorted(right) or any(left[k].shape != right[k].shape for k in left):
        return float("inf")
    differing = [k for k in left if not np.array_equal(left[k], right[k])]
    if not differing:
        return None
    return max(float(np.max(np.abs(left[k].astype(np.float64) - right[k]))) for k in differing)


def compare_results(reference: Path, other: Path) -> list[Agreement]:
    """Compare every run stored in ``other`` with the run of the same key in ``reference``, per experiment.

    The key hashes a run's full configuration and library version, so equal names mean equal
    configurations. Timing records (``benchmarks/``) are not runs and are skipped.
    """
    reference, other = Path(reference), Path(other)
    for folder in (reference, other):
        if not folder.is_dir():
            raise FileNotFoundError(f"no results folder at {folder}")
    agreements = []
    for folder in sorted(p for p in reference.iterdir() if p.is_dir() and p.name != "benchmarks"):
        compared = identical = missing = 0
        largest = 0.0
        for path in sorted(folder.glob("*.json")):
            twin = other / folder.name / path.name
            if not twin.is_file():
                missing += 1
                continue
            differences = [_result_difference(json.loads(path.read_text())["result"], json.loads(twin.read_text())["result"])]
            state, state_twin = path.with_suffix(".npz"), twin.with_suffix(".npz")
            if state.is_file() and state_twin.is_file():
                differences.append(_state_difference(state, state_twin))
            differences = [d for d in differences if d is not None]
            compared += 1
            identical += not differences
            largest = max([largest, *differences])
        agreements.append(Agreement(folder.name, compared, identical, largest, missing))
    return agreements


def save_agreement(path: Path, agreements: Sequence[Agreement]) -> None:
    """Write :func:`compare_results`'s table to ``path`` (JSON), e.g. before the compared runs replace the reference."""
    write_atomic(Path(path), json.dumps([asdict(a) for a in agreements], indent=1).encode())


def load_agreement(path: Path) -> list[Agreement]:
    """The table written by :func:`save_agreement`."""
    return [Agreement(**a) for a in json.loads(Path(path).read_text())]


def describe_agreement(agreements: Sequence[Agreement]) -> str:
    """A Markdown table of :func:`compare_results`."""
    lines = ["| experiment | runs compared | identical bit for bit | largest difference | stored only in the reference |",
             "|---|---|---|---|---|"]
    for a in agreements:
        lines.append(f"| {a.experiment} | {a.compared} | {a.identical} | {a.largest_difference:.3g} | {a.missing} |")
    return "\n".join(lines)
