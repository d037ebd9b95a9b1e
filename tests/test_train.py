"""The batched training engine on small synthetic benchmarks (no data files needed)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.bgd import BayesianMLP, BGDConfig
from lib.model import StochasticMLP, deterministic, fixed_release, presynaptic
from lib.tasks import Benchmark, Task
from lib.compilation import compile_available
from lib.train import evaluate, fit, train_step

SIZES = [8, 64, 64, 3]


def blobs(seed: int, n: int = 300, shift: float = 0.0) -> Task:
    """Three Gaussian classes in 8 dimensions, easy enough to learn in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 8, generator=g) + shift

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 3, (m,), generator=g)
        return centres[y] + 0.3 * torch.randn(m, 8, generator=g), y

    (xa, ya), (xb, yb) = draw(n), draw(n // 2)
    return Task(f"blobs{seed}", xa, ya, xb, yb)


@pytest.fixture(scope="module")
def two_tasks() -> Benchmark:
    return Benchmark("blobs", (blobs(0), blobs(1, shift=0.5)), 3)


RUNS = [
    presynaptic(seed=1, g_lim=0.01),
    fixed_release(seed=2, weight_decay=0.01),
    presynaptic(seed=3, lr_modulation=True, p_freeze=0.6, p_step="constant", g_lim=0.01),
    deterministic(seed=4),
]


def train(runs, benchmark, **kw):
    net = StochasticMLP(SIZES, runs)
    kw = dict(epochs=2, batch_size=10, eval_samples=3, eval_batch=20, progress=False, compile=False) | kw
    return net, fit(net, benchmark, **kw)


def test_runs_learn_and_history_has_the_documented_shapes(two_tasks):
    net, hist = train(RUNS, two_tasks, epochs=3)
    n_evals = 2 * 3
    assert hist.accuracy.shape == (4, n_evals, 2) and hist.mutual_information.shape == (4, n_evals, 2)
    assert hist.energy.shape == (4, n_evals) and hist.train_loss.shape == (4, 6)
    assert hist.eval_points[:3] == [(0, 0), (0, 1), (0, 2)]
    # after task 1, every run classifies task 1 far above chance (1/3) and carries information
    assert np.all(hist.accuracy[:, 2, 0] > 0.7)
    assert np.all(hist.train_loss[:, -1] < hist.train_loss[:, 0])
    assert np.all(hist.mutual_information[:, 2, 0] > 0.01)
    # plastic runs moved their release probabilities, fixed ones did not
    assert not torch.allclose(net.probs[0][0], torch.tensor(0.25))
    assert torch.allclose(net.probs[0][1], torch.tensor(0.4)) and torch.all(net.probs[0][3] == 1.0)
    assert hist.frozen[2, -1] > 0 and hist.frozen[0, -1] == 0


def test_batched_runs_equal_each_run_alone(two_tasks):
    batched, hist = train(RUNS, two_tasks)
    for r, config in enumerate(RUNS):
        alone, hist_alone = train([config], two_tasks)
        for layer in range(3):  # bit for bit, not merely close
            assert torch.equal(batched.weights[layer][r], alone.weights[layer][0])
            assert torch.equal(batched.probs[layer][r], alone.probs[layer][0])
            assert torch.equal(batched.biases[layer][r], alone.biases[layer][0])
        np.testing.assert_array_equal(hist.accuracy[r], hist_alone.accuracy[0])
        np.testing.assert_array_equal(hist.mutual_information[r], hist_alone.mutual_information[0])


def three_tasks() -> Benchmark:
    return Benchmark("blobs", (blobs(0), blobs(1, shift=0.5), blobs(2, shift=-0.5)), 3)


def assert_each_run_alone_is_the_same(runs, benchmark, batched, hist, **kw) -> None:
    """Each run trained alone ends with the weights, biases, optimiser state and accuracies it has
    trained in the batch ``batched`` (bit for bit, not merely close)."""
    for r, config in enumerate(runs):
        alone, hist_alone = train([config], benchmark, **kw)
        for layer in range(len(alone.weights)):
            assert torch.equal(batched.weights[layer][r], alone.weights[layer][0])
            assert torch.equal(batched.biases[layer][r], alone.biases[layer][0])
            for name, tensors in alone.state.items():
                if name != "adam_step":
                    assert torch.equal(batched.state[name][layer][r], tensors[layer][0])
        np.testing.assert_array_equal(hist.accuracy[r], hist_alone.accuracy[0])


def test_ewc_runs_of_either_variant_batched_equal_each_run_alone():
    runs = [deterministic(seed=1, optimizer="adam", lr=0.01, ewc_lambda=100.0),
            deterministic(seed=1, optimizer="adam", lr=0.01, ewc_lambda=100.0, ewc_mode="online", ewc_gamma=0.6),
            deterministic(seed=2, optimizer="adam", lr=0.003, ewc_lambda=30.0, ewc_mode="online"),
            deterministic(seed=3, optimizer="adam", lr=0.01)]
    batched, hist = train(runs, three_tasks(), epochs=1, eval_every="task")
    assert not torch.equal(batched.weights[0][0], batched.weights[0][1])  # the variants differ from task 3 on
    assert_each_run_alone_is_the_same(runs, three_tasks(), batched, hist, epochs=1, eval_every="task")


def test_si_runs_batched_with_other_runs_equal_each_run_alone():
    runs = [deterministic(seed=1, optimizer="adam", lr=0.01, si_c=10.0),
            deterministic(seed=1, optimizer="adam", lr=0.01, si_c=1.0, si_xi=0.01),
            deterministic(seed=2, optimizer="adam", lr=0.01, ewc_lambda=100.0),
            fixed_release(0.5, seed=3, optimizer="adam", lr=0.01, si_c=10.0),
            deterministic(seed=4, optimizer="adam", lr=0.003)]
    batched, hist = train(runs, three_tasks(), epochs=1, eval_every="task")
    assert not torch.equal(batched.weights[0][0], batched.weights[0][1])  # the strengths differ from task 2 on
    assert_each_run_alone_is_the_same(runs, three_tasks(), batched, hist, epochs=1, eval_every="task")


def test_si_with_c_zero_is_the_plain_adam_run_bit_for_bit():
    plain = deterministic(seed=1, optimizer="adam", lr=0.01)
    beside_si, _ = train([replace(plain, si_c=0.0), replace(plain, seed=2, si_c=100.0)], three_tasks(), epochs=1,
                         eval_every="never")
    alone, _ = train([plain], three_tasks(), epochs=1, eval_every="never")
    assert "si_path_w" in beside_si.state and "si_path_w" not in alone.state  # a network without SI pays nothing
    assert all(torch.equal(a[0], b[0])
               for a, b in zip(beside_si.weights + beside_si.biases, alone.weights + alone.biases))


def test_the_si_step_adds_the_penalty_gradient_and_integrates_the_task_gradient_alone():
    """After a task, an SGD step moves theta by -eta (g + 2 c Omega (theta - theta*)), the gradient of the
    task's loss plus that of the penalty c sum Omega (theta - theta*)^2 (autograd), and adds -g dtheta to omega."""
    eta, c = 0.1, 50.0
    net = StochasticMLP(SIZES, [deterministic(seed=1, lr=eta, si_c=c)])
    fit(net, Benchmark("one", (blobs(0),), 3), epochs=1, batch_size=10, eval_every="never", progress=False,
        compile=False)
    importance = net.state["si_importance_w"] + net.state["si_importance_b"]
    assert all(bool((o > 0).any()) for o in importance)
    g = torch.Generator().manual_seed(0)
    for t in net.weights + net.biases:  # away from the anchor, so that the penalty pulls
        t.add_(0.05 * torch.randn(t.shape, generator=g))
    task = blobs(1, shift=0.5)
    x, y = task.train_x[None, :10], task.train_y[None, :10]
    params = [t[0].clone().requires_grad_() for t in net.weights + net.biases]
    h = x[0]
    for k in range(3):
        h = h @ params[k].T + params[3 + k]
        h = h.relu() if k < 2 else h
    task_grads = torch.autograd.grad(torch.nn.functional.cross_entropy(h, y[0]), params)
    anchors = net.state["si_anchor_w"] + net.state["si_anchor_b"]
    penalty = c * sum((o[0] * (p - a[0]) ** 2).sum() for o, p, a in zip(importance, params, anchors))
    penalty_grads = torch.autograd.grad(penalty, params)
    before = [t.clone() for t in net.weights + net.biases]
    train_step(net, x, y)
    for b, t, task_g, penalty_g, path in zip(before, net.weights + net.biases, task_grads, penalty_grads,
                                             net.state["si_path_w"] + net.state["si_path_b"]):
        step = (b[0] - t[0]) / eta
        torch.testing.assert_close(step - task_g, penalty_g, rtol=1e-4, atol=2e-6)
        assert penalty_g.abs().max() > 0.01  # the penalty is not negligible
        torch.testing.assert_close(path[0], -task_g * (t[0] - b[0]), rtol=1e-4, atol=1e-9)


def test_evaluating_does_not_change_training(two_tasks):
    a, _ = train(RUNS[:1], two_tasks, eval_every="epoch")
    b, hist = train(RUNS[:1], two_tasks, eval_every="never")
    assert hist.accuracy is None and hist.eval_points == []
    assert all(torch.equal(x, y) for x, y in zip(a.weights + a.probs, b.weights + b.probs))


def test_different_seeds_differ_same_seed_repeats(two_tasks):
    a, _ = train([presynaptic(seed=5), presynaptic(seed=6)], two_tasks, epochs=1)
    b, _ = train([presynaptic(seed=5)], two_tasks, epochs=1)
    assert torch.equal(a.probs[0][0], b.probs[0][0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


def test_learning_rate_modulation_slows_reliable_synapses():
    net = StochasticMLP([4, 3], [presynaptic(seed=0, lr_modulation=False), presynaptic(seed=0, lr_modulation=True)])
    for p in net.probs:
        p.fill_(0.8)
    before = net.weights[0].clone()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 5, 4, generator=g).expand(2, 5, 4), torch.tensor([[0, 1, 2, 0, 1]]).expand(2, 5)
    train_step(net, x, y)
    change = (net.weights[0] - before).abs().sum((1, 2))
    assert change[1].item() == pytest.approx(0.2 * change[0].item(), rel=1e-4)  # eta (1 - p) with p = 0.8


def test_divergence_is_reported(two_tasks):
    with pytest.warns(RuntimeWarning, match="diverged"):
        train([presynaptic(seed=0, lr=50.0)], two_tasks, epochs=1)


def test_a_diverged_ewc_run_does_not_stop_the_runs_beside_it(two_tasks):
    good = deterministic(seed=1, optimizer="adam", lr=1e-3, ewc_lambda=10.0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        together, hist = train([replace(good, lr=1e38, seed=0), good], two_tasks)
    alone, hist_alone = train([good], two_tasks)
    assert not torch.isfinite(together.weights[0][0]).all()  # run 0 diverged before EWC's Fisher of task 1
    assert torch.equal(together.weights[0][1], alone.weights[0][0])
    np.testing.assert_array_equal(hist.accuracy[1], hist_alone.accuracy[0])


def test_evaluate_deterministic_network_matches_its_forward_pass(two_tasks):
    net = StochasticMLP(SIZES, [deterministic(seed=0)])
    task = two_tasks.tasks[0]
    ev = evaluate(net, task.test_x, task.test_y, n_samples=5)
    logits, _ = net.forward(task.test_x)
    assert ev.accuracy[0] == pytest.approx((logits[0].argmax(-1) == task.test_y).float().mean().item())
    assert ev.activity[0] > 0


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=-3), "epochs"),
        (dict(epochs=1.5), "epochs"),
        (dict(batch_size=10_000), "fewer than batch_size"),
        (dict(eval_every="sometimes"), "eval_every"),
    ],
)
def test_bad_arguments_raise_clear_errors(two_tasks, kw, message):
    with pytest.raises(ValueError, match=message):
        train(RUNS[:1], two_tasks, **kw)


