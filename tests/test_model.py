"""The stochastic layer: release statistics, expected transmission, backprop, energy, configs."""
import math

import pytest
import torch

from lib.noise import keyed_uniform, splitmix64
from lib.model import (
    StochasticMLP,
    SynapseConfig,
    accumulate_path_integral,
    consolidate_path_integral,
    deterministic,
    diagonal_fisher,
    fixed_release,
    mlp_backward,
    mlp_forward,
    presynaptic,
    release_masks,
    release_scales,
    release_uniforms,
)
from lib.plasticity import sgd_step


def test_release_mask_is_bernoulli_p_and_transmits_wbar_in_expectation():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.25, 0.5, 0.9, 1.0]).repeat(50_000, 1)
    s = release_scales(torch.rand(p.shape, generator=g), p)
    released = (s > 0).float().mean(0)
    assert torch.allclose(released, p[0], atol=0.01)  # 4 s.d. of a Bernoulli mean at n = 50000
    assert torch.allclose(s.mean(0), torch.ones(4), atol=0.02)  # E[r/p] = 1
    assert set(torch.unique(s[:, 1]).tolist()) == {0.0, 2.0}  # r/p takes values 0 and 1/p


def test_transmitted_weights_average_to_wbar():
    net = StochasticMLP([6, 5, 3], [presynaptic(seed=0)])
    mean = sum(net.transmitted()[0] for _ in range(4000)) / 4000
    # each transmitted weight is 0 or 4 wbar (p = 0.25): s.d. of the mean is sqrt(3)|wbar|/sqrt(4000)
    assert torch.allclose(mean, net.weights[0], atol=0.15 * net.weights[0].abs().max().item())
    assert (net.transmitted()[0] == 0).float().mean().item() == pytest.approx(0.75, abs=0.15)


def test_one_mask_per_layer_shared_by_the_batch():
    net = StochasticMLP([4, 3], [presynaptic(seed=1)])
    w = net.transmitted()
    x = torch.eye(4).unsqueeze(0)  # every example sees the same transmitted weights
    logits, _ = net.forward(x, w)
    assert torch.allclose(logits[0], (w[0][0] + net.biases[0][0][:, None]).T)


def test_initialisation_is_pytorch_default_and_seeded():
    a = StochasticMLP([100, 50, 10], [presynaptic(seed=3), presynaptic(seed=4)])
    b = StochasticMLP([100, 50, 10], [presynaptic(seed=3)])
    assert a.weights[0].abs().max().item() <= 1 / math.sqrt(100)
    assert a.biases[1].abs().max().item() <= 1 / math.sqrt(50)
    assert torch.equal(a.weights[0][0], b.weights[0][0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])
    assert torch.all(a.probs[0] == 0.25)


def test_bias_modes():
    net = StochasticMLP([5, 4], [presynaptic(bias="none"), presynaptic(bias="frozen")])
    assert torch.all(net.biases[0][0] == 0) and torch.any(net.biases[0][1] != 0)
    assert torch.equal(net.weights[0][0], net.weights[0][1])  # same seed, same weights whatever the bias


def test_deterministic_network_draws_no_masks():
    net = StochasticMLP([5, 4], [deterministic()])
    assert not net.stochastic
    assert net.transmitted() is net.weights and net.masks_drawn.item() == 0
    assert "release_masks" not in deterministic().describe()  # its key does not depend on the generator
    assert torch.all(net.probs[0] == 1.0)
    fixed = StochasticMLP([5, 4], [fixed_release(0.4)])
    assert fixed.stochastic and torch.allclose(fixed.probs[0], torch.tensor(0.4))


def test_backward_matches_autograd_for_shared_and_per_run_inputs():
    torch.manual_seed(0)
    ws = [torch.randn(2, 7, 5, requires_grad=True), torch.randn(2, 3, 7, requires_grad=True)]
    bs = [torch.randn(2, 7, requires_grad=True), torch.randn(2, 3, requires_grad=True)]
    for x in (torch.randn(2, 4, 5), torch.randn(4, 5)):
        logits, inputs = mlp_forward(x, ws, bs)
        upstream = torch.randn_like(logits)
        gw, gb, _ = mlp_backward(upstream, [h.detach() for h in inputs], [w.detach() for w in ws])
        auto = torch.autograd.grad((logits * upstream).sum(), ws + bs)
        for mine, ref in zip(gw + gb, auto):
            assert torch.allclose(mine, ref, atol=1e-5)


