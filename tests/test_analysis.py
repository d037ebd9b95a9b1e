"""Analyses of trained networks on small hand-made ones: sparsity, lesions, neuron importance, Fisher."""
import numpy as np
import pytest
import torch

from lib.analysis import (
    NetworkState,
    empirical_fisher,
    fraction_important,
    histogram,
    importance_scores,
    lesion_accuracy,
    lesion_masks,
    neuron_importance,
    true_fisher,
)
from lib.model import mlp_forward


def small_network(seed=0, sizes=(6, 5, 4, 3)):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o, i, generator=g) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [torch.randn(o, generator=g) * 0.1 for o in sizes[1:]]
    probs = [0.25 + 0.75 * torch.rand(o, i, generator=g) for i, o in zip(sizes[:-1], sizes[1:])]
    return NetworkState(weights, biases, probs)


def test_a_network_state_must_fit_together():
    state = small_network()
    assert isinstance(state.weights, tuple) and len(state.probs) == 3
    with pytest.raises(ValueError, match="as many"):
        NetworkState(state.weights, state.biases[:2], state.probs)
    with pytest.raises(ValueError, match="layer 1"):
        NetworkState(state.weights, state.biases, (state.probs[0], state.probs[0], state.probs[2]))
    with pytest.raises(ValueError, match="inputs"):
        NetworkState(state.weights[:1] * 2, state.biases[:1] * 2, state.probs[:1] * 2)  # (5, 6) after (5, 6)


def test_fraction_important():
    assert fraction_important([torch.tensor([[0.25, 0.95]]), torch.tensor([[0.9, 0.5]])]) == 0.5


def test_histogram_gives_fractions_and_clips_into_the_end_bins():
    bins = np.array([0.0, 0.5, 1.0])
    assert histogram(torch.tensor([0.1, 0.6, 0.7, 2.0, -1.0]), bins) == [0.4, 0.6]
    assert histogram(torch.tensor([]), bins) == [0.0, 0.0]


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
    state = NetworkState(w, [torch.zeros(2)], p)
    x = torch.zeros(200, 20)
    x[:, 0] = torch.where(torch.arange(200) % 2 == 0, 1.0, -1.0)
    y = (torch.arange(200) % 2).long()
    by_p = lesion_accuracy(state, importance_scores("p", state), x, y, fractions=[0.0, 0.5, 0.9], n_samples=3)
    assert by_p.tolist() == [1.0, 1.0, 1.0]
    random = lesion_accuracy(state, importance_scores("random", state, seed=1), x, y, fractions=[0.9], n_samples=1)
    assert random.tolist() == [0.5]  # this random lesion of 90% removes the two informative synapses
    by_size = lesion_accuracy(state, importance_scores("magnitude", state), x, y, fractions=[0.9], n_samples=1)
    assert by_size.tolist() == [1.0]
    assert len(lesion_accuracy(state, importance_scores("p", state), x, y, n_samples=1)) == 10  # Fig. 2b's fractions
    with pytest.raises(ValueError, match="valid orders"):
        importance_scores("size", state)


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


def squared_log_likelihood_gradients(state, x, labels):
    # The mean over examples of the squared gradient of log q(label | x) w.r.t. the weights, one example at a time.
    sums = [torch.zeros_like(w) for w in state.weights]
    for n in range(len(x)):
        ws = [w.clone().requires_grad_() for w in state.weights]
        logits, _ = mlp_forward(x[n:n + 1], [w.unsqueeze(0) for w in ws], [b.unsqueeze(0) for b in state.biases])
        grads = torch.autograd.grad(torch.log_softmax(logits[0, 0], -1)[labels[n]], ws)
        for acc, gr in zip(sums, grads):
            acc += gr.square() / len(x)
    return sums


def test_empirical_fisher_is_the_mean_squared_gradient_at_the_data_labels():
    state = small_network()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 6, generator=g), torch.randint(0, 3, (7,), generator=g)
    for mine, ref in zip(empirical_fisher(state, x, y, batch=3), squared_log_likelihood_gradients(state, x, y)):
        assert torch.allclose(mine, ref, atol=1e-5)


def test_true_fisher_averages_over_labels_drawn_from_the_network():
    small = small_network()
    state = NetworkState([0.3 * w for w in small.weights], small.biases, small.probs)  # outputs far from one-hot
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    logits, _ = mlp_forward(x, [w.unsqueeze(0) for w in state.weights], [b.unsqueeze(0) for b in state.biases])
    q = torch.softmax(logits[0], -1)  # (examples, classes)
    # the expectation over y ~ q(.|x): per class, the squared gradients weighted by q
    expected = [torch.zeros_like(w) for w in state.weights]
    for n in range(len(x)):
        for c in range(3):
            for acc, g2 in zip(expected, squared_log_likelihood_gradients(state, x[n:n + 1], [c])):
                acc += q[n, c] * g2 / len(x)
    repeated = x.repeat(2000, 1)  # every example 2,000 times: one label drawn for each copy
    sampled = true_fisher(state, repeated, seed=0)
    for mine, ref in zip(sampled, expected):
        assert torch.allclose(mine, ref, rtol=0.1, atol=0.02 * float(ref.max()))
    assert all(torch.equal(a, b) for a, b in zip(sampled, true_fisher(state, repeated, seed=0)))


def test_threshold_crossing_probability_closed_form_and_simulation():
    from scipy.special import erfc

    from lib.analysis import threshold_crossing_probability

    sd = np.array([0.0005, 0.001, 0.004])
    assert np.allclose(threshold_crossing_probability(0.001, 0.0, sd), erfc(0.001 / (sd * np.sqrt(2))))
    g = np.random.default_rng(0).normal(0.0003, 0.001, 200_000)
    assert np.mean(np.abs(g) >= 0.001) == pytest.approx(threshold_crossing_probability(0.001, 0.0003, 0.001), abs=0.005)
    assert np.all(np.diff(threshold_crossing_probability(0.001, 0.0, np.linspace(1e-4, 1e-2, 50))) > 0)
