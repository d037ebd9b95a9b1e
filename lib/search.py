"""Random search over a method's settings, every trial a cached run of the batched engine.

The paper tuned :math:`p_{up}`, :math:`p_{down}`, :math:`p_{freeze}` and the learning rate
:math:`\\eta_0` of the lifelong model by a random search on Permuted MNIST, and each ablation of
Fig. 5a by its own search. The authors' search code draws :math:`p_{up}, p_{down} \\sim U(0.01, 0.1)`
and :math:`p_{freeze} \\sim U(0.9, 0.96)`; the paper's :math:`\\eta_0` is 0.01 or 0.001
(:class:`SearchSpace`). The baselines can be given the same budget, the same number of trials of
their own settings: EWC (:class:`EWCSpace`: offline or online, the penalty strength, the optimiser
and its learning rate), SI (:class:`SISpace`: the penalty strength, the damping and the learning rate)
and BGD (:class:`BGDSpace`: :math:`\\sigma_0`, :math:`\\eta`, the initial means and the batch size).

Here every trial is one run with the drawn values as overrides of a method of :mod:`lib.continual`
(drawn values that belong to the protocol, such as the batch size, give the trial its own
protocol). Trials train together in batches of a few runs, and each is cached like any other run
as soon as its batch finishes, so an interrupted search resumes from the trials done. (The authors
stopped a trial early when its task-1 accuracy fell below 0.5; in a batch that saves nothing, so
every trial runs to the end.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats

from .continual import (ABLATION_METHODS, PROTOCOL_FIELDS, LifelongProtocol, RunSpec, check_method, method_config,
                        run_specs)
from .tasks import Benchmark

Setting = float | int | str
Trial = tuple[tuple[str, Setting], ...]
TRIALS_PER_BATCH = 8  # runs trained together by a search: a batch of BGD trials takes a few hours on a CPU


def _check_positive_range(name: str, bounds: tuple[float, float]) -> None:
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1] < math.inf:
        raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {bounds}")


def _check_choices(name: str, choices: tuple, valid: tuple) -> None:
    if not choices or any(c not in valid for c in choices):
        raise ValueError(f"{name} must list some of {valid}, got {choices}")


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """:math:`\\exp U(\\log a, \\log b)`: every decade of ``bounds = (a, b)`` equally likely."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _choice(rng: np.random.Generator, choices: tuple):
    return choices[rng.integers(len(choices))]


@dataclass(frozen=True)
class SearchSpace:
    """The presynaptic model's space: uniform ranges, and a choice of learning rates.

    ``p_freeze=None`` keeps the method's own value (for the ablations without freezing).
    """

    p_up: tuple[float, float] = (0.01, 0.1)
    p_down: tuple[float, float] = (0.01, 0.1)
    p_freeze: tuple[float, float] | None = (0.9, 0.96)
    lr: tuple[float, ...] = (0.01, 0.001)

    def __post_init__(self) -> None:
        for name in ("p_up", "p_down", "p_freeze"):
            bounds = getattr(self, name)
            if bounds is not None and not 0 < bounds[0] <= bounds[1] <= 1:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high <= 1, got {bounds}")
        if not self.lr or any(lr <= 0 for lr in self.lr):
            raise ValueError(f"lr must list positive learning rates, got {self.lr}")

    def describe(self) -> str:
        """The space in words (MyST Markdown)."""
        freeze = "" if self.p_freeze is None else f", $p_\\text{{freeze}} \\sim U({self.p_freeze[0]:g}, {self.p_freeze[1]:g})$"
        return (f"$p_\\text{{up}} \\sim U({self.p_up[0]:g}, {self.p_up[1]:g})$, "
                f"$p_\\text{{down}} \\sim U({self.p_down[0]:g}, {self.p_down[1]:g})${freeze}, "
                f"$\\eta_0 \\in \\{{{', '.join(f'{lr:g}' for lr in self.lr)}\\}}$")

    def draw(self, rng: np.random.Generator) -> dict[str, Setting]:
        drawn = {"p_up": rng.uniform(*self.p_up), "p_down": rng.uniform(*self.p_down)}
        if self.p_freeze is not None:
            drawn["p_freeze"] = rng.uniform(*self.p_freeze)
        drawn["lr"] = _choice(rng, self.lr)
        return drawn