def test_forward_and_backward_with_a_sample_axis_equal_those_of_each_sample():
    torch.manual_seed(1)
    ws = [torch.randn(2, 3, 7, 5), torch.randn(2, 3, 4, 7)]  # 2 runs x 3 samples
    bs = [torch.randn(2, 3, 7), torch.randn(2, 3, 4)]
    x = torch.randn(2, 3, 6, 5)
    logits, inputs = mlp_forward(x, ws, bs)
    upstream = torch.randn_like(logits)
    gw, gb, _ = mlp_backward(upstream, inputs, ws)
    for k in range(3):
        one_logits, one_inputs = mlp_forward(x[:, k], [w[:, k] for w in ws], [b[:, k] for b in bs])
        one_gw, one_gb, _ = mlp_backward(upstream[:, k], one_inputs, [w[:, k] for w in ws])
        assert torch.allclose(logits[:, k], one_logits, atol=1e-5)
        for mine, ref in zip(gw + gb, one_gw + one_gb):
            assert torch.allclose(mine[:, k], ref, atol=1e-5)
    alone, _ = mlp_forward(x[1:], [w[1:] for w in ws], [b[1:] for b in bs])
    assert torch.equal(alone, logits[1:])  # a run's numbers do not depend on the runs beside it


def test_synaptic_energy_is_l1_of_wbar_without_biases():
    net = StochasticMLP([3, 2, 2], [presynaptic()])
    expected = net.weights[0].abs().sum() + net.weights[1].abs().sum()
    assert net.synaptic_energy().item() == pytest.approx(expected.item())
    net.biases[0].fill_(100.0)
    assert net.synaptic_energy().item() == pytest.approx(expected.item())


def test_summaries_of_release_probabilities():
    net = StochasticMLP([3, 2], [presynaptic(p_freeze=0.9)])
    net.probs[0][0, 0, :2] = 0.95
    assert net.mean_release_probability().item() == pytest.approx((4 * 0.25 + 2 * 0.95) / 6)
    assert net.frozen_fraction().item() == pytest.approx(2 / 6)


@pytest.mark.parametrize(
    "bad",
    [dict(p_init=0.1), dict(lr=0.0), dict(weight_decay=-1.0), dict(p_up=-0.1), dict(bias="some"), dict(p_step="linear"),
     dict(ewc_mode="both"), dict(ewc_mode="online", ewc_gamma=1.5), dict(ewc_mode="online", ewc_gamma=-0.1),
     dict(ewc_mode="online", ewc_gamma=math.nan), dict(ewc_gamma=0.5)],
)
def test_invalid_configs_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="invalid SynapseConfig"):
        SynapseConfig(**bad)


def test_invalid_architectures_are_rejected():
    with pytest.raises(ValueError, match="sizes"):
        StochasticMLP([784], [presynaptic()])
    with pytest.raises(ValueError, match="run"):
        StochasticMLP([4, 2], [])


def test_mask_numbers_depend_on_the_run_seed_and_the_draw_only():
    shapes = [torch.Size((5, 6)), torch.Size((3, 5))]
    both = release_uniforms(torch.tensor([7, 8]), torch.tensor(4), shapes)
    alone = release_uniforms(torch.tensor([8]), torch.tensor(4), shapes)
    assert all(torch.equal(a[1:], b) for a, b in zip(both, alone))
    # mask t of a run is keyed by output t of its SplitMix64 stream; the layers' synapses are numbered
    # one after the other
    flat = torch.cat([u[0].flatten() for u in both])
    key = splitmix64(torch.tensor(7), torch.tensor(4))
    assert torch.equal(flat, keyed_uniform(key, torch.arange(45, dtype=torch.int32)))


def test_successive_masks_and_runs_are_independent():
    n = 200_000
    first, second = (release_uniforms(torch.tensor([1, 2]), torch.tensor(t), [torch.Size((n,))])[0] for t in (0, 1))
    for x, y in ((first[0], second[0]), (first[0], first[1])):  # steps, runs
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 5 / math.sqrt(n)


def test_training_and_evaluation_masks_advance_their_own_streams():
    net = StochasticMLP([6, 5, 3], [presynaptic(seed=0)])
    a = net.transmitted()
    e = net.transmitted(evaluation=True)
    b = net.transmitted()
    assert net.masks_drawn.item() == 2 and net.eval_masks_drawn.item() == 1
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[0], e[0])
    fresh = StochasticMLP([6, 5, 3], [presynaptic(seed=0)])
    assert torch.equal(fresh.transmitted(evaluation=True)[0], e[0])  # however much training drew before


