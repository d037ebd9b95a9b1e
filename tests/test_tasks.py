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


def test_subset_and_single_task_benchmarks(raw):
    bench = build_benchmark("fmnist", raw, subset=20)
    assert bench.n_tasks == 1 and bench.tasks[0].train_x.shape == (20, 784) and bench.tasks[0].test_x.shape == (20, 784)
    with pytest.raises(ValueError, match="subset"):
        build_benchmark("mnist", raw, subset=0)


def test_unknown_benchmark_lists_the_valid_names(raw):
    with pytest.raises(ValueError, match="valid names: " + ", ".join(BENCHMARKS)):
        build_benchmark("split_cifar", raw)
    with pytest.raises(ValueError, match="unknown benchmark"):
        make_benchmark("permuted-mnist")


def test_continuous_schedule_follows_the_spec():
    probs = continuous_task_probs(3, 100, 0.2)  # k = 10 positions of transition on each side
    assert probs.shape == (300, 3)
    assert torch.allclose(probs.sum(1), torch.ones(300, dtype=probs.dtype))
    assert torch.equal(probs[:90, 0], torch.ones(90, dtype=probs.dtype))  # first task starts pure
    assert probs[90, 0] == 1.0 and probs[90, 1] == 0.0 and probs[99, 1] == pytest.approx(0.45)
    assert probs[100, 0] == 0.5 and probs[100, 1] == 0.5  # next block starts at one half each
    assert probs[109, 0] == pytest.approx(0.05) and probs[110, 1] == 1.0
    assert torch.equal(probs[210:, 2], torch.ones(90, dtype=probs.dtype))  # last task ends pure
    assert torch.equal(continuous_task_probs(2, 10, 0.0), torch.repeat_interleave(torch.eye(2, dtype=probs.dtype), 10, 0))


def test_continuous_stream_draws_tasks_with_the_scheduled_frequencies():
    probs = continuous_task_probs(2, 50_000, 1.0)
    task, example = sample_continuous_stream(probs, [7, 11], torch.Generator().manual_seed(0))
    first_half = task[:25_000].float().mean().item()  # expected share of task 2: the ramp's mean
    assert first_half == pytest.approx(probs[:25_000, 1].mean().item(), abs=0.01)
    assert example[task == 0].max() == 6 and example[task == 1].max() == 10
    assert example.min() == 0
