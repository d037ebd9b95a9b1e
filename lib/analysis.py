"""Analyses of a trained network: sparsity, lesions, neuron-level importance, Fisher information.

The analyses take one trained run as a :class:`NetworkState`, its final expected weights
:math:`\\bar w`, biases and release probabilities :math:`p` (see :func:`lib.energy.load_state`), or,
where only the probabilities matter, its :math:`p` as a list over layers of ``(out, in)`` tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .model import StochasticMLP, SynapseConfig, diagonal_fisher
from .train import evaluate

@dataclass(frozen=True)
class NetworkState:
    """One trained network: per layer, the expected weights :math:`\\bar w` ``(out, in)``, the biases
    ``(out,)`` and the release probabilities :math:`p` ``(out, in)`` (all 1 for a deterministic network)."""

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    probs: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        for name in ("weights", "biases", "probs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.weights) == len(self.biases) == len(self.probs) > 0:
            raise ValueError(f"a network needs as many weights, biases and probabilities as it has layers, got "
                             f"{len(self.weights)}, {len(self.biases)} and {len(self.probs)}")
        for i, (w, b, p) in enumerate(zip(self.weights, self.biases, self.probs)):
            if w.dim() != 2 or p.shape != w.shape or b.shape != w.shape[:1]:
                raise ValueError(f"layer {i}: weights {tuple(w.shape)}, biases {tuple(b.shape)} and probabilities "
                                 f"{tuple(p.shape)} do not fit (out, in), (out,) and (out, in)")
            if i and w.shape[1] != self.weights[i - 1].shape[0]:
                raise ValueError(f"layer {i} takes {w.shape[1]} inputs, layer {i - 1} gives {self.weights[i - 1].shape[0]}")


IMPORTANT = 0.9  # release probability from which a synapse counts as important (paper, Fig. 2a)
LESION_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(10))  # 0 (intact), 0.1, ..., 0.9 (Fig. 2b)
P_BINS = np.linspace(0.25, 1.0, 31)  # bins of release probabilities, from p_min (Fig. 2a)
LOG_W_BINS = np.linspace(-7.0, 0.0, 57)  # log10 |wbar|
LOG_F_BINS = np.linspace(-14.0, 0.0, 57)  # log10 Fisher information


def fraction_important(probs: Sequence[Tensor], threshold: float = IMPORTANT) -> float:
    """Fraction of all synapses with :math:`p \\ge` ``threshold``."""
    flat = torch.cat([p.flatten() for p in probs])
    return float((flat >= threshold).float().mean())


def histogram(values: Tensor, bins: np.ndarray) -> list[float]:
    """Fractions of ``values`` in each bin (values outside the range are clipped into the end bins)."""
    v = np.clip(values.cpu().numpy().ravel(), bins[0], bins[-1])
    counts, _ = np.histogram(v, bins)
    return (counts / max(v.size, 1)).tolist()


# ---------------------------------------------------------------------------------------- lesions
def lesion_masks(
    importance: Sequence[Tensor], fractions: Sequence[float], generator: torch.Generator
) -> list[list[Tensor]]:
    """For each fraction, keep-masks that remove that fraction of all synapses, least important first.

    As in the authors' code (``importance_lesion`` in their ``lib/test.py``), ties are broken by a
    jitter :math:`10^{-4}(U - 0.5)` and the threshold is one global percentile over all layers.
    """
    jittered = [s + 1e-4 * (torch.rand(s.shape, generator=generator) - 0.5) for s in importance]
    flat = torch.cat([j.flatten() for j in jittered])
    masks = []
    for f in fractions:
        if not 0 <= f < 1:
            raise ValueError(f"lesion fractions must lie in [0, 1), got {f}")
        threshold = torch.quantile(flat.double(), f).float() if f > 0 else flat.min() - 1
        masks.append([(j >= threshold).float() for j in jittered])
    return masks


LESION_ORDERS = ("p", "random", "magnitude", "magnitude_x_p")


def importance_scores(order: str, state: NetworkState, *, seed: int = 0) -> list[Tensor]:
    """Per-synapse importance for a lesion order: ``"p"`` (release probability, the paper's lesion),
    ``"random"`` (its control), ``"magnitude"`` (:math:`|\\bar w|`) or ``"magnitude_x_p"`` (:math:`|\\bar w| p`)."""
    g = torch.Generator().manual_seed(seed)
    scores = {
        "p": lambda: list(state.probs),
        "random": lambda: [torch.rand(p.shape, generator=g) for p in state.probs],
        "magnitude": lambda: [w.abs() for w in state.weights],
        "magnitude_x_p": lambda: [w.abs() * p for w, p in zip(state.weights, state.probs)],
    }
    if order not in scores:
        raise ValueError(f"unknown lesion order {order!r}; valid orders: {', '.join(LESION_ORDERS)}")
    return scores[order]()


def lesion_accuracy(
    state: NetworkState, importance: Sequence[Tensor], x: Tensor, y: Tensor, *,
    fractions: Sequence[float] = LESION_FRACTIONS, seed: int = 0, n_samples: int = 10,
) -> np.ndarray:
    """Test accuracy on ``(x, y)`` after removing each of ``fractions`` of the synapses (``wbar = 0``),
    least ``importance`` first (Fig. 2b).

    The surviving synapses keep their :math:`p`, so the network stays stochastic; the lesioned networks
    of all fractions are evaluated together as one batch of runs (10 stochastic passes, as in their ``lib/test.py``).
    """
    masks = lesion_masks(importance, fractions, torch.Generator().manual_seed(seed))
    net = network_of(state, runs=len(fractions), seed=seed)
    for i in range(net.n_layers):
        net.weights[i] = net.weights[i] * torch.stack([m[i] for m in masks])
    return evaluate(net, x, y, n_samples=n_samples).accuracy


def network_of(state: NetworkState, *, runs: int = 1, seed: int = 0) -> StochasticMLP:
    """A :class:`StochasticMLP` holding ``runs`` copies of one trained network (for evaluation)."""
    sizes = [state.weights[0].shape[1]] + [w.shape[0] for w in state.weights]
    net = StochasticMLP(sizes, [SynapseConfig(seed=seed)] * runs)
    net.weights = [w.expand(runs, *w.shape).clone() for w in state.weights]
    net.probs = [p.expand(runs, *p.shape).clone() for p in state.probs]
    net.biases = [b.expand(runs, *b.shape).clone() for b in state.biases]
    return net


# ---------------------------------------------------------------------------------------- neurons
@dataclass(frozen=True)
class NeuronImportance:
    """Important-synapse counts of the hidden neurons of one layer (Fig. 3)."""

    inputs: np.ndarray  # important incoming synapses per neuron
    outputs: np.ndarray  # important outgoing synapses per neuron
    shuffled_inputs: np.ndarray  # the same count after shuffling which synapses are important
    ks_statistic: float
    ks_pvalue: float
    n_high: int  # neurons with >= 2 s.d. more important inputs than the shuffled mean
    n_low: int  # ... and >= 2 s.d. fewer
    correlation: float  # Pearson r between important inputs and outputs


def neuron_importance(
    probs: Sequence[Tensor], layer: int, *, threshold: float = IMPORTANT, seed: int = 0, shuffles: int = 100
) -> NeuronImportance:
    """Counts of important inputs and outputs of the neurons of hidden ``layer`` (0 = first hidden layer).

    The shuffled baseline permutes the importance labels among all synapses of the incoming weight
    matrix, keeping their number (the paper's Results on Fig. 3); ``shuffles`` permutations are pooled. The
    Kolmogorov-Smirnov test compares the true with the shuffled distribution of input counts; a
    neuron is highly (un)important when its count lies 2 s.d. above (below) the shuffled mean.
    """
    if not 0 <= layer < len(probs) - 1:
        raise ValueError(f"layer must index a hidden layer, 0 to {len(probs) - 2}, got {layer}")
    incoming = (probs[layer] >= threshold).float()
    outgoing = (probs[layer + 1] >= threshold).float()
    inputs = incoming.sum(1).numpy()
    outputs = outgoing.sum(0).numpy()
    g = torch.Generator().manual_seed(seed)
    flat = incoming.flatten()
    shuffled = np.concatenate([
        flat[torch.randperm(flat.numel(), generator=g)].view_as(incoming).sum(1).numpy() for _ in range(shuffles)
    ])
    ks = stats.ks_2samp(inputs, shuffled)
    mean, sd = shuffled.mean(), shuffled.std()
    r = float(np.corrcoef(inputs, outputs)[0, 1]) if inputs.std() > 0 and outputs.std() > 0 else float("nan")
    return NeuronImportance(
        inputs=inputs, outputs=outputs, shuffled_inputs=shuffled, ks_statistic=float(ks.statistic),
        ks_pvalue=float(ks.pvalue), n_high=int((inputs >= mean + 2 * sd).sum()),
        n_low=int((inputs <= mean - 2 * sd).sum()), correlation=r,
    )


# ---------------------------------------------------------------------------------------- Fisher
def empirical_fisher(state: NetworkState, x: Tensor, y: Tensor, *, batch: int = 1000) -> list[Tensor]:
    """Diagonal *empirical* Fisher information of the expected weights on the data ``(x, y)``:
    :math:`F_i = \\frac1N\\sum_n (\\partial_{\\bar w_i} \\log q(y_n|x_n))^2` with the data's labels :math:`y_n`.

    The authors' importance measure (``fisher_importance_correlation`` in their ``lib/test.py``,
    Fig. 2d). As there, the network is made deterministic (all :math:`p = 1`), so it computes with
    :math:`\\bar w`. See :func:`lib.model.diagonal_fisher`; biases are left out.
    """
    return _diagonal_fisher(state, x, y, "true", seed=0, batch=batch)


def true_fisher(state: NetworkState, x: Tensor, *, seed: int = 0, batch: int = 1000) -> list[Tensor]:
    """Diagonal Fisher information proper of the expected weights on the inputs ``x``: as
    :func:`empirical_fisher`, with each :math:`y_n` drawn from the network's own output
    :math:`q(\\cdot|x_n)` (generator seeded with ``seed``) instead of the data's label, so that
    :math:`\\mathbb E[F_i] = \\frac1N\\sum_n \\mathbb E_{y \\sim q(\\cdot|x_n)}(\\partial_{\\bar w_i} \\log q(y|x_n))^2`.
    """
    return _diagonal_fisher(state, x, None, "model", seed=seed, batch=batch)


def _diagonal_fisher(state: NetworkState, x: Tensor, y: Tensor | None, labels: str, *, seed: int,
                     batch: int) -> list[Tensor]:
    """The weights' part of :func:`lib.model.diagonal_fisher` for one deterministic network."""
    fisher, _ = diagonal_fisher([w.unsqueeze(0) for w in state.weights], [b.unsqueeze(0) for b in state.biases], x, y,
                                labels=labels, generators=[torch.Generator().manual_seed(seed)], batch=batch)
    return [f[0] for f in fisher]


def threshold_crossing_probability(g_lim: float, mean: np.ndarray | float, sd: np.ndarray | float) -> np.ndarray:
    """:math:`\\Pr[|g| \\ge g_{lim}]` for a Gaussian gradient :math:`g \\sim N(\\mu, \\sigma^2)` (Methods).

    .. math:: \\Pr = \\Phi\\Big(\\frac{-g_{lim} - \\mu}{\\sigma}\\Big) + 1 - \\Phi\\Big(\\frac{g_{lim} - \\mu}{\\sigma}\\Big)

    which for :math:`\\mu = 0` is :math:`\\operatorname{erfc}(g_{lim} / (\\sigma\\sqrt2))`, increasing in
    :math:`\\sigma^2 = \\mathbb E[g^2]`, the synapse's Fisher information. This is the probability that
    eq. 4 raises the release probability in one step.
    """
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    return stats.norm.cdf((-g_lim - mean) / sd) + stats.norm.sf((g_lim - mean) / sd)
