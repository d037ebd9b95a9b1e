"""The release masks' generator, before and after: every stochastic run stored with both, compared.

Until December 2026 a run's release masks came from a ``torch.Generator`` per run (Philox on CUDA,
Mersenne Twister on the CPU), drawn sequentially before each step; since then from counter-based
streams (a keyed 32-bit hash, :mod:`lib.noise`) computed inside the compiled step (:func:`lib.model.release_uniforms`). A stochastic
run's description names the generator (``"release_masks"``), so the runs of the old generator stay
stored under their old keys and are never loaded as current ones. Both sets are statistically the same
experiment with other random numbers: :func:`generator_change` pairs them per experiment, so that the
book can show that every final metric agrees within the spread between seeds.

An experiment is what the chapters average over seeds: one model and weight decay of the energy
experiment (chapter 2), the analysed networks (chapters 3-4), or one method with its settings on one
benchmark (chapter 5; the random search's trials count as one experiment whose "seeds" are its trials).
The fixed-probability model of Fig. 1 releases with the presynaptic runs' mean :math:`p`, which moves
with the generator, so its runs are paired by weight decay and seed, not by their exact probability.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .cache import results_root
from .continual import BENCHMARK_NAMES, METHOD_LABELS
from .energy import DATASET_NAMES

GENERATOR_FIELD = "release_masks"
# The final metrics compared, per experiment kind: (result key, label, unit)
ENERGY_METRICS = (("accuracy", "test accuracy", ""), ("mutual_information", "mutual information", "bits"),
                  ("energy", "synaptic energy", "a.u."), ("mean_p", "mean release probability", ""))
ANALYSIS_METRICS = (("fraction_important", "fraction of synapses with p >= 0.9", ""),
                    ("energy_share_important", "energy share of those synapses", ""))
LIFELONG_METRICS = (("average", "average accuracy after the last task", ""),)
# A lifelong method's name in the table (the ablations' "neither" needs its context on this page)
METHOD_WORDS = {**METHOD_LABELS, "no_freeze_no_lr_modulation": "no freezing, no lr modulation"}


@dataclass(frozen=True)
class MetricChange:
    """One final metric of one experiment under the old and the new generator (over its seeds)."""

    experiment: str
    metric: str
    unit: str
    old: tuple[float, ...]
    new: tuple[float, ...]

    @property
    def old_mean(self) -> float:
        return float(np.mean(self.old))

    @property
    def new_mean(self) -> float:
        return float(np.mean(self.new))

    @property
    def difference(self) -> float:
        return self.new_mean - self.old_mean

    @property
    def spread(self) -> float:
        """The seeds' standard deviation (ddof 1), pooled over both generators."""
        pooled = [np.var(v, ddof=1) for v in (self.old, self.new) if len(v) > 1]
        return float(math.sqrt(np.mean(pooled))) if pooled else math.nan

    @property
    def within_spread(self) -> bool:
        """Whether the means differ by at most the seeds' standard deviation (or both are equal)."""
        return self.difference == 0 or abs(self.difference) <= self.spread

    @property
    def welch_p(self) -> float:
        """Two-sided p-value of Welch's t-test of equal means (nan with fewer than two seeds or no spread)."""
        if min(len(self.old), len(self.new)) < 2 or self.spread == 0:
            return math.nan
        return float(stats.ttest_ind(self.new, self.old, equal_var=False).pvalue)


def _stochastic(run: dict) -> bool:
    release_p = run.get("release_p")
    return bool(run.get("learn_p")) or run.get("p_init", 1.0) < 1 or (release_p is not None and release_p < 1)


def drawn_with_old_generator(run: dict) -> bool:
    """Whether a stored run's description (``config["run"]``) is that of a stochastic run whose
    masks came from the old ``torch.Generator``: kept as the record of the change, never rebuilt."""
    return _stochastic(run) and GENERATOR_FIELD not in run


