"""The lifelong perceptron of Figs. 5b-c: one perceptron learns five random tasks in sequence.

As in the paper (Methods "Perceptron") and the authors' notebook ``run_lifelong-perceptron.ipynb``.

Every task is a set of :math:`P` patterns :math:`x \\in \\{-1, +1\\}^N` with labels :math:`y \\in \\{-1, +1\\}`,
all entries i.i.d. uniform. Two perceptrons see the same tasks, one after the other, in mini-batches of
:math:`B` patterns (fixed order, several passes per task), and both start from zero weights:

* the **standard perceptron** predicts :math:`\\hat y = \\operatorname{sgn}(w^\\top x)` (with
  :math:`\\operatorname{sgn}(0) = +1`) and learns :math:`w \\leftarrow w + \\frac1B \\sum_b (y_b - \\hat y_b)\\, x_b`;
* the **presynaptic perceptron** transmits each pattern through its own release mask
  :math:`r_b \\sim \\mathrm{Bernoulli}(p)` and learns the expected strengths :math:`\\bar w` with the credit
  :math:`u = \\frac1B \\sum_b (y_b - \\hat y_b)\\, x_b \\odot r_b`, modulated as in eq. 5, while the release
  probabilities follow eq. 4 with :math:`u` in place of the gradient (:func:`perceptron_release_update`).

After every pass both are tested on all tasks. The authors' notebook (``run_lifelong-perceptron.ipynb``)
fixes the numbers: N = 1000, 5 tasks of 100 patterns, 25 passes, B = 5, :math:`g_{lim} = 0.1`, :math:`p_{up} = p_{down} = 0.2`,
:math:`p_{min} = 0.25`, :math:`p_{freeze} = 0.9`, 10 votes per test pattern, seeds 1000-1009.

All seeds run together, as arrays with a leading seed axis. Every seed owns three generators, for its
patterns, its training masks and its test masks, so a seed's numbers depend neither on the seeds run
beside it nor on how often the models are tested.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Literal, Sequence

import numpy as np

from .cache import load_cached, store

EXPERIMENT = "perceptron"
PAPER_SEEDS = tuple(range(1000, 1010))
MODELS = ("standard", "presynaptic")
STREAMS = ("patterns", "training", "evaluation")
EvaluationSchedule = Literal["pass", "task", "end"]


@dataclass(frozen=True)
class PerceptronConfig:
    """Hyperparameters of the experiment; the defaults are the paper's (Methods "Perceptron").

    ``p_freeze`` is both the freezing threshold and the upper clip of :math:`p`, as in the authors'
    notebook (``run_lifelong-perceptron.ipynb``).
    """

    n_inputs: int = 1000
    patterns_per_task: int = 100
    n_tasks: int = 5
    passes: int = 25
    batch_size: int = 5
    g_lim: float = 0.1
    p_up: float = 0.2
    p_down: float = 0.2
    p_min: float = 0.25
    p_freeze: float = 0.9
    eval_votes: int = 10

    def __post_init__(self) -> None:
        for name in ("n_inputs", "patterns_per_task", "n_tasks", "passes", "batch_size", "eval_votes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.patterns_per_task % self.batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must divide patterns_per_task ({self.patterns_per_task})")
        for name in ("p_up", "p_down", "p_min", "p_freeze"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
        if self.p_min > self.p_freeze:
            raise ValueError(f"p_min ({self.p_min}) must not exceed p_freeze ({self.p_freeze})")
        if not 0 <= self.g_lim < math.inf:
            raise ValueError(f"g_lim must be finite and >= 0, got {self.g_lim!r}")

    @property
    def capacity(self) -> int:
        """Patterns a perceptron can store in the limit of large N (Cover, 1965): :math:`2N`."""
        return 2 * self.n_inputs


@dataclass(frozen=True)
class PerceptronHistory:
    """Test accuracies of both models, seed by seed.

    ``standard`` and ``presynaptic`` are (seed, evaluation, task) arrays; ``frozen`` and ``mean_p``
    are (seed, evaluation) arrays: the fraction of frozen synapses and the mean release probability.
    """

    standard: np.ndarray
    presynaptic: np.ndarray
    frozen: np.ndarray
    mean_p: np.ndarray


def generators(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators of one seed for its patterns, training masks and test masks."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def make_tasks(config: PerceptronConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All tasks of one seed, drawn up front: patterns (task, pattern, N) and labels (task, pattern), i.i.d. ±1."""
    shape = (config.n_tasks, config.patterns_per_task)
    x = 2 * rng.integers(0, 2, (*shape, config.n_inputs), dtype=np.int8) - 1
    y = 2 * rng.integers(0, 2, shape, dtype=np.int8) - 1
    return x, y


def sign_rule(h: np.ndarray) -> np.ndarray:
    """The perceptron's output :math:`+1` where :math:`h \\ge 0` and :math:`-1` elsewhere."""
    return np.where(h >= 0, 1, -1)