def test_architecture_must_match_the_benchmark(two_tasks):
    with pytest.raises(ValueError, match="classes"):
        fit(StochasticMLP([8, 4, 5], [presynaptic()]), two_tasks, epochs=1)
    with pytest.raises(ValueError, match="inputs"):
        fit(StochasticMLP([9, 4, 3], [presynaptic()]), two_tasks, epochs=1)


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler on the CPU")
def test_compiled_step_matches_eager_step(two_tasks):
    eager, _ = train(RUNS, two_tasks, epochs=1, eval_every="never")
    compiled, _ = train(RUNS, two_tasks, epochs=1, eval_every="never", compile=True)
    for x, y in zip(eager.weights + eager.biases, compiled.weights + compiled.biases):
        assert torch.allclose(x, y, atol=1e-5)
    mismatched = sum((x != y).sum().item() for x, y in zip(eager.probs, compiled.probs))
    assert mismatched <= 2  # a gradient within rounding of g_lim may flip its release-probability step


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler on the CPU")
def test_compiled_si_step_matches_eager_step():
    runs = [deterministic(seed=1, optimizer="adam", lr=0.01, si_c=10.0),
            deterministic(seed=2, optimizer="adam", lr=0.01)]
    two = Benchmark("blobs", three_tasks().tasks[:2], 3)
    eager, _ = train(runs, two, epochs=1, eval_every="never")
    compiled, _ = train(runs, two, epochs=1, eval_every="never", compile=True)
    for name in ("si_path_w", "si_importance_w", "si_anchor_w", "si_path_b"):
        assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(eager.state[name], compiled.state[name]))
    for x, y in zip(eager.weights + eager.biases, compiled.weights + compiled.biases):
        assert torch.allclose(x, y, atol=1e-5)


