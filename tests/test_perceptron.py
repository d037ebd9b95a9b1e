"""The lifelong perceptron (the paper's Figs. 5b-c) on tiny instances and hand-made updates."""
import math

import numpy as np
import pytest

from lib import perceptron as pc
from lib.perceptron import PerceptronConfig

TINY = PerceptronConfig(n_inputs=60, patterns_per_task=10, n_tasks=3, passes=4, batch_size=5, eval_votes=3)


def test_standard_perceptron_learns_a_separable_task():
    config = PerceptronConfig(n_inputs=100, patterns_per_task=20, n_tasks=1, passes=30, eval_votes=1)
    history = pc.simulate(config, [0, 1, 2], evaluate="end")  # 20 random patterns, far below capacity 2N = 200
    assert history.standard[:, -1, 0].tolist() == [1.0, 1.0, 1.0]


def test_standard_step_is_the_batch_averaged_perceptron_rule():
    x = np.array([[[1, -1, 1], [1, 1, -1]]])  # one seed, B = 2
    y = np.array([[-1, 1]])
    counts = np.zeros((1, 3), dtype=np.int64)
    pc.standard_step(counts, x, y)  # w = 0 predicts +1 for both: only the first pattern errs
    w = counts * 2 / x.shape[1]  # counts are w in units of 2/B
    np.testing.assert_allclose(w, [[(-1 - 1) * 1 / 2, (-1 - 1) * -1 / 2, (-1 - 1) * 1 / 2]])


def test_presynaptic_step_credits_only_transmitting_synapses_with_modulated_rate():
    config = PerceptronConfig(n_inputs=3, patterns_per_task=5, batch_size=5)
    x = np.ones((1, 1, 3), dtype=np.int64)
    y = -np.ones((1, 1), dtype=np.int64)  # wbar = 0 predicts +1: an error, credit (y - yhat) x r = -2 r
    r = np.array([[[True, False, True]]])
    wbar, p = np.zeros((1, 3)), np.array([[0.25, 0.25, 0.5]])
    new_p = pc.presynaptic_step(wbar, p, x, y, r, config)
    np.testing.assert_allclose(wbar, [[-2 * 0.75, 0.0, -2 * 0.5]])  # (1 - p) u with u = -2 r / B, B = 1 here
    np.testing.assert_allclose(new_p, [[0.25 + 0.2 * 0.75, 0.25, 0.5 + 0.2 * 0.5]])


def test_release_probability_goes_up_down_and_is_clamped():
    config = PerceptronConfig()
    p = np.array([0.5, 0.5, 0.5, 0.5, 0.26, 0.88])
    u = np.array([0.4, -0.4, 0.1, 0.0, 0.0, 0.4])  # |u| = g_lim exactly is not above it
    expected = [0.5 + 0.2 * 0.5, 0.5 + 0.2 * 0.5, 0.5 - 0.2 * 0.5, 0.5 - 0.2 * 0.5, 0.25, 0.9]
    np.testing.assert_allclose(pc.perceptron_release_update(p, u, config), expected)


def test_freezing_is_permanent():
    config = PerceptronConfig()
    p = np.array([0.88, 0.5])
    p = pc.perceptron_release_update(p, np.array([0.4, 0.4]), config)
    assert p[0] == config.p_freeze
    for u in (0.0, 0.0, 0.4, 0.0, 0.0):
        p = pc.perceptron_release_update(p, np.full(2, u), config)
    assert p[0] == config.p_freeze and p[1] < 0.5


def test_release_masks_are_bernoulli_and_independent_across_patterns():
    p = np.array([[0.25, 0.5, 0.9]])
    masks = pc.release_masks([np.random.default_rng(0)], p, (20_000, 2))[0]  # (pattern, vote, N)
    rate = masks.mean((0, 1))
    assert np.all(np.abs(rate - p[0]) < 4 * np.sqrt(p[0] * (1 - p[0]) / 40_000))
    both = (masks[:, 0] & masks[:, 1]).mean(0)  # two masks of one pattern: independent
    assert np.all(np.abs(both - p[0] ** 2) < 0.01)


