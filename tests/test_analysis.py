"""Analyses of trained networks on small hand-made ones: sparsity, lesions, neuron importance, Fisher."""
import numpy as np
import pytest
import torch

from lib.analysis import (
    empirical_fisher,
    fraction_important,
    importance_scores,
    lesion_accuracy,
    lesion_masks,
    neuron_importance,
)
from lib.model import mlp_forward


def small_network(seed=0, sizes=(6, 5, 4, 3)):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o, i, generator=g) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [torch.randn(o, generator=g) * 0.1 for o in sizes[1:]]
    probs = [0.25 + 0.75 * torch.rand(o, i, generator=g) for i, o in zip(sizes[:-1], sizes[1:])]
    return weights, biases, probs


def test_fraction_important():
    assert fraction_important([torch.tensor([[0.25, 0.95]]), torch.tensor([[0.9, 0.5]])]) == 0.5


def test_lesion_masks_remove_the_least_important_fraction_globally():
    importance = [torch.arange(10.0).view(2, 5), torch.arange(10.0, 20.0).view(5, 2)]
    masks = lesion_masks(importance, [0.0, 0.3, 0.6], torch.Generator().manual_seed(0))
    kept = [torch.cat([m.flatten() for m in mask]) for mask in masks]
    assert [int(k.sum()) for k in kept] == [20, 14, 8]
    assert torch.equal(kept[1], (torch.arange(20.0) >= 6).float())  # the six smallest go first
    with pytest.raises(ValueError, match="fractions"):
        lesion_masks(importance, [1.0], torch.Generator())


def test_lesions_by_p_hurt_less_than_random_when_p_marks_the_useful_synapses():
    # a linear readout where only the synapses from input 0 matter, and only they have high p
    w = [torch.zeros(2, 20)]
    w[0][0, 0], w[0][1, 0] = 3.0, -3.0
    w[0][:, 1:] = 0.01 * torch.randn(2, 19, generator=torch.Generator().manual_seed(0))
    p = [torch.full((2, 20), 0.25)]
    p[0][:, 0] = 1.0
    b = [torch.zeros(2)]
    x = torch.zeros(200, 20)
    x[:, 0] = torch.where(torch.arange(200) % 2 == 0, 1.0, -1.0)
    y = (torch.arange(200) % 2).long()
    by_p = lesion_accuracy(w, p, b, importance_scores("p", w, p), [0.0, 0.5, 0.9], x, y, n_samples=3)
    assert by_p.tolist() == [1.0, 1.0, 1.0]
    random = lesion_accuracy(w, p, b, importance_scores("random", w, p, seed=1), [0.9], x, y, n_samples=1)
    assert random.tolist() == [0.5]  # this random lesion of 90% removes the two informative synapses
    by_size = lesion_accuracy(w, p, b, importance_scores("magnitude", w, p), [0.9], x, y, n_samples=1)
    assert by_size.tolist() == [1.0]
    with pytest.raises(ValueError, match="valid orders"):
        importance_scores("size", w, p)


def test_neuron_importance_finds_hub_neurons_and_input_output_correlation():
    hidden = 50
    probs_in = torch.full((hidden, 100), 0.25)
    probs_out = torch.full((10, hidden), 0.25)
    probs_in[:5] = 1.0  # five neurons with every input important
    probs_out[:, :5] = 1.0  # ... and every output
    probs_in[5:10, :3] = 1.0
    result = neuron_importance([probs_in, probs_out, torch.ones(1, 1)], 0, shuffles=20)
    assert result.inputs[:5].tolist() == [100] * 5 and result.outputs[:5].tolist() == [10] * 5
    assert result.n_high == 5 and result.n_low > 0
    assert result.correlation > 0.9
    assert result.ks_statistic > 0.5 and result.ks_pvalue < 0.01
    with pytest.raises(ValueError, match="hidden layer"):
        neuron_importance([probs_in, probs_out], 1)


def test_fisher_equals_the_mean_squared_per_example_gradient():
    weights, biases, _ = small_network()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 6, generator=g), torch.randint(0, 3, (7,), generator=g)
    fisher = empirical_fisher(weights, biases, x, y, batch=3)
    brute = [torch.zeros_like(w) for w in weights]
    for n in range(7):
        ws = [w.clone().requires_grad_() for w in weights]
        logits, _ = mlp_forward(x[n:n + 1], [w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in biases])
        grads = torch.autograd.grad(torch.log_softmax(logits[0, 0], -1)[y[n]], ws)
        for acc, gr in zip(brute, grads):
            acc += gr.square() / 7
    for mine, ref in zip(fisher, brute):
        assert torch.allclose(mine, ref, atol=1e-5)
    model = empirical_fisher(weights, biases, x, y, labels="model")
    assert all(m.shape == w.shape and torch.all(m >= 0) for m, w in zip(model, weights))
    with pytest.raises(ValueError, match="labels"):
        empirical_fisher(weights, biases, x, y, labels="sampled")


def test_threshold_crossing_probability_closed_form_and_simulation():
    from scipy.special import erfc

    from lib.analysis import threshold_crossing_probability

    sd = np.array([0.0005, 0.001, 0.004])
    assert np.allclose(threshold_crossing_probability(0.001, 0.0, sd), erfc(0.001 / (sd * np.sqrt(2))))
    g = np.random.default_rng(0).normal(0.0003, 0.001, 200_000)
    assert np.mean(np.abs(g) >= 0.001) == pytest.approx(threshold_crossing_probability(0.001, 0.0003, 0.001), abs=0.005)
    assert np.all(np.diff(threshold_crossing_probability(0.001, 0.0, np.linspace(1e-4, 1e-2, 50))) > 0)
