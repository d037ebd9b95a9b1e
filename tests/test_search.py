"""Random search over the metaplasticity parameters, on synthetic tasks."""
import math

import pytest

from lib.continual import RunSpec, run_specs
from lib.search import SearchSpace, draw_trials, random_search
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


@pytest.mark.parametrize("bad", [dict(p_up=(0.1, 0.01)), dict(p_freeze=(0.9, 1.5)), dict(lr=()), dict(lr=(0.01, -1.0))])
def test_a_bad_space_is_refused(bad):
    with pytest.raises(ValueError, match="range|lr"):
        SearchSpace(**bad)


def test_bad_trial_counts_and_methods_are_refused():
    with pytest.raises(ValueError, match="positive"):
        draw_trials(0)
    with pytest.raises(ValueError, match="valid methods"):
        random_search(PROTOCOL, 2, method="adam", cache=False)


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