def test_each_seed_draws_its_masks_from_its_own_generator():
    p = np.full((2, 50), 0.5)
    pair = pc.release_masks([np.random.default_rng(1), np.random.default_rng(2)], p, (4,))
    alone = pc.release_masks([np.random.default_rng(2)], p[:1], (4,))
    np.testing.assert_array_equal(pair[1], alone[0])


def test_a_seed_gives_the_same_numbers_alone_and_batched_with_others():
    batched = pc.simulate(TINY, [3, 7, 11])
    alone = pc.simulate(TINY, [7])
    for name in ("standard", "presynaptic", "frozen", "mean_p"):
        np.testing.assert_array_equal(getattr(batched, name)[1], getattr(alone, name)[0])


def test_testing_does_not_perturb_training():
    every_pass = pc.simulate(TINY, [5])
    task_ends = slice(TINY.passes - 1, None, TINY.passes)
    for evaluate, shown in (("task", task_ends), ("end", slice(-1, None))):
        sparse = pc.simulate(TINY, [5], evaluate=evaluate)
        assert sparse.standard.shape == (1, len(range(TINY.n_tasks * TINY.passes)[shown]), TINY.n_tasks)
        np.testing.assert_array_equal(every_pass.standard[:, shown], sparse.standard)
        np.testing.assert_array_equal(every_pass.mean_p[:, shown], sparse.mean_p)


def test_a_tie_of_the_votes_is_an_error():
    x = np.ones((1, 1, 2, 4), dtype=np.int8)
    y = np.array([[[1, -1]]])
    wbar, p = np.zeros((1, 4)), np.full((1, 4), 0.5)  # every vote is sgn(0) = 0
    accuracy = pc.presynaptic_accuracy(wbar, p, x, y, [np.random.default_rng(0)], votes=3)
    assert accuracy.tolist() == [[0.0]]


@pytest.mark.parametrize("change", [
    {"n_inputs": 0}, {"patterns_per_task": -10}, {"n_tasks": 2.0}, {"passes": True}, {"eval_votes": 0},
    {"batch_size": 3}, {"p_up": 0.0}, {"p_down": 1.5}, {"p_min": 0.95}, {"p_freeze": math.nan},
    {"g_lim": -0.1}, {"g_lim": math.inf},
], ids=str)
def test_invalid_configs_are_rejected(change):
    with pytest.raises(ValueError):
        PerceptronConfig(**change)


def test_invalid_runs_are_rejected():
    with pytest.raises(ValueError):
        pc.simulate(TINY, [])
    with pytest.raises(ValueError):
        pc.simulate(TINY, [0], evaluate="epoch")
    with pytest.raises(ValueError):
        pc.final_average({"standard": [[[1.0]]]}, "ewc")


def test_results_are_cached_and_the_capacity_sweep_reuses_them():
    first = pc.run_perceptron(TINY, [0, 1])
    assert pc.run_perceptron(TINY, [0, 1]) == first  # loaded from the cache (the tests' own folder)
    assert np.asarray(first["presynaptic"]).shape == (2, TINY.n_tasks * TINY.passes, TINY.n_tasks)
    sweep = pc.capacity_sweep([10, 20], TINY, [0, 1])
    assert sweep["load"] == [0.5, 1.0]
    assert np.asarray(sweep["standard"]).shape == np.asarray(sweep["frozen_first_task"]).shape == (2, 2)


def test_presynaptic_perceptron_forgets_the_first_task_less():
    config = PerceptronConfig(n_tasks=3, eval_votes=5)  # the paper's tasks, three of them
    history = pc.simulate(config, [0, 1, 2, 3], evaluate="end")
    first_task = {name: getattr(history, name)[:, -1, 0].mean() for name in pc.MODELS}
    assert first_task["presynaptic"] > first_task["standard"] + 0.02