def test_compiled_masks_equal_eager_masks_bit_for_bit():
    from lib.compilation import compile_available

    if not compile_available():
        pytest.skip("torch.compile is not available here")
    net = StochasticMLP([30, 20, 4], [presynaptic(seed=3), fixed_release(0.4, seed=4),
                                      deterministic(seed=5)])
    args = (net.weights, net.probs, [None, None], (net.mask_seeds, torch.tensor(17)))
    eager = release_masks(*args)
    compiled = torch.compile(release_masks, dynamic=False)(*args)
    assert all(torch.equal(a, b) for a, b in zip(eager[0] + eager[1], compiled[0] + compiled[1]))
    assert torch.equal(eager[0][0][2], net.weights[0][2])  # a deterministic run always releases, r/p = 1


def test_stochastic_runs_name_their_mask_generator():
    assert presynaptic().describe()["release_masks"] == "hash32"
    assert fixed_release(0.4).describe()["release_masks"] == "hash32"
    assert "release_masks" not in deterministic().describe()  # draws no masks
    with pytest.raises(ValueError, match="release_masks"):
        presynaptic(release_masks="torch")  # runs stored before the change are never trained again


def test_ewc_variant_enters_the_description_only_when_it_differs_from_the_default():
    offline = deterministic(seed=1, ewc_lambda=10.0)
    assert "ewc_mode" not in offline.describe() and "ewc_gamma" not in offline.describe()
    assert deterministic(seed=1, ewc_lambda=10.0, ewc_mode="offline", ewc_gamma=1.0).describe() == offline.describe()
    online = deterministic(seed=1, ewc_lambda=10.0, ewc_mode="online", ewc_gamma=0.8).describe()
    assert (online["ewc_mode"], online["ewc_gamma"]) == ("online", 0.8)


def _fisher_of_next_boundary(net: StochasticMLP, x: torch.Tensor, y: torch.Tensor) -> tuple[list, list]:
    """The Fisher information that ``net.end_task(x, y)`` will fold in: the same labels, from copies of
    the runs' Fisher generators."""
    copies = [torch.Generator().set_state(g.get_state()) for g in net.fisher_generators]
    return diagonal_fisher(net.weights, net.biases, x, y, labels="model", generators=copies)


def test_online_ewc_equals_offline_after_one_task_and_decays_the_fisher_information_after_two():
    gamma = 0.6
    runs = [deterministic(seed=4, ewc_lambda=1.0), deterministic(seed=4, ewc_lambda=1.0, ewc_mode="online", ewc_gamma=gamma)]
    net = StochasticMLP([6, 5, 3], runs)
    g = torch.Generator().manual_seed(0)
    tasks = [(torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)) for _ in range(2)]
    fisher_1, _ = _fisher_of_next_boundary(net, *tasks[0])
    weights_1 = [w.clone() for w in net.weights]
    net.end_task(*tasks[0])
    for name in ("fisher_w", "anchor_w", "fisher_b", "anchor_b"):  # one past task: the two variants agree
        assert all(torch.equal(t[0], t[1]) for t in net.state[name])
    assert all(torch.equal(a[0], f[0]) and torch.equal(b[0], f[0] * w[0])
               for a, b, f, w in zip(net.state["fisher_w"], net.state["anchor_w"], fisher_1, weights_1))
    for w in net.weights:  # the second task ends with other parameters, the same for both runs
        w.copy_(w[:1] + 0.1 * torch.randn(w.shape[1:], generator=g))
    fisher_2, bias_fisher_2 = _fisher_of_next_boundary(net, *tasks[1])
    net.end_task(*tasks[1])
    for layer, (f1, f2, w1, w2) in enumerate(zip(fisher_1, fisher_2, weights_1, net.weights)):
        a, b = net.state["fisher_w"][layer], net.state["anchor_w"][layer]
        torch.testing.assert_close(a[0], f1[0] + f2[0])  # offline: one penalty per task
        torch.testing.assert_close(b[0], f1[0] * w1[0] + f2[0] * w2[0])
        torch.testing.assert_close(a[1], gamma * f1[1] + f2[1])  # online: decayed, anchored at the latest task
        torch.testing.assert_close(b[1], (gamma * f1[1] + f2[1]) * w2[1])
    for a, b, f, bias in zip(net.state["fisher_b"], net.state["anchor_b"], bias_fisher_2, net.biases):
        assert torch.equal(b[1], a[1] * bias[1]) and bool((a[1] >= f[1]).all())


