"""Benchmark construction on synthetic raw data: Split (parity), Permuted, continuous stream."""
import pytest
import torch

from lib.data import RawData
from lib.tasks import (
    BENCHMARKS,
    build_benchmark,
    continuous_task_probs,
    make_benchmark,
    normalise,
    permutations,
    sample_continuous_stream,
)


@pytest.fixture(scope="module")
def raw() -> RawData:
    g = torch.Generator().manual_seed(0)
    return RawData(
        train_images=torch.randint(0, 256, (200, 28, 28), generator=g, dtype=torch.uint8),
        train_labels=torch.arange(200) % 10,
        test_images=torch.randint(0, 256, (50, 28, 28), generator=g, dtype=torch.uint8),
        test_labels=torch.arange(50) % 10,
    )


def test_normalisation_matches_to_tensor_and_normalize(raw):
    x = normalise(raw.train_images, "mnist")
    assert x.shape == (200, 784) and x.dtype == torch.float32
    expected = (raw.train_images[3, 5, 7].item() / 255 - 0.1307) / 0.3081
    assert x[3, 5 * 28 + 7].item() == pytest.approx(expected, rel=1e-5)


def test_split_tasks_are_parity_of_class_pairs_in_order(raw):
    bench = build_benchmark("split_mnist", raw)
    assert bench.n_tasks == 5 and bench.n_classes == 2
    assert [t.name for t in bench.tasks] == ["0/1", "2/3", "4/5", "6/7", "8/9"]
    full = normalise(raw.train_images, "mnist")
    for k, task in enumerate(bench.tasks):
        rows = [i for i in range(200) if raw.train_labels[i] in (2 * k, 2 * k + 1)]
        assert torch.equal(task.train_x, full[rows])
        assert task.train_y.tolist() == [raw.train_labels[i].item() % 2 for i in rows]
        assert len(task.test_y) == 10 and set(task.test_y.tolist()) == {0, 1}


def test_permuted_tasks_all_permuted_distinct_and_seeded(raw):
    bench = build_benchmark("perm_mnist", raw, seed=3)
    assert bench.n_tasks == 10 and bench.n_classes == 10
    full = normalise(raw.train_images, "mnist")
    perms = permutations(3)
    for task, perm in zip(bench.tasks, perms):
        assert sorted(perm.tolist()) == list(range(784))
        assert not torch.equal(perm, torch.arange(784))  # task 1 is permuted too
        assert torch.equal(task.train_x, full[:, perm])
        assert torch.equal(task.train_y, raw.train_labels)
    assert len({tuple(p.tolist()) for p in perms}) == 10
    assert all(torch.equal(a, b) for a, b in zip(perms, permutations(3)))
    assert not torch.equal(permutations(4)[0], perms[0])


def test_subset_keeps_the_first_examples_of_every_task(raw):
    single = build_benchmark("fmnist", raw, subset=20)
    assert single.n_tasks == 1 and single.tasks[0].train_x.shape == (20, 784) and single.tasks[0].test_x.shape == (20, 784)
    assert torch.equal(single.tasks[0].train_x, normalise(raw.train_images[:20], "fmnist"))
    split = build_benchmark("split_fmnist", raw, subset=7)
    assert all(len(t.train_y) == 7 and len(t.test_y) == 7 for t in split.tasks)
    assert torch.equal(split.tasks[1].train_x, build_benchmark("split_fmnist", raw).tasks[1].train_x[:7])
    perm = build_benchmark("perm_mnist", raw, subset=9)
    assert all(t.train_x.shape == (9, 784) and t.test_x.shape == (9, 784) for t in perm.tasks)
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="subset"):
            build_benchmark("mnist", raw, subset=bad)


def test_unknown_benchmark_lists_the_valid_names(raw):
    with pytest.raises(ValueError, match="valid names: " + ", ".join(BENCHMARKS)):
        build_benchmark("split_cifar", raw)
    with pytest.raises(ValueError, match="unknown benchmark"):
        make_benchmark("permuted-mnist")


