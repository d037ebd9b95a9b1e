"""Benchmarks: sequences of classification tasks as whole-dataset float tensors (spec 4.0, 4.2, 4.3).

* ``mnist``, ``fmnist``: one 10-way task, the full dataset (energy experiments).
* ``split_mnist``, ``split_fmnist``: 5 tasks, the class pairs (0,1), (2,3), ..., (8,9) in order, each a
  parity decision (label = class mod 2) on one shared 2-unit output; no task identity is given.
* ``perm_mnist``, ``perm_fmnist``, ``perm_mnist_cont``: 10 tasks, each the full dataset under its own
  fixed pixel permutation (every task permuted, task 1 included), shared 10-way output. The
  continuous variant draws its training stream with :func:`continuous_task_probs`.

Images are scaled to [0, 1] and standardised with the dataset's mean and s.d., as torchvision's
``ToTensor`` and ``Normalize`` do in the authors' code, then flattened to 784 inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
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
        return replace(self, **{k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")})


@dataclass(frozen=True)
class Benchmark:
    """A named sequence of tasks sharing one output layer of ``n_classes`` units."""

    name: str
    tasks: tuple[Task, ...]
    n_classes: int

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def to(self, device: str | torch.device) -> "Benchmark":
        return replace(self, tasks=tuple(t.to(device) for t in self.tasks))


def dataset_of(name: str) -> str:
    """The raw dataset a benchmark is built from."""
    check_name(name)
    return "fmnist" if "fmnist" in name else "mnist"


def check_name(name: str) -> None:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BENCHMARKS)}")


def normalise(images: Tensor, dataset: str) -> Tensor:
    """uint8 images ``(N, 28, 28)`` to standardised float32 vectors ``(N, 784)``."""
    mean, sd = NORMALISATION[dataset]
    return images.reshape(images.shape[0], -1).float().div_(255).sub_(mean).div_(sd)


def permutations(seed: int, n: int = N_PERMUTATIONS, size: int = 784) -> list[Tensor]:
    """The ``n`` pixel permutations of the permuted benchmarks, drawn in order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(size, generator=g) for _ in range(n)]


def build_benchmark(name: str, raw: RawData, *, seed: int = 0, subset: int | None = None) -> Benchmark:
    """The benchmark ``name`` from raw data (``seed`` fixes the permutations, ``subset`` truncates each task)."""
    check_name(name)
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset must be a positive integer or None, got {subset!r}")
    dataset = dataset_of(name)
    train_x, test_x = normalise(raw.train_images, dataset), normalise(raw.test_images, dataset)
    train_y, test_y = raw.train_labels, raw.test_labels
    cut = slice(None, subset)
    if name.startswith("split"):
        tasks = []
        for a, b in SPLIT_PAIRS:
            tr = (train_y == a) | (train_y == b)
            te = (test_y == a) | (test_y == b)
            tasks.append(Task(f"{a}/{b}", train_x[tr][cut], train_y[tr][cut] % 2, test_x[te][cut], test_y[te][cut] % 2))
        return Benchmark(name, tuple(tasks), 2)
    if name.startswith("perm"):
        tasks = tuple(
            Task(f"permutation {i + 1}", train_x[cut][:, perm], train_y[cut], test_x[cut][:, perm], test_y[cut])
            for i, perm in enumerate(permutations(seed))
        )
        return Benchmark(name, tasks, 10)
    return Benchmark(name, (Task(dataset, train_x[cut], train_y[cut], test_x[cut], test_y[cut]),), 10)


def make_benchmark(
    name: str, *, seed: int = 0, root=None, subset: int | None = None, device: str | torch.device = "cpu"
) -> Benchmark:
    """Load the raw data (see :func:`lib.data.load`) and build the benchmark ``name`` on ``device``."""
    check_name(name)
    return build_benchmark(name, load(dataset_of(name), root), seed=seed, subset=subset).to(device)


def continuous_task_probs(n_tasks: int, steps_per_task: int, transition_portion: float = 0.25) -> Tensor:
    """Probability of drawing each task at each position of the continuous stream (spec 4.3).

    Returns ``(n_tasks * steps_per_task, n_tasks)``. With ``k = int(steps_per_task * transition_portion / 2)``,
    the first ``k`` positions of task j's block mix task j-1 (falling linearly from 0.5 to 0) with task j
    (rising from 0.5 to 1); the last ``k`` mix task j (1 to 0.5) with task j+1 (0 to 0.5); in between
    the stream is pure task j. The first task starts pure and the last one ends pure.
    """
    if n_tasks < 1 or steps_per_task < 1 or not 0 <= transition_portion <= 1:
        raise ValueError("need n_tasks >= 1, steps_per_task >= 1 and 0 <= transition_portion <= 1")
    k = int(steps_per_task * transition_portion / 2)
    probs = torch.zeros(n_tasks * steps_per_task, n_tasks, dtype=torch.float64)
    ramp = 0.5 * torch.arange(k, dtype=torch.float64) / max(k, 1)  # 0 ... just below 0.5
    for j in range(n_tasks):
        block = probs[j * steps_per_task:(j + 1) * steps_per_task]
        block[:, j] = 1.0
        if k and j > 0:
            block[:k, j - 1] = 0.5 - ramp
            block[:k, j] = 0.5 + ramp
        if k and j < n_tasks - 1:
            block[steps_per_task - k:, j] = 1.0 - ramp
            block[steps_per_task - k:, j + 1] = ramp
    return probs


def sample_continuous_stream(
    probs: Tensor, task_sizes: Sequence[int], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Draw, independently for every position, a task from ``probs`` and an example uniformly within it.

    Returns (task index, example index within that task), each ``(len(probs),)`` int64. One inverse-CDF
    lookup per position, vectorised; call it per block of positions to bound memory.
    """
    cdf = probs.cumsum(1)
    u = torch.rand(len(probs), 1, generator=generator, dtype=cdf.dtype)
    task = (u > cdf).sum(1).clamp_(max=probs.shape[1] - 1)
    sizes = torch.tensor(list(task_sizes), dtype=torch.float64)
    example = (torch.rand(len(probs), generator=generator, dtype=torch.float64) * sizes[task]).long()
    return task, example