def test_a_failing_compiler_warns_once_and_training_goes_on_eagerly(monkeypatch):
    from lib import compilation as engine

    def broken_compile(function, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C++ compiler")
        return compiled

    monkeypatch.setattr(engine, "_compiled", {})
    monkeypatch.setattr(engine, "_compile_failed", False)
    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        assert engine.compiled_or_eager(torch.add, torch.ones(2), 1, compile=True).tolist() == [2.0, 2.0]
    assert not compile_available()
    assert engine.compiled_or_eager(torch.mul, torch.ones(2), 3, compile=True).tolist() == [3.0, 3.0]  # no second warning


def _scaled_plus_one(x, k: int):
    return x * k + 1


def test_a_long_lived_process_keeps_compiling_new_versions_of_a_step(monkeypatch):
    """A reproduce worker meets many plans and shapes of one step: each must be compiled, not run
    eagerly once torch's default limit of 8 versions is reached (dynamo alone, to stay fast)."""
    from torch._dynamo.utils import counters
    from lib import compilation as engine

    real_compile = torch.compile
    monkeypatch.setattr(engine, "_compiled", {})
    monkeypatch.setattr(engine, "_compile_failed", False)
    monkeypatch.setattr(torch, "compile", lambda function, **kw: real_compile(function, backend="eager", **kw))
    before = counters["stats"]["unique_graphs"]
    for k in range(12):  # with dynamic=False every integer is a new version
        assert engine.compiled_or_eager(_scaled_plus_one, torch.ones(2), k).tolist() == [k + 1.0] * 2
    assert counters["stats"]["unique_graphs"] - before == 12


def test_a_deterministic_network_is_evaluated_once_with_the_same_sums():
    net = StochasticMLP(SIZES, [deterministic(seed=0), deterministic(seed=1, lr=0.5)])
    task = blobs(3, n=250)
    fast = evaluate(net, task.test_x, task.test_y, n_samples=5, mask_batch=40)
    # every pass computed, as for a stochastic network
    prob_sum, activity = torch.zeros(2, 125, 3), torch.zeros(2)
    for _ in range(5):
        for start in range(0, 125, 40):
            logits, inputs = net.sample_pass(task.test_x[start:start + 40])
            prob_sum[:, start:start + 40] += torch.softmax(logits, -1)
            activity += sum(h.sum((1, 2)) for h in inputs[1:])
    assert np.array_equal(fast.accuracy, (prob_sum.argmax(-1) == task.test_y).float().mean(1).numpy())
    assert np.array_equal(fast.activity, (activity / (5 * 125)).numpy())


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler on the CPU")
def test_compiled_evaluation_draws_the_same_masks(two_tasks):
    task = two_tasks.tasks[0]
    nets = [StochasticMLP(SIZES, RUNS) for _ in range(2)]
    eager, compiled = (evaluate(net, task.test_x, task.test_y, n_samples=3, mask_batch=40, compile=c)
                       for net, c in zip(nets, (False, True)))
    np.testing.assert_array_equal(eager.accuracy, compiled.accuracy)
    np.testing.assert_allclose(eager.activity, compiled.activity, rtol=1e-6)


def test_single_pass_accuracy_averages_the_accuracy_of_each_pass(two_tasks):
    net = StochasticMLP(SIZES, [presynaptic(seed=1), deterministic(seed=2)])
    task = two_tasks.tasks[0]
    drawn = net.eval_masks_drawn.clone()  # counter-based masks: the same passes are drawn again from here
    result = evaluate(net, task.test_x, task.test_y, n_samples=3, mask_batch=40)
    net.eval_masks_drawn.copy_(drawn)
    correct = torch.zeros(2)
    for _ in range(3):  # the same passes again: one mask per 40 examples
        for start in range(0, len(task.test_y), 40):
            logits, _ = net.sample_pass(task.test_x[start:start + 40])
            correct += (logits.argmax(-1) == task.test_y[start:start + 40]).sum(1)
    assert np.allclose(result.single_pass_accuracy, (correct / (3 * len(task.test_y))).numpy())
    assert result.single_pass_accuracy[1] == result.accuracy[1]  # deterministic: every pass is the same


def test_last_incomplete_batch_is_dropped_unless_asked_for(two_tasks):
    sizes = []

    compiled = []

    def step(x, y, compile):
        sizes.append(x.shape[1])
        compiled.append(compile)
        return torch.zeros(x.shape[0])

    net = StochasticMLP(SIZES, [deterministic(seed=1)])
    fit(net, two_tasks, epochs=1, batch_size=120, eval_every="never", step=step, progress=False)
    assert sizes == [120, 120] * 2  # 300 examples per task
    assert not any(compiled)  # a rule given as `step` is compiled as fit decides: 4 steps are too few
    sizes.clear()
    fit(net, two_tasks, epochs=1, batch_size=120, eval_every="never", step=step, progress=False, drop_last=False,
        compile=True)
    assert sizes == [120, 120, 60] * 2 and all(compiled[4:])


def test_evaluating_only_the_tasks_seen_records_nan_for_the_others_and_changes_nothing_else():
    everything, hist = train(RUNS, three_tasks(), eval_every="task")
    seen, hist_seen = train(RUNS, three_tasks(), eval_every="task", eval_unseen=False)
    later = np.triu(np.ones((3, 3), dtype=bool), k=1)  # [after task i, task j > i]
    for key in ("accuracy", "mutual_information", "activity", "single_pass_accuracy"):
        full, part = getattr(hist, key), getattr(hist_seen, key)
        assert part.shape == full.shape and part.dtype == full.dtype
        assert np.isnan(part[:, later]).all()
        np.testing.assert_array_equal(part[:, ~later], full[:, ~later])
    np.testing.assert_array_equal(hist_seen.train_loss, hist.train_loss)
    for layer in range(3):
        assert torch.equal(seen.weights[layer], everything.weights[layer])
    with pytest.raises(ValueError, match="eval_unseen=False"):
        train(RUNS, three_tasks(), eval_unseen=False, eval_tasks=three_tasks().tasks)


def test_bgd_evaluating_only_the_tasks_seen_gets_the_same_numbers_for_them():
    histories = []
    for eval_unseen in (True, False):
        net = BayesianMLP(SIZES, [BGDConfig(seed=s, std_init=0.05, mean_eta=1.0, mc_samples=2) for s in (0, 1)])
        histories.append(fit(net, three_tasks(), epochs=1, batch_size=10, eval_every="task", eval_samples=3,
                             eval_batch=20, progress=False, compile=False, step=net.train_step, eval_unseen=eval_unseen))
    seen = np.tril(np.ones((3, 3), dtype=bool))
    np.testing.assert_array_equal(histories[1].accuracy[:, seen], histories[0].accuracy[:, seen])
    assert np.isnan(histories[1].accuracy[:, ~seen]).all()


def test_a_bgd_network_whose_runs_all_diverged_skips_its_steps_and_records_the_same_numbers():
    histories, steps = [], []
    for skip in (True, False):
        net = BayesianMLP(SIZES, [BGDConfig(seed=s, std_init=1.0, mean_eta=1e4, mc_samples=2) for s in (0, 1)])
        if not skip:
            net.diverged_runs = lambda: torch.zeros(2, dtype=torch.bool)
        calls = []

        def step(x, y, compile, net=net, calls=calls):
            calls.append(1)
            return net.train_step(x, y, compile)

        with pytest.warns(RuntimeWarning, match="diverged"):
            histories.append(fit(net, three_tasks(), epochs=2, batch_size=10, eval_every="epoch", eval_samples=3,
                                 eval_batch=20, progress=False, compile=False, step=step))
        assert net.diverged_runs().all() == skip
        steps.append(len(calls))
    assert steps[0] < steps[1] / 3  # (diverged within the first epoch)
    for key in ("accuracy", "mutual_information", "activity", "single_pass_accuracy", "energy", "frozen", "train_loss"):
        np.testing.assert_array_equal(getattr(histories[0], key), getattr(histories[1], key))
    assert np.isnan(histories[0].train_loss[:, 1:]).all()


def test_bgd_runs_that_still_have_a_finite_parameter_have_not_diverged():
    net = BayesianMLP(SIZES, [BGDConfig(seed=s, std_init=0.05) for s in (0, 1)])
    assert not net.diverged_runs().any()
    for tensors in (net.weights, net.biases, net.weight_std, net.bias_std):
        for t in tensors:
            t[0] = float("nan")
    assert net.diverged_runs().tolist() == [True, False]
    net.bias_std[-1][0, 0] = 0.1
    assert not net.diverged_runs().any()
    assert not StochasticMLP(SIZES, RUNS).diverged_runs().any()