def test_continuous_schedule_follows_the_spec():
    probs = continuous_task_probs(3, 100, 0.2)  # k = 10 positions of transition on each side
    one = torch.ones(90, dtype=probs.dtype)
    assert probs.shape == (300, 3) and probs.dtype == torch.float64
    assert torch.allclose(probs.sum(1), torch.ones(300, dtype=probs.dtype))
    assert torch.equal(probs[:90, 0], one)  # first task starts pure
    assert probs[90, 0] == 1.0 and probs[90, 1] == 0.0  # out-ramp of task 1 starts at (1, 0) ...
    assert probs[99, 0] == 0.5 and probs[99, 1] == 0.5  # ... and ends at (0.5, 0.5)
    assert probs[100, 0] == 0.5 and probs[100, 1] == 0.5  # in-ramp of task 2 starts at (0.5, 0.5) ...
    assert probs[109, 0] == 0.0 and probs[109, 1] == 1.0  # ... and ends at (0, 1)
    assert torch.allclose(probs[100:110, 0], torch.linspace(0.5, 0.0, 10, dtype=probs.dtype))  # linear
    assert torch.equal(probs[110:190, 1], one[:80]) and probs[190:, 0].abs().sum() == 0
    assert torch.equal(probs[210:, 2], one)  # last task ends pure
    assert torch.equal(continuous_task_probs(2, 10, 0.0), torch.repeat_interleave(torch.eye(2, dtype=probs.dtype), 10, 0))


@pytest.mark.parametrize("steps, k", [(600, 75), (100, 12)])  # k = int(steps * 0.25 / 2), as at paper scale
def test_continuous_schedule_ramp_length(steps, k):
    probs = continuous_task_probs(4, steps)
    mixed = ((probs > 0).sum(1) == 2).nonzero().squeeze(1)
    assert len(mixed) == 3 * 2 * (k - 1)  # three boundaries, two ramps each, minus each ramp's pure end point
    assert mixed[0] == steps - k + 1 and mixed[-1] == 3 * steps + k - 2


def test_continuous_stream_draws_tasks_with_the_scheduled_frequencies():
    probs = continuous_task_probs(3, 40_000, 1.0)
    task, example = sample_continuous_stream(probs, [7, 11, 5], torch.Generator().manual_seed(0))
    assert task.dtype == example.dtype == torch.int64 and task.shape == example.shape == (120_000,)
    for lo, hi in [(0, 20_000), (20_000, 40_000), (40_000, 60_000), (60_000, 80_000)]:
        shares = torch.bincount(task[lo:hi], minlength=3).double() / (hi - lo)
        assert torch.allclose(shares, probs[lo:hi].mean(0), atol=0.01)
    assert (task[probs[torch.arange(len(task)), task] == 0]).numel() == 0  # never a task of probability 0
    for t, size in enumerate([7, 11, 5]):  # uniform within the task, every example drawable
        assert torch.bincount(example[task == t], minlength=size).min() > 0 and example[task == t].max() == size - 1


def test_continuous_stream_is_seeded_and_checks_its_arguments():
    probs = continuous_task_probs(2, 100)
    a = sample_continuous_stream(probs, [3, 3], torch.Generator().manual_seed(1))
    b = sample_continuous_stream(probs, [3, 3], torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="one size per task"):
        sample_continuous_stream(probs, [3], torch.Generator())
    with pytest.raises(ValueError, match="at least one example"):
        sample_continuous_stream(probs, [3, 0], torch.Generator())


def test_first_task_can_stay_unpermuted_as_in_the_bgd_reference(raw):
    default = build_benchmark("perm_mnist", raw, seed=3)
    reference = build_benchmark("perm_mnist", raw, seed=3, permute_first=False)
    assert torch.equal(reference.tasks[0].train_x, normalise(raw.train_images, "mnist"))
    assert torch.equal(reference.tasks[0].test_x, normalise(raw.test_images, "mnist"))
    assert reference.tasks[0].name == "unpermuted"
    for ours, theirs in zip(default.tasks[1:], reference.tasks[1:]):
        assert ours.name == theirs.name and torch.equal(ours.train_x, theirs.train_x)
    with pytest.raises(ValueError, match="permuted benchmark"):
        build_benchmark("split_mnist", raw, permute_first=False)


def test_a_longer_permuted_sequence_starts_with_the_usual_ten_tasks(raw):
    usual, longer = build_benchmark("perm_mnist", raw, seed=3), build_benchmark("perm_mnist", raw, seed=3, n_tasks=13)
    assert len(usual.tasks) == 10 and len(longer.tasks) == 13
    for ours, theirs in zip(usual.tasks, longer.tasks):
        assert ours.name == theirs.name and torch.equal(ours.train_x, theirs.train_x)
    assert not any(torch.equal(longer.tasks[12].train_x, t.train_x) for t in longer.tasks[:12])
    for name, n in (("split_mnist", 12), ("perm_mnist", 1)):
        with pytest.raises(ValueError, match="n_tasks must be"):
            build_benchmark(name, raw, n_tasks=n)
