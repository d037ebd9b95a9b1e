"""The energy experiment of Fig. 1 (chapter 2): information transmitted against synaptic energy.

Three models (presynaptic, fixed release probability, deterministic) are trained on MNIST (chapter 7:
also on Fashion-MNIST) at several weight decays :math:`\\lambda`, the only energy regulariser of the
authors' runs. Every run is
stored in ``results/energy`` (:mod:`lib.cache`), together with the final network of the stochastic
runs, which chapters 3 and 4 analyse (:mod:`lib.energy_analysis`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from .analysis import NetworkState, fraction_important
from .book import ttest
from .cache import config_key, load_arrays, load_cached, store, store_arrays
from .model import StochasticMLP, SynapseConfig, deterministic, fixed_release, presynaptic
from .tasks import make_benchmark
from .train import default_device, fit

EXPERIMENT = "energy"
ENERGY_MODELS = ("presynaptic", "fixed", "deterministic")
PAPER_WEIGHT_DECAYS = (0.0, 0.001, 0.005, 0.01, 0.05, 0.1)
DATASET_NAMES = {"mnist": "MNIST", "fmnist": "Fashion-MNIST"}  # the benchmarks of the experiment
SWEEP_METRICS = ("accuracy", "mutual_information", "energy", "activity", "mean_p")  # the final metrics of a run


@dataclass(frozen=True)
class EnergyProtocol:
    """What all runs of the energy experiment share (``exp_energy.sh``, ``etc/dyn_mnist_energy.json``)."""

    benchmark: str = "mnist"
    sizes: tuple[int, ...] = (784, 200, 200, 10)
    epochs: int = 50
    batch_size: int = 100
    eval_samples: int = 10
    subset: int | None = None


def energy_config(model: str, weight_decay: float, seed: int, fixed_p: float = 0.4, p_init: float = 0.25) -> SynapseConfig:
    """The configuration of one run of Fig. 1: ``model`` is presynaptic, fixed (release probability ``fixed_p``) or deterministic.

    Learning rates of the authors' configs: 0.05 (presynaptic and fixed), 0.08 (deterministic).
    ``p_init`` is the presynaptic model's initial release probability (0.25; Fig. 2a robustness check).
    """
    if model not in ENERGY_MODELS:
        raise ValueError(f"unknown model {model!r}; valid models: {', '.join(ENERGY_MODELS)}")
    if weight_decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
    if model == "presynaptic":
        return presynaptic(seed=seed, weight_decay=weight_decay, p_init=p_init)
    if model == "fixed":
        return fixed_release(fixed_p, seed=seed, weight_decay=weight_decay)
    return deterministic(seed=seed, weight_decay=weight_decay)


def run_description(protocol: EnergyProtocol, run: SynapseConfig) -> dict:
    """The full description of one run, which names its file in the results cache."""
    return {"protocol": asdict(protocol), "run": run.describe()}


def run_energy(
    runs: Sequence[SynapseConfig], protocol: EnergyProtocol = EnergyProtocol(), *, progress: bool | None = None,
    save_state: bool = True, cache: bool = True, force: bool = False, train: bool = True,
) -> list[dict | None]:
    """Train every run not yet in the cache (all together, batched) and return every run's result.

    ``train=False`` trains nothing: runs not in the cache come back as ``None``.
    ``cache=False`` trains every run and stores nothing (smoke runs leave the cache alone);
    ``force=True`` trains and stores every run again (e.g. to regenerate a final state that the
    cache lacks: the ``.npz`` states are not kept in the repository, only the results).

    Each result holds the final test accuracy, mutual information (bits), synaptic energy
    :math:`\\sum|\\bar w|`, activity energy, mean release probability, fraction of synapses with
    :math:`p \\ge 0.9` and training loss per epoch.
    With ``save_state`` the final :math:`\\bar w` and :math:`p` of stochastic runs are kept beside the
    result as ``<key>.npz`` for the analyses of chapters 3 and 4.
    """
    configs = [run_description(protocol, r) for r in runs]
    todo = [r for r, c in zip(runs, configs) if force or not cache or load_cached(EXPERIMENT, c) is None]
    fresh: dict[str, dict] = {}
    if todo and train:
        device = default_device()
        bench = make_benchmark(protocol.benchmark, subset=protocol.subset, device=device)
        net = StochasticMLP(protocol.sizes, todo, device=device)
        hist = fit(net, bench, epochs=protocol.epochs, batch_size=protocol.batch_size, eval_every="end",
                   eval_samples=protocol.eval_samples, progress=progress)
        for r, run in enumerate(todo):
            config = run_description(protocol, run)
            result = {
                "accuracy": float(hist.accuracy[r, -1, 0]),
                "mutual_information": float(hist.mutual_information[r, -1, 0]),
                "energy": float(hist.energy[r, -1]),
                "activity": float(hist.activity[r, -1, 0]),
                "mean_p": float(hist.mean_p[r, -1]),
                "fraction_important": fraction_important([p[r] for p in net.probs]),
                "train_loss": hist.train_loss[r].tolist(),
                "seconds": hist.seconds / len(todo),
            }
            fresh[config_key(config)] = result
            if not cache:
                continue
            if save_state and run.stochastic:
                layers = (("w", net.weights), ("b", net.biases), ("p", net.probs))
                state = {f"{name}{i}": t[r].cpu().numpy() for name, ts in layers for i, t in enumerate(ts)}
                store_arrays(EXPERIMENT, config, state)
            store(EXPERIMENT, config, result)
    return [fresh.get(config_key(c)) or load_cached(EXPERIMENT, c) for c in configs]


def energy_sweep(
    model: str, weight_decays: Sequence[float], seeds: Sequence[int], protocol: EnergyProtocol = EnergyProtocol(),
    fixed_p: Mapping[float, float] | None = None, *, progress: bool | None = None, train: bool = True,
) -> list[dict | None]:
    """The results of ``model`` at every (lambda, seed), lambda-major, from the cache or trained as one batch.

    ``fixed_p[lambda]`` is the fixed model's release probability at that lambda (default 0.4, the
    authors' code); see :func:`matched_release` for the value chapter 2 uses. ``train=False``: see
    :func:`run_energy`.
    """
    runs = [energy_config(model, wd, s, (fixed_p or {}).get(wd, 0.4)) for wd in weight_decays for s in seeds]
    return run_energy(runs, protocol, progress=progress, train=train)


def sweep_arrays(results: Sequence[dict], n_weight_decays: int) -> dict[str, np.ndarray]:
    """:func:`energy_sweep`'s results (lambda-major) as one array ``(lambdas, seeds)`` per final metric."""
    return {k: np.array([r[k] for r in results]).reshape(n_weight_decays, -1) for k in SWEEP_METRICS}


