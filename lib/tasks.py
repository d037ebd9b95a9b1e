"""Benchmarks: sequences of classification tasks as whole-dataset float tensors.

As the authors' ``lib/data.py`` and ``lib/sampler.py`` build them.

* ``mnist``, ``fmnist``: one 10-way task, the full dataset (energy experiments).
* ``split_mnist``, ``split_fmnist``: 5 tasks, the class pairs (0,1), (2,3), ..., (8,9) in order, each a
  parity decision (label = class mod 2) on one shared 2-unit output; no task identity is given.
* ``perm_mnist``, ``perm_fmnist``, ``perm_mnist_cont``: 10 tasks, each the full dataset under its own
  fixed pixel permutation (every task permuted, task 1 included), shared 10-way output. The
  continuous variant draws its training stream with :func:`continuous_task_probs` and
  :func:`sample_continuous_stream`.

Images are scaled to [0, 1] and standardised with the dataset's mean and s.d., as torchvision's
``ToTensor`` and ``Normalize`` do in the authors' code, then flattened to 784 inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .data import RawData, load

NORMALISATION = {"mnist": (0.1307, 0.3081), "fmnist": (0.2861, 0.3530)}
SPLIT_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
N_PERMUTATIONS = 10
BENCHMARKS = {
    "mnist": "MNIST, one 10-way task",
    "fmnist": "Fashion-MNIST, one 10-way task",
    "split_mnist": "Split MNIST, 5 parity tasks, shared 2-unit head",
    "split_fmnist": "Split Fashion-MNIST, 5 parity tasks, shared 2-unit head",
    "perm_mnist": "Permuted MNIST, 10 tasks",
    "perm_fmnist": "Permuted Fashion-MNIST, 10 tasks",
    "perm_mnist_cont": "Permuted MNIST with continuous task transitions, 10 tasks",
}


@dataclass(frozen=True)
class Task:
    """One task: inputs ``(N, 784)`` float32 and labels ``(N,)`` int64 for training and test."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    def to(self, device: str | torch.device) -> "Task":
        """This task with its tensors on ``device``."""
        return replace(self, **{k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")})


@dataclass(frozen=True)
class Benchmark:
    """A named sequence of tasks sharing one output layer of ``n_classes`` units."""

    name: str
    tasks: tuple[Task, ...]
    n_classes: int

    @property
    def n_tasks(self) -> int:
        """Number of tasks learned in sequence."""
        return len(self.tasks)

    def to(self, device: str | torch.device) -> "Benchmark":
        """A copy of the benchmark with every task's tensors on ``device``."""
        return replace(self, tasks=tuple(t.to(device) for t in self.tasks))


def dataset_of(name: str) -> str:
    """The raw dataset a benchmark is built from."""
    check_name(name)
    return "fmnist" if "fmnist" in name else "mnist"


def check_name(name: str) -> None:
    """Raise a ``ValueError`` listing the valid names unless ``name`` is a known benchmark."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)}")


def normalise(images: Tensor, dataset: str) -> Tensor:
    """uint8 images ``(N, 28, 28)`` to standardised float32 vectors ``(N, 784)`` (``ToTensor`` then ``Normalize``)."""
    mean, sd = NORMALISATION[dataset]
    return images.reshape(images.shape[0], -1).float().div_(255).sub_(mean).div_(sd)


def permutations(seed: int, n: int = N_PERMUTATIONS, size: int = 784) -> list[Tensor]:
    """The ``n`` pixel permutations of the permuted benchmarks, drawn in order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(size, generator=g) for _ in range(n)]


def build_benchmark(
    name: str, raw: RawData, *, seed: int = 0, subset: int | None = None, permute_first: bool = True,
    n_tasks: int | None = None,
) -> Benchmark:
    """The benchmark ``name`` from raw data.

    ``seed`` fixes the permutations and nothing else; ``subset`` keeps the first ``subset`` training
    and the first ``subset`` test examples of each task (smoke runs). ``permute_first=False`` leaves
    the first task of a permuted benchmark unpermuted (the original images, as in the BGD reference
    code ``igolan/bgd``); the other tasks keep their permutations. ``n_tasks`` gives a permuted
    benchmark that many tasks instead of :data:`N_PERMUTATIONS`; its first ten are the usual ones (the
    permutations are drawn in order from one generator).
    """
    check_name(name)
    if not permute_first and not name.startswith("perm"):
        raise ValueError(f"permute_first=False needs a permuted benchmark, not {name!r}")
    if n_tasks is not None and (not name.startswith("perm") or isinstance(n_tasks, bool) or not isinstance(n_tasks, int)
                                or n_tasks < 2):
        raise ValueError(f"n_tasks must be None or an integer >= 2 of a permuted benchmark, got {n_tasks!r} for {name!r}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset must be a positive integer or None, got {subset!r}")
    dataset = dataset_of(name)
    if name.startswith("split"):
        train_x, test_x = normalise(raw.train_images, dataset), normalise(raw.test_images, dataset)
        train_y, test_y = raw.train_labels, raw.test_labels
        tasks = []
        for a, b in SPLIT_PAIRS:
            tr = ((train_y == a) | (train_y == b)).nonzero().squeeze(1)[:subset]
            te = ((test_y == a) | (test_y == b)).nonzero().squeeze(1)[:subset]
            tasks.append(Task(f"{a}/{b}", train_x[tr], train_y[tr] % 2, test_x[te], test_y[te] % 2))
        return Benchmark(name, tuple(tasks), 2)
    train_x, test_x = normalise(raw.train_images[:subset], dataset), normalise(raw.test_images[:subset], dataset)
    train_y, test_y = raw.train_labels[:subset], raw.test_labels[:subset]
    if name.startswith("perm"):
        perms = permutations(seed, n_tasks or N_PERMUTATIONS)
        if not permute_first:
            perms[0] = torch.arange(perms[0].numel())
        tasks = tuple(
            Task(f"permutation {i + 1}" if permute_first or i else "unpermuted", train_x[:, perm], train_y,
                 test_x[:, perm], test_y)
            for i, perm in enumerate(perms)
        )
        return Benchmark(name, tasks, 10)
    return Benchmark(name, (Task(dataset, train_x, train_y, test_x, test_y),), 10)


def make_benchmark(
    name: str,
    *,
    seed: int = 0,
    root: str | Path | None = None,
    subset: int | None = None,
    device: str | torch.device = "cpu",
    permute_first: bool = True,
    n_tasks: int | None = None,
) -> Benchmark:
    """Load the raw data (see :func:`lib.data.load`; it never downloads) and build the benchmark ``name``
    (:func:`build_benchmark`) on ``device``."""
    check_name(name)
    raw = load(dataset_of(name), root)
    return build_benchmark(name, raw, seed=seed, subset=subset, permute_first=permute_first, n_tasks=n_tasks).to(device)


def continuous_task_probs(n_tasks: int, steps_per_task: int, transition_portion: float = 0.25) -> Tensor:
    """Probability of drawing each task at each position of the continuous stream, float64.

    As the authors' ``lib/sampler.py``.

    Returns ``(n_tasks * steps_per_task, n_tasks)``. With ``k = int(steps_per_task * transition_portion / 2)``,
    the first ``k`` positions of task j's block mix task j-1 (falling linearly from 0.5 to 0, both
    ends included, as the authors' ``torch.linspace``) with task j (0.5 to 1); the last ``k`` mix task j
    (1 to 0.5) with task j+1 (0 to 0.5); in between the stream is pure task j. The first task starts
    pure and the last one ends pure.
    """
    if n_tasks < 1 or steps_per_task < 1 or not 0 <= transition_portion <= 1:
        raise ValueError("need n_tasks >= 1, steps_per_task >= 1 and 0 <= transition_portion <= 1")
    k = int(steps_per_task * transition_portion / 2)
    probs = torch.zeros(n_tasks * steps_per_task, n_tasks, dtype=torch.float64)
    fall = torch.linspace(0.5, 0.0, k, dtype=torch.float64)
    for j in range(n_tasks):
        block = probs[j * steps_per_task:(j + 1) * steps_per_task]  # a view: writes land in probs
        block[:, j] = 1.0
        if k and j > 0:
            block[:k, j - 1] = fall
            block[:k, j] = 1.0 - fall
        if k and j < n_tasks - 1:
            block[steps_per_task - k:, j] = 1.0 - fall.flip(0)
            block[steps_per_task - k:, j + 1] = fall.flip(0)
    return probs


def sample_continuous_stream(
    probs: Tensor, task_sizes: Sequence[int], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw, independently for every position, a task from ``probs`` and an example uniformly within it.

    ``probs`` is ``(positions, n_tasks)`` (rows of :func:`continuous_task_probs`), ``task_sizes`` the
    number of training examples of each task; every example can be drawn. Returns (task index,
    example index within that task), each ``(positions,)`` int64. Vectorised inverse-CDF sampling;
    it holds a few ``(positions, n_tasks)`` float64 tensors, so at paper scale (6,000,000 positions)
    call it once per task block.
    """
    if probs.ndim != 2 or len(task_sizes) != probs.shape[1]:
        raise ValueError(f"probs must be (positions, n_tasks) with one size per task; got {tuple(probs.shape)} "
                         f"and {len(task_sizes)} sizes")
    if min(task_sizes) < 1:
        raise ValueError(f"every task needs at least one example, got sizes {list(task_sizes)}")
    cdf = probs.to(torch.float64).cumsum(1)
    if (probs < 0).any() or not (cdf[:, -1] > 0).all():
        raise ValueError("every row of probs must be non-negative with a positive sum")
    cdf /= cdf[:, -1:].clone()  # last column exactly 1, so a task of probability 0 is never drawn
    device = generator.device
    u = torch.rand(len(probs), 1, generator=generator, dtype=torch.float64, device=device)
    task = (u >= cdf.to(device)).sum(1)
    sizes = torch.tensor(list(task_sizes), dtype=torch.float64, device=device)
    example = (torch.rand(len(probs), generator=generator, dtype=torch.float64, device=device) * sizes[task]).long()
    return task, example


class ContinuousStream:
    """Training stream of continuous Permuted MNIST (authors' ``lib/sampler.py``), one block of ``examples_per_task`` per task.

    Every run draws its own stream with its own generator: for each position a task from
    :func:`continuous_task_probs` and an example uniformly within it. The tasks' training sets are
    pooled once, so that a mini-batch may mix tasks. Used as the ``sampler`` of
    :func:`lib.train.fit` with one epoch per task.
    """

    def __init__(self, tasks: Sequence[Task], examples_per_task: int, transition_portion: float = 0.25):
        self.sizes = [t.train_x.shape[0] for t in tasks]
        self.offsets = torch.tensor([0] + self.sizes[:-1]).cumsum(0)
        self.x = torch.cat([t.train_x for t in tasks])
        self.y = torch.cat([t.train_y for t in tasks])
        self.examples_per_task = examples_per_task
        self.probs = continuous_task_probs(len(tasks), examples_per_task, transition_portion)

    def __call__(self, task: int, epoch: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor, Tensor]:
        block = self.probs[task * self.examples_per_task:(task + 1) * self.examples_per_task]
        orders = []
        for g in generators:
            which, example = sample_continuous_stream(block, self.sizes, g)
            orders.append(self.offsets.to(which.device)[which] + example)
        return self.x, self.y, torch.stack(orders).to(self.x.device)

    def examples(self, task: int) -> int:
        return self.examples_per_task
