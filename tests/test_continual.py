"""Continual-learning methods, EWC, Adam, the ghost control and the cached sweeps, on synthetic tasks."""
import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from lib import continual
from lib.bgd import BGDConfig
from lib.cli_experiments import lifelong_main
from lib.continual import LifelongProtocol, RunSpec, chapter_specs, method_config, run_description, run_specs, summarise
from lib.cache import ENV_VAR, STORED_RESULTS, config_key
from lib.mask_generators import drawn_with_old_generator
from lib.model import StochasticMLP, SynapseConfig, deterministic, presynaptic
from lib.tasks import Benchmark, ContinuousStream, Task
from lib.train import fit

SIZES = [8, 32, 32, 2]


def parity_task(seed: int, n: int = 400) -> Task:
    """A 2-class task on 8 inputs: each task its own region of input space and its own linear rule,
    so that one network can learn all tasks, if it does not forget."""
    g = torch.Generator().manual_seed(seed)
    direction, centre = torch.randn(8, generator=g), 4 * torch.randn(8, generator=g)
    x = torch.randn(n + n // 2, 8, generator=g)
    y = (x @ direction > 0).long()
    x = x + centre
    return Task(f"rule{seed}", x[:n], y[:n], x[n:], y[n:])


@pytest.fixture(scope="module")
def rules() -> Benchmark:
    return Benchmark("rules", (parity_task(0), parity_task(1), parity_task(2)), 2)


PROTOCOL = LifelongProtocol("split_mnist", epochs=3, batch_size=20, eval_samples=2, hidden=(32, 32))


def test_every_method_has_the_settings_of_the_spec():
    pre = method_config("presynaptic", "perm_mnist", 3)
    assert (pre.seed, pre.lr, pre.p_up, pre.p_down, pre.p_freeze, pre.lr_modulation) == (3, 0.01, 0.0520, 0.0516, 0.9353, True)
    assert method_config("presynaptic", "split_fmnist", 0).lr == 0.001
    none = method_config("no_consolidation", "split_mnist", 0)
    assert none.stochastic and not none.lr_modulation and none.p_freeze == math.inf
    assert method_config("sgd", "split_mnist", 0).optimizer == "adam" and method_config("sgd", "split_mnist", 0).lr == 1e-6
    assert method_config("sgd", "perm_mnist", 0).optimizer == "sgd" and not method_config("sgd", "perm_mnist", 0).stochastic
    assert method_config("ewc", "perm_mnist", 0).ewc_lambda > 0
    assert (method_config("joint", "perm_fmnist", 0).optimizer, method_config("joint", "perm_fmnist", 0).lr) == ("adam", 1e-3)
    ghost = method_config("ghost", "perm_mnist", 0)
    assert (ghost.release_p, ghost.p_init, ghost.p_down, ghost.p_up) == (0.5, 0.5, 0.05188978, 0.0571483)
    assert method_config("no_freeze", "split_mnist", 0).p_freeze == math.inf
    assert not method_config("no_lr_modulation", "split_mnist", 0).lr_modulation
    assert isinstance(method_config("bgd", "split_mnist", 1), BGDConfig) and method_config("bgd", "split_mnist", 1).seed == 1


@pytest.mark.parametrize("call", [lambda: method_config("adam", "split_mnist", 0), lambda: method_config("sgd", "mnist", 0),
                                  lambda: LifelongProtocol("split_cifar"), lambda: LifelongProtocol("split_mnist", epochs=-1)])
def test_unknown_names_and_bad_values_are_refused(call):
    with pytest.raises(ValueError, match="valid|positive"):
        call()


def test_cli_lists_the_valid_names(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        lifelong_main(["--benchmark", "split_mnist", "--method", "lwf", "--json", str(tmp_path / "x.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method 'lwf'" in err and "presynaptic" in err and "ghost" in err and "ewc, si, bgd" in err


def test_ghost_runs_release_with_the_fixed_probability():
    net = StochasticMLP([50, 40, 2], [presynaptic(seed=0, release_p=0.5, p_init=0.5)])
    net.probs[0].fill_(0.9)  # the ghost p has moved, release must not follow it
    transmitted = net.transmitted()[0][0]
    released = (transmitted != 0).float().mean().item()
    assert abs(released - 0.5) < 0.03
    nonzero = transmitted != 0
    # the normalisation divides by the ghost p, as in the authors' code
    assert torch.allclose(transmitted[nonzero], net.weights[0][0][nonzero] / 0.9)


def test_adam_matches_torch_optim(rules):
    net = StochasticMLP(SIZES, [deterministic(seed=0, optimizer="adam", lr=0.01, weight_decay=0.001)])
    params = [torch.nn.Parameter(t[0].clone()) for t in net.weights + net.biases]
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=0.001)
    fit(net, Benchmark("one", rules.tasks[:1], 2), epochs=1, batch_size=400, eval_every="never", progress=False,
        compile=False)  # one full-batch step on the whole task
    task = rules.tasks[0]
    h = task.train_x
    for k in range(3):
        h = h @ params[k].T + params[3 + k]
        h = h.relu() if k < 2 else h
    torch.nn.functional.cross_entropy(h, task.train_y).backward()
    opt.step()
    for ours, theirs in zip(net.weights + net.biases, params):
        torch.testing.assert_close(ours[0], theirs.detach(), rtol=1e-5, atol=1e-6)


def test_runs_of_different_optimisers_cannot_share_a_network():
    with pytest.raises(ValueError, match="optimizer"):
        StochasticMLP(SIZES, [deterministic(optimizer="adam"), deterministic()])


def test_ewc_stores_fisher_information_and_remembers_better(rules):
    runs = [deterministic(seed=s, optimizer="adam", lr=0.01, ewc_lambda=lam) for lam in (0.0, 1000.0) for s in (0, 1)]
    net = StochasticMLP(SIZES, runs)
    hist = fit(net, Benchmark("two", rules.tasks[:2], 2), epochs=10, batch_size=20, eval_every="task",
               eval_samples=1, progress=False, compile=False)
    assert all(bool((f > 0).any()) for f in net.state["fisher_w"]), "EWC importances must not be all zero"
    first_task_at_end = hist.accuracy[:, -1, 0]
    assert first_task_at_end[2:].mean() > first_task_at_end[:2].mean() + 0.05
    # lambda = 0 is plain SGD, bit for bit
    plain = StochasticMLP(SIZES, [deterministic(seed=0, optimizer="adam", lr=0.01)])
    fit(plain, Benchmark("two", rules.tasks[:2], 2), epochs=10, batch_size=20, eval_every="never", progress=False,
        compile=False)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(net.weights, plain.weights))


def test_si_is_the_deterministic_adam_network_with_its_strength_per_family():
    si = method_config("si", "split_mnist", 2)
    assert (si.seed, si.optimizer, si.lr, si.si_c, si.si_xi, si.ewc_lambda, si.stochastic) == \
        (2, "adam", 1e-3, continual.SI_C["split"], 0.1, 0.0, False)
    assert method_config("si", "perm_mnist_cont", 0).si_c == continual.SI_C["perm"]
    assert method_config("si", "perm_mnist", 0, si_c=3.0, si_xi=0.01).describe()["si_xi"] == 0.01
    assert continual.METHOD_LABELS["si"] == "SI" and "si" not in continual.MAIN_METHODS
    assert all(spec.method != "si" for spec in chapter_specs("split_mnist", (0,)).values())


def test_si_remembers_better_and_runs_through_run_specs_like_any_method(rules):
    runs = [deterministic(seed=s, optimizer="adam", lr=0.01, si_c=c) for c in (0.0, 10.0) for s in (0, 1)]
    net = StochasticMLP(SIZES, runs)
    hist = fit(net, Benchmark("two", rules.tasks[:2], 2), epochs=10, batch_size=20, eval_every="task",
               eval_samples=1, progress=False, compile=False)
    first_task_at_end = hist.accuracy[:, -1, 0]
    assert first_task_at_end[2:].mean() > first_task_at_end[:2].mean() + 0.05
    specs = [RunSpec("si", 0, (("lr", 0.01), ("si_c", 10.0))), RunSpec("ewc", 0), RunSpec("sgd", 1)]
    si, *_ = run_specs(PROTOCOL, specs, cache=False, benchmark=rules)  # si and ewc train in one batch
    alone = run_specs(PROTOCOL, specs[:1], cache=False, benchmark=rules)[0]
    assert np.array(si["accuracy"]).shape == (3, 3) and si["accuracy"] == alone["accuracy"]
    assert si["train_loss"] == alone["train_loss"]


def test_joint_training_sees_every_task_and_is_evaluated_on_each(rules):
    results = run_specs(PROTOCOL, [RunSpec("joint", 0, (("lr", 0.01),)), RunSpec("sgd", 0, (("optimizer", "adam"), ("lr", 0.01)))],
                        cache=False, benchmark=rules)
    joint, sequential = results
    assert np.array(joint["accuracy"]).shape == (1, 3)  # one evaluation, after the single merged task
    assert np.array(sequential["accuracy"]).shape == (3, 3)  # after each task
    assert joint["average"] > 0.8 and joint["average"] > sequential["average"]


def test_sweeps_are_cached_and_resume(rules, tmp_path, monkeypatch):
    monkeypatch.setenv("PRESYN_RESULTS", str(tmp_path))
    specs = [RunSpec("presynaptic", 0), RunSpec("no_consolidation", 0), RunSpec("bgd", 0)]
    first = run_specs(PROTOCOL, specs, benchmark=rules)
    assert len(list((tmp_path / "lifelong").glob("*.json"))) == 3

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(continual, "_train_group", no_training)
    again = run_specs(PROTOCOL, specs, benchmark=rules)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in first]
    summary = summarise(first)
    averages = [r["average"] for r in first]
    assert summary["mean"] == pytest.approx(np.mean(averages))
    assert summary["sem"] == pytest.approx(np.std(averages, ddof=1) / np.sqrt(3)) and summarise(first[:1])["sem"] == 0.0


def test_continuous_stream_mixes_neighbouring_tasks_at_the_transitions(rules):
    stream = ContinuousStream(rules.tasks, examples_per_task=1000, transition_portion=0.5)
    x, y, order = stream(1, 0, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    assert order.shape == (2, 1000) and int(order.max()) < x.shape[0] == 3 * 400
    which = order[0] // 400  # the tasks are 400 examples each
    assert set(which[:100].tolist()) == {0, 1}  # falling task 0 and rising task 1 at the start of block 1
    assert set(which[400:600].tolist()) == {1}  # pure task 1 in the middle
    assert set(which[-100:].tolist()) == {1, 2}
    assert not torch.equal(order[0], order[1])  # every run draws its own stream
    assert stream.examples(1) == 1000


def test_without_training_missing_runs_are_reported_as_none(rules, tmp_path, monkeypatch):
    monkeypatch.setenv("PRESYN_RESULTS", str(tmp_path))
    assert run_specs(PROTOCOL, [RunSpec("presynaptic", 0)], benchmark=rules, train=False) == [None]
    assert not (tmp_path / "lifelong").exists()


def test_cli_ewc_strength_is_only_for_ewc(capsys, tmp_path):
    with pytest.raises(SystemExit):
        lifelong_main(["--benchmark", "split_mnist", "--method", "sgd", "--ewc-lambda", "10", "--json", str(tmp_path / "x")])
    assert "--ewc-lambda needs --method ewc" in capsys.readouterr().err



@pytest.mark.parametrize("method", ["presynaptic", "bgd"])
def test_the_protocols_batch_size_is_the_one_trained_with(rules, method):
    # 400 examples per task: a batch of 500 cannot be formed (the default of 100 could).
    big = LifelongProtocol("split_mnist", epochs=1, batch_size=500, eval_samples=1, hidden=(32, 32))
    with pytest.raises(ValueError, match="fewer than batch_size=500"):
        run_specs(big, [RunSpec(method, 0)], cache=False, benchmark=rules)


def test_stored_runs_keep_their_keys_and_every_run_of_chapter_5_is_found(monkeypatch):
    """Settings added later (online EWC, BGD's initial means) leave the description of every stored run,
    and so its cache key, as they were."""
    files = sorted((STORED_RESULTS / "lifelong").glob("*.json"))
    assert files
    for path in files:
        config = json.loads(path.read_text())["config"]
        run = config["run"]
        if drawn_with_old_generator(run):
            continue  # the record of the old mask generator (lib/mask_generators.py)
        if "std_init" in run:
            rebuilt = BGDConfig(**{k: v for k, v in run.items() if k != "training_noise"})
        else:
            rebuilt = SynapseConfig(**run)
        protocol = LifelongProtocol(**{**config["protocol"], "hidden": tuple(config["protocol"]["hidden"])})
        assert rebuilt.describe() == run and config_key(run_description(protocol, config["method"], rebuilt)) == path.stem
    monkeypatch.setenv(ENV_VAR, str(STORED_RESULTS))
    for benchmark in continual.LIFELONG_BENCHMARKS:  # the methods' own settings are those stored
        specs = list(dict.fromkeys(chapter_specs(benchmark, (0, 1, 2)).values()))
        assert all(r is not None for r in run_specs(LifelongProtocol(benchmark), specs, train=False)), benchmark


def test_runs_train_in_batches_of_at_most_max_batch_and_each_batch_is_reported(rules, monkeypatch):
    sizes = []

    def record(protocol, bench, methods, runs, progress):
        sizes.append(len(runs))
        return [{"average": 0.5} for _ in runs]

    monkeypatch.setattr(continual, "_train_group", record)
    reports = []
    specs = [RunSpec("presynaptic", s) for s in range(5)] + [RunSpec("sgd", 0)]
    run_specs(PROTOCOL, specs, cache=False, benchmark=rules, max_batch=2, on_stored=lambda *done: reports.append(done))
    assert sizes == [2, 2, 1, 1] and reports == [(2, 6), (4, 6), (5, 6), (6, 6)]
    with pytest.raises(ValueError, match="max_batch"):
        run_specs(PROTOCOL, specs, cache=False, benchmark=rules, max_batch=0)


def test_protocol_switches_towards_the_bgd_reference_are_later_fields():
    base = LifelongProtocol("perm_mnist")
    assert base.describe() == {k: v for k, v in asdict(base).items()
                               if k not in ("eval_batch", "drop_last", "permute_first_task", "n_tasks", "evaluate_unseen")}
    run = method_config("bgd", "perm_mnist", 0)
    reference = LifelongProtocol("perm_mnist", eval_batch=128, drop_last=False, permute_first_task=False)
    assert reference.describe() == {**base.describe(), "eval_batch": 128, "drop_last": False,
                                         "permute_first_task": False}
    assert config_key(run_description(reference, "bgd", run)) != config_key(run_description(base, "bgd", run))
    with pytest.raises(ValueError, match="permuted benchmark"):
        LifelongProtocol("split_mnist", permute_first_task=False)
    with pytest.raises(ValueError, match="eval_batch"):
        LifelongProtocol("perm_mnist", eval_batch=0)



def test_stochastic_and_deterministic_runs_train_in_separate_batches(rules, tmp_path, monkeypatch):
    monkeypatch.setenv("PRESYN_RESULTS", str(tmp_path))
    batches = []
    train_group = continual._train_group

    def recorded(protocol, bench, methods, runs, progress):
        batches.append(sorted(set(methods)))
        return train_group(protocol, bench, methods, runs, progress)

    monkeypatch.setattr(continual, "_train_group", recorded)
    protocol = replace(PROTOCOL, evaluate_unseen=False)
    specs = [RunSpec(m, s) for m in ("presynaptic", "sgd") for s in (0, 1)]
    results = run_specs(protocol, specs, benchmark=rules, cache=False)
    assert sorted(batches) == [["presynaptic"], ["sgd"]]
    for r in results:  # after task i only the tasks 1..i are evaluated
        a = np.array(r["accuracy"])
        assert np.isnan(a[np.triu_indices(len(a), k=1)]).all() and not np.isnan(a[np.tril_indices(len(a))]).any()
        assert r["average"] == pytest.approx(a[-1].mean())


def test_evaluating_only_seen_tasks_is_a_later_field():
    base = LifelongProtocol("perm_mnist")
    assert "evaluate_unseen" not in base.describe()
    assert LifelongProtocol("perm_mnist", evaluate_unseen=False).describe() == {**base.describe(), "evaluate_unseen": False}
    with pytest.raises(ValueError, match="evaluate_unseen must be True or False"):
        LifelongProtocol("perm_mnist", evaluate_unseen=0)


def test_a_longer_task_sequence_is_a_later_field_of_permuted_benchmarks_only():
    base, longer = LifelongProtocol("perm_mnist"), LifelongProtocol("perm_mnist", n_tasks=30)
    assert "n_tasks" not in base.describe() and longer.describe() == {**base.describe(), "n_tasks": 30}
    for benchmark, n in (("split_mnist", 30), ("perm_mnist", 1), ("perm_mnist", 2.0), ("perm_mnist", True)):
        with pytest.raises(ValueError, match="n_tasks must be"):
            LifelongProtocol(benchmark, n_tasks=n)


def test_bgd_runs_report_the_accuracy_their_inference_names(rules):
    protocol = LifelongProtocol("split_mnist", epochs=1, batch_size=60, eval_samples=3, hidden=(32, 32), eval_batch=40,
                                drop_last=False)  # 400 examples per task: the last batch has 40
    specs = [RunSpec("bgd", 0), RunSpec("bgd", 0, (("mc_inference", "average_accuracy"),))]
    by_softmax, by_pass = run_specs(protocol, specs, cache=False, benchmark=rules)
    net = continual.BayesianMLP(SIZES, [method_config(s.method, "split_mnist", s.seed, **dict(s.overrides)) for s in specs])
    hist = fit(net, rules, epochs=1, batch_size=60, eval_every="task", eval_samples=3, eval_batch=40, drop_last=False,
               step=net.train_step, progress=False)
    assert by_softmax["train_loss"] == by_pass["train_loss"] == hist.train_loss[0].tolist()
    assert by_softmax["accuracy"] == hist.accuracy[0].tolist()
    assert by_pass["accuracy"] == hist.single_pass_accuracy[1].tolist()


def test_chapter_runs_keep_the_stored_runs_and_list_the_missing_ones_with_their_command(tmp_path, monkeypatch):
    from lib import cache
    from lib.cli_experiments import lifelong_parser

    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    protocol = LifelongProtocol("split_mnist", epochs=1, subset=500)
    for method, seed, average in (("presynaptic", 0, 0.8), ("presynaptic", 1, 0.9), ("ewc", 0, 0.7)):
        run = method_config(method, "split_mnist", seed)
        cache.store("lifelong", run_description(protocol, method, run), {"average": average, "accuracy": [[average]]})
    stored = continual.chapter_runs([protocol], (0, 1), ("presynaptic", "ewc"), (), {"split": (10.0, 1000.0)})
    assert stored.n_runs == 6 and stored.n_missing == 3  # the grid's lambda = 1000 is the "ewc" run itself
    assert stored.missing == {("split_mnist", "ewc", ()): (1,), ("split_mnist", "ewc", (("ewc_lambda", 10.0),)): (0, 1)}
    np.testing.assert_allclose(stored.averages("split_mnist", "presynaptic"), [80.0, 90.0])
    assert stored.runs("split_mnist", ("ewc", 1000.0)) == stored.runs("split_mnist", "ewc") == [{"average": 0.7, "accuracy": [[0.7]]}]
    assert stored.runs("split_mnist", ("ewc", 10.0)) == [] and stored.averages("perm_mnist", "ewc").size == 0
    status = stored.status_markdown()
    assert "**3 of the 6 runs of this chapter are not computed yet**" in status
    assert "* Split MNIST: ewc (seed 1); ewc with ewc_lambda = 10 (seeds 0, 1)" in status
    commands = [line for line in status.splitlines() if line.startswith(".venv/bin/python -m lib lifelong ")]
    assert commands[1] == (".venv/bin/python -m lib lifelong --benchmark split_mnist --method ewc --seeds 0 1 --epochs 1 "
                           "--subset 500 --ewc-lambda 10 --json split_mnist_ewc_ewc_lambda=10.json")
    assert commands[0].endswith("--json split_mnist_ewc.json")  # each command writes a summary of its own
    args = lifelong_parser().parse_args(commands[1].split()[4:])  # the command's own parser accepts it
    assert (args.benchmark, args.method, args.seeds, args.epochs, args.subset, args.ewc_lambda) == \
        ("split_mnist", "ewc", [0, 1], 1, 500, 10.0)
    complete = continual.chapter_runs([protocol], (0, 1), ("presynaptic",), ())
    assert not complete.missing and complete.status_markdown().startswith("All 2 runs of this chapter are stored")


def test_the_methods_table_gives_each_benchmarks_settings():
    table = continual.methods_markdown(["split_mnist", "perm_mnist_cont"])
    assert table.count("\n") == 7
    assert f"$\\sigma_0$ = {continual.bgd_settings('perm_mnist').std_init:g}" in table
    assert continual.bgd_settings("perm_mnist_cont") == continual.bgd_settings("perm_mnist")
    assert "Adam 1e-6 (Split MNIST)" in table and "SGD 1e-3 (continuous Permuted MNIST)" in table
    with pytest.raises(ValueError, match="valid benchmarks"):
        continual.bgd_settings("mnist")


def test_the_chapters_measures_and_differences_from_the_paper(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # no run of batch 128 stored

    def run(first, final):  # two tasks: accuracy on task 1 right after it, then on both after task 2
        return {"accuracy": [[first, 0.5], [final, 0.9]], "average": (final + 0.9) / 2}

    results = {"split_mnist": {"presynaptic": {0: run(0.9, 0.8), 1: run(0.9, 0.7)}, "sgd": {0: run(1.0, 0.5), 1: run(1.0, 0.6)},
                               "no_consolidation": {0: run(1.0, 0.4)}, "bgd": {0: run(0.8, 0.8)}, "ewc": {},
                               "full": {0: run(0.9, 0.8), 1: run(0.9, 0.7)}, "ghost": {0: run(0.9, 0.6), 1: run(0.9, 0.5)}}}
    stored = continual.ChapterRuns((0, 1), {"split_mnist": LifelongProtocol("split_mnist")}, results,
                                   {("split_mnist", "ewc", ()): (0, 1)}, 14)
    learned, transfer, forgotten = stored.measures("split_mnist", "sgd")
    assert (learned, transfer, forgotten) == pytest.approx(((100 + 90) / 2, -45.0, 45.0))
    assert stored.measures("split_mnist", "ewc") is None and stored.measures("perm_mnist", "sgd") is None
    facts = stored.differences_markdown().splitlines()
    assert facts[0] == "* **Split MNIST, presynaptic:** 82.50 ± 2.50 % here against 82.90 ± 0.01 % in the paper (−0.40 points)."
    assert facts[1] == "* **Split MNIST, ranking of presynaptic, BGD and EWC:** BGD > presynaptic here, presynaptic > BGD in the paper."
    assert facts[2].startswith("* **Split MNIST, standard (deterministic):** 72.50 % against the paper's \"No consolidation\" "
                               "77.68 %; accuracy on each task right after learning it 95.0 %, backward transfer −45.0 points")
    assert "nearer to our standard (deterministic) model (5.18 points away)" in facts[4]
    assert facts[5].startswith("* **Split MNIST, BGD:** 85.00 % against 80.44 % in the paper")
    assert facts[6].startswith("* **Split MNIST, ghost control:** −10.00 points against the full model (t = ")
    assert facts[6].endswith("; paper −1.4 (t = 3.44, p < 0.05).")
    assert facts[7] == "* 2 runs are not computed yet (see the note at the top), so the comparison is incomplete."


def test_the_tuning_table_sorts_each_tuned_baseline_against_the_presynaptic_model():
    def run(average, loss=0.3):
        return {"accuracy": [[average]], "average": average, "train_loss": [loss]}

    seeds = (0, 1, 2)
    results = {
        "perm_mnist": {"presynaptic": {s: run(0.85 + 0.01 * s) for s in seeds},
                       "ewc": {s: run(0.80 + 0.01 * s) for s in seeds},
                       ("tuned", "ewc"): {s: run(0.93 + 0.01 * s) for s in seeds},
                       "bgd": {s: run(0.80) for s in seeds},
                       ("tuned", "bgd"): {0: run(0.9)}},  # one seed only: not compared
        "split_fmnist": {"presynaptic": {s: run(0.90 + 0.002 * s) for s in seeds},
                         "bgd": {s: run(0.86) for s in seeds},
                         ("tuned", "bgd"): {0: run(0.5, math.nan), 1: run(0.5, math.nan), 2: run(0.6)},
                         ("oracle", "bgd"): {s: run(0.86) for s in seeds},
                         "ewc": {s: run(0.89 + 0.01 * s) for s in seeds},
                         ("tuned", "ewc"): {s: run(0.89 + 0.01 * s) for s in seeds}}}
    protocols = {b: LifelongProtocol(b) for b in results}
    stored = continual.ChapterRuns(seeds, protocols, results, {}, 30)
    assert stored.n_diverged("split_fmnist", ("tuned", "bgd")) == 2 and stored.n_diverged("split_fmnist", "bgd") == 0
    lines = stored.tuning_markdown().splitlines()
    assert lines[0] == "**EWC**" and lines.index("**BGD**") == 7  # a table per baseline: EWC on two benchmarks, BGD on one
    assert lines[4].startswith("| Permuted MNIST | 81.00 ± 0.58 | 94.00 ± 0.58 | — | 86.00 ± 0.58 | +8.00 |")
    assert lines[5].startswith("| Split Fashion-MNIST | 90.00 ± 0.58 | 90.00 ± 0.58 | — | 90.20 ± 0.12 | −0.20 |")
    assert lines[11] == "| Split Fashion-MNIST | 86.00 ± 0.00 | 53.33 ± 3.33 (2 diverged) | 86.00 ± 0.00 | 90.20 ± 0.12 | −36.87 |"
    ahead, behind, unresolved, failed = lines[-4:]
    assert ahead.startswith("* **Tuned baselines ahead of the presynaptic model** (p < 0.05): EWC on Permuted MNIST (+8.00 points")
    assert behind.startswith("* **Tuned baselines behind it** (p < 0.05): BGD on Split Fashion-MNIST (−36.87 points")
    assert unresolved.startswith("* **No difference the seeds resolve** (p ≥ 0.05): EWC on Split Fashion-MNIST (−0.20 points")
    assert failed.endswith("BGD on Split Fashion-MNIST (2 of 3 seeds).")
    untuned = continual.ChapterRuns(seeds, {"perm_mnist": protocols["perm_mnist"]},
                                    {"perm_mnist": {"presynaptic": results["perm_mnist"]["presynaptic"]}}, {}, 3)
    assert untuned.tuning_markdown() == "No baseline's tuned runs are stored for every seed yet."


def test_average_text_counts_the_stored_seeds_and_the_diverged_runs():
    def run(average, loss=0.3):
        return {"average": average, "train_loss": [0.5, loss]}

    assert continual.average_text([run(0.8), run(0.9), run(1.0)], 3) == "90.00 ± 5.77"
    assert continual.average_text([run(0.5, math.nan), None, run(0.7)], 3) == "60.00 ± 10.00 (2 of 3 seeds) (1 diverged)"
    assert continual.average_text([None, None], 2) == "—"
