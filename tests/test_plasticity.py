"""The learning rules of eqs. 4-5 on hand-made gradients."""
import math

import pytest
import torch

from lib.plasticity import learning_rate_factor, sgd_step, update_release_probability

RULE = dict(p_up=0.1, p_down=0.05, g_lim=0.01, p_min=0.25, p_max=1.0)


def test_large_gradient_raises_p_small_lowers_it_scaled_by_distance_to_pmax():
    p = torch.tensor([0.5, 0.5, 0.5, 0.5])
    g = torch.tensor([0.02, -0.02, 0.01, 0.001])  # |g| >= g_lim for the first three (>= as in the code)
    update_release_probability(p, g, **RULE)
    expected = [0.5 + 0.5 * 0.1] * 3 + [0.5 - 0.5 * 0.05]
    assert torch.allclose(p, torch.tensor(expected))


def test_constant_steps_of_the_paper():
    p = torch.tensor([0.5, 0.5])
    update_release_probability(p, torch.tensor([1.0, 0.0]), scaled=0.0, **RULE)
    assert torch.allclose(p, torch.tensor([0.6, 0.45]))


def test_clamped_to_pmin_and_pmax():
    p = torch.tensor([0.26, 0.98])
    update_release_probability(p, torch.tensor([0.0, 1.0]), scaled=0.0, **RULE)
    assert p.tolist() == pytest.approx([0.25, 1.0])


def test_scaled_steps_never_reach_one():
    p = torch.tensor([0.25])
    for _ in range(100):
        update_release_probability(p, torch.tensor([1.0]), **RULE)
    assert 0.99 < p.item() <= 1.0


def test_frozen_synapses_never_move_and_freezing_is_permanent():
    p = torch.tensor([0.95, 0.85])
    for g in (0.0, 0.0, 1.0, 0.0):
        update_release_probability(p, torch.tensor([g, g]), p_freeze=0.9, **RULE)
    assert p[0].item() == pytest.approx(0.95)  # frozen from the start
    assert p[1].item() < 0.85  # not frozen: it moved


def test_synapse_freezes_once_it_crosses_the_threshold():
    p = torch.tensor([0.85])
    update_release_probability(p, torch.tensor([1.0]), p_freeze=0.9, scaled=0.0, **RULE)  # 0.85 -> 0.95
    assert p.item() == pytest.approx(0.95)
    update_release_probability(p, torch.tensor([0.0]), p_freeze=0.9, scaled=0.0, **RULE)
    assert p.item() == pytest.approx(0.95)


def test_per_run_hyperparameters_broadcast():
    p = torch.full((2, 1, 3), 0.5)
    g = torch.ones(2, 1, 3)
    p_up = torch.tensor([0.1, 0.2]).view(2, 1, 1)
    update_release_probability(p, g, p_up=p_up, p_down=0.0, g_lim=0.01)
    assert torch.allclose(p[0], torch.full((1, 3), 0.55)) and torch.allclose(p[1], torch.full((1, 3), 0.6))
    mixed = torch.tensor([1.0, 0.0]).view(2, 1, 1)
    q = torch.full((2, 1, 1), 0.5)
    update_release_probability(q, torch.ones(2, 1, 1), p_up=0.1, p_down=0.0, g_lim=0.0, scaled=mixed)
    assert q.flatten().tolist() == pytest.approx([0.55, 0.6])


def test_learning_rate_modulation_eq5():
    p = torch.tensor([0.25, 0.5, 1.0])
    assert learning_rate_factor(p).tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert learning_rate_factor(p, modulation=0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_sgd_step_with_l2_decay_and_modulation():
    w = torch.tensor([1.0, -2.0])
    g = torch.tensor([0.5, 0.5])
    sgd_step(w, g, lr=0.1, weight_decay=0.2, lr_factor=torch.tensor([1.0, 0.0]))
    # w - lr * (f g + lambda w)
    assert w.tolist() == pytest.approx([1.0 - 0.1 * (0.5 + 0.2), -2.0 - 0.1 * (0.0 - 0.4)])


def test_sgd_step_per_run_learning_rate():
    w = torch.ones(2, 1, 1)
    sgd_step(w, torch.ones(2, 1, 1), lr=torch.tensor([0.1, 0.5]).view(2, 1, 1))
    assert w.flatten().tolist() == pytest.approx([0.9, 0.5])
    assert not math.isnan(w.sum().item())
