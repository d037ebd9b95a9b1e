"""Chapters 3 and 4 on the networks of the energy experiment: sparsity, lesions, neurons, Fisher information.

:func:`analyse_energy_run` runs every analysis of :mod:`lib.analysis` on the final network of one
presynaptic run of :mod:`lib.energy` and stores the result in ``results/analysis`` (:mod:`lib.cache`),
so that the chapters only plot it.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from . import analysis
from .analysis import LESION_FRACTIONS, LOG_F_BINS, LOG_W_BINS, P_BINS, histogram
from .cache import load_cached, store
from .energy import EnergyProtocol, load_state, run_description, run_energy
from .model import SynapseConfig
from .tasks import make_benchmark

EXPERIMENT = "analysis"
ANALYSED_WEIGHT_DECAY = 0.01  # chapters 3 and 4 analyse the networks of this lambda


def analyse_energy_run(run: SynapseConfig, protocol: EnergyProtocol = EnergyProtocol(), *, cache: bool = True,
                       n_samples: int = 10, train: bool = True) -> dict | None:
    """Chapters 3 and 4 on one trained presynaptic run: sparsity, lesions, neurons, Fisher information.

    Trains the run first if its final state is not stored. The result (cached in
    ``results/analysis``) holds histograms of :math:`p` (bins :data:`P_BINS`), of
    :math:`\\log_{10}|\\bar w|` and of :math:`\\log_{10} F` for important (:math:`p \\ge 0.9`) and other
    synapses, lesion curves at :data:`LESION_FRACTIONS` for every order of
    :func:`lib.analysis.importance_scores` and for both Fisher informations
    (:func:`lib.analysis.empirical_fisher`, :func:`lib.analysis.true_fisher`), and the neuron-level
    statistics of both hidden layers. With ``train=False`` an analysis that is not cached is not
    computed: the result is ``None``.
    """
    config = {**run_description(protocol, run), "analysis": {"n_samples": n_samples, "fractions": LESION_FRACTIONS}}
    if cache and (stored := load_cached(EXPERIMENT, config)) is not None:
        return stored
    if not train:
        return None
    state = load_state(run, protocol)
    if state is None:
        run_energy([run], protocol, force=True)
        state = load_state(run, protocol)
    weights, probs = state.weights, state.probs
    task = make_benchmark(protocol.benchmark, subset=protocol.subset).tasks[0]
    important = [p >= analysis.IMPORTANT for p in probs]
    flat_p = torch.cat([p.flatten() for p in probs])
    flat_w = torch.cat([w.abs().flatten() for w in weights])
    flat_i = flat_p >= analysis.IMPORTANT
    # The stored keys name the labels: "true" (the data's), the empirical Fisher; "model" (sampled), the true Fisher.
    fishers = {"true": analysis.empirical_fisher(state, task.test_x, task.test_y),
               "model": analysis.true_fisher(state, task.test_x, seed=run.seed)}
    lesions = {order: analysis.importance_scores(order, state, seed=run.seed) for order in analysis.LESION_ORDERS}
    lesions |= {f"fisher_{kind}": f for kind, f in fishers.items()}
    result = {
        "p_histogram": histogram(flat_p, P_BINS),
        "fraction_important": analysis.fraction_important(probs),
        "important_per_layer": [float(m.float().mean()) for m in important],
        "log_w_histogram": {"important": histogram(flat_w[flat_i].log10(), LOG_W_BINS),
                            "other": histogram(flat_w[~flat_i].log10(), LOG_W_BINS)},
        "energy_share_important": float(flat_w[flat_i].sum() / flat_w.sum()),
        "mean_w": {"important": float(flat_w[flat_i].mean()) if flat_i.any() else float("nan"),
                   "other": float(flat_w[~flat_i].mean())},
        "lesion": {order: analysis.lesion_accuracy(state, scores, task.test_x, task.test_y, seed=run.seed,
                                                   n_samples=n_samples).tolist()
                   for order, scores in lesions.items()},
        "neurons": [],
        "fisher": {},
    }
    for layer in range(len(probs) - 1):
        n = analysis.neuron_importance(probs, layer, seed=run.seed)
        result["neurons"].append({
            "inputs": n.inputs.astype(int).tolist(), "outputs": n.outputs.astype(int).tolist(),
            "shuffled_histogram": np.bincount(n.shuffled_inputs.astype(int), minlength=probs[layer].shape[1] + 1).tolist(),
            "ks_statistic": n.ks_statistic, "ks_pvalue": n.ks_pvalue, "n_high": n.n_high, "n_low": n.n_low,
            "correlation": n.correlation,
        })
    for kind, fisher in fishers.items():
        flat_f = torch.cat([f.flatten() for f in fisher]).clamp_min(1e-30)
        result["fisher"][kind] = {
            "log_histogram": {"important": histogram(flat_f[flat_i].log10(), LOG_F_BINS),
                              "other": histogram(flat_f[~flat_i].log10(), LOG_F_BINS)},
            "spearman": float(stats.spearmanr(flat_p.numpy(), flat_f.numpy()).statistic),
            "pearson": float(np.corrcoef(flat_p.numpy(), flat_f.numpy())[0, 1]),
            "median_ratio": float(flat_f[flat_i].median() / flat_f[~flat_i].median()) if flat_i.any() else float("nan"),
        }
    if cache:
        store(EXPERIMENT, config, result)
    return result
