"""Continual learning (Figs. 4, 5a, Appendix 1-table 1): methods, their settings, and cached runs.

Every method is a recipe that turns (benchmark, seed) into one run of the batched engine:

* ``presynaptic``: presynaptic consolidation, i.e. plastic release probabilities with learning-rate
  modulation (eq. 5) and freezing at :math:`p_{freeze}` (the authors' lifelong configs ``etc/dyn_*.json``).
  No task boundary is used.
* ``no_consolidation``: the same stochastic model without modulation and without freezing.
* ``sgd``: the authors' "standard" baseline, a deterministic network trained by the optimiser and
  learning rate of their configs (SGD or Adam, ``etc/mlp_*.json``).
* ``ewc``: elastic weight consolidation (Kirkpatrick et al. 2017) on the deterministic network; it
  is told the task boundaries, where it stores each task's Fisher information.
* ``si``: synaptic intelligence (Zenke et al. 2017) on the deterministic network; it is told the task
  boundaries, where it turns each task's path integral into the importance of every parameter.
* ``bgd``: Bayesian gradient descent (Zeno et al. 2018), task-agnostic (:mod:`lib.bgd`).
* ``joint``: the multitask upper bound, one deterministic network trained on all tasks at once.
* ablations of Fig. 5a, each with the metaplasticity values its own search found
  (``exp_ablation_split-mnist.sh``, ``exp_ablation_perm-mnist.sh``):
  ``full`` (the complete model with the ablation study's values), ``no_freeze``,
  ``no_lr_modulation``, ``no_freeze_no_lr_modulation`` and ``ghost`` (release fixed at 0.5 while a
  "ghost" :math:`p` still evolves and gates plasticity).

Runs are cached one file per (protocol, benchmark, method, seed) under ``results/lifelong``; runs
that share a network type train together as one batched computation.
"""
from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from . import paper
from .bgd import BGD_SETTINGS, BayesianMLP, BGDConfig, largest_std
from .book import number, seeds_text, signed, ttest
from .cache import load_cached, store
from .model import StochasticMLP, SynapseConfig, deterministic, presynaptic
from .tasks import Benchmark, ContinuousStream, Task, make_benchmark
from .metrics import backward_transfer, forgetting, learning_accuracy
from .train import default_device, fit

LIFELONG_BENCHMARKS = ("split_mnist", "perm_mnist", "split_fmnist", "perm_fmnist", "perm_mnist_cont")
METHODS = {
    "presynaptic": "presynaptic consolidation (plastic p, lr modulation, freezing)",
    "no_consolidation": "stochastic synapses with plastic p, no lr modulation, no freezing",
    "sgd": "standard deterministic network (optimiser and learning rate of the authors' configs)",
    "ewc": "elastic weight consolidation (told the task boundaries)",
    "si": "synaptic intelligence (told the task boundaries)",
    "bgd": "Bayesian gradient descent",
    "joint": "joint training on all tasks (upper bound)",
    "full": "ablation study: the full model with its re-tuned values",
    "no_freeze": "ablation: no freezing",
    "no_lr_modulation": "ablation: no learning-rate modulation",
    "no_freeze_no_lr_modulation": "ablation: neither freezing nor lr modulation",
    "ghost": "ablation: release fixed at 0.5, ghost p gates plasticity",
    "signal_p_at_boundaries": "presynaptic, lr modulated by p as it was at the last task boundary",
    "signal_fisher": "presynaptic, lr modulated by the summed Fisher information of the past tasks",
    "signal_path_integral": "presynaptic, lr modulated by synaptic intelligence's importance",
    "signal_magnitude": "presynaptic, lr modulated by the magnitude of the weights at the last task boundary",
}
# Presynaptic settings of the authors' lifelong configs (``etc/dyn_*.json``). The configs have p_up = 0.0520 and
# p_down = 0.0516, the paper's Methods the other way round; the configs produced the published numbers.
LIFELONG_RULE = dict(g_lim=0.001, p_up=0.0520, p_down=0.0516, p_freeze=0.9353, lr_modulation=True, weight_decay=0.0)
PRESYNAPTIC_LR = {"split": 0.001, "perm": 0.01}
# Ablations (``exp_ablation_*.sh``): (p_down, p_up, p_freeze) per family; p_freeze = 1.0 in the code means never.
ABLATIONS = {
    "full": {"split": (0.0624703, 0.05835393, 0.94452875), "perm": (0.04021639, 0.04460148, 0.94791622)},
    "no_freeze": {"split": (0.08590142, 0.06543912, 1.0), "perm": (0.04378614, 0.04522727, 1.0)},
    "no_freeze_no_lr_modulation": {"split": (0.09587958, 0.01798108, 1.0), "perm": (0.02954858, 0.09202317, 1.0)},
    "no_lr_modulation": {"split": (0.0506991, 0.04199989, 0.94187781), "perm": (0.03559312, 0.08535058, 0.92272659)},
    "ghost": {"split": (0.09833934, 0.09764242, 0.9466155), "perm": (0.05188978, 0.0571483, 0.92943784)},
}
# The standard baseline's optimiser and learning rate per benchmark (authors' configs ``etc/mlp_*.json``).
STANDARD = {"perm_mnist": ("sgd", 1e-3), "perm_fmnist": ("adam", 1e-6), "split_mnist": ("adam", 1e-6),
            "split_fmnist": ("sgd", 1e-4), "perm_mnist_cont": ("sgd", 1e-3)}