def release_masks(rngs: Sequence[np.random.Generator], p: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Independent masks :math:`r \\sim \\mathrm{Bernoulli}(p)` of the given leading shape, one stack per seed.

    ``p`` is (seed, N); the result is (seed, *shape, N). Seed ``s`` draws :math:`r = [U < p_s]`,
    :math:`U \\sim \\mathcal U[0, 1)`, from ``rngs[s]`` alone.
    """
    n = p.shape[-1]
    u = np.stack([rng.random((*shape, n)) for rng in rngs])
    return u < p.reshape(len(rngs), *(1,) * len(shape), n)


def perceptron_release_update(p: np.ndarray, u: np.ndarray, config: PerceptronConfig) -> np.ndarray:
    """Release probabilities after one mini-batch (eq. 4 in the form of the authors' notebook).

    .. math::
        s_i = \\begin{cases} +p_{up} & |u_i| > g_{lim} \\\\ -p_{down} & \\text{otherwise} \\end{cases},
        \\qquad
        p_i \\leftarrow \\operatorname{clip}\\big(p_i + s_i\\,(1 - p_i)\\,[p_i < p_{freeze}],\\ p_{min},\\ p_{freeze}\\big).

    A synapse is frozen once :math:`p_i \\ge p_{freeze}`; since its :math:`p_i` then never changes, the
    comparison with the current :math:`p_i` is the notebook's permanent frozen flag. The threshold test is
    strict here (``>=`` in :func:`lib.plasticity.update_release_probability`); with the notebook's
    settings :math:`u` is a multiple of :math:`2/B = 0.4`, so both mean "any net credit".
    """
    step = np.where(np.abs(u) > config.g_lim, config.p_up, -config.p_down)
    plastic = p < config.p_freeze
    return np.clip(p + step * (1 - p) * plastic, config.p_min, config.p_freeze)


def standard_step(counts: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """One batch-averaged perceptron step, in place: :math:`w \\leftarrow w + \\frac1B\\sum_b (y_b - \\hat y_b) x_b`.

    ``x`` is (seed, B, N) and ``y`` (seed, B). Every term is :math:`0` or :math:`\\pm 2 x_b`, so :math:`w`
    is a multiple of :math:`2/B`: the integer ``counts`` :math:`= (B/2)\\, w` make every sum exact, and the
    sign rule is the same for both.
    """
    errors = (y - sign_rule(np.einsum("sbn,sn->sb", x, counts))) // 2
    counts += np.einsum("sb,sbn->sn", errors, x)


def presynaptic_step(
    wbar: np.ndarray, p: np.ndarray, x: np.ndarray, y: np.ndarray, r: np.ndarray, config: PerceptronConfig
) -> np.ndarray:
    """One step of the presynaptic perceptron (authors' notebook); updates ``wbar`` in place and returns the new :math:`p`.

    .. math::
        \\hat y_b = \\operatorname{sgn}\\Big(\\sum_i r_{bi}\\, x_{bi}\\, \\bar w_i / p_i\\Big), \\qquad
        u = \\frac1B \\sum_b (y_b - \\hat y_b)\\, x_b \\odot r_b, \\qquad
        \\bar w \\leftarrow \\bar w + (1 - p) \\odot u,

    then :math:`p` follows :func:`perceptron_release_update`. Only synapses that transmitted receive
    credit, and the learning rate :math:`\\eta_0 (1 - p)` (eq. 5, :math:`\\eta_0 = 1`) uses :math:`p` before
    its update. ``r`` holds one mask per pattern, (seed, B, N).
    """
    h = np.einsum("sbn,sbn,sn->sb", r, x, wbar / p)
    u = np.einsum("sb,sbn->sn", y - sign_rule(h), x * r) / x.shape[1]
    wbar += (1 - p) * u
    return perceptron_release_update(p, u, config)


def standard_accuracy(counts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of each task's patterns the standard perceptron classifies correctly, (seed, task)."""
    return (sign_rule(np.einsum("stpn,sn->stp", x, counts)) == y).mean(-1)


def presynaptic_accuracy(
    wbar: np.ndarray, p: np.ndarray, x: np.ndarray, y: np.ndarray, rngs: Sequence[np.random.Generator], votes: int
) -> np.ndarray:
    """Accuracy of the presynaptic perceptron by majority vote, (seed, task).

    Each pattern is transmitted ``votes`` times, each time through a fresh mask; every transmission votes
    :math:`\\operatorname{sgn}(\\sum_i r_i x_i \\bar w_i / p_i) \\in \\{-1, 0, +1\\}`, and the sign of the summed
    votes is the answer. A tie (sum 0) counts as an error, as in the authors' notebook.
    """
    accuracy = np.empty(x.shape[:2])
    for task in range(x.shape[1]):  # one task at a time bounds the memory of the masks
        masks = release_masks(rngs, p, (x.shape[2], votes))
        h = np.einsum("spvn,spn->spv", masks, x[:, task] * (wbar / p)[:, None, :])
        accuracy[:, task] = (np.sign(np.sign(h).sum(-1)) == y[:, task]).mean(-1)
    return accuracy


def simulate(config: PerceptronConfig, seeds: Sequence[int], *, evaluate: EvaluationSchedule = "pass") -> PerceptronHistory:
    """Train both perceptrons on the tasks of every seed, all seeds batched, and test them on all tasks.

    ``evaluate`` says when: after every ``"pass"``, after the last pass of every ``"task"``, or at the
    ``"end"`` only.

    Tasks come one after the other, ``config.passes`` passes each, mini-batches in the fixed order of the
    patterns (the authors compute a shuffling permutation but never use it, ``run_lifelong-perceptron.ipynb``).
    """
    if not seeds:
        raise ValueError("at least one seed is needed")
    if evaluate not in ("pass", "task", "end"):
        raise ValueError(f"evaluate must be 'pass', 'task' or 'end', got {evaluate!r}")
    rngs = [generators(seed) for seed in seeds]
    tasks = [make_tasks(config, g["patterns"]) for g in rngs]
    x, y = (np.stack(arrays) for arrays in zip(*tasks))
    training, testing = ([g[name] for g in rngs] for name in ("training", "evaluation"))
    n_seeds, n = len(seeds), config.n_inputs
    counts = np.zeros((n_seeds, n), dtype=np.int64)
    wbar = np.zeros((n_seeds, n))
    p = np.full((n_seeds, n), config.p_min)
    records: dict[str, list[np.ndarray]] = {name: [] for name in ("standard", "presynaptic", "frozen", "mean_p")}
    batches = [slice(start, start + config.batch_size) for start in range(0, config.patterns_per_task, config.batch_size)]
    for task in range(config.n_tasks):
        for epoch in range(config.passes):
            for batch in batches:
                xb, yb = x[:, task, batch].astype(np.int64), y[:, task, batch].astype(np.int64)
                standard_step(counts, xb, yb)
                masks = release_masks(training, p, (config.batch_size,))
                p = presynaptic_step(wbar, p, xb, yb, masks, config)
            task_done = epoch == config.passes - 1
            if evaluate == "pass" or task_done and (evaluate == "task" or task == config.n_tasks - 1):
                records["standard"].append(standard_accuracy(counts, x, y))
                records["presynaptic"].append(presynaptic_accuracy(wbar, p, x, y, testing, config.eval_votes))
                records["frozen"].append((p >= config.p_freeze).mean(-1))
                records["mean_p"].append(p.mean(-1))
    return PerceptronHistory(**{name: np.stack(values, axis=1) for name, values in records.items()})


def run_description(config: PerceptronConfig, seeds: Sequence[int], evaluate: EvaluationSchedule = "pass") -> dict:
    """The cache key's content: every hyperparameter, the seeds and the test schedule."""
    return {**asdict(config), "seeds": [int(s) for s in seeds], "evaluate": evaluate}


def run_perceptron(
    config: PerceptronConfig = PerceptronConfig(), seeds: Sequence[int] = PAPER_SEEDS, *,
    evaluate: EvaluationSchedule = "pass", cache: bool = True,
) -> dict:
    """The experiment's result, from ``results/perceptron`` when stored, otherwise simulated (and stored).

    Returns the seeds, the accuracies of both models as nested lists (seed, evaluation, task), the
    fraction of frozen synapses and the mean release probability (seed, evaluation), and the seconds
    the simulation took. ``cache=False`` simulates and stores nothing.
    """
    key = run_description(config, seeds, evaluate)
    if cache and (stored := load_cached(EXPERIMENT, key)) is not None:
        return stored
    start = time.perf_counter()
    history = simulate(config, seeds, evaluate=evaluate)
    result = {"seeds": key["seeds"], **{name: values.tolist() for name, values in asdict(history).items()},
              "seconds": time.perf_counter() - start}
    if cache:
        store(EXPERIMENT, key, result)
    return result


def final_average(result: dict, model: str) -> np.ndarray:
    """Each seed's accuracy after the last pass, averaged over all tasks (the statistic of Fig. 5c)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}")
    return np.asarray(result[model])[:, -1].mean(-1)


def capacity_sweep(
    patterns: Sequence[int], config: PerceptronConfig = PerceptronConfig(), seeds: Sequence[int] = PAPER_SEEDS, *,
    cache: bool = True,
) -> dict:
    """Average final accuracy of both models as the number of patterns per task grows.

    With :math:`T` tasks of :math:`P` patterns the perceptron must store :math:`TP` patterns in all; the
    sweep approaches the capacity :math:`2N` (the paper's Methods: there the two models converge). Each size
    is one cached run of :func:`run_perceptron`, tested after every task. Returns ``patterns``, the load
    :math:`TP/N`, per model a (size, seed) list of average final accuracies, and ``frozen_first_task``,
    the (size, seed) fraction of synapses frozen by the end of the first task.
    """
    runs = [run_perceptron(replace(config, patterns_per_task=size), seeds, evaluate="task", cache=cache)
            for size in patterns]
    return {"patterns": [int(size) for size in patterns],
            "load": [config.n_tasks * size / config.n_inputs for size in patterns],
            **{model: [final_average(run, model).tolist() for run in runs] for model in MODELS},
            "frozen_first_task": [np.asarray(run["frozen"])[:, 0].tolist() for run in runs]}