def _energy_identity(config: dict) -> str:
    """The energy run's experiment in words (its dataset named when it is not MNIST)."""
    run, dataset = config["run"], config.get("protocol", {}).get("benchmark", "mnist")
    where = "" if dataset == "mnist" else f"{DATASET_NAMES[dataset]}, "
    if run.get("learn_p"):
        start = "" if run["p_init"] == 0.25 else f", initial p {run['p_init']:g}"
        return f"{where}presynaptic, weight decay {run['weight_decay']:g}{start}"
    return f"{where}fixed p, weight decay {run['weight_decay']:g}"


def _lifelong_identity(config: dict) -> tuple[str, str]:
    """The experiment's name in words, and its settings but the generator and the seed."""
    run = {k: v for k, v in config["run"].items() if k not in (GENERATOR_FIELD, "seed")}
    protocol = config["protocol"]
    scale = "" if (protocol["epochs"], protocol["subset"]) == (10, None) else \
        f" ({protocol['epochs']} epochs per task, {protocol['subset']} examples)"
    hidden = tuple(protocol.get("hidden", (200, 200)))
    network = "" if hidden == (200, 200) else f", hidden layers of {hidden[0]}"
    tasks = f", {protocol['n_tasks']} tasks" if protocol.get("n_tasks") else ""
    name = f"{BENCHMARK_NAMES[protocol['benchmark']]}{tasks}{network}, {METHOD_WORDS[config['method']]}{scale}"
    return name, json.dumps([protocol, run], sort_keys=True)


def _stored(experiment: str, root: Path) -> list[dict]:
    folder = root / experiment
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _collect(files: list[dict], identity, metrics) -> dict[tuple, dict[str, list]]:
    """``{(experiment, metric, unit): {"old": [(seed, value)], "new": [...]}}`` of the stochastic runs."""
    pairs: dict[tuple, dict[str, list]] = {}
    for stored in files:
        run = stored["config"]["run"]
        if not _stochastic(run):
            continue
        generator = "new" if GENERATOR_FIELD in run else "old"
        name = identity(stored["config"])
        for key, label, unit in metrics:
            if key == "mean_p" and not run.get("learn_p"):
                continue  # a fixed probability is a setting (matched to the presynaptic runs), not an outcome
            value = stored["result"].get(key)
            if isinstance(value, (int, float)):
                pairs.setdefault((name, label, unit), {"old": [], "new": []})[generator].append((run["seed"], value))
    return pairs


def generator_change(root: Path | None = None) -> list[MetricChange]:
    """Every final metric of every stochastic experiment stored under both generators (``root``:
    the results folder, default :func:`lib.cache.results_root`).

    Lifelong runs are paired by their whole description but the generator and the seed; the random
    search's trials (seed 0 each) form one experiment. Only experiments with runs of both generators
    and the same seeds are returned.
    """
    root = results_root() if root is None else Path(root)
    collected = _collect(_stored("energy", root), _energy_identity, ENERGY_METRICS)
    collected |= _collect(_stored("analysis", root), lambda c: "analysed networks, " + _energy_identity(c),
                          ANALYSIS_METRICS)
    for ((name, _), label, unit), values in sorted(_collect(_stored("lifelong", root), _lifelong_identity,
                                                            LIFELONG_METRICS).items()):
        seeds = {seed for seed, _ in values["old"] + values["new"]}
        if seeds != {0}:
            collected[(name, label, unit)] = values
            continue
        # A setting run with seed 0 alone is a trial of a random search: the trials of one benchmark
        # and method are pooled, each trial stored under both generators counting as one "seed".
        pool = collected.setdefault((f"{name}, random search trials", label, unit), {"old": [], "new": []})
        if values["old"] and values["new"]:
            trial = len(pool["old"])
            pool["old"].append((trial, values["old"][0][1]))
            pool["new"].append((trial, values["new"][0][1]))
    changes = []
    for (name, label, unit), values in sorted(collected.items()):
        old, new = (dict(values[g]) for g in ("old", "new"))
        if old and new and sorted(old) == sorted(new):
            seeds = sorted(old)
            changes.append(MetricChange(name, label, unit, tuple(old[s] for s in seeds), tuple(new[s] for s in seeds)))
    return changes
