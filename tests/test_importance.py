"""Chapter 7's importance signals: the consolidation signal of eq. 5 (lib.model, lib.train) and the
signals of a trained network compared (lib.importance)."""
from dataclasses import replace

import pytest
import torch
from scipy import stats

from lib import cache, continual, importance
from lib.compilation import compile_available
from lib.data import is_complete
from lib.energy import EnergyProtocol, energy_config, run_energy
from lib.model import StochasticMLP, presynaptic, rank_matched
from lib.tasks import Benchmark
from lib.train import fit
from tests.test_train import SIZES, assert_each_run_alone_is_the_same, blobs, three_tasks, train

needs_mnist = pytest.mark.skipif(not is_complete("mnist"), reason="MNIST not fetched")
RULE = dict(lr=0.05, g_lim=0.01, p_up=0.1, p_down=0.05, p_freeze=0.6, lr_modulation=True)


def test_rank_matched_gives_the_values_in_the_order_of_the_signal():
    g = torch.Generator().manual_seed(0)
    signal, values = torch.randn(40, 30, generator=g), torch.rand(40, 30, generator=g)
    matched = rank_matched(signal, values)
    assert matched.shape == values.shape
    assert torch.equal(matched.flatten().sort().values, values.flatten().sort().values)  # the values' distribution
    assert stats.spearmanr(matched.flatten(), signal.flatten()).statistic == pytest.approx(1.0)  # the signal's ranks


def test_rank_matched_ties_share_the_mean_of_their_values_and_a_constant_signal_protects_none():
    values = torch.tensor([0.9, 0.3, 0.5, 0.7])
    assert torch.allclose(rank_matched(torch.tensor([3.0, 1.0, 2.0, 1.0]), values), torch.tensor([0.9, 0.4, 0.7, 0.4]))
    assert torch.allclose(rank_matched(torch.zeros(2, 2), values.view(2, 2)), torch.full((2, 2), 0.6))


@pytest.mark.parametrize("bad, message", [
    (dict(consolidation_signal="hebbian"), "must be one of"),
    (dict(consolidation_signal="fisher", lr_modulation=False), "needs learn_p and lr_modulation"),
    (dict(consolidation_signal="magnitude", learn_p=False, p_init=0.5), "needs learn_p and lr_modulation"),
])
def test_bad_consolidation_signals_raise_one_clear_line(bad, message):
    with pytest.raises(ValueError, match=message):
        presynaptic(**(dict(lr_modulation=True) | bad))


def test_the_signal_enters_a_runs_description_only_when_it_is_not_p():
    run = presynaptic(lr_modulation=True)
    assert "consolidation_signal" not in run.describe()
    assert replace(run, consolidation_signal="fisher").describe()["consolidation_signal"] == "fisher"
    config = continual.method_config("signal_path_integral", "split_mnist", 1)
    assert config.consolidation_signal == "path_integral"
    assert replace(config, consolidation_signal="p") == continual.method_config("presynaptic", "split_mnist", 1)


def test_tracking_the_path_integral_leaves_training_bit_for_bit_and_integrates_the_loss_decrease():
    run = presynaptic(seed=3, **RULE)
    tracked = StochasticMLP(SIZES, [run])
    tracked.track_path_integral()
    plain = StochasticMLP(SIZES, [run])
    bench = Benchmark("blobs", (blobs(0),), 3)
    for net in (tracked, plain):
        fit(net, bench, epochs=2, batch_size=10, eval_every="never", progress=False, compile=False)
    assert all(torch.equal(a, b) for a, b in zip(tracked.weights + tracked.probs, plain.weights + plain.probs))
    omega = torch.cat([o.flatten() for o in tracked.state["si_importance_w"]])
    assert omega.abs().sum() > 0 and omega.mean() > 0  # the loss went down: the path integral is positive overall
    assert "si_importance_w" not in plain.state


def test_at_a_boundary_each_signal_takes_the_layers_p_values_in_its_own_order_and_frozen_synapses_keep_theirs():
    runs = [presynaptic(seed=1, **RULE, consolidation_signal=kind) for kind in ("p_at_boundaries", "magnitude", "fisher")]
    net, _ = train(runs, three_tasks(), epochs=1, eval_every="never")
    # after the last task: s is p rearranged in the order of |wbar| (run 1), of the summed Fisher (run 2);
    # (a synapse frozen at the boundary before may have kept its s instead)
    for layer in range(3):
        s, p = net.state["signal_w"][layer], net.probs[layer]
        frozen_before = s >= 0.6
        for r, raw in ((1, net.weights[layer][1].abs()), (2, net.state["signal_fisher_w"][layer][2])):
            moved = ~frozen_before[r]
            in_raw_order = s[r][moved][torch.argsort(raw[moved], stable=True)]
            assert torch.all(in_raw_order[1:] >= in_raw_order[:-1])  # s rises with the raw signal
        assert torch.equal(s[0], p[0])  # p at the boundary is p itself: its frozen synapses are p's frozen ones


