"""Bayesian Gradient Descent: the update equations, their limits, learning, and batching of runs."""
import math
from dataclasses import replace

import pytest
import torch

from lib.bgd import BGD_SETTINGS, TRAINING_NOISE, BayesianMLP, BGDConfig, bgd_update, largest_std, training_noise
from lib.model import StochasticMLP, deterministic, mlp_forward
from lib.noise import standard_normal

SIZES = [10, 8, 2]


def gaussian_problem(seed: int, n: int = 64, runs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes in 10 dimensions, ``(runs, n, 10)`` inputs and ``(runs, n)`` labels.

    The class means are +-1 along a random unit direction within the first 5 inputs; the last 5 are noise.
    """
    g = torch.Generator().manual_seed(seed)
    direction = torch.cat([torch.nn.functional.normalize(torch.randn(5, generator=g), dim=0), torch.zeros(5)])
    y = torch.randint(0, 2, (runs, n), generator=g)
    x = (2 * y[..., None] - 1) * direction + 0.4 * torch.randn(runs, n, 10, generator=g)
    return x, y


def state(net: BayesianMLP) -> list[torch.Tensor]:
    return [*net.weights, *net.biases, *net.weight_std, *net.bias_std]


def test_sigma_update_matches_the_closed_form():
    mu = torch.tensor([0.3, -0.2, 0.0, 1.0], dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.1, 0.02, 0.5], dtype=torch.float64)
    g = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    g_eps = torch.tensor([4.0, -3.0, 0.0, 25.0], dtype=torch.float64)
    new_mu, new_sigma = bgd_update(mu, sigma, g, g_eps, 0.7)
    for i in range(4):
        s, a = sigma[i].item(), 0.5 * sigma[i].item() * g_eps[i].item()
        assert new_mu[i].item() == pytest.approx(mu[i].item() - 0.7 * s**2 * g[i].item(), rel=1e-12)
        assert new_sigma[i].item() == pytest.approx(s * math.sqrt(1 + a**2) - s * a, rel=1e-12)
    assert new_sigma[2] == sigma[2]  # no correlation of gradient and noise: sigma unchanged


def test_sigma_stays_positive_and_shrinks_with_curvature():
    # quadratic loss L = h theta^2 / 2: E[g eps] = sigma h exactly (Stein's lemma)
    h = torch.tensor([0.0, 1.0, 100.0, 1e8])
    sigma = torch.full((4,), 0.1)
    for _ in range(50):
        _, sigma = bgd_update(torch.zeros(4), sigma, torch.zeros(4), sigma * h, 1.0)
    assert torch.all(sigma > 0)
    assert sigma[0] == 0.1 and sigma[0] > sigma[1] > sigma[2] > sigma[3]
    # for small sigma^2 h, each step adds about h to the precision 1/sigma^2: sigma^-2 = 100 + 50 h
    assert sigma[1].item() == pytest.approx((100 + 50) ** -0.5, rel=1e-2)


def test_small_sigma_limit_is_sgd_with_learning_rate_eta_sigma_squared():
    # sigma -> 0 at fixed eta sigma^2 = 0.01: the sample is the mean and BGD is SGD on the summed loss
    std, lr = 1e-5, 0.01
    net = BayesianMLP(SIZES, [BGDConfig(seed=3, std_init=std, mean_eta=lr / std**2, mc_samples=1)])
    x, y = gaussian_problem(0, n=16)
    params = [t.clone().requires_grad_() for t in (*net.weights, *net.biases)]
    logits, _ = mlp_forward(x, params[:2], params[2:])
    loss = torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum")
    grads = torch.autograd.grad(loss, params)
    net.train_step(x, y)
    for new, old, g in zip((*net.weights, *net.biases), params, grads):
        assert torch.allclose(new, old.detach() - lr * g, atol=1e-5)
    for sigma in (*net.weight_std, *net.bias_std):
        assert torch.allclose(sigma, torch.full_like(sigma, std))


def test_train_step_reproduces_the_monte_carlo_estimates_by_autograd():
    config = BGDConfig(seed=5, std_init=0.2, mean_eta=2.0, mc_samples=3)
    net = BayesianMLP(SIZES, [config])
    x, y = gaussian_problem(1, n=16)
    mu = [t[0].clone() for t in (*net.weights, *net.biases)]
    sigma = [t[0].clone() for t in (*net.weight_std, *net.bias_std)]
    # documented layout of step 0: the K samples one after the other, each the weights of every layer, then the biases
    noise = standard_normal(net.noise_seeds[0], torch.arange(3 * sum(m.numel() for m in mu))).view(3, -1)
    sum_g = [torch.zeros_like(m) for m in mu]
    sum_g_eps = [torch.zeros_like(m) for m in mu]
    for k in range(3):
        eps = [e.view_as(m) for e, m in zip(noise[k].split([m.numel() for m in mu]), mu)]
        theta = [(m + s * e).requires_grad_() for m, s, e in zip(mu, sigma, eps)]
        logits, _ = mlp_forward(x, [theta[0][None], theta[1][None]], [theta[2][None], theta[3][None]])
        loss = torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum")
        for i, gi in enumerate(torch.autograd.grad(loss, theta)):
            sum_g[i] += gi / 3
            sum_g_eps[i] += gi * eps[i] / 3
    net.train_step(x, y)
    got = [t[0] for t in (*net.weights, *net.biases)], [t[0] for t in (*net.weight_std, *net.bias_std)]
    for i in range(4):
        expected_mu, expected_sigma = bgd_update(mu[i], sigma[i], sum_g[i], sum_g_eps[i], 2.0)
        assert torch.allclose(got[0][i], expected_mu, atol=1e-5)
        assert torch.allclose(got[1][i], expected_sigma, atol=1e-6)


def test_training_learns_and_shrinks_sigma_of_informative_weights():
    x, y = gaussian_problem(2, n=2000)
    x[..., 5:] = 0  # silence the noise inputs: their weights never see a gradient
    net = BayesianMLP(SIZES, [BGDConfig(seed=1, std_init=0.05, mean_eta=4.0, mc_samples=4)])
    losses = torch.cat([net.train_step(x[:, i:i + 32], y[:, i:i + 32]) for i in range(0, 1600, 32)])
    assert losses[-5:].mean() < 0.25 * losses[:5].mean()
    test_x, test_y = x[0, 1600:], y[0, 1600:]
    probs = sum(torch.softmax(net.sample_pass(test_x)[0], -1) for _ in range(10))
    assert (probs.argmax(-1) == test_y).float().mean().item() > 0.9
    first = net.weight_std[0]
    assert torch.all(first[..., 5:] == 0.05)
    assert first[..., :5].mean().item() < 0.05
    assert all(torch.all(s > 0) for s in (*net.weight_std, *net.bias_std))


def test_runs_trained_together_equal_runs_trained_alone():
    configs = [BGDConfig(seed=s, std_init=std, mean_eta=eta, mc_samples=3, mean_init=init)
               for s, std, eta, init in ((0, 0.05, 1.0, "torch"), (1, 0.01, 0.5, "reference"), (2, 0.1, 2.0, "torch"))]
    x, y = gaussian_problem(3, n=4 * 24, runs=3)
    together = BayesianMLP(SIZES, configs)
    alone = [BayesianMLP(SIZES, [c]) for c in configs]
    for step in range(4):
        batch = slice(24 * step, 24 * (step + 1))
        loss = together.train_step(x[:, batch], y[:, batch])
        for r, net in enumerate(alone):
            assert torch.equal(net.train_step(x[r:r + 1, batch], y[r:r + 1, batch]), loss[r:r + 1])
    logits_together = together.sample_pass(x[0])[0]
    for r, net in enumerate(alone):
        for a, b in zip(state(together), state(net)):
            assert torch.equal(a[r:r + 1], b)
        assert torch.equal(net.sample_pass(x[0])[0], logits_together[r:r + 1])


def test_means_are_the_base_network_and_sigma_starts_at_std_init():
    net = BayesianMLP([100, 50, 10], [BGDConfig(seed=3, std_init=0.02)])
    assert all(torch.all(s == 0.02) for s in (*net.weight_std, *net.bias_std))
    assert net.weights[0].abs().max().item() <= 0.1 and net.biases[0].abs().max().item() <= 0.1
    assert torch.allclose(net.synaptic_energy(), net.weights[0].abs().sum() + net.weights[1].abs().sum())
    assert net.mean_release_probability().item() == 1.0
    before = [t.clone() for t in state(net)]
    net.end_task(torch.randn(20, 100), torch.randint(0, 10, (20,)))  # task-agnostic: nothing changes
    assert all(torch.equal(a, b) for a, b in zip(before, state(net)))


def test_benchmark_settings():
    assert replace(BGD_SETTINGS["perm_fmnist"], seed=2019) == BGDConfig(seed=2019, std_init=0.05, mean_eta=0.1)
    assert BGD_SETTINGS["split_mnist"].std_init == BGD_SETTINGS["split_fmnist"].std_init == 0.001
    assert BGD_SETTINGS["perm_mnist"].mean_eta == 1.0
    assert all(c.mc_samples == 10 for c in BGD_SETTINGS.values())


@pytest.mark.parametrize("bad", [
    {"std_init": 0.0}, {"std_init": -0.1}, {"std_init": math.inf}, {"std_init": 0.1, "mean_eta": 0.0},
    {"std_init": 0.1, "mean_eta": -1.0}, {"std_init": 0.1, "mc_samples": 0}, {"std_init": 0.1, "mc_samples": 2.5},
    {"std_init": 0.1, "mc_samples": True}, {"std_init": 0.1, "mean_init": "xavier"},
])
def test_invalid_configs_raise(bad):
    with pytest.raises(ValueError):
        BGDConfig(**bad)


def test_mixed_mc_samples_raise():
    with pytest.raises(ValueError, match="mc_samples"):
        BayesianMLP(SIZES, [BGDConfig(std_init=0.1, mc_samples=2), BGDConfig(std_init=0.1, mc_samples=3)])


def test_training_noise_of_a_step_depends_on_the_step_and_the_run_alone():
    shapes = [torch.Size([4, 3]), torch.Size([2, 4]), torch.Size([4]), torch.Size([2])]
    seeds = torch.tensor([11, 12])
    step = torch.tensor(5)
    noise = training_noise(seeds, step, shapes, samples=3)
    assert [e.shape for e in noise] == [(2, 3, *s) for s in shapes]
    flat = torch.cat([e.flatten(2) for e in noise], 2)  # (R, K, P): P = 26 parameters
    for r in range(2):
        alone = torch.cat([e.flatten(2) for e in training_noise(seeds[r:r + 1], step, shapes, 3)], 2)
        assert torch.equal(alone[0], flat[r])
        assert torch.equal(flat[r].flatten(), standard_normal(seeds[r], torch.arange(5 * 3 * 26, 6 * 3 * 26)))
    later = torch.cat([e.flatten(2) for e in training_noise(seeds, step + 1, shapes, 3)], 2)
    assert not torch.isclose(later, flat).any()


def test_steps_draw_fresh_noise_and_compiled_steps_match_eager_ones():
    config = BGDConfig(seed=3, std_init=0.1, mean_eta=1.0, mc_samples=2)
    x, y = gaussian_problem(4, n=3 * 16)
    eager, compiled = BayesianMLP(SIZES, [config]), BayesianMLP(SIZES, [config])
    for step in range(3):
        batch = slice(16 * step, 16 * (step + 1))
        assert torch.allclose(eager.train_step(x[:, batch], y[:, batch]),
                              compiled.train_step(x[:, batch], y[:, batch], compile=True), atol=1e-5)
    assert eager.steps_taken.item() == compiled.steps_taken.item() == 3
    for a, b in zip(state(eager), state(compiled)):
        assert torch.allclose(a, b, atol=1e-5)


def test_the_noise_generator_is_part_of_a_run_description():
    config = BGDConfig(seed=2, std_init=0.05)
    assert config.describe() == {"seed": 2, "std_init": 0.05, "mean_eta": 1.0, "mc_samples": 10,
                                 "training_noise": TRAINING_NOISE}
    # the initial means enter the description only when they are not the default
    assert BGDConfig(seed=2, std_init=0.05, mean_init="torch").describe() == config.describe()
    assert replace(config, mean_init="reference").describe() == {**config.describe(), "mean_init": "reference"}


def test_default_means_are_pytorchs_bit_for_bit():
    sizes = [30, 20, 4]
    net = BayesianMLP(sizes, [BGDConfig(seed=3, std_init=0.02)])
    base = StochasticMLP(sizes, [deterministic(seed=3, bias="learned")])
    assert all(torch.equal(a, b) for a, b in zip(net.weights + net.biases, base.weights + base.biases))


def test_reference_means_follow_the_reference_codes_initialisation():
    sizes = [400, 300, 10]
    torch_init, reference = (BayesianMLP(sizes, [BGDConfig(seed=5, std_init=0.02, mean_init=init)])
                             for init in ("torch", "reference"))
    fan_in, fan_out = sizes[:2]
    weights, biases = reference.weights[0][0], reference.biases[0][0]
    assert weights.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)  # Xavier normal
    assert abs(weights.mean().item()) < 0.02 * weights.std().item()
    assert biases.std().item() == pytest.approx(math.sqrt(2 / (1 + fan_out)), rel=0.15)
    assert reference.weights[1][0].std().item() == pytest.approx(math.sqrt(2 / (300 + 10)), rel=0.05)
    assert torch.all(reference.weight_std[0] == 0.02)
    # drawn from a stream of the run's own: the mini-batch order is that of the default initialisation
    assert torch.equal(reference.generators[0].get_state(), torch_init.generators[0].get_state())
    assert not torch.equal(reference.weights[0], torch_init.weights[0])


def test_evaluation_averages_fresh_parameter_samples_in_every_pass():
    from lib.train import evaluate

    net = BayesianMLP(SIZES, [BGDConfig(seed=2, std_init=0.3)])
    (x,), (y,) = gaussian_problem(5, n=60)
    fast = evaluate(net, x, y, n_samples=4, mask_batch=20)
    fresh = BayesianMLP(SIZES, [BGDConfig(seed=2, std_init=0.3)])  # the same evaluation stream, pass by pass
    prob_sum = torch.zeros(1, 60, SIZES[-1])
    for _ in range(4):
        for start in range(0, 60, 20):
            logits, _ = fresh.sample_pass(x[start:start + 20])
            prob_sum[:, start:start + 20] += torch.softmax(logits, -1)
    assert net.stochastic
    assert fast.accuracy.tolist() == (prob_sum.argmax(-1) == y).float().mean(1).tolist()


def test_monte_carlo_inference_is_a_later_field_chosen_per_run():
    config = BGDConfig(std_init=0.05)
    assert "mc_inference" not in config.describe()
    assert replace(config, mc_inference="average_accuracy").describe()["mc_inference"] == "average_accuracy"
    with pytest.raises(ValueError, match="mc_inference"):
        BGDConfig(std_init=0.05, mc_inference="vote")


def test_largest_std_follows_sigma_step_by_step_and_shows_a_setting_that_overflows():
    x, y = gaussian_problem(3, n=8 * 32)
    x, y = 3 * x[0], y[0]  # large inputs: large summed gradients
    calm, wild = BGDConfig(std_init=0.01, mean_eta=1.0, seed=0), BGDConfig(std_init=2.0, mean_eta=50.0, seed=0)
    largest = largest_std([calm, wild], SIZES, x, y, steps=8, batch_size=32)
    assert largest.shape == (9, 2, 2)
    assert torch.equal(largest[0], torch.tensor([[0.01, 0.01], [2.0, 2.0]]))
    assert torch.isfinite(largest[:, 0]).all() and largest[:, 0].max() < 0.02  # sigma of a calm setting barely moves
    assert torch.isnan(largest[-1, 1]).all() and torch.isfinite(largest[1, 1]).all()  # the wild one overflows later
    # The same numbers as the run trained alone on the same batches: the probe is the training step.
    net = BayesianMLP(SIZES, [calm])
    for k in range(8):
        net.train_step(x[None, 32 * k:32 * (k + 1)], y[None, 32 * k:32 * (k + 1)])
    assert torch.equal(largest[-1, 0], torch.stack([s[0].max() for s in net.weight_std]))
    with pytest.raises(ValueError, match="more than the 256 examples"):
        largest_std([calm], SIZES, x, y, steps=9, batch_size=32)
