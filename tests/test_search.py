"""Random search over the settings of the presynaptic model, EWC and BGD, on synthetic tasks."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from lib import continual
from lib.cli_experiments import search_main
from lib.continual import LifelongProtocol, RunSpec, run_specs
from lib.cache import ENV_VAR, STORED_RESULTS
from lib.search import (BGDSpace, EWCSpace, SearchSpace, SISpace, default_space, describe_trials, draw_trials,
                        random_search)
from tests.test_continual import PROTOCOL, rules  # noqa: F401  (the synthetic benchmark fixture)


def test_trials_are_seeded_and_inside_the_space():
    space = SearchSpace(p_up=(0.02, 0.03), p_down=(0.05, 0.06), p_freeze=(0.91, 0.92), lr=(0.1, 0.2))
    trials = draw_trials(50, seed=3, space=space)
    assert trials == draw_trials(50, seed=3, space=space) != draw_trials(50, seed=4, space=space)
    for trial in trials:
        t = dict(trial)
        assert 0.02 <= t["p_up"] <= 0.03 and 0.05 <= t["p_down"] <= 0.06 and 0.91 <= t["p_freeze"] <= 0.92
        assert t["lr"] in (0.1, 0.2)
    assert {dict(t)["lr"] for t in trials} == {0.1, 0.2}
    assert all("p_freeze" not in dict(t) for t in draw_trials(5, space=SearchSpace(p_freeze=None)))


def test_the_presynaptic_draws_are_those_of_the_stored_search():
    assert draw_trials(3) == [
        (("p_up", 0.0673266), ("p_down", 0.0342808), ("p_freeze", 0.902458), ("lr", 0.01)),
        (("p_up", 0.0831943), ("p_down", 0.092148), ("p_freeze", 0.936398), ("lr", 0.01)),
        (("p_up", 0.0756547), ("p_down", 0.0589262), ("p_freeze", 0.956104), ("lr", 0.01)),
    ]


def test_the_stored_split_mnist_search_is_found_under_its_keys(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(STORED_RESULTS))
    rows = random_search(LifelongProtocol("split_mnist"), 24, train=False)  # the book's search, paper scale
    assert len(rows) == 25 and not any(math.isnan(row["average"]) for row in rows)


def test_ewc_trials_cover_both_variants_and_both_optimisers_inside_the_space():
    space = EWCSpace()
    trials = [dict(t) for t in draw_trials(200, seed=1, space=space)]
    assert {t["ewc_mode"] for t in trials} == {"offline", "online"} and {t["optimizer"] for t in trials} == {"adam", "sgd"}
    for t in trials:
        assert 1.0 <= t["ewc_lambda"] <= 1e5 and 1e-5 <= t["lr"] <= 1e-2
        assert (0.5 <= t["ewc_gamma"] <= 1.0) if t["ewc_mode"] == "online" else t["ewc_gamma"] == 1.0
    # log-uniform: each decade of lambda about equally often
    decades = np.histogram(np.log10([t["ewc_lambda"] for t in trials]), bins=5, range=(0, 5))[0]
    assert decades.min() > 20
    only_online = [dict(t) for t in draw_trials(5, space=EWCSpace(ewc_mode=("online",), optimizer=("adam",)))]
    assert all(t["ewc_mode"] == "online" and t["optimizer"] == "adam" for t in only_online)


def test_si_trials_are_log_uniform_inside_the_space_and_searchable():
    trials = [dict(t) for t in draw_trials(200, seed=1, space=SISpace())]
    assert all(0.01 <= t["si_c"] <= 1e5 and 1e-3 <= t["si_xi"] <= 0.1 and 1e-5 <= t["lr"] <= 1e-2 for t in trials)
    decades = np.histogram(np.log10([t["si_c"] for t in trials]), bins=7, range=(-2, 5))[0]
    assert decades.min() > 15  # each decade of c about equally often
    assert isinstance(default_space("si"), SISpace)
    assert SISpace().describe() == ("$c$ log-uniform in [0.01, 100000]; $\\xi$ log-uniform in [0.001, 0.1]; "
                                    "Adam with a learning rate log-uniform in [1e-05, 0.01]")


def test_an_si_search_trains_its_trials_and_its_own_settings(rules):  # noqa: F811
    rows = random_search(PROTOCOL, 2, method="si", seed=2, cache=False, benchmark=rules)
    assert len(rows) == 3 and not any(math.isnan(row["average"]) for row in rows)
    (own,) = [row for row in rows if row["own"]]
    assert (own["si_c"], own["si_xi"], own["lr"]) == (continual.SI_C["split"], 0.1, 1e-3)


def test_bgd_trials_inside_the_space_with_a_batch_size_when_asked():
    trials = [dict(t) for t in draw_trials(100, seed=2, space=BGDSpace())]
    assert all(1e-3 <= t["std_init"] <= 0.1 and 0.1 <= t["mean_eta"] <= 10 for t in trials)
    assert {t["mean_init"] for t in trials} == {"torch", "reference"} and {t["batch_size"] for t in trials} == {100, 128}
    assert all(isinstance(t["batch_size"], int) for t in trials)
    assert all("batch_size" not in dict(t) for t in draw_trials(3, space=BGDSpace(batch_size=())))


@pytest.mark.parametrize("make", [
    lambda: SearchSpace(p_up=(0.1, 0.01)), lambda: SearchSpace(p_freeze=(0.9, 1.5)), lambda: SearchSpace(lr=()),
    lambda: SearchSpace(lr=(0.01, -1.0)), lambda: EWCSpace(ewc_mode=("both",)), lambda: EWCSpace(ewc_gamma=(0.5, 1.2)),
    lambda: EWCSpace(ewc_lambda=(0.0, 10.0)), lambda: EWCSpace(optimizer=()), lambda: EWCSpace(lr=(1e-2, 1e-5)),
    lambda: BGDSpace(std_init=(0.1, 0.01)), lambda: BGDSpace(mean_init=("xavier",)), lambda: BGDSpace(batch_size=(0,)),
    lambda: SISpace(si_c=(0.0, 10.0)), lambda: SISpace(si_xi=(0.1, 0.01)), lambda: SISpace(lr=(1e-3,)),
])
def test_a_bad_space_is_refused(make):
    with pytest.raises(ValueError, match="range|lr|must list"):
        make()


def test_bad_trial_counts_methods_and_spaces_are_refused():
    with pytest.raises(ValueError, match="positive"):
        draw_trials(0)
    with pytest.raises(ValueError, match="valid methods"):
        random_search(PROTOCOL, 2, method="adam", cache=False)
    with pytest.raises(ValueError, match="no search space for method 'sgd'"):
        random_search(PROTOCOL, 2, method="sgd", cache=False)
    with pytest.raises(ValueError, match="EWCSpace cannot be searched with method 'bgd'"):
        random_search(PROTOCOL, 2, method="bgd", space=EWCSpace(), cache=False)
    assert isinstance(default_space("no_freeze"), SearchSpace) and isinstance(default_space("bgd"), BGDSpace)


def test_search_trains_every_trial_together_and_ranks_them(rules):  # noqa: F811
    space = SearchSpace(lr=(0.05, 0.001))
    rows = random_search(PROTOCOL, 4, seed=3, space=space, cache=False, benchmark=rules)
    averages = [row["average"] for row in rows]
    assert averages == sorted(averages, reverse=True) and not any(math.isnan(a) for a in averages)
    drawn = {tuple((k, row[k]) for k in ("p_up", "p_down", "p_freeze", "lr")) for row in rows if not row["own"]}
    assert drawn == set(draw_trials(4, 3, space))
    (own,) = [row for row in rows if row["own"]]  # the method's own settings, trained in the same batch
    assert (own["p_up"], own["p_freeze"], own["lr"]) == (0.0520, 0.9353, 0.001)
    # a trial trained alone gives the same number as in the batch
    best = next(row for row in rows if not row["own"])
    alone = run_specs(PROTOCOL, [RunSpec("presynaptic", 0, tuple((k, best[k]) for k in ("p_up", "p_down", "p_freeze", "lr")))],
                      cache=False, benchmark=rules)[0]
    assert alone["average"] == best["average"]


def test_an_ewc_search_trains_trials_of_both_optimisers_and_variants(rules):  # noqa: F811
    rows = random_search(PROTOCOL, 4, method="ewc", seed=1, cache=False, benchmark=rules)
    assert not any(math.isnan(row["average"]) for row in rows)
    drawn = [row for row in rows if not row["own"]]
    assert {row["optimizer"] for row in drawn} == {"adam", "sgd"} and {row["ewc_mode"] for row in drawn} == {"offline", "online"}
    (own,) = [row for row in rows if row["own"]]
    assert (own["ewc_mode"], own["ewc_gamma"], own["optimizer"], own["lr"]) == ("offline", 1.0, "adam", 1e-3)
    online = next(row for row in drawn if row["ewc_mode"] == "online")
    settings = tuple((k, online[k]) for k in ("ewc_mode", "ewc_gamma", "ewc_lambda", "optimizer", "lr"))
    alone = run_specs(PROTOCOL, [RunSpec("ewc", 0, settings)], cache=False, benchmark=rules)[0]
    assert alone["average"] == online["average"]
    table = describe_trials(rows).splitlines()
    assert len(table) == 6 and table[0].split()[:3] == ["#", "average", "%"]
    assert [line.endswith(" own") for line in table[1:]] == [row["own"] for row in rows]


def test_a_bgd_search_gives_each_batch_size_its_protocol_and_stores_batch_by_batch(rules, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    space = BGDSpace(std_init=(0.01, 0.05), batch_size=(20, 40))
    trials = [dict(t) for t in draw_trials(3, seed=0, space=space)]
    assert {t["batch_size"] for t in trials} == {20, 40}
    train_group = continual._train_group
    batches = []

    def interrupted_after_one_batch(protocol, bench, methods, runs, progress):
        if batches:
            raise KeyboardInterrupt
        batches.append((protocol.batch_size, len(runs)))
        return train_group(protocol, bench, methods, runs, progress)

    monkeypatch.setattr(continual, "_train_group", interrupted_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        random_search(PROTOCOL, 3, method="bgd", space=space, benchmark=rules, max_batch=2)
    assert batches == [(20, 2)]  # the trial of batch 20 and the method's own settings, trained together
    assert len(list((tmp_path / "lifelong").glob("*.json"))) == 2  # the finished batch was kept
    progress = []
    monkeypatch.setattr(continual, "_train_group", train_group)
    rows = random_search(PROTOCOL, 3, method="bgd", space=space, benchmark=rules, max_batch=2,
                         on_stored=lambda done, total: progress.append((done, total)))
    assert progress == [(2, 2)]  # the two trials of batch 40, resumed
    assert not any(math.isnan(row["average"]) for row in rows) and len(list((tmp_path / "lifelong").glob("*.json"))) == 4
    (own,) = [row for row in rows if row["own"]]
    assert (own["batch_size"], own["mean_init"]) == (PROTOCOL.batch_size, "torch")
    larger = next(row for row in rows if row["batch_size"] == 40)
    settings = tuple((k, larger[k]) for k in ("std_init", "mean_eta", "mean_init"))
    stored = run_specs(replace(PROTOCOL, batch_size=40), [RunSpec("bgd", 0, settings)], benchmark=rules, train=False)[0]
    assert stored["average"] == larger["average"]


def test_the_search_command_checks_its_arguments_before_training(capsys):
    for argv, message in ((["--method", "sgd", "--benchmark", "split_mnist", "--trials", "3"], "no search space for method 'sgd'"),
                          (["--method", "ewc", "--benchmark", "mnist", "--trials", "3"], "unknown benchmark 'mnist'"),
                          (["--method", "ewc", "--benchmark", "perm_mnist", "--trials", "0"], "must be a positive integer")):
        with pytest.raises(SystemExit) as exit_:
            search_main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_search_command_prints_the_trials_best_first_and_resumes(rules, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    monkeypatch.setattr(continual, "make_benchmark", lambda *args, **kwargs: rules)
    out = tmp_path / "ewc.json"
    argv = ["--method", "ewc", "--benchmark", "split_mnist", "--trials", "2", "--epochs", "1", "--seed", "1", "--json", str(out)]
    assert search_main(argv) == 0
    captured = capsys.readouterr()
    assert "0 stored, 3 to train" in captured.err and "3 of 3 runs trained and stored" in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["#", "average", "%"]
    payload = json.loads(out.read_text())
    averages = [row["average"] for row in payload["trials"]]
    assert averages == sorted(averages, reverse=True) and payload["config"]["method"] == "ewc"

    def no_training(*args, **kwargs):
        raise AssertionError("a stored trial was trained again")

    monkeypatch.setattr(continual, "_train_group", no_training)
    assert search_main(argv) == 0
    again = capsys.readouterr()
    assert "3 stored, 0 to train" in again.err and again.out == captured.out


def test_the_summary_names_the_best_trial_the_authors_rank_and_each_learning_rate():
    from lib.search import summary_markdown

    rows = [dict(p_up=0.05 + 0.01 * k, p_down=0.04 - 0.005 * k, p_freeze=0.92 + 0.005 * k, lr=0.01, average=0.9 - 0.01 * k, own=False)
            for k in range(4)]
    rows.insert(2, dict(p_up=0.052, p_down=0.0516, p_freeze=0.9353, lr=0.01, average=0.885, own=True))
    rows.append(dict(p_up=0.03, p_down=0.03, p_freeze=0.95, lr=0.001, average=0.5, own=False))
    text = summary_markdown(rows)
    assert text.startswith("Best trial: $p_\\mathrm{up}$ = 0.05,") and ": 90.00 %." in text
    assert "The authors' values reach 88.50 %, rank 3 of 6." in text
    assert "$\\eta_0$ = 0.01: 4 trials, 88.50 % on average (range 87.00-90.00)" in text
    assert "$p_\\mathrm{up}$ is -1.00" in text  # accuracy falls as p_up grows
    assert summary_markdown([dict(rows[0], average=float("nan"))]).startswith("The search is not stored yet")