def best_information_per_energy(arrays: Mapping[str, np.ndarray], energy_key: str = "energy") -> np.ndarray:
    """Fig. 1b: per seed, the largest mutual information per unit of energy over the weight decays,
    :math:`\\max_\\lambda I/E` in bits per unit (``arrays`` of :func:`sweep_arrays`; ``energy_key``
    ``"energy"`` for the synaptic energy :math:`\\sum_i |\\bar w_i|`, ``"activity"`` for the neurons')."""
    return (arrays["mutual_information"] / arrays[energy_key]).max(0)


def matched_release(weight_decays: Sequence[float], presynaptic_results: Sequence[dict]) -> dict[float, float]:
    """Per lambda, the presynaptic model's final mean release probability, averaged over its seeds and
    rounded to 3 decimals: the fixed model of Fig. 1 releases with this probability.

    ``presynaptic_results`` are :func:`energy_sweep`'s results of the presynaptic model (lambda-major).
    """
    mean_p = sweep_arrays(presynaptic_results, len(weight_decays))["mean_p"].mean(1)
    return {wd: round(float(m), 3) for wd, m in zip(weight_decays, mean_p)}


def model_sweeps(
    weight_decays: Sequence[float], seeds: Sequence[int], protocol: EnergyProtocol = EnergyProtocol(),
    fixed_p: float | str = "matched", *, progress: bool | None = None, train: bool = True,
) -> dict[str, list[dict | None]]:
    """The runs of Fig. 1's three models at every (lambda, seed), per model (:func:`energy_sweep`).

    ``fixed_p="matched"``: the fixed model releases with :func:`matched_release` at each lambda (so its
    runs need every presynaptic run first: with ``train=False`` and one of those missing, the fixed
    model's runs are all ``None``); a number: that probability at every lambda (the authors' code: 0.4).
    """
    if fixed_p != "matched" and not (isinstance(fixed_p, (int, float)) and 0 < fixed_p <= 1):
        raise ValueError(f'fixed_p must be "matched" or a release probability in (0, 1], got {fixed_p!r}')
    presynaptic_runs = energy_sweep("presynaptic", weight_decays, seeds, protocol, progress=progress, train=train)
    runs = {"presynaptic": presynaptic_runs}
    if fixed_p != "matched":
        runs["fixed"] = energy_sweep("fixed", weight_decays, seeds, protocol, dict.fromkeys(weight_decays, float(fixed_p)),
                                     progress=progress, train=train)
    elif None in presynaptic_runs:
        runs["fixed"] = [None] * len(presynaptic_runs)
    else:
        runs["fixed"] = energy_sweep("fixed", weight_decays, seeds, protocol, matched_release(weight_decays, presynaptic_runs),
                                     progress=progress, train=train)
    runs["deterministic"] = energy_sweep("deterministic", weight_decays, seeds, protocol, progress=progress, train=train)
    return runs


def efficiency_ranking(best: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The models ordered by their mean over seeds of :func:`best_information_per_energy`, best first."""
    return tuple(sorted(best, key=lambda m: float(np.mean(best[m])), reverse=True))


def presynaptic_against_others(best: Mapping[str, np.ndarray]) -> list[dict]:
    """The presynaptic model's :func:`best_information_per_energy` against each other model's: the
    ratio of their means over seeds and the two-sample t-test with equal variances (the authors' test;
    ``t`` and ``p`` are NaN with fewer than two seeds a side). ``t > 0``: the presynaptic model is the
    more efficient."""
    rows = []
    for model, values in best.items():
        if model == "presynaptic":
            continue
        a, b = np.asarray(best["presynaptic"], dtype=float), np.asarray(values, dtype=float)
        test = ttest(a, b)
        rows.append({"model": model, "ratio": float(a.mean() / b.mean()),
                     "t": float(test.statistic) if test else math.nan, "p": float(test.pvalue) if test else math.nan})
    return rows


def load_state(run: SynapseConfig, protocol: EnergyProtocol = EnergyProtocol()) -> NetworkState | None:
    """The final network of a stored stochastic run, or None."""
    arrays = load_arrays(EXPERIMENT, run_description(protocol, run))
    if arrays is None:
        return None
    n = sum(k.startswith("w") for k in arrays)
    return NetworkState(*([torch.from_numpy(arrays[f"{key}{i}"]) for i in range(n)] for key in "wbp"))
