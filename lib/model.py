"""The stochastic-synapse network: R independent runs of one MLP architecture held as batched tensors.

Each synapse *i* has an expected strength :math:`\\bar w_i` (the learned parameter) and a release
probability :math:`p_i`. A forward pass draws one release mask :math:`r_i \\sim \\mathrm{Bernoulli}(p_i)`
shared by all examples of the mini-batch and transmits :math:`w_i = r_i \\bar w_i / p_i`, so that
:math:`\\mathbb E[w_i] = \\bar w_i` (paper eqs. 1-3; the authors' ``normalise=True`` parameterisation,
spec section 1.2). The strength on release is :math:`m_i = \\bar w_i / p_i`.

Deterministic and fixed-probability networks are the same object with :math:`p` fixed (at 1 or at a
constant). All tensors carry a leading run axis R: weights are ``(R, out, in)``, so R runs with
different seeds or hyperparameters train as one batched computation. Every run owns its random
number generators, so a run's numbers do not depend on which runs share the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch
from torch import Tensor

Bias = Literal["none", "frozen", "learned"]
PStep = Literal["scaled", "constant"]


@dataclass(frozen=True)
class SynapseConfig:
    """Everything that may differ between runs trained together (one run = one config).

    Defaults are the energy experiment of the paper (spec 4.1): :math:`\\eta = 0.05`,
    :math:`p_{up} = p_{down} = 0.07`, :math:`g_{lim} = 0.001`, initial and minimal
    :math:`p = 0.25`, no freezing, no learning-rate modulation.

    Attributes:
        seed: seeds the run's initialisation, mini-batch order and release masks.
        lr: learning rate :math:`\\eta_0` of SGD on :math:`\\bar w`.
        weight_decay: L2 strength :math:`\\lambda` on :math:`\\bar w` (gradient of
            :math:`\\tfrac\\lambda2\\lVert\\bar w\\rVert^2`); also on learned biases, as torch's SGD does
            for the authors' baselines.
        p_init, p_min, p_max: initial release probability and its clamp range (eq. 4).
        p_up, p_down, g_lim: steps and gradient threshold of the release-probability rule (eq. 4).
        p_freeze: a synapse with :math:`p \\ge p_{freeze}` never changes its :math:`p` again
            (lifelong experiments). ``inf`` disables freezing (the code's ``1.0`` is equivalent with
            the default scaled steps, which never reach 1).
        learn_p: if False, :math:`p` stays at ``p_init`` (fixed-probability or deterministic run).
        lr_modulation: scale the learning rate by :math:`1 - p_i` (eq. 5).
        p_step: ``"scaled"`` multiplies the steps of eq. 4 by :math:`p_{max} - p` (authors' code);
            ``"constant"`` uses the constant steps printed in the paper.
        bias: ``"frozen"`` keeps biases at their random initial values (authors' code for this
            model), ``"none"`` has no biases (the paper's text), ``"learned"`` trains them by SGD
            (authors' code for the deterministic and fixed-p baselines). Biases are never masked.
    """

    seed: int = 0
    lr: float = 0.05
    weight_decay: float = 0.0
    p_init: float = 0.25
    p_min: float = 0.25
    p_max: float = 1.0
    p_up: float = 0.07
    p_down: float = 0.07
    g_lim: float = 0.001
    p_freeze: float = math.inf
    learn_p: bool = True
    lr_modulation: bool = False
    p_step: PStep = "scaled"
    bias: Bias = "frozen"

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.p_init <= 1:
            problems.append(f"p_init={self.p_init} must lie in (0, 1]")
        if self.learn_p and not 0 < self.p_min <= self.p_init <= self.p_max <= 1:
            problems.append(
                f"need 0 < p_min <= p_init <= p_max <= 1, got {self.p_min}, {self.p_init}, {self.p_max}"
            )
        if self.lr <= 0:
            problems.append(f"lr={self.lr} must be positive")
        for name in ("weight_decay", "p_up", "p_down", "g_lim"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.p_step not in ("scaled", "constant"):
            problems.append(f"p_step={self.p_step!r} must be 'scaled' or 'constant'")
        if self.bias not in ("none", "frozen", "learned"):
            problems.append(f"bias={self.bias!r} must be 'none', 'frozen' or 'learned'")
        if problems:
            raise ValueError("invalid SynapseConfig: " + "; ".join(problems))

    @property
    def stochastic(self) -> bool:
        """Whether release is random at all (False for a deterministic network, p = 1)."""
        return self.learn_p or self.p_init < 1


def presynaptic(**overrides) -> SynapseConfig:
    """The presynaptic model with plastic release probabilities (energy-experiment defaults)."""
    return replace(SynapseConfig(), **overrides)


def fixed_release(p: float = 0.4, **overrides) -> SynapseConfig:
    """Stochastic control with one fixed release probability for every synapse (Fig. 1).

    Authors' code: p = 0.4, torch SGD with lr 0.05, trained biases.
    """
    return replace(SynapseConfig(p_init=p, learn_p=False, lr=0.05, bias="learned"), **overrides)


def deterministic(**overrides) -> SynapseConfig:
    """Standard network with reliable synapses (p = 1); authors' code: SGD lr 0.08, trained biases."""
    return replace(SynapseConfig(p_init=1.0, learn_p=False, lr=0.08, bias="learned"), **overrides)


def _derived_seed(seed: int, stream: int) -> int:
    """A seed for a second, independent stream of one run (e.g. evaluation masks)."""
    return (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) % (2**63)


def release_scales(uniforms: Tensor, p: Tensor) -> Tensor:
    """Release mask divided by the release probability, :math:`r / p` with :math:`r = [u < p]`.

    For :math:`u \\sim U[0, 1)`, :math:`r \\sim \\mathrm{Bernoulli}(p)` and :math:`\\mathbb E[r/p] = 1`, so
    ``weight * release_scales(u, p)`` transmits :math:`\\bar w` in expectation (spec 1.2).
    """
    return (uniforms < p) / p


def run_matmul(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b (+ bias)`` for every run: ``a`` is ``(R, n, k)`` or shared ``(n, k)``, ``b`` ``(R, k, m)``.

    On the CPU this is one matrix product per run: batched BLAS kernels round differently for
    different batch sizes, and a run's numbers must not depend on which runs share its batch. On a
    GPU it is a single batched kernel. ``bias`` is ``(R, 1, m)``.
    """
    runs = b.shape[0]
    if b.is_cuda:
        a = a if a.dim() == 3 else a.expand(runs, *a.shape)
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)
    products = []
    for r in range(runs):
        ar = a[r] if a.dim() == 3 else a
        products.append(torch.mm(ar, b[r]) if bias is None else torch.addmm(bias[r], ar, b[r]))
    return torch.stack(products)


def mlp_forward(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Logits ``(R, B, C)`` of R ReLU networks and the input of every layer.

    ``x`` is ``(R, B, in)`` (each run its own mini-batch) or ``(B, in)`` (shared, e.g. a test set);
    ``weights`` are the transmitted weights ``(R, out, in)``, ``biases`` ``(R, out)``.
    """
    inputs = []
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        inputs.append(h)
        h = run_matmul(h, w.transpose(1, 2), b.unsqueeze(1))
        if i < len(weights) - 1:
            h = h.relu()
    return h, inputs


def mlp_backward(
    dlogits: Tensor, inputs: Sequence[Tensor], weights: Sequence[Tensor], *, squared_per_example: bool = False
) -> tuple[list[Tensor], list[Tensor]]:
    """Gradients w.r.t. the transmitted weights and the biases, by hand-written backprop.

    ``dlogits`` is :math:`\\partial L / \\partial z_{out}`, ``(R, B, C)``. For a layer with input
    :math:`h` and output gradient :math:`\\delta`, :math:`\\partial L/\\partial W = \\delta^\\top h`,
    :math:`\\partial L/\\partial b = \\sum_n \\delta_n`, and :math:`(\\delta W) \\odot [h > 0]` flows down.
    With ``squared_per_example`` it returns :math:`\\sum_n (\\delta_n h_n^\\top)^2 = (\\delta^2)^\\top h^2` and
    :math:`\\sum_n \\delta_n^2` instead: the summed squares of the per-example gradients (Fisher information).
    """
    n = len(weights)
    grads_w: list[Tensor] = [torch.empty(0)] * n
    grads_b: list[Tensor] = [torch.empty(0)] * n
    delta = dlogits
    for i in reversed(range(n)):
        h = inputs[i]
        if h.dim() == 2:
            h = h.expand(delta.shape[0], *h.shape)
        if squared_per_example:
            grads_w[i] = run_matmul(delta.square().transpose(1, 2), h.square())
            grads_b[i] = delta.square().sum(1)
        else:
            grads_w[i] = run_matmul(delta.transpose(1, 2), h)
            grads_b[i] = delta.sum(1)
        if i > 0:
            delta = run_matmul(delta, weights[i]) * (h > 0)
    return grads_w, grads_b


class StochasticMLP:
    """R runs of an MLP with stochastic synapses, ReLU hidden units and a softmax output.

    Attributes (lists over layers, each tensor with a leading run axis):
        weights: expected strengths :math:`\\bar w`, ``(R, out, in)``.
        biases: ``(R, out)``, never masked, excluded from the energy.
        probs: release probabilities :math:`p`, ``(R, out, in)``.
        hp: per-run hyperparameters as ``(R, 1, 1)`` tensors (see :class:`SynapseConfig`), plus
            ``bias_lr`` and ``bias_decay`` as ``(R, 1)`` (zero learning rate for unlearned biases).
        generators: one generator per run for initialisation, batch order and training masks.
        eval_generators: one per run for the masks of evaluation, so that evaluating more or less
            often never changes training.
    """

    def __init__(self, sizes: Sequence[int], runs: Sequence[SynapseConfig], device: str | torch.device = "cpu"):
        if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
        if not runs:
            raise ValueError("at least one run is needed")
        self.sizes = [int(s) for s in sizes]
        self.runs = list(runs)
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(c.seed) for c in self.runs]
        self.eval_generators = [
            torch.Generator(self.device).manual_seed(_derived_seed(c.seed, 1)) for c in self.runs
        ]
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        self.probs: list[Tensor] = []
        keep_bias = torch.tensor([c.bias != "none" for c in self.runs], dtype=torch.float32, device=self.device)
        p_init = torch.tensor([c.p_init for c in self.runs], device=self.device)
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
            bound = 1 / math.sqrt(fan_in)
            w = torch.stack([self._uniform((fan_out, fan_in), bound, g) for g in self.generators])
            b = torch.stack([self._uniform((fan_out,), bound, g) for g in self.generators])
            self.weights.append(w)
            self.biases.append(b * keep_bias[:, None])
            self.probs.append(p_init[:, None, None].expand_as(w).clone())
        self.hp = self._hyperparameter_tensors()

    def _uniform(self, shape: tuple[int, ...], bound: float, g: torch.Generator) -> Tensor:
        return torch.rand(shape, generator=g, device=self.device).mul_(2 * bound).sub_(bound)

    def _hyperparameter_tensors(self) -> dict[str, Tensor]:
        cols = {
            "lr": [c.lr for c in self.runs],
            "weight_decay": [c.weight_decay for c in self.runs],
            "p_min": [c.p_min for c in self.runs],
            "p_max": [c.p_max for c in self.runs],
            "p_up": [c.p_up for c in self.runs],
            "p_down": [c.p_down for c in self.runs],
            "g_lim": [c.g_lim for c in self.runs],
            "p_freeze": [c.p_freeze for c in self.runs],
            "learn_p": [float(c.learn_p) for c in self.runs],
            "lr_modulation": [float(c.lr_modulation) for c in self.runs],
            "scaled": [float(c.p_step == "scaled") for c in self.runs],
            "learn_bias": [float(c.bias == "learned") for c in self.runs],
        }
        hp = {k: torch.tensor(v, dtype=torch.float32, device=self.device)[:, None, None] for k, v in cols.items()}
        hp["bias_lr"] = (hp["lr"] * hp["learn_bias"])[:, :, 0]  # (R, 1), to broadcast over biases (R, out)
        hp["bias_decay"] = hp["weight_decay"][:, :, 0]
        return hp

    # ------------------------------------------------------------------ structure
    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def stochastic(self) -> bool:
        """False when every run is deterministic: forward passes then skip mask sampling."""
        return any(c.stochastic for c in self.runs)

    def any_run(self, flag: str) -> bool:
        """Whether any run has the 0/1 hyperparameter ``flag`` switched on."""
        return bool(self.hp[flag].any())

    def all_runs(self, flag: str) -> bool:
        return bool(self.hp[flag].all())

    # ------------------------------------------------------------------ stochastic release
    def draw_uniforms(self, generators: Sequence[torch.Generator] | None = None) -> list[Tensor] | None:
        """One uniform number per synapse and run from each run's own generator (``None`` if deterministic).

        Release happens where the number is below :math:`p` (:func:`release_scales`).
        """
        if not self.stochastic:
            return None
        gens = self.generators if generators is None else generators
        uniforms = []
        for p in self.probs:
            u = torch.zeros_like(p)  # a deterministic run always releases and draws nothing
            for r, (g, config) in enumerate(zip(gens, self.runs)):
                if config.stochastic:
                    u[r].uniform_(generator=g)
            uniforms.append(u)
        return uniforms

    def transmitted(self, generators: Sequence[torch.Generator] | None = None) -> list[Tensor]:
        """Weights transmitted in one stochastic pass, :math:`r\\,\\bar w / p` (:math:`\\bar w` if deterministic)."""
        uniforms = self.draw_uniforms(generators)
        if uniforms is None:
            return self.weights
        return [w * release_scales(u, p) for w, u, p in zip(self.weights, uniforms, self.probs)]

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, weights: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """:func:`mlp_forward` with this network's biases; ``weights`` default to :math:`\\bar w`."""
        return mlp_forward(x, self.weights if weights is None else weights, self.biases)

    # ------------------------------------------------------------------ summaries
    def synaptic_energy(self) -> Tensor:
        """Synaptic energy :math:`E = \\sum_i |\\bar w_i|` per run, ``(R,)`` (biases excluded)."""
        return sum(w.abs().sum((1, 2)) for w in self.weights)

    def mean_release_probability(self) -> Tensor:
        """Mean of :math:`p` over all synapses, per run."""
        n = sum(p[0].numel() for p in self.probs)
        return sum(p.sum((1, 2)) for p in self.probs) / n

    def frozen_fraction(self) -> Tensor:
        """Fraction of synapses with :math:`p \\ge p_{freeze}`, per run."""
        n = sum(p[0].numel() for p in self.probs)
        return sum((p >= self.hp["p_freeze"]).sum((1, 2)) for p in self.probs) / n