@dataclass(frozen=True)
class EWCSpace:
    """Elastic weight consolidation: the variant, the penalty and the optimiser.

    ``ewc_mode`` is drawn from its choices; online trials draw :math:`\\gamma` uniformly from the range
    ``ewc_gamma`` (offline trials have :math:`\\gamma = 1`); :math:`\\lambda` and the learning rate are
    log-uniform over their ranges; the optimiser is drawn from its choices (see
    :class:`lib.model.SynapseConfig`). With SGD the penalty's stiffness :math:`\\lambda F` bounds the stable
    learning rate, so some SGD trials with a strong penalty diverge: they rank last.
    """

    ewc_mode: tuple[str, ...] = ("offline", "online")
    ewc_gamma: tuple[float, float] = (0.5, 1.0)
    ewc_lambda: tuple[float, float] = (1.0, 1e5)
    optimizer: tuple[str, ...] = ("adam", "sgd")
    lr: tuple[float, float] = (1e-5, 1e-2)

    def __post_init__(self) -> None:
        _check_choices("ewc_mode", self.ewc_mode, ("offline", "online"))
        if len(self.ewc_gamma) != 2 or not 0 <= self.ewc_gamma[0] <= self.ewc_gamma[1] <= 1:
            raise ValueError(f"ewc_gamma must be a range (low, high) with 0 <= low <= high <= 1, got {self.ewc_gamma}")
        _check_positive_range("ewc_lambda", self.ewc_lambda)
        _check_choices("optimizer", self.optimizer, ("adam", "sgd"))
        _check_positive_range("lr", self.lr)

    def describe(self) -> str:
        """The space in words (MyST Markdown)."""
        modes = {"offline": "offline (one penalty per past task, anchored at that task's parameters)",
                 "online": f"online (one running Fisher information decayed by $\\gamma \\sim U({self.ewc_gamma[0]:g}, "
                           f"{self.ewc_gamma[1]:g})$, anchored at the latest parameters)"}
        optimizers = " or ".join("Adam" if o == "adam" else "SGD" for o in self.optimizer)
        return (f"{' or '.join(modes[m] for m in self.ewc_mode)}; $\\lambda$ log-uniform in "
                f"[{self.ewc_lambda[0]:g}, {self.ewc_lambda[1]:g}]; {optimizers} with a learning rate log-uniform in "
                f"[{self.lr[0]:g}, {self.lr[1]:g}]")

    def draw(self, rng: np.random.Generator) -> dict[str, Setting]:
        mode = _choice(rng, self.ewc_mode)
        gamma = rng.uniform(*self.ewc_gamma)
        return {"ewc_mode": mode, "ewc_gamma": gamma if mode == "online" else 1.0,
                "ewc_lambda": _log_uniform(rng, self.ewc_lambda), "optimizer": _choice(rng, self.optimizer),
                "lr": _log_uniform(rng, self.lr)}


@dataclass(frozen=True)
class SISpace:
    """Synaptic intelligence: the strength :math:`c`, the damping :math:`\\xi` and Adam's learning rate, each
    log-uniform over its range (see :class:`lib.model.SynapseConfig`).

    The range of :math:`c` holds Zenke et al.'s grid on Permuted MNIST (0.01 to 1, ``ganguli-lab/pathint``)
    and van de Ven et al.'s values for a shared output head (10 on Permuted MNIST, 50000 on Split MNIST);
    that of :math:`\\xi` Zenke et al.'s values (0.001 on split CIFAR-10/100, 0.1 on Permuted MNIST, van de
    Ven et al.'s default). The
    optimiser stays Adam, that of both references: with SGD the penalty's stiffness :math:`2c\\Omega`
    bounds the stable learning rate, as with EWC.
    """

    si_c: tuple[float, float] = (0.01, 1e5)
    si_xi: tuple[float, float] = (1e-3, 0.1)
    lr: tuple[float, float] = (1e-5, 1e-2)

    def __post_init__(self) -> None:
        for name in ("si_c", "si_xi", "lr"):
            _check_positive_range(name, getattr(self, name))

    def describe(self) -> str:
        """The space in words (MyST Markdown)."""
        return (f"$c$ log-uniform in [{self.si_c[0]:g}, {self.si_c[1]:g}]; $\\xi$ log-uniform in "
                f"[{self.si_xi[0]:g}, {self.si_xi[1]:g}]; Adam with a learning rate log-uniform in "
                f"[{self.lr[0]:g}, {self.lr[1]:g}]")

    def draw(self, rng: np.random.Generator) -> dict[str, Setting]:
        return {name: _log_uniform(rng, getattr(self, name)) for name in ("si_c", "si_xi", "lr")}