JOINT = ("adam", 1e-3)
# EWC: not in the authors' code. Adam as for joint training (with plain SGD the penalty's stiffness
# lambda * F caps the stable learning rate); the penalty strength is chosen by the grid of chapter 5.
EWC_OPTIMIZER = ("adam", 1e-3)
EWC_LAMBDA = {"split": 1000.0, "perm": 10.0}
# Grids of the penalty strength, per family, around the values used (on Permuted MNIST accuracy falls
# from lambda = 10 upwards, so the grid goes further down there).
EWC_GRID = {"split": (10.0, 100.0, 1000.0, 10000.0, 100000.0), "perm": (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)}
# SI: not in the authors' code either. EWC's optimiser (Adam 1e-3, also that of Zenke et al.'s Permuted
# MNIST runs). Strengths of van de Ven et al.'s implementation (``param_values.py``) for the
# domain-incremental scenario, which a shared output head makes of both families: c = 50000 on Split
# MNIST, c = 10 on Permuted MNIST.
SI_C = {"split": 50000.0, "perm": 10.0}
CONTINUOUS_TRANSITION = 0.25
# What chapter 5 shows: the main comparison on every benchmark, the ablations (Fig. 5a) on two.
MAIN_METHODS = ("presynaptic", "no_consolidation", "sgd", "ewc", "bgd", "joint")
ABLATION_METHODS = ("full", "no_freeze", "no_lr_modulation", "no_freeze_no_lr_modulation", "ghost")
ABLATION_BENCHMARKS = ("split_mnist", "perm_mnist")
# Chapter 7: the presynaptic model with another consolidation signal in eq. 5 (``consolidation_signal`` of
# lib.model.SynapseConfig), on the ablations' benchmarks.
SIGNAL_METHODS = ("signal_p_at_boundaries", "signal_fisher", "signal_path_integral", "signal_magnitude")
# The names of the benchmarks and methods on the book's pages.
BENCHMARK_NAMES = {"split_mnist": "Split MNIST", "split_fmnist": "Split Fashion-MNIST", "perm_mnist": "Permuted MNIST",
                   "perm_fmnist": "Permuted Fashion-MNIST", "perm_mnist_cont": "continuous Permuted MNIST"}
METHOD_LABELS = {"presynaptic": "presynaptic", "no_consolidation": "no consolidation (stochastic)",
                 "sgd": "standard (deterministic)", "ewc": "EWC", "si": "SI", "bgd": "BGD", "joint": "joint training",
                 "full": "full model", "no_freeze": "no freezing", "no_lr_modulation": "no lr modulation",
                 "no_freeze_no_lr_modulation": "neither", "ghost": "ghost $p$",
                 "signal_p_at_boundaries": "$p$ at task ends", "signal_fisher": "Fisher information",
                 "signal_path_integral": "SI's $\\Omega$", "signal_magnitude": "$\\lvert\\bar w\\rvert$ at task ends"}


def what_label(what: Hashable) -> str:
    """The name on the page of a key of :func:`chapter_specs`: a method, ``("tuned", method)``,
    ``("oracle", method)`` or ``("ewc", lambda)``."""
    if isinstance(what, str):
        return METHOD_LABELS[what]
    kind, value = what
    if kind == "ewc":
        return f"EWC, $\\lambda$ = {value:g}"
    return f"{METHOD_LABELS[value]}, {'tuned' if kind == 'tuned' else 'tuned on this benchmark'}"


def what_name(what: Hashable) -> str:
    """A key of :func:`chapter_specs` as one plain word (``ewc``, ``tuned:ewc``, ``ewc_lambda=10``)."""
    if isinstance(what, str):
        return what
    kind, value = what
    return f"ewc_lambda={value:g}" if kind == "ewc" else f"{kind}:{value}"


def family(benchmark: str) -> str:
    """``"split"`` or ``"perm"``: which of the authors' settings a benchmark uses."""
    check_benchmark(benchmark)
    return "split" if benchmark.startswith("split") else "perm"


def check_benchmark(benchmark: str) -> None:
    if benchmark not in LIFELONG_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(LIFELONG_BENCHMARKS)}")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def bgd_settings(benchmark: str) -> BGDConfig:
    """BGD's settings on ``benchmark`` (:data:`lib.bgd.BGD_SETTINGS`; the continuous benchmark uses Permuted MNIST's)."""
    check_benchmark(benchmark)
    return BGD_SETTINGS[benchmark.replace("_cont", "")]


def method_config(method: str, benchmark: str, seed: int, **overrides) -> SynapseConfig | BGDConfig:
    """The configuration of the run of ``method`` on ``benchmark`` with ``seed``; ``overrides`` replace any
    setting of it (:class:`~lib.model.SynapseConfig` or, for ``bgd``, :class:`~lib.bgd.BGDConfig`), e.g. for
    ``ewc`` its ``optimizer``, ``lr``, ``ewc_lambda``, ``ewc_mode`` and ``ewc_gamma``, for ``si`` its ``si_c``
    and ``si_xi``, for ``bgd`` its ``std_init``, ``mean_eta`` and ``mean_init``."""
    check_method(method)
    fam = family(benchmark)
    if method == "bgd":
        return replace(bgd_settings(benchmark), seed=seed, **overrides)
    if method in ("sgd", "joint", "ewc", "si"):
        optimizer, lr = {"sgd": STANDARD[benchmark], "joint": JOINT, "ewc": EWC_OPTIMIZER, "si": EWC_OPTIMIZER}[method]
        extra = {"ewc": {"ewc_lambda": EWC_LAMBDA[fam]}, "si": {"si_c": SI_C[fam]}}.get(method, {})
        return deterministic(**(dict(seed=seed, optimizer=optimizer, lr=lr, **extra) | overrides))
    rule = dict(LIFELONG_RULE, lr=PRESYNAPTIC_LR[fam], seed=seed)
    if method == "no_consolidation":
        rule |= dict(lr_modulation=False, p_freeze=math.inf)
    elif method in SIGNAL_METHODS:
        rule["consolidation_signal"] = method.removeprefix("signal_")
    elif method in ABLATIONS:
        p_down, p_up, p_freeze = ABLATIONS[method][fam]
        rule |= dict(p_down=p_down, p_up=p_up, p_freeze=math.inf if p_freeze >= 1 else p_freeze)
        if "no_lr_modulation" in method:
            rule["lr_modulation"] = False
        if method == "ghost":
            rule |= dict(release_p=0.5, p_init=0.5)
    return presynaptic(**(rule | overrides))


