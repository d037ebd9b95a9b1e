"""Old against new release-mask generator: pairing of stored runs, and the stored runs themselves."""
import json
import math

import pytest

from lib.cache import STORED_RESULTS, config_key
from lib.mask_generators import MetricChange, generator_change


def write(root, experiment, config, result):
    path = root / experiment / f"{config_key(config)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config, "result": result}))


def energy_config(seed, learn_p, p_init, generator):
    run = {"seed": seed, "learn_p": learn_p, "p_init": p_init, "weight_decay": 0.01}
    if generator == "new":
        run["release_masks"] = "hash32"
    return {"protocol": {"epochs": 50}, "run": run}


def lifelong_config(seed, generator, p_up=0.05, learn_p=True):
    run = {"seed": seed, "learn_p": learn_p, "p_init": 0.25 if learn_p else 1.0, "p_up": p_up}
    if generator == "new" and learn_p:
        run["release_masks"] = "hash32"
    return {"method": "presynaptic" if learn_p else "sgd", "run": run,
            "protocol": {"benchmark": "split_mnist", "epochs": 10, "subset": None}}


def test_runs_are_paired_per_experiment_and_seed(tmp_path):
    for seed in (0, 1, 2):
        for generator, shift in (("old", 0.0), ("new", 0.01)):
            write(tmp_path, "energy", energy_config(seed, True, 0.25, generator),
                  {"accuracy": 0.9 + shift + 0.001 * seed, "mean_p": 0.4})
            # the fixed model's probability follows the presynaptic runs': paired all the same
            write(tmp_path, "energy", energy_config(seed, False, 0.41 if generator == "old" else 0.42, generator),
                  {"accuracy": 0.8 + shift})
            write(tmp_path, "lifelong", lifelong_config(seed, generator), {"average": 0.7 + shift})
            write(tmp_path, "lifelong", lifelong_config(seed, generator, learn_p=False), {"average": 0.5})
    for trial, p_up in enumerate((0.02, 0.03, 0.04)):  # search trials, seed 0 only
        for generator in ("old", "new"):
            write(tmp_path, "lifelong", lifelong_config(0, generator, p_up=p_up), {"average": 0.6 + trial / 10})
    changes = {(c.experiment, c.metric): c for c in generator_change(tmp_path)}
    accuracy = changes[("presynaptic, weight decay 0.01", "test accuracy")]
    assert accuracy.old == pytest.approx((0.9, 0.901, 0.902)) and accuracy.difference == pytest.approx(0.01)
    assert changes[("fixed p, weight decay 0.01", "test accuracy")].new == pytest.approx((0.81,) * 3)
    assert changes[("presynaptic, weight decay 0.01", "mean release probability")].within_spread  # equal means
    lifelong = changes[("Split MNIST, presynaptic", "average accuracy after the last task")]
    assert len(lifelong.old) == 3 and lifelong.difference == pytest.approx(0.01)
    trials = changes[("Split MNIST, presynaptic, random search trials", "average accuracy after the last task")]
    assert trials.old == pytest.approx((0.6, 0.7, 0.8)) and trials.difference == pytest.approx(0)
    assert not any("sgd" in name for name, _ in changes)  # deterministic runs draw no masks


def test_agreement_is_judged_against_the_seeds_spread():
    close = MetricChange("e", "m", "", (1.0, 2.0, 3.0), (1.5, 2.5, 3.5))
    assert close.spread == pytest.approx(1.0) and close.within_spread and close.welch_p > 0.5
    far = MetricChange("e", "m", "", (1.0, 1.1, 1.2), (2.0, 2.1, 2.2))
    assert not far.within_spread and far.welch_p < 0.001
    assert math.isnan(MetricChange("e", "m", "", (1.0,), (2.0,)).welch_p)


def test_stored_runs_of_both_generators_agree_within_the_seeds_spread():
    changes = generator_change(STORED_RESULTS)
    experiments = {c.experiment for c in changes}
    assert any(name.startswith("presynaptic, weight decay") for name in experiments)
    assert any(name.startswith("Permuted MNIST, presynaptic") for name in experiments)
    moved = [f"{c.experiment}, {c.metric}: {c.old_mean:.4g} -> {c.new_mean:.4g} (spread {c.spread:.2g})"
             for c in changes if not c.within_spread and c.welch_p < 0.01]
    assert not moved, "moved beyond the seeds' spread: " + "; ".join(moved)
