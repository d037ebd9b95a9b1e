"""Chapter 7's first study: is the release probability the best signal of a synapse's importance?

The paper reads :math:`p` as an estimate of synaptic importance (Fig. 2d: important synapses carry a
high Fisher information). :func:`importance_signals` puts :math:`p` beside the signals it is meant to
approximate, all on one trained network of the energy experiment (the networks of chapters 3 and 4):

* ``p``: the release probability, learned by eq. 4;
* ``fisher_empirical`` and ``fisher_true``: the diagonal Fisher information of the test set, with the
  data's labels and with labels drawn from the network (:func:`lib.analysis.empirical_fisher`,
  :func:`lib.analysis.true_fisher`);
* ``path_integral``: synaptic intelligence's importance :math:`\\Omega = \\omega / (\\Delta^2 + \\xi)`
  (Zenke, Poole & Ganguli 2017, eq. 5), the path integral :math:`\\omega = -\\sum_t g\\,\\Delta\\bar w` of
  the loss's decrease accumulated during training (:meth:`lib.model.StochasticMLP.track_path_integral`);
* ``magnitude``: :math:`|\\bar w|`.

For each it measures the lesion curve (chapter 3's test: remove the least important synapses first)
and the rank correlations between the signals. The other half of the study, each signal as the
consolidation signal of eq. 5 in the lifelong benchmarks, is the ``signal_*`` methods of
:mod:`lib.continual` (``consolidation_signal`` of :class:`lib.model.SynapseConfig`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from . import analysis
from .analysis import LESION_FRACTIONS, NetworkState
from .cache import load_cached, store
from .energy import EnergyProtocol, run_description
from .model import StochasticMLP, SynapseConfig
from .tasks import make_benchmark
from .train import default_device, fit

EXPERIMENT = "importance"
SIGNALS = {"p": "release probability $p$", "fisher_empirical": "Fisher information (empirical)",
           "fisher_true": "Fisher information (true)", "path_integral": "SI's path integral $\\Omega$",
           "magnitude": "magnitude $\\lvert\\bar w\\rvert$"}
LESION_ORDERS = (*SIGNALS, "random")  # the signals and the control of chapter 3
TOP_FRACTION = 0.1  # the share of synapses whose overlap between two signals is reported


def importance_signals(run: SynapseConfig, protocol: EnergyProtocol = EnergyProtocol(), *, cache: bool = True,
                       train: bool = True, n_samples: int = 10, progress: bool | None = None) -> dict | None:
    """The importance signals of one presynaptic energy run compared: lesion curves, rank correlations.

    Trains the run again with synaptic intelligence's path integral tracked (which leaves its training
    bit for bit as it was: ``accuracy`` is that of the stored run of chapter 2), then computes every
    signal of :data:`SIGNALS` on the final network. The result (cached in ``results/importance``) holds
    the final ``accuracy``, the ``seconds`` training took; ``lesion``: per order of :data:`LESION_ORDERS`, the test accuracy after
    removing each of :data:`~lib.analysis.LESION_FRACTIONS` of the synapses, least important first
    (:func:`lib.analysis.lesion_accuracy`, ``n_samples`` stochastic passes); ``spearman``: per pair of
    signals, the rank correlation over all synapses; ``top_overlap``: per pair, the share of the
    :data:`TOP_FRACTION` most important synapses by one that are also among those of the other.
    With ``train=False`` a result that is not cached is ``None``.
    """
    if not run.learn_p:
        raise ValueError("the importance signals need a presynaptic run (learn_p=True): p is one of them")
    config = {**run_description(protocol, run),
              "importance": {"n_samples": n_samples, "fractions": LESION_FRACTIONS, "top_fraction": TOP_FRACTION}}
    if cache and (stored := load_cached(EXPERIMENT, config)) is not None:
        return stored
    if not train:
        return None
    device = default_device()
    bench = make_benchmark(protocol.benchmark, subset=protocol.subset, device=device)
    net = StochasticMLP(protocol.sizes, [run], device=device)
    net.track_path_integral()
    hist = fit(net, bench, epochs=protocol.epochs, batch_size=protocol.batch_size, eval_every="end",
               eval_samples=protocol.eval_samples, progress=progress)
    state = NetworkState([w[0].cpu() for w in net.weights], [b[0].cpu() for b in net.biases],
                         [p[0].cpu() for p in net.probs])
    test_x, test_y = bench.tasks[0].test_x.cpu(), bench.tasks[0].test_y.cpu()  # (the analyses run on the CPU)
    signals = {
        "p": list(state.probs),
        "fisher_empirical": analysis.empirical_fisher(state, test_x, test_y),
        "fisher_true": analysis.true_fisher(state, test_x, seed=run.seed),
        "path_integral": [omega[0].cpu() for omega in net.state["si_importance_w"]],
        "magnitude": [w.abs() for w in state.weights],
    }
    orders = signals | {"random": analysis.importance_scores("random", state, seed=run.seed)}
    result = {
        "accuracy": float(hist.accuracy[0, -1, 0]),
        "seconds": hist.seconds,
        "lesion": {order: analysis.lesion_accuracy(state, scores, test_x, test_y, seed=run.seed,
                                                   n_samples=n_samples).tolist() for order, scores in orders.items()},
        "spearman": rank_correlations(signals),
        "top_overlap": top_overlaps(signals, TOP_FRACTION),
    }
    if cache:
        store(EXPERIMENT, config, result)
    return result


def _flat(signal: Sequence[Tensor]) -> np.ndarray:
    return torch.cat([s.flatten() for s in signal]).double().numpy()


def rank_correlations(signals: dict[str, Sequence[Tensor]]) -> dict[str, dict[str, float]]:
    """Spearman's rank correlation of every pair of signals over all synapses (all layers together)."""
    names = list(signals)
    rho = stats.spearmanr(np.stack([_flat(signals[n]) for n in names], axis=1)).statistic
    rho = np.atleast_2d(rho)
    return {a: {b: float(rho[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}


def top_overlaps(signals: dict[str, Sequence[Tensor]], fraction: float) -> dict[str, dict[str, float]]:
    """Per pair of signals (a, b), the share of the ``fraction`` most important synapses by a that are
    among the ``fraction`` most important by b (ties broken by the synapses' order; symmetric)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    flats = {name: _flat(s) for name, s in signals.items()}
    k = max(1, int(round(fraction * len(next(iter(flats.values()))))))
    tops = {name: set(np.argsort(-f, kind="stable")[:k].tolist()) for name, f in flats.items()}
    return {a: {b: len(tops[a] & tops[b]) / k for b in tops} for a in tops}


def lesion_area(curve: Sequence[float]) -> float:
    """The mean test accuracy over the lesion sizes of a curve (chapter 3's summary of a lesion order)."""
    return float(np.mean(curve))


def lesion_areas(results: Sequence[dict]) -> dict[str, np.ndarray]:
    """Per lesion order, the lesion area (:func:`lesion_area`, in %) of each of ``results``
    (:func:`importance_signals` of several seeds)."""
    return {order: np.array([100 * lesion_area(r["lesion"][order]) for r in results]) for order in LESION_ORDERS}


def mean_matrix(results: Sequence[dict], key: str) -> np.ndarray:
    """The mean over ``results`` of the pairwise matrix ``key`` (``"spearman"`` or ``"top_overlap"``),
    rows and columns in the order of :data:`SIGNALS`."""
    return np.mean([[[r[key][a][b] for b in SIGNALS] for a in SIGNALS] for r in results], axis=0)
