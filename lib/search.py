"""Random search over the metaplasticity parameters, every trial trained in one batch.

As the paper's Methods describe and the authors' random-search code draws them.

The paper tuned :math:`p_{up}`, :math:`p_{down}`, :math:`p_{freeze}` and the learning rate
:math:`\\eta_0` of the lifelong model by a random search on Permuted MNIST, and each ablation of
Fig. 5a by its own search. The authors' search code draws :math:`p_{up}, p_{down} \\sim U(0.01, 0.1)`
and :math:`p_{freeze} \\sim U(0.9, 0.96)`; the paper's :math:`\\eta_0` is 0.01 or 0.001. Here every
trial is one run of the batched engine with the drawn values as overrides of a method of
:mod:`lib.continual`, so all trials train together, and each is cached like any other run. (The
authors stopped a trial early when its task-1 accuracy fell below 0.5; in a batch that saves
nothing, so every trial runs to the end.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .continual import LifelongProtocol, RunSpec, method_run, run_specs
from .tasks import Benchmark


@dataclass(frozen=True)
class SearchSpace:
    """Where the trials are drawn: uniform ranges, and a choice of learning rates.

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


def draw_trials(n_trials: int, seed: int = 0, space: SearchSpace = SearchSpace()) -> list[tuple[tuple[str, float], ...]]:
    """``n_trials`` settings drawn from ``space`` with a seeded generator, as run overrides.

    The values are rounded to 6 significant digits, so that a trial's cache key is short and stable.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials}")
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n_trials):
        drawn = {"p_up": rng.uniform(*space.p_up), "p_down": rng.uniform(*space.p_down)}
        if space.p_freeze is not None:
            drawn["p_freeze"] = rng.uniform(*space.p_freeze)
        drawn["lr"] = space.lr[rng.integers(len(space.lr))]
        trials.append(tuple((k, float(f"{v:.6g}")) for k, v in drawn.items()))
    return trials


def random_search(
    protocol: LifelongProtocol, n_trials: int, *, method: str = "presynaptic", seed: int = 0, run_seed: int = 0,
    space: SearchSpace = SearchSpace(), train: bool = True, cache: bool = True, progress: bool | None = None,
    benchmark: Benchmark | None = None,
) -> list[dict]:
    """Every trial's settings and its average accuracy after the last task, best first.

    The trials are :func:`draw_trials` (``seed``) applied to ``method`` with the run seed ``run_seed``;
    one more row, with ``"own": True``, is the method with its own settings, for comparison. All are
    trained together on ``protocol``'s benchmark (or loaded from the cache). With ``train=False``
    runs not yet stored come back with ``average = nan``. ``cache`` and ``benchmark`` are those of
    :func:`lib.continual.run_specs` (tests on synthetic tasks).
    """
    trials = draw_trials(n_trials, seed, space)
    own = method_run(method, protocol.benchmark, run_seed)  # unknown names: the library's one-line error
    specs = [RunSpec(method, run_seed, t) for t in trials] + [RunSpec(method, run_seed)]
    results = run_specs(protocol, specs, train=train, cache=cache, progress=progress, benchmark=benchmark)
    settings = [dict(t) for t in trials] + [{name: getattr(own, name) for name in dict(trials[0])}]
    rows = [{**values, "own": k == n_trials, "average": math.nan if r is None else r["average"]}
            for k, (values, r) in enumerate(zip(settings, results))]
    return sorted(rows, key=lambda row: math.inf if math.isnan(row["average"]) else -row["average"])