@pytest.mark.parametrize("bad, message", [
    (dict(si_c=-1.0), "si_c=-1.0 must be a finite number >= 0"),
    (dict(si_c=math.nan), "si_c=nan must be a finite number >= 0"),
    (dict(si_c=math.inf), "si_c=inf must be a finite number >= 0"),
    (dict(si_c=1.0, si_xi=0.0), "si_xi=0.0 must be a finite number > 0"),
    (dict(si_xi=-0.1), "si_xi=-0.1 must be a finite number > 0"),
    (dict(si_c=1.0, ewc_lambda=10.0), "si_c=1.0 and ewc_lambda=10.0 are both positive"),
])
def test_bad_si_settings_raise_one_clear_line(bad, message):
    with pytest.raises(ValueError, match="invalid SynapseConfig") as error:
        deterministic(**bad)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_si_settings_enter_the_description_only_when_si_is_on_or_its_damping_differs():
    plain = deterministic(seed=1, optimizer="adam", lr=0.01)
    assert deterministic(seed=1, optimizer="adam", lr=0.01, si_c=0.0, si_xi=0.1).describe() == plain.describe()
    assert "si_c" not in plain.describe() and "si_xi" not in plain.describe()  # the keys of stored runs stay
    assert deterministic(si_c=10.0).describe()["si_c"] == 10.0 and "si_xi" not in deterministic(si_c=10.0).describe()
    assert deterministic(si_c=10.0, si_xi=0.01).describe()["si_xi"] == 0.01


def test_si_path_integral_of_gradient_steps_on_a_quadratic_has_its_closed_form():
    """L = 1/2 sum_k h_k (theta_k - a_k)^2 by SGD with learning rate eta: g_t = h q^t d with q = 1 - eta h and
    d = theta_0 - a, so omega = eta sum_t g_t^2 = eta h^2 d^2 (1 - q^(2T)) / (1 - q^2); that is the decrease
    of each parameter's share of the loss divided by 1 - eta h / 2 (eqs. 2-3, exact as eta -> 0)."""
    h = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    theta = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    start, eta, steps = theta.clone(), 0.05, 40
    path = torch.zeros_like(theta)
    for _ in range(steps):
        g = h * (theta - a)
        before = theta.clone()
        sgd_step(theta, g, lr=eta)
        accumulate_path_integral(path, g, before, theta)
    q, d = 1 - eta * h, start - a
    omega = eta * h**2 * d**2 * (1 - q ** (2 * steps)) / (1 - q**2)
    torch.testing.assert_close(path, omega)
    loss_drop = 0.5 * h * ((start - a) ** 2 - (theta - a) ** 2)
    torch.testing.assert_close(path, loss_drop / (1 - eta * h / 2))
    importance, anchor, xi = torch.full_like(theta, 0.5), start.clone(), 0.1
    consolidate_path_integral(importance, path, anchor, theta, xi)
    torch.testing.assert_close(importance, 0.5 + omega / ((theta - start) ** 2 + xi))  # eq. 5, added to the past's
    assert torch.equal(path, torch.zeros_like(theta)) and torch.equal(anchor, theta)


def test_si_state_starts_at_the_initial_parameters_and_each_boundary_folds_in_the_path_integral():
    runs = [deterministic(seed=2, optimizer="adam", si_c=1.0, si_xi=0.05), deterministic(seed=3, optimizer="adam"),
            deterministic(seed=4, optimizer="adam", si_c=2.0)]
    net = StochasticMLP([6, 5, 3], runs)
    assert "fisher_w" not in net.state and not net.fisher_generators
    assert all(torch.equal(a, w) and a is not w for a, w in zip(net.state["si_anchor_w"], net.weights))
    assert all(not t.any() for name in ("si_path_w", "si_importance_w", "si_path_b", "si_importance_b")
               for t in net.state[name])
    g = torch.Generator().manual_seed(0)
    start = [t.clone() for t in net.weights + net.biases]
    for t in net.weights + net.biases:  # a task moved the parameters...
        t.add_(0.1 * torch.randn(t.shape, generator=g))
    paths = net.state["si_path_w"] + net.state["si_path_b"]
    for path in paths:  # ...and summed its path integral
        path.copy_(torch.rand(path.shape, generator=g))
    omega = [path.clone() for path in paths]
    net.end_task(torch.zeros(1, 6), torch.zeros(1, dtype=torch.long))
    xi = torch.tensor([0.05, 0.1, 0.1])
    for importance, w, path, w0, o in zip(net.state["si_importance_w"] + net.state["si_importance_b"],
                                          net.weights + net.biases, paths, start, omega):
        run_xi = xi.view(-1, *[1] * (w.dim() - 1))
        torch.testing.assert_close(importance, o / ((w - w0) ** 2 + run_xi))
        assert not path.any()
    assert all(torch.equal(a, t) for a, t in zip(net.state["si_anchor_w"] + net.state["si_anchor_b"],
                                                 net.weights + net.biases))