def test_a_signal_modulates_the_learning_rate_instead_of_p_from_the_first_task_on():
    base = presynaptic(seed=2, **RULE)
    nets = {kind: train([replace(base, consolidation_signal=kind)], three_tasks(), epochs=1, eval_every="never")[0]
            for kind in ("p", "p_at_boundaries", "magnitude")}
    # during task 1 every other signal is p_init: the same learning-rate factor 1 - p_init for every synapse
    assert not torch.equal(nets["p"].weights[0], nets["p_at_boundaries"].weights[0])
    assert not torch.equal(nets["p_at_boundaries"].weights[0], nets["magnitude"].weights[0])


def test_runs_with_consolidation_signals_batched_beside_others_equal_each_run_alone():
    runs = [presynaptic(seed=1, **RULE, consolidation_signal=kind) for kind in ("path_integral", "fisher", "p")]
    runs.append(presynaptic(seed=4, g_lim=0.01))
    batched, hist = train(runs, three_tasks(), epochs=1, eval_every="task")
    assert_each_run_alone_is_the_same(runs, three_tasks(), batched, hist, epochs=1, eval_every="task")


def test_signals_of_a_network_agree_with_themselves_and_overlap_as_counted():
    a = [torch.arange(10.0).view(2, 5)]
    signals = {"a": a, "b": [-a[0]], "c": [a[0] ** 2]}
    rho = importance.rank_correlations(signals)
    assert rho["a"]["a"] == pytest.approx(1) and rho["a"]["b"] == pytest.approx(-1) and rho["a"]["c"] == pytest.approx(1)
    overlap = importance.top_overlaps(signals, 0.2)
    assert overlap["a"]["c"] == 1.0 and overlap["a"]["b"] == 0.0
    with pytest.raises(ValueError, match="fraction"):
        importance.top_overlaps(signals, 0.0)


@needs_mnist
def test_importance_signals_of_an_energy_network_are_stored_and_its_training_is_that_of_the_stored_run(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    tiny = EnergyProtocol(epochs=1, subset=300, eval_samples=2)
    run = energy_config("presynaptic", 0.01, 0)
    stored = run_energy([run], tiny, progress=False)[0]
    result = importance.importance_signals(run, tiny, n_samples=2, progress=False)
    assert result["accuracy"] == stored["accuracy"]  # the same network, trained again with the path integral tracked
    assert set(result["lesion"]) == set(importance.LESION_ORDERS)
    assert all(len(curve) == 10 and curve[0] == curve[0] for curve in result["lesion"].values())
    assert result["spearman"]["p"]["p"] == pytest.approx(1.0) and -1 <= result["spearman"]["p"]["path_integral"] <= 1
    assert importance.importance_signals(run, tiny, n_samples=2, train=False) == result  # cached
    assert importance.importance_signals(run, tiny, n_samples=3, train=False) is None
    with pytest.raises(ValueError, match="presynaptic run"):
        importance.importance_signals(energy_config("deterministic", 0.01, 0), tiny)


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler on the CPU")
def test_compiled_step_with_consolidation_signals_matches_the_eager_step():
    runs = [presynaptic(seed=1, **RULE, consolidation_signal="magnitude"), presynaptic(seed=2, **RULE)]
    two = Benchmark("blobs", three_tasks().tasks[:2], 3)
    eager, _ = train(runs, two, epochs=1, eval_every="never")
    compiled, _ = train(runs, two, epochs=1, eval_every="never", compile=True)
    for x, y in zip(eager.weights + eager.probs + eager.state["signal_w"], compiled.weights + compiled.probs + compiled.state["signal_w"]):
        assert torch.allclose(x, y, atol=1e-5)


def test_lesion_areas_and_mean_matrices_summarise_the_seeds_in_the_order_of_the_signals():
    names = list(importance.SIGNALS)
    results = [{"lesion": {o: [0.5 + 0.1 * k] * 10 for o in importance.LESION_ORDERS},
                "spearman": {a: {b: float(a == b) + k for b in names} for a in names}} for k in (0, 1)]
    areas = importance.lesion_areas(results)
    assert set(areas) == set(importance.LESION_ORDERS) and areas["p"] == pytest.approx([50.0, 60.0])
    matrix = importance.mean_matrix(results, "spearman")
    assert matrix.shape == (5, 5) and matrix[0, 0] == pytest.approx(1.5) and matrix[0, 1] == pytest.approx(0.5)