@dataclass(frozen=True)
class BGDSpace:
    """Bayesian gradient descent: :math:`\\sigma_0` and :math:`\\eta` log-uniform, the initial means and the
    batch size from their choices (see :class:`lib.bgd.BGDConfig`).

    The ranges hold the reference code's suggestions (``std_init`` 0.017-0.06, ``mean_eta`` 1) and
    the authors' choices (``std_init`` 0.001 on Split MNIST, ``mean_eta`` 0.1 on Permuted
    Fashion-MNIST). BGD's step is that of the mini-batch's *summed* loss, so the batch size scales its
    effective learning rate: the authors used 128, the book's protocol 100. An empty ``batch_size``
    keeps the protocol's.
    """

    std_init: tuple[float, float] = (1e-3, 0.1)
    mean_eta: tuple[float, float] = (0.1, 10.0)
    mean_init: tuple[str, ...] = ("torch", "reference")
    batch_size: tuple[int, ...] = (100, 128)

    def __post_init__(self) -> None:
        _check_positive_range("std_init", self.std_init)
        _check_positive_range("mean_eta", self.mean_eta)
        _check_choices("mean_init", self.mean_init, ("torch", "reference"))
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batch_size):
            raise ValueError(f"batch_size must list positive integers, got {self.batch_size}")

    def describe(self) -> str:
        """The space in words (MyST Markdown)."""
        means = {"torch": "PyTorch's default", "reference": "the reference code's (Xavier-normal)"}
        batches = f"; batches of {' or '.join(map(str, self.batch_size))}" if self.batch_size else ""
        return (f"$\\sigma_0$ log-uniform in [{self.std_init[0]:g}, {self.std_init[1]:g}]; $\\eta$ log-uniform in "
                f"[{self.mean_eta[0]:g}, {self.mean_eta[1]:g}]; initial means {' or '.join(means[m] for m in self.mean_init)}"
                f"{batches}")

    def draw(self, rng: np.random.Generator) -> dict[str, Setting]:
        drawn = {"std_init": _log_uniform(rng, self.std_init), "mean_eta": _log_uniform(rng, self.mean_eta),
                 "mean_init": _choice(rng, self.mean_init)}
        if self.batch_size:
            drawn["batch_size"] = int(_choice(rng, self.batch_size))
        return drawn


Space = SearchSpace | EWCSpace | SISpace | BGDSpace


def default_space(method: str) -> Space:
    """The space a search of ``method`` draws from: :class:`EWCSpace` for ``ewc``, :class:`SISpace` for ``si``,
    :class:`BGDSpace` for ``bgd``, :class:`SearchSpace` for the presynaptic model and its ablations."""
    check_method(method)
    if method == "ewc":
        return EWCSpace()
    if method == "si":
        return SISpace()
    if method == "bgd":
        return BGDSpace()
    if method in ("presynaptic", *ABLATION_METHODS):
        return SearchSpace()
    raise ValueError(f"no search space for method {method!r}; searchable methods: "
                     f"presynaptic, {', '.join(ABLATION_METHODS)}, ewc, si, bgd")


def _rounded(value: Setting) -> Setting:
    """Floats to 6 significant digits (short, stable cache keys); integers and names as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(f"{value:.6g}")


def draw_trials(n_trials: int, seed: int = 0, space: Space = SearchSpace()) -> list[Trial]:
    """``n_trials`` settings drawn from ``space`` with a seeded generator, as ``(name, value)`` pairs.

    The values are rounded to 6 significant digits, so that a trial's cache key is short and stable.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials}")
    rng = np.random.default_rng(seed)
    return [tuple((k, _rounded(v)) for k, v in space.draw(rng).items()) for _ in range(n_trials)]


def trial_specs(n_trials: int, method: str = "presynaptic", *, seed: int = 0, run_seed: int = 0,
                space: Space | None = None) -> list[RunSpec]:
    """The runs of a search: the ``n_trials`` trials :func:`draw_trials` (``seed``) draws from ``space``
    (default :func:`default_space` of ``method``), each ``method`` with the drawn values as overrides
    and the run seed ``run_seed``, and last the method with its own settings, for comparison."""
    check_method(method)
    space = default_space(method) if space is None else space
    if type(space) is not type(default_space(method)):
        raise ValueError(f"a {type(space).__name__} cannot be searched with method {method!r}")
    return [RunSpec(method, run_seed, trial) for trial in draw_trials(n_trials, seed, space)] + [RunSpec(method, run_seed)]