@dataclass(frozen=True)
class LifelongProtocol:
    """What the runs of one benchmark share (``exp_lifelong.sh``): 784-200-200-{2|10}, 10 epochs per task,
    batch 100, 10 stochastic test passes; ``subset`` keeps fewer examples per task (smoke runs).

    The permutations of the permuted benchmarks are drawn once (``permutation_seed``) and shared by
    all runs, so that runs of different seeds can be trained as one batch (the authors drew them
    from each run's seed).

    Three switches bring the protocol to that of the BGD reference code (``igolan/bgd``, which the
    authors' BGD runs used): ``eval_batch``, the test examples that share one stochastic draw (one
    per test batch there, so its training batch size, 128 in the authors' runs); ``drop_last=False``,
    which trains on each epoch's last incomplete mini-batch too; and ``permute_first_task=False``,
    which leaves task 1 of a permuted benchmark unpermuted. ``n_tasks`` gives a permuted benchmark a
    longer (or shorter) sequence of tasks than its 10 (chapter 7); ``evaluate_unseen=False`` evaluates,
    after each task, only the tasks learned so far (the others' accuracy is recorded as NaN), which
    halves the evaluations of a long sequence (their number grows with the square of its length).
    """

    benchmark: str
    epochs: int = 10
    batch_size: int = 100
    eval_samples: int = 10
    hidden: tuple[int, ...] = (200, 200)
    subset: int | None = None
    permutation_seed: int = 0
    eval_batch: int = 100
    drop_last: bool = True
    permute_first_task: bool = True
    n_tasks: int | None = None
    evaluate_unseen: bool = True

    # Fields added after the first results were stored: they enter the protocol's description (and so
    # every run's cache key) only when they differ from their default, which keeps earlier keys valid.
    LATER_FIELDS = ("eval_batch", "drop_last", "permute_first_task", "n_tasks", "evaluate_unseen")

    def __post_init__(self) -> None:
        check_benchmark(self.benchmark)
        for name in ("epochs", "batch_size", "eval_samples", "eval_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("drop_last", "permute_first_task", "evaluate_unseen"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not self.permute_first_task and not self.benchmark.startswith("perm"):
            raise ValueError(f"permute_first_task=False needs a permuted benchmark, not {self.benchmark!r}")
        if self.n_tasks is not None and (not self.benchmark.startswith("perm") or isinstance(self.n_tasks, bool)
                                         or not isinstance(self.n_tasks, int) or self.n_tasks < 2):
            raise ValueError(f"n_tasks must be None or an integer >= 2 of a permuted benchmark, got {self.n_tasks!r} "
                             f"for {self.benchmark!r}")

    def describe(self) -> dict:
        """The protocol as a plain dict (for cache keys and result files)."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k not in self.LATER_FIELDS or v != defaults[k]}


def run_description(protocol: LifelongProtocol, method: str, run: SynapseConfig | BGDConfig) -> dict:
    """The full description of one run: its cache key is derived from this."""
    return {"protocol": protocol.describe(), "method": method, "run": run.describe()}


def _group(method: str, run: SynapseConfig | BGDConfig) -> tuple:
    """Runs with equal groups can share one network (same class, optimiser, training data).

    Stochastic and deterministic runs train apart: a network without stochastic runs evaluates one
    test pass instead of ``eval_samples`` (a tenth of the cost; the 784-200-200-10 network's
    evaluation of a task then costs 0.1 of a training epoch, not 1.5) and draws no release masks;
    a run's numbers do not depend on the runs beside it, so this changes times, not results."""
    if isinstance(run, BGDConfig):
        return ("bgd", run.mc_samples)
    return ("joint" if method == "joint" else "separate", run.optimizer, run.stochastic)


def joint_benchmark(bench: Benchmark) -> Benchmark:
    """All tasks' training sets merged into one task (multitask training)."""
    x = torch.cat([t.train_x for t in bench.tasks])
    y = torch.cat([t.train_y for t in bench.tasks])
    first = bench.tasks[0]
    return Benchmark(f"{bench.name} (joint)", (Task("all tasks", x, y, first.test_x, first.test_y),), bench.n_classes)


def _train_group(protocol: LifelongProtocol, bench: Benchmark, methods: list[str],
                 runs: list[SynapseConfig | BGDConfig], progress: bool | None) -> list[dict]:
    sizes = [bench.tasks[0].train_x.shape[1], *protocol.hidden, bench.n_classes]
    device = default_device()
    if isinstance(runs[0], BGDConfig):
        net = BayesianMLP(sizes, runs, device=device)
        step = net.train_step
    else:
        net, step = StochasticMLP(sizes, runs, device=device), None
    kwargs = dict(batch_size=protocol.batch_size, eval_every="task", eval_samples=protocol.eval_samples,
                  eval_batch=protocol.eval_batch, drop_last=protocol.drop_last, progress=progress, step=step)
    if methods[0] == "joint":  # evaluated once, after the one merged task: every task is seen
        hist = fit(net, joint_benchmark(bench), epochs=protocol.epochs, eval_tasks=bench.tasks, **kwargs)
    elif protocol.benchmark == "perm_mnist_cont":
        per_task = protocol.epochs * bench.tasks[0].train_x.shape[0]
        stream = ContinuousStream(bench.tasks, per_task, CONTINUOUS_TRANSITION)
        hist = fit(net, bench, epochs=1, sampler=stream, eval_unseen=protocol.evaluate_unseen, **kwargs)
    else:
        hist = fit(net, bench, epochs=protocol.epochs, eval_unseen=protocol.evaluate_unseen, **kwargs)
    results = []
    for r, run in enumerate(runs):
        averages_passes = isinstance(run, BGDConfig) and run.mc_inference == "average_accuracy"
        # (evaluations, tasks): after each task (once for joint)
        accuracy = hist.single_pass_accuracy[r] if averages_passes else hist.accuracy[r]
        results.append({
            "accuracy": accuracy.tolist(),
            "average": float(accuracy[-1].mean()),
            "mean_p": hist.mean_p[r].tolist(),
            "frozen": hist.frozen[r].tolist(),
            "train_loss": hist.train_loss[r].tolist(),
            "seconds": hist.seconds / len(runs),
        })
    return results


Overrides = tuple[tuple[str, float | str], ...]  # (name, value) pairs that replace a method's settings
# Settings of a protocol that a run may replace (a search draws BGD's batch size): such a run has a
# protocol of its own, and trains apart from the runs of the shared one.
PROTOCOL_FIELDS = ("batch_size",)


@dataclass(frozen=True)
class RunSpec:
    """One run to make: a method, a seed, and settings that replace the method's own (or, for those in
    :data:`PROTOCOL_FIELDS`, the protocol's)."""

    method: str
    seed: int
    overrides: Overrides = ()

    def protocol(self, shared: LifelongProtocol) -> LifelongProtocol:
        """The protocol this run trains with: ``shared`` with the spec's protocol fields replaced."""
        return replace(shared, **{k: v for k, v in self.overrides if k in PROTOCOL_FIELDS})

    def config(self, benchmark: str) -> SynapseConfig | BGDConfig:
        """The run's configuration on ``benchmark`` (:func:`method_config` with the other overrides)."""
        return method_config(self.method, benchmark, self.seed,
                             **{k: v for k, v in self.overrides if k not in PROTOCOL_FIELDS})


def chapter_specs(
    benchmark: str, seeds: Sequence[int], methods: Sequence[str] = MAIN_METHODS,
    ablations: Sequence[str] = ABLATION_METHODS, ewc_grid: Sequence[float] | None = None,
    tuned: Mapping[str, Overrides] | None = None, oracle: Mapping[str, Overrides] | None = None,
) -> dict[tuple, RunSpec]:
    """Every run chapter 5 shows on ``benchmark``, keyed by ``(what, seed)``.

    ``what`` is a method, an ablation (only on :data:`ABLATION_BENCHMARKS`), ``("ewc", lambda)``
    for a point of the EWC grid (default :data:`EWC_GRID` of the benchmark's family), or
    ``("tuned", method)`` and ``("oracle", method)`` for a method with the settings that ``tuned``
    and ``oracle`` give it (those of its search on the tuning benchmark and on this one,
    :mod:`lib.tuning`). Keys of the same run map to the same spec: the grid's point at the default
    strength is the ``"ewc"`` run itself, and settings ``()`` are the method's own.
    """
    fam = family(benchmark)
    specs = {(m, s): RunSpec(m, s) for m in methods for s in seeds}
    for kind, chosen in (("tuned", tuned or {}), ("oracle", oracle or {})):
        specs |= {((kind, m), s): RunSpec(m, s, overrides) for m, overrides in chosen.items() for s in seeds}
    if benchmark in ABLATION_BENCHMARKS:
        specs |= {(a, s): RunSpec(a, s) for a in ablations for s in seeds}
    if "ewc" in methods:
        default = EWC_LAMBDA[fam]
        grid = EWC_GRID[fam] if ewc_grid is None else ewc_grid
        specs |= {(("ewc", lam), s): RunSpec("ewc", s, () if lam == default else (("ewc_lambda", lam),))
                  for lam in sorted({*grid, default}) for s in seeds}
    return specs

def bgd_first_steps_std(protocol: LifelongProtocol, specs: Sequence[RunSpec], steps: int) -> np.ndarray:
    """``(steps + 1, runs)``: the largest :math:`\\sigma` of the output layer's weights of each BGD run of
    ``specs`` before and after each of its first ``steps`` updates (:func:`lib.bgd.largest_std`), on
    task 1 of ``protocol``'s benchmark, shuffled once (seed 0), in mini-batches of the runs' batch size.
    Where a setting fails on a benchmark, this shows how: :math:`\\sigma` grows instead of shrinking."""
    if not specs or any(s.method != "bgd" for s in specs):
        raise ValueError("bgd_first_steps_std needs BGD runs")
    batch_sizes = {s.protocol(protocol).batch_size for s in specs}
    if len(batch_sizes) > 1:
        raise ValueError(f"the runs need one batch size, got {sorted(batch_sizes)}")
    bench = make_benchmark(protocol.benchmark.replace("_cont", ""), seed=protocol.permutation_seed,
                           subset=protocol.subset, permute_first=protocol.permute_first_task)
    task, batch_size = bench.tasks[0], batch_sizes.pop()
    order = torch.randperm(len(task.train_x), generator=torch.Generator().manual_seed(0))[:steps * batch_size]
    sizes = [task.train_x.shape[1], *protocol.hidden, bench.n_classes]
    configs = [s.config(protocol.benchmark) for s in specs]
    return largest_std(configs, sizes, task.train_x[order], task.train_y[order], steps, batch_size)[:, :, -1].numpy()



def run_specs(
    protocol: LifelongProtocol, specs: Sequence[RunSpec], *, cache: bool = True, progress: bool | None = None,
    benchmark: Benchmark | None = None, train: bool = True, max_batch: int | None = None,
    on_stored: Callable[[int, int], None] | None = None,
) -> list[dict | None]:
    """The result of every spec, training those not in ``results/lifelong``.

    Runs that can share a network (same class, optimiser, protocol and training data) train together as one
    batch, of at most ``max_batch`` runs (default: all of them); each result is stored as soon as its
    batch finishes, so an interrupted sweep resumes from the batches done. A run's numbers do not
    depend on the runs it is trained with, so ``max_batch`` changes the time a sweep takes, not its results.
    After every batch, ``on_stored(done, total)`` is told how many of the ``total`` runs to train are done.
    ``benchmark`` replaces the protocol's data (tests on synthetic tasks; use with ``cache=False``).
    With ``train=False`` nothing is trained and runs not in the cache come back as ``None``.
    """
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
    protocols = [spec.protocol(protocol) for spec in specs]
    runs = [spec.config(protocol.benchmark) for spec in specs]
    descriptions = [run_description(p, spec.method, run) for p, spec, run in zip(protocols, specs, runs)]
    results: list[dict | None] = [load_cached("lifelong", d) if cache else None for d in descriptions]
    todo: dict[tuple, list[int]] = {}
    for k, (spec, run) in enumerate(zip(specs, runs)):
        if results[k] is None:
            todo.setdefault((protocols[k], _group(spec.method, run)), []).append(k)
    if todo and train:
        bench = benchmark or make_benchmark(protocol.benchmark, seed=protocol.permutation_seed,
                                            subset=protocol.subset, device=default_device(),
                                            permute_first=protocol.permute_first_task, n_tasks=protocol.n_tasks)
        batches = [group[start:start + (max_batch or len(group))] for group in todo.values()
                   for start in range(0, len(group), max_batch or len(group))]
        done, total = 0, sum(len(members) for members in batches)
        for members in batches:
            fresh = _train_group(protocols[members[0]], bench, [specs[k].method for k in members],
                                 [runs[k] for k in members], progress)
            for k, result in zip(members, fresh):
                if cache:
                    store("lifelong", descriptions[k], result)
                results[k] = result
            done += len(members)
            if on_stored is not None:
                on_stored(done, total)
    return results


def diverged(result: dict) -> bool:
    """Whether a stored run diverged: its training loss became non-finite (its parameters are then NaN,
    and every later evaluation is that of a constant guess)."""
    return not np.isfinite(np.asarray(result["train_loss"], dtype=float)).all()


def average_text(results: Sequence[dict | None], n_seeds: int) -> str:
    """The average accuracy over all tasks after the last one (%) of the stored runs ``results`` (``None``
    for a seed not stored), as :func:`lib.book.seeds_text` writes it, with ``(k diverged)`` when ``k`` of
    them diverged (:func:`diverged`)."""
    stored = [r for r in results if r is not None]
    k = sum(diverged(r) for r in stored)
    return seeds_text([100 * r["average"] for r in stored], n_seeds) + (f" ({k} diverged)" if k else "")


def summarise(per_seed: Sequence[dict]) -> dict:
    """Average accuracy over all tasks after the last one: per seed, mean and s.e.m. (ddof 1)."""
    averages = np.array([r["average"] for r in per_seed])
    sem = float(averages.std(ddof=1) / np.sqrt(len(averages))) if len(averages) > 1 else 0.0
    return {"per_seed": averages.tolist(), "mean": float(averages.mean()), "sem": sem}


def settings_text(overrides: Overrides) -> str:
    """``name = value`` pairs, numbers with 4 significant digits (``lr = 0.001, ewc_mode = online``)."""
    return ", ".join(f"{k} = {v}" if isinstance(v, str) else f"{k} = {v:.4g}" for k, v in overrides)


def summary_file(benchmark: str, method: str, overrides: Overrides = ()) -> str:
    """The name of the summary a "missing runs" command writes: one per benchmark, method and settings
    (``perm_mnist_ewc_ewc_lambda=30.json``), so that no two commands of a chapter write the same file."""
    settings = "".join(f"_{k}={v}" if isinstance(v, str) else f"_{k}={v:g}" for k, v in overrides)
    return f"{benchmark}_{method}{settings}.json"


def _optimizer_text(optimizer: str, lr: float) -> str:
    return f"{'Adam' if optimizer == 'adam' else 'SGD'} {lr:.0e}".replace("e-0", "e-")


def methods_markdown(benchmarks: Sequence[str]) -> str:
    """The table of the methods of chapter 5 with their settings on ``benchmarks`` (MyST Markdown)."""
    rule = LIFELONG_RULE
    eta0 = ", ".join(f"$\\eta_0$ = {PRESYNAPTIC_LR[family(b)]:g} ({BENCHMARK_NAMES[b]})" for b in benchmarks)
    standard = ", ".join(f"{_optimizer_text(*STANDARD[b])} ({BENCHMARK_NAMES[b]})" for b in benchmarks)
    bgd = ", ".join(f"$\\sigma_0$ = {bgd_settings(b).std_init:g}, $\\eta$ = {bgd_settings(b).mean_eta:g} "
                    f"({BENCHMARK_NAMES[b]})" for b in benchmarks)
    lambdas = ", ".join(f"$\\lambda$ = {EWC_LAMBDA[f]:g} ({'Split' if f == 'split' else 'Permuted'})"
                        for f in sorted({family(b) for b in benchmarks}, reverse=True))
    return "\n".join([
        "| method | network | learning rule and settings | told the task boundaries |",
        "|---|---|---|---|",
        f"| presynaptic | stochastic release, plastic $p$ with lr modulation and freezing "
        f"($g_\\text{{lim}}$ = {rule['g_lim']:g}, $p_\\text{{up}}$ = {rule['p_up']:g}, $p_\\text{{down}}$ = {rule['p_down']:g}, "
        f"$p_\\text{{freeze}}$ = {rule['p_freeze']:g}) | SGD (eq. 5), {eta0} | no |",
        "| no consolidation (stochastic) | the same, without lr modulation and without freezing | the same | no |",
        f"| standard (deterministic) | $p = 1$, trained biases | the authors' configs: {standard} | no |",
        f"| EWC | $p = 1$, trained biases, quadratic penalty | {_optimizer_text(*EWC_OPTIMIZER)}, {lambdas} | yes |",
        f"| BGD | Gaussian $\\mathcal N(\\mu_i, \\sigma_i^2)$ per weight and bias | Zeno et al.'s update, "
        f"{BGD_SETTINGS['perm_mnist'].mc_samples} Monte-Carlo samples; {bgd} | no |",
        f"| joint training | $p = 1$, trained biases, all tasks merged into one | {_optimizer_text(*JOINT)} | (upper bound) |",
    ])


# ------------------------------------------------------------------------------ the runs of chapter 5
@dataclass(frozen=True)
class ChapterRuns:
    """The stored runs of chapter 5 and the ones still missing.

    ``results[benchmark][what][seed]`` is the result of a stored run, where ``what`` is a key of
    :func:`chapter_specs` (a method, an ablation or ``("ewc", lambda)``); ``missing`` maps
    ``(benchmark, method, overrides)`` to the seeds not stored yet, in the order of the specs;
    ``n_runs`` counts the distinct runs of the chapter, stored or not.
    """

    seeds: tuple[int, ...]
    protocols: dict[str, LifelongProtocol]
    results: dict[str, dict[Hashable, dict[int, dict]]]
    missing: dict[tuple[str, str, tuple], tuple[int, ...]]
    n_runs: int

    def __post_init__(self) -> None:
        if set(self.protocols) != set(self.results):
            raise ValueError("every benchmark needs its protocol and its results")
        if not 0 <= self.n_missing <= self.n_runs:
            raise ValueError(f"{self.n_missing} missing runs of {self.n_runs} in all")

    def runs(self, benchmark: str, what: Hashable) -> list[dict]:
        """The stored runs of one method (or ablation, or grid point) on ``benchmark``, in seed order."""
        stored = self.results.get(benchmark, {}).get(what, {})
        return [stored[s] for s in self.seeds if s in stored]

    def compared(self, benchmark: str, method: str) -> Hashable:
        """What stands for ``method`` in the comparison of methods: its tuned runs (:mod:`lib.tuning`)
        where every seed of them is stored, else the method with its own settings."""
        tuned = ("tuned", method)
        stored = self.results.get(benchmark, {}).get(tuned, {})
        return tuned if stored and len(stored) == len(self.seeds) else method

    def averages(self, benchmark: str, what: Hashable) -> np.ndarray:
        """Average accuracy over all tasks after the last task, in %, one value per stored seed."""
        return np.array([100 * r["average"] for r in self.runs(benchmark, what)])

    @property
    def n_missing(self) -> int:
        """How many runs are missing."""
        return sum(len(seeds) for seeds in self.missing.values())

    def measures(self, benchmark: str, method: str) -> tuple[float, float, float] | None:
        """Learning accuracy, backward transfer and forgetting (:mod:`lib.metrics`, in %) of a method's
        stored runs on ``benchmark``, each the mean over seeds; None without stored runs."""
        runs = self.runs(benchmark, method)
        if not runs:
            return None
        values = [[f(100 * np.asarray(r["accuracy"])) for f in (learning_accuracy, backward_transfer, forgetting)]
                  for r in runs]
        return tuple(float(v) for v in np.mean(values, 0))

    def differences_markdown(self) -> str:
        """Where the stored runs differ from the published numbers (:mod:`lib.paper`), one item each: the
        presynaptic model and the ranking of presynaptic, BGD and EWC on the benchmarks of Appendix 1-table 1,
        the two models without consolidation against its "No consolidation" row, BGD (and BGD with the
        reference code's batches of 128, where stored), the ghost control (Fig. 5a) and continuous
        Permuted MNIST."""
        facts = []
        fmt = partial(seeds_text, n_seeds=len(self.seeds))
        table = paper.APPENDIX_TABLE_1
        for b in [b for b in table if b in self.results]:
            name, ours = BENCHMARK_NAMES[b], self.averages(b, "presynaptic")
            if len(ours):
                facts.append(f"* **{name}, presynaptic:** {fmt(ours)} % here against {table[b]['presynaptic'].text(2)} % "
                             f"in the paper ({signed(ours.mean() - table[b]['presynaptic'].mean)} points).")
            ranked = [m for m in ("presynaptic", "bgd", "ewc") if len(self.averages(b, self.compared(b, m)))]
            if len(ranked) > 1:
                ours_order = sorted(ranked, key=lambda m: -self.averages(b, self.compared(b, m)).mean())
                paper_order = sorted(ranked, key=lambda m: -table[b][m].mean)
                facts.append(f"* **{name}, ranking of presynaptic, BGD and EWC:** "
                             f"{' > '.join(what_label(self.compared(b, m)) for m in ours_order)} here, "
                             f"{' > '.join(METHOD_LABELS[m] for m in paper_order)} in the paper.")
            for m in ("presynaptic", "ewc", "bgd"):
                tuned, own = self.averages(b, ("tuned", m)), self.averages(b, m)
                if self.compared(b, m) != m and len(own) and not np.array_equal(tuned, own):  # (equal: own settings won)
                    facts.append(f"* **{name}, {METHOD_LABELS[m]} tuned:** {fmt(tuned)} % against {fmt(own)} % with its "
                                 f"own settings ({signed(tuned.mean() - own.mean())} points; paper "
                                 f"{table[b][m].text(2)} %).")
            no_consolidation = table[b]["no consolidation"].mean
            for m in ("sgd", "no_consolidation"):
                if (measured := self.measures(b, m)) is not None:
                    facts.append(f"* **{name}, {METHOD_LABELS[m]}:** {self.averages(b, m).mean():.2f} % against the "
                                 f"paper's \"No consolidation\" {no_consolidation:.2f} %; accuracy on each task right after "
                                 f"learning it {measured[0]:.1f} %, backward transfer {signed(measured[1], 1)} points "
                                 "(table above).")
            both = [m for m in ("sgd", "no_consolidation") if len(self.averages(b, m))]
            if len(both) == 2:
                gaps = {m: abs(self.averages(b, m).mean() - no_consolidation) for m in both}
                nearer, further = min(gaps, key=gaps.get), max(gaps, key=gaps.get)
                facts.append(f"* **{name}, the paper's \"No consolidation\" row** is nearer to our {METHOD_LABELS[nearer]} "
                             f"model ({gaps[nearer]:.2f} points away) than to our {METHOD_LABELS[further]} model "
                             f"({gaps[further]:.2f} points away).")
            if (measured := self.measures(b, "bgd")) is not None:
                facts.append(f"* **{name}, BGD:** {self.averages(b, 'bgd').mean():.2f} % against {table[b]['bgd'].mean:.2f} % "
                             f"in the paper; accuracy on each task right after learning it {measured[0]:.1f} %, backward "
                             f"transfer {signed(measured[1], 1)} points.")
                # The reference code's batch of 128 (one seed, if stored): the gradient is a sum over the batch.
                seed = self.seeds[0]
                (run_128,) = run_specs(self.protocols[b], [RunSpec("bgd", seed, (("batch_size", 128),))], train=False)
                if run_128 is not None and seed in self.results[b]["bgd"]:
                    facts.append(f"* **{name}, BGD with batches of 128** (seed {seed} only): {100 * run_128['average']:.2f} %, "
                                 f"against {100 * self.results[b]['bgd'][seed]['average']:.2f} % with batches of 100 for "
                                 "the same seed.")
        for b in [b for b in ABLATION_BENCHMARKS if b in self.results]:
            full, ghost = self.averages(b, "full"), self.averages(b, "ghost")
            if len(full) and len(ghost):
                test = ttest(full, ghost)
                facts.append(f"* **{BENCHMARK_NAMES[b]}, ghost control:** {signed(ghost.mean() - full.mean())} points "
                             "against the full model"
                             + (f" (t = {number(test.statistic)}, p = {test.pvalue:.2g})" if test is not None else "")
                             + f"; paper {paper.ghost_text(b)}.")
        if "perm_mnist_cont" in self.results and len(self.averages("perm_mnist_cont", "presynaptic")):
            facts.append(f"* **Continuous Permuted MNIST, presynaptic:** {fmt(self.averages('perm_mnist_cont', 'presynaptic'))} "
                         f"% against {paper.CONTINUOUS_PERM_MNIST.text(2, 1)} % in the paper.")
        if self.missing:
            facts.append(f"* {self.n_missing} runs are not computed yet (see the note at the top), so the comparison is "
                         "incomplete.")
        return "\n".join(facts) if facts else "No runs are stored yet."

    def n_diverged(self, benchmark: str, what: Hashable) -> int:
        """How many of the stored runs of ``what`` on ``benchmark`` diverged (a non-finite training loss)."""
        return sum(diverged(r) for r in self.runs(benchmark, what))

    def tuning_markdown(self, baselines: Sequence[str] = ("ewc", "bgd")) -> str:
        """What tuning changed for each baseline: a table per baseline of its runs with its own settings,
        tuned (on the tuning benchmark) and tuned on the benchmark itself, beside the presynaptic model
        as the comparison shows it; then a list of where a tuned baseline is ahead of the presynaptic
        model, behind it (two-sample t-test, p < 0.05) or not resolved from it, and which tuned runs
        diverged. Only baselines tuned for every seed count."""
        fmt, cell = partial(seeds_text, n_seeds=len(self.seeds)), partial(average_text, n_seeds=len(self.seeds))
        verdicts: dict[str, list[str]] = {"ahead": [], "behind": [], "unresolved": []}
        tables, failures = [], []
        for m in baselines:
            rows = []
            for b in self.results:
                if self.compared(b, m) == m:  # not tuned (or not for every seed) on this benchmark
                    continue
                reference, tuned = self.averages(b, self.compared(b, "presynaptic")), self.averages(b, ("tuned", m))
                gap, test = tuned.mean() - reference.mean() if len(reference) else math.nan, ttest(tuned, reference)
                rows.append(f"| {BENCHMARK_NAMES[b]} | {cell(self.runs(b, m))} | {cell(self.runs(b, ('tuned', m)))} | "
                            f"{cell(self.runs(b, ('oracle', m)))} | {fmt(reference)} | {'—' if math.isnan(gap) else signed(gap)} |")
                if test is not None and np.isfinite(test.pvalue):
                    kind = "unresolved" if test.pvalue >= 0.05 else "ahead" if gap > 0 else "behind"
                    verdicts[kind].append(f"{METHOD_LABELS[m]} on {BENCHMARK_NAMES[b]} ({signed(gap)} points, p = {test.pvalue:.2g})")
                if k := self.n_diverged(b, ("tuned", m)):
                    failures.append(f"{METHOD_LABELS[m]} on {BENCHMARK_NAMES[b]} ({k} of {len(tuned)} seeds)")
            if rows:
                tables += [f"**{METHOD_LABELS[m]}**", "",
                           "| benchmark | own settings | tuned | tuned on this benchmark | presynaptic | tuned − presynaptic (points) |",
                           "|---|---|---|---|---|---|", *rows, ""]
        if not tables:
            return "No baseline's tuned runs are stored for every seed yet."
        heads = {"ahead": "Tuned baselines ahead of the presynaptic model", "behind": "Tuned baselines behind it",
                 "unresolved": "No difference the seeds resolve"}
        lines = tables + [f"* **{heads[k]}** ({'p ≥ 0.05' if k == 'unresolved' else 'p < 0.05'}): {'; '.join(v) if v else 'none'}."
                          for k, v in verdicts.items()]
        if failures:
            lines.append(f"* **Tuned runs that diverged** (their training loss became non-finite, their accuracy is that "
                         f"of a constant guess): {'; '.join(failures)}.")
        return "\n".join(lines)

    def status_markdown(self, results_folder: str = "results/lifelong") -> str:
        """What is stored, and for what is missing the commands of ``python -m lib lifelong`` that train it."""
        from .cli_experiments import lifelong_command

        if not self.missing:
            return f"All {self.n_runs} runs of this chapter are stored under `{results_folder}`; the figures below show all of them."
        lines = [f"**{self.n_missing} of the {self.n_runs} runs of this chapter are not computed yet**, so the figures and "
                 "tables below show only the stored ones. Missing:", ""]
        for b in self.results:
            gaps = [(m, o, s) for (bb, m, o), s in self.missing.items() if bb == b]
            if gaps and all(not per_seed for per_seed in self.results[b].values()):
                lines.append(f"* {BENCHMARK_NAMES[b]}: all of its runs")
            elif gaps:
                what = "; ".join(f"{m}{' with ' + settings_text(o) if o else ''} "
                                 f"(seed{'s' if len(s) > 1 else ''} {', '.join(map(str, sorted(s)))})" for m, o, s in gaps)
                lines.append(f"* {BENCHMARK_NAMES[b]}: {what}")
        lines += ["", f"Each command below trains the missing runs of one method and stores them under `{results_folder}`, "
                  "where the next build of this chapter finds them (running the chapter with `train_missing: true` "
                  "trains all of them):", "", "```bash"]
        for (b, m, o), seeds in self.missing.items():
            protocol = self.protocols[b]
            lines.append(lifelong_command(b, m, sorted(seeds), epochs=protocol.epochs, batch_size=protocol.batch_size,
                                          subset=protocol.subset, overrides=o, json=summary_file(b, m, o)))
        return "\n".join(lines + ["```"])


def chapter_runs(
    protocols: Sequence[LifelongProtocol], seeds: Sequence[int], methods: Sequence[str] = MAIN_METHODS,
    ablations: Sequence[str] = ABLATION_METHODS, ewc_grid: dict[str, Sequence[float]] | None = None, *,
    tuned: Mapping[str, Overrides] | None = None, oracle: Mapping[str, Mapping[str, Overrides]] | None = None,
    train: bool = False,
) -> ChapterRuns:
    """Every run of chapter 5 (:func:`chapter_specs`) on the benchmark of each protocol, from the results
    cache; with ``train=True`` the missing ones are trained first (:func:`run_specs`).

    ``ewc_grid`` maps a family (``"split"``, ``"perm"``) to its grid of EWC penalty strengths (default
    :data:`EWC_GRID`); ``tuned`` maps a method to the settings it uses on every benchmark, ``oracle`` a
    benchmark to such a mapping for that benchmark alone. A spec that two keys share (the grid's default
    strength is the ``"ewc"`` run) counts once.
    """
    results: dict[str, dict] = {}
    missing: dict[tuple, list[int]] = {}
    n_runs = 0
    for protocol in protocols:
        b = protocol.benchmark
        grid = None if ewc_grid is None else ewc_grid[family(b)]
        specs = chapter_specs(b, seeds, methods, ablations, grid, tuned, (oracle or {}).get(b))
        unique = list(dict.fromkeys(specs.values()))
        n_runs += len(unique)
        found = dict(zip(unique, run_specs(protocol, unique, train=train)))
        results[b] = {}
        for (what, seed), spec in specs.items():
            results[b].setdefault(what, {})
            if found[spec] is None:
                seeds_missing = missing.setdefault((b, spec.method, spec.overrides), [])
                if seed not in seeds_missing:
                    seeds_missing.append(seed)
            else:
                results[b][what][seed] = found[spec]
    return ChapterRuns(tuple(seeds), {p.benchmark: p for p in protocols}, results,
                       {k: tuple(v) for k, v in missing.items()}, n_runs)