def random_search(
    protocol: LifelongProtocol, n_trials: int, *, method: str = "presynaptic", seed: int = 0, run_seed: int = 0,
    space: Space | None = None, train: bool = True, cache: bool = True, progress: bool | None = None,
    benchmark: Benchmark | None = None, max_batch: int | None = TRIALS_PER_BATCH,
    on_stored: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Every trial's settings and its average accuracy after the last task, best first.

    The runs are :func:`trial_specs`; the row of the method's own settings has ``"own": True``. Drawn
    protocol fields (:data:`lib.continual.PROTOCOL_FIELDS`) replace those of ``protocol`` for their
    trial. The trials train in batches of at most ``max_batch`` runs (:func:`lib.continual.run_specs`),
    each batch stored as soon as it is done; after every batch, ``on_stored(done, total)`` is told how
    many of the ``total`` runs not stored before are done. With ``train=False`` runs not yet stored
    come back with ``average = nan``. ``cache`` and ``benchmark`` are those of
    :func:`lib.continual.run_specs` (tests on synthetic tasks).
    """
    specs = trial_specs(n_trials, method, seed=seed, run_seed=run_seed, space=space)
    own = method_config(method, protocol.benchmark, run_seed)  # unknown names: the library's one-line error
    results = run_specs(protocol, specs, train=train, cache=cache, progress=progress, benchmark=benchmark,
                        max_batch=max_batch, on_stored=on_stored)
    names = [name for name, _ in specs[0].overrides]
    own_settings = {name: getattr(protocol if name in PROTOCOL_FIELDS else own, name) for name in names}
    settings = [dict(spec.overrides) for spec in specs[:-1]] + [own_settings]
    rows = [{**values, "own": k == n_trials, "average": math.nan if r is None else r["average"]}
            for k, (values, r) in enumerate(zip(settings, results))]
    return sorted(rows, key=lambda row: math.inf if math.isnan(row["average"]) else -row["average"])


def describe_trials(rows: list[dict]) -> str:
    """:func:`random_search`'s rows as a text table, in their order: rank, average accuracy (%), the
    settings, and ``own`` marking the method's own settings."""
    names = [k for k in rows[0] if k not in ("own", "average")]

    def shown(value: Setting) -> str:
        return value if isinstance(value, str) else f"{value:.4g}"

    table = [["#", "average %", *names, ""]]
    table += [[str(k + 1), f"{100 * row['average']:.2f}", *(shown(row[n]) for n in names), "own" if row["own"] else ""]
              for k, row in enumerate(rows)]
    widths = [max(len(line[c]) for line in table) for c in range(len(table[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)).rstrip() for line in table)


SETTING_TEX = {"p_up": r"$p_\mathrm{up}$", "p_down": r"$p_\mathrm{down}$", "p_freeze": r"$p_\mathrm{freeze}$", "lr": r"$\eta_0$"}


def summary_markdown(rows: list[dict], learning_rates: tuple[float, ...] = SearchSpace().lr) -> str:
    """A paragraph on :func:`random_search`'s rows of the presynaptic model (MyST Markdown): the best
    trial, the rank of the method's own settings, each learning rate's trials, and, among the trials of
    the better learning rate (if it has three or more), Spearman's rank correlation of the average
    accuracy with each of :math:`p_{up}`, :math:`p_{down}` and :math:`p_{freeze}`."""
    done = [t for t in rows if not np.isnan(t["average"])]
    drawn = [t for t in done if not t["own"]]
    if not drawn:
        return "The search is not stored yet: `python -m lib reproduce` trains it (or set `train_missing: true`)."
    best = drawn[0]
    sentence = ("Best trial: " + ", ".join(f"{SETTING_TEX[k]} = {best[k]:.4g}" for k in ("p_up", "p_down", "p_freeze", "lr"))
                + f": {100 * best['average']:.2f} %.")
    for rank, t in enumerate(done, 1):
        if t["own"]:
            sentence += f" The authors' values reach {100 * t['average']:.2f} %, rank {rank} of {len(done)}."
    by_lr = {lr: 100 * np.array([t["average"] for t in drawn if t["lr"] == lr]) for lr in learning_rates}
    sentence += " Per learning rate: " + "; ".join(
        f"{SETTING_TEX['lr']} = {lr:g}: {len(v)} trials, {v.mean():.2f} % on average (range {v.min():.2f}-{v.max():.2f})"
        for lr, v in by_lr.items() if len(v)) + "."
    better = max((lr for lr, v in by_lr.items() if len(v) > 2), key=lambda lr: by_lr[lr].mean(), default=None)
    if better is not None:
        within = [t for t in drawn if t["lr"] == better]
        rhos = {k: stats.spearmanr([t[k] for t in within], [t["average"] for t in within]).statistic
                for k in ("p_up", "p_down", "p_freeze")}
        sentence += (f" Among the trials with {SETTING_TEX['lr']} = {better:g}, the rank correlation of accuracy with "
                     + ", ".join(f"{SETTING_TEX[k]} is {rho:+.2f}" for k, rho in rhos.items()) + ".")
    return sentence
