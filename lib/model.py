"""The stochastic-synapse network: R independent runs of one MLP architecture held as batched tensors.

Each synapse *i* has an expected strength :math:`\\bar w_i` (the learned parameter) and a release
probability :math:`p_i`. A forward pass draws one release mask :math:`r_i \\sim \\mathrm{Bernoulli}(p_i)`
shared by all examples of the mini-batch and transmits :math:`w_i = r_i \\bar w_i / p_i`, so that
:math:`\\mathbb E[w_i] = \\bar w_i` (paper eqs. 1-3; the authors' ``normalise=True`` parameterisation,
the authors' ``lib/ddc.py``). The strength on release is :math:`m_i = \\bar w_i / p_i`.

Deterministic and fixed-probability networks are the same object with :math:`p` fixed (at 1 or at a
constant). All tensors carry a leading run axis R: weights are ``(R, out, in)``, so R runs with
different seeds or hyperparameters train as one batched computation. Every run owns its random
streams, so a run's numbers do not depend on which runs share the batch.

Release masks come from counter-based streams (:mod:`lib.noise`): the number that decides whether
synapse i (of P, counted over all layers) releases in the t-th mask of a run is a pure function of the
run's seed, the stream (training or evaluation), t and i. A mask is then plain element-wise
arithmetic, which :func:`torch.compile` fuses with the product :math:`r\\bar w/p` on every thread.
Until December 2026 a ``torch.Generator`` per run drew each mask sequentially before its step; the
runs stored with those masks are kept as the record that the change moved no result
(:mod:`lib.mask_generators`).

Where elastic weight consolidation (EWC, the baseline of chapter 5) lives. It is a penalty on the
deterministic network, so its pieces sit beside the network's other state rather than in a module
of their own:

* its settings are fields of :class:`SynapseConfig` (``ewc_lambda``, ``ewc_mode``, ``ewc_gamma``), so
  that EWC runs batch with other runs and their cache keys describe them;
* its state, two tensors per parameter :math:`A` and :math:`B` with penalty gradient
  :math:`\\lambda (A \\bar w - B)`, is created by :meth:`StochasticMLP._optimizer_state` and folded in
  after every task by :meth:`StochasticMLP.end_task`, from :func:`diagonal_fisher` with labels drawn
  from ``fisher_generators`` (a stream of each run's own);
* the penalty's gradient is added inside the training step (``lib.train._step``), so that it is fused
  by :func:`torch.compile` with the optimiser's update instead of costing a pass of its own;
* the strengths, optimiser and :math:`\\lambda` grid compared in the book are in :mod:`lib.continual`
  (``EWC_OPTIMIZER``, ``EWC_LAMBDA``, ``EWC_GRID``), and its search space is :class:`lib.search.EWCSpace`.

Synaptic intelligence (SI; Zenke, Poole & Ganguli 2017) is another penalty of the same kind, and its
pieces sit in the same places:

* its settings are fields of :class:`SynapseConfig` (``si_c``, ``si_xi``);
* its state, three tensors per parameter (the running path integral :math:`\\omega`, the importance
  :math:`\\Omega` and the anchor :math:`\\theta^*`), is created by :meth:`StochasticMLP._optimizer_state`;
  the training step adds to :math:`\\omega` (:func:`accumulate_path_integral`), and
  :meth:`StochasticMLP.end_task` folds it into :math:`\\Omega` (:func:`consolidate_path_integral`);
* the penalty's gradient :math:`2c\\,\\Omega(\\theta - \\theta^*)` is added inside the training step
  (``lib.train._step``), beside EWC's;
* its optimiser and strengths are in :mod:`lib.continual` (``SI_C``), and its search space is
  :class:`lib.search.SISpace`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal, Sequence, get_args

import torch
from torch import Tensor

from .compilation import compiled_or_eager
from .noise import keyed_uniform, splitmix64

Bias = Literal["none", "frozen", "learned"]
PStep = Literal["scaled", "constant"]
Optimizer = Literal["sgd", "adam"]
EWCMode = Literal["offline", "online"]
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as in the authors' baselines
ADAM_EPS = 1e-8
MaskGenerator = Literal["hash32"]
ConsolidationSignal = Literal["p", "p_at_boundaries", "fisher", "path_integral", "magnitude"]
CONSOLIDATION_SIGNALS = get_args(ConsolidationSignal)

# The independent random streams of one run, each seeded with derived_seed(run seed, stream); the run
# seed itself seeds the initialisation and the order of the mini-batches.
EVALUATION_STREAM = 1  # BGD's parameter draws at test time (a torch.Generator; lib.bgd)
FISHER_LABEL_STREAM = 2  # the labels EWC samples for its Fisher information (a torch.Generator)
BGD_NOISE_STREAM = 3  # BGD's training noise (lib.noise.standard_normal)
TRAINING_MASK_STREAM = 4  # release masks of training steps (lib.noise.keyed_uniform)
EVALUATION_MASK_STREAM = 5  # release masks of test passes (lib.noise.keyed_uniform)
BGD_MEAN_INIT_STREAM = 6  # BGD's initial means drawn as in its reference code (a torch.Generator)


@dataclass(frozen=True)
class SynapseConfig:
    """Everything that may differ between runs trained together (one run = one config).

    Defaults are the energy experiment of the paper (Methods; ``etc/dyn_mnist_energy.json``): :math:`\\eta = 0.05`,
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
        release_p: the "ghost" control of Fig. 5a: release happens with this fixed probability,
            while :math:`p` still evolves by eq. 4 and still modulates learning, freezing and the
            normalisation :math:`r\\bar w / p` (authors' code, ``--fixed_probs``). ``None``: release with :math:`p`.
        optimizer: ``"sgd"`` (the presynaptic model, eq. 5) or ``"adam"`` (some of the authors'
            baselines; torch's Adam, L2 decay added to the gradient). All runs of one network share it.
        ewc_lambda: strength :math:`\\lambda` of the elastic weight consolidation penalty; 0 switches it off.
        ewc_mode: ``"offline"``: one penalty per past task t, anchored at the parameters
            :math:`\\bar w^{(t)}` that task ended with, :math:`\\tfrac\\lambda2\\sum_{t}\\sum_i F^{(t)}_i(\\bar w_i -
            \\bar w^{(t)}_i)^2` (Kirkpatrick et al. 2017). ``"online"``: one penalty
            :math:`\\tfrac\\lambda2\\sum_i F^*_i(\\bar w_i - \\bar w^*_i)^2` with a running Fisher information
            :math:`F^* \\leftarrow \\gamma F^* + F^{(t)}` anchored at the parameters :math:`\\bar w^*` of the
            latest task (online EWC of Schwarz et al. 2018, "Progress & Compress"). They weigh the penalty
            by :math:`\\gamma F^*`; here, as in Avalanche's ``mode="online"``, by :math:`F^*`, so that online
            and offline EWC agree after one task (the two differ by a factor :math:`\\gamma` in :math:`\\lambda`).
        ewc_gamma: :math:`\\gamma \\in [0, 1]`, how much of the earlier tasks' Fisher information online EWC
            keeps at each task boundary (1 keeps all of it); only for ``ewc_mode="online"``.
        si_c: strength :math:`c` of the synaptic-intelligence penalty
            :math:`c\\sum_k \\Omega_k(\\theta_k - \\theta^*_k)^2` (Zenke et al. 2017, eq. 4) on every weight and
            learned bias; 0 switches it off. A run has at most one consolidation penalty: ``si_c`` and
            ``ewc_lambda`` are not both positive (the two would add up without trouble, but no reference
            combines them, and neither strength was chosen with the other present).
        si_xi: damping :math:`\\xi > 0` of the importance :math:`\\Omega_k = \\sum_\\nu \\omega^\\nu_k /
            ((\\Delta^\\nu_k)^2 + \\xi)` (eq. 5), which bounds it where a parameter barely moved during a task.
            Default 0.1, that of van de Ven et al.'s implementation for every benchmark (``--epsilon``
            in ``GMvandeVen/continual-learning``), the value Zenke et al. used on Permuted MNIST.
        release_masks: the generator of the release masks (module docstring): ``"hash32"``, counter-based
            streams drawn inside the compiled step. It names the generator in a stochastic run's
            description; a deterministic run draws no masks.
        consolidation_signal: what sets the learning-rate factor :math:`1 - s_i` of eq. 5 (chapter 7,
            "Which importance signal?"). ``"p"``: :math:`s = p`, the presynaptic model. The others keep
            release and eq. 4 as they are, but give the modulation a signal :math:`s` of their own, fixed
            during a task and set at its end (:meth:`StochasticMLP.end_task`) from the summed diagonal
            Fisher information of the tasks so far (``"fisher"``, empirical: the data's labels),
            synaptic intelligence's importance :math:`\\Omega` (``"path_integral"``), the magnitude
            :math:`|\\bar w|` (``"magnitude"``), or :math:`p` itself (``"p_at_boundaries"``, the control
            that differs from the model only in when :math:`p` is read). Each signal is normalised to [0, 1] per layer by
            its ranks: the synapse of rank k gets the k-th smallest :math:`p` of the layer (:func:`rank_matched`),
            so that every signal modulates and freezes about as many synapses as :math:`p` does, only other
            ones, and a constant signal protects no synapse more than another; a synapse whose :math:`s`
            reached ``p_freeze`` keeps it. Before the first boundary :math:`s = p_{init}`.
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
    release_p: float | None = None
    optimizer: Optimizer = "sgd"
    ewc_lambda: float = 0.0
    ewc_mode: EWCMode = "offline"
    ewc_gamma: float = 1.0
    release_masks: MaskGenerator = "hash32"
    si_c: float = 0.0
    si_xi: float = 0.1
    consolidation_signal: ConsolidationSignal = "p"

    # Fields added after the first results were stored, with the value every earlier run had: they
    # enter a run's description (and so its cache key) only when they differ from it, which keeps
    # earlier keys valid.
    LATER_FIELDS = (("release_p", None), ("optimizer", "sgd"), ("ewc_lambda", 0.0), ("ewc_mode", "offline"),
                    ("ewc_gamma", 1.0), ("release_masks", "torch"), ("si_c", 0.0), ("si_xi", 0.1),
                    ("consolidation_signal", "p"))

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
        for name in ("weight_decay", "p_up", "p_down", "g_lim", "ewc_lambda"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.p_step not in ("scaled", "constant"):
            problems.append(f"p_step={self.p_step!r} must be 'scaled' or 'constant'")
        if self.bias not in ("none", "frozen", "learned"):
            problems.append(f"bias={self.bias!r} must be 'none', 'frozen' or 'learned'")
        if self.release_p is not None and not 0 < self.release_p <= 1:
            problems.append(f"release_p={self.release_p} must lie in (0, 1] or be None")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer={self.optimizer!r} must be 'sgd' or 'adam'")
        if self.release_masks != "hash32":
            problems.append(f"release_masks={self.release_masks!r} must be 'hash32' (the generator of every new run)")
        if self.ewc_mode not in ("offline", "online"):
            problems.append(f"ewc_mode={self.ewc_mode!r} must be 'offline' or 'online'")
        if not 0 <= self.ewc_gamma <= 1:
            problems.append(f"ewc_gamma={self.ewc_gamma} must lie in [0, 1]")
        elif self.ewc_mode != "online" and self.ewc_gamma != 1:
            problems.append(f"ewc_gamma={self.ewc_gamma} needs ewc_mode='online' (offline EWC keeps every task's penalty)")
        if not 0 <= self.si_c < math.inf:
            problems.append(f"si_c={self.si_c} must be a finite number >= 0")
        if not 0 < self.si_xi < math.inf:
            problems.append(f"si_xi={self.si_xi} must be a finite number > 0")
        if self.si_c > 0 and self.ewc_lambda > 0:
            problems.append(f"si_c={self.si_c} and ewc_lambda={self.ewc_lambda} are both positive: a run has one "
                            "consolidation penalty, SI's or EWC's")
        if self.consolidation_signal not in CONSOLIDATION_SIGNALS:
            problems.append(f"consolidation_signal={self.consolidation_signal!r} must be one of "
                            + ", ".join(CONSOLIDATION_SIGNALS))
        elif self.consolidation_signal != "p" and not (self.learn_p and self.lr_modulation):
            problems.append(f"consolidation_signal={self.consolidation_signal!r} replaces p in the learning-rate "
                            "modulation: it needs learn_p and lr_modulation")
        if problems:
            raise ValueError("invalid SynapseConfig: " + "; ".join(problems))

    def describe(self) -> dict:
        """The run's settings as a plain dict (for cache keys and result files). A stochastic run drawn
        names its mask generator, so that it is another run than the one drawn with ``torch``'s
        generators (the runs stored before the field existed); a deterministic run draws no masks and
        never names a generator."""
        earlier = dict(self.LATER_FIELDS)
        settings = {k: v for k, v in asdict(self).items() if k not in earlier or v != earlier[k]}
        if not self.stochastic:
            settings.pop("release_masks", None)
        return settings

    @property
    def stochastic(self) -> bool:
        """Whether release is random at all (False for a deterministic network, p = 1)."""
        return self.learn_p or self.p_init < 1 or (self.release_p is not None and self.release_p < 1)


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


def derived_seed(seed: int, stream: int) -> int:
    """The seed of one of a run's independent streams (``EVALUATION_STREAM``, ``FISHER_LABEL_STREAM``, ...)."""
    return (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9) % (2**63)


def release_scales(uniforms: Tensor, p: Tensor, release: Tensor | None = None) -> Tensor:
    """Release mask divided by the release probability, :math:`r / p` with :math:`r = [u < p]`.

    For :math:`u \\sim U[0, 1)`, :math:`r \\sim \\mathrm{Bernoulli}(p)` and :math:`\\mathbb E[r/p] = 1`, so
    ``weight * release_scales(u, p)`` transmits :math:`\\bar w` in expectation (the authors' ``lib/ddc.py``). With
    ``release`` given (the ghost control), :math:`r = [u < \\text{release}]` while the division is
    still by :math:`p`, as in the authors' code (``--fixed_probs`` in ``exp_ablation_*.sh``).
    """
    return (uniforms < (p if release is None else release)) / p


def release_uniforms(seeds: Tensor, draw: Tensor, shapes: Sequence[torch.Size]) -> list[Tensor]:
    """The uniform numbers of the ``draw``-th release mask of R runs: one ``(R, *shape)`` tensor per layer.

    Mask t of run r is keyed by output t of the SplitMix64 stream ``seeds[r]``, and synapse i of it
    (counted over all layers, the layers in order) gets number i of that key
    (:func:`lib.noise.keyed_uniform`). ``draw`` is an int64 scalar tensor, so that a compiled caller
    serves every mask with one kernel.
    """
    key = splitmix64(seeds.view(-1, 1), draw)
    uniforms, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        index = torch.arange(offset, offset + size, dtype=torch.int32, device=seeds.device)
        uniforms.append(keyed_uniform(key, index).view(-1, *shape))
        offset += size
    return uniforms


def release_masks(
    weights: Sequence[Tensor], probs: Sequence[Tensor], release: Sequence[Tensor | None],
    mask: tuple[Tensor, Tensor],
) -> tuple[list[Tensor], list[Tensor]]:
    """One release mask of every run: transmitted weights :math:`r\\bar w/p` and scales :math:`r/p`.

    ``mask`` is ``(seeds, draw)``: mask ``draw`` of the runs' streams (:func:`release_uniforms`).
    :func:`release_scales` turns its numbers into masks (``release``: per layer the ghost runs'
    release probability, or ``None``). This is pure tensor arithmetic: compiled, the numbers, the
    masks and the products are one loop.
    """
    uniforms = release_uniforms(*mask, [p.shape[1:] for p in probs])
    scales = [release_scales(u, p, q) for u, p, q in zip(uniforms, probs, release)]
    return [w * s for w, s in zip(weights, scales)], scales


def run_matmul(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b (+ bias)`` for every run: ``a`` is ``(R, n, k)`` or shared ``(n, k)``, ``b`` ``(R, k, m)``,
    ``bias`` ``(R, 1, m)``; or, with a sample axis, ``a`` ``(R, K, n, k)``, ``b`` ``(R, K, k, m)`` and ``bias``
    ``(R, K, 1, m)`` (K parameter samples of every run, as in BGD).

    On the CPU this is one (batched over K) matrix product per run: batched BLAS kernels round
    differently for different batch sizes, and a run's numbers must not depend on which runs share
    its batch. On a GPU it is a single batched kernel.
    """
    runs = b.shape[0]
    if b.is_cuda:
        a = a if a.dim() == b.dim() else a.expand(runs, *a.shape)
        a3, b3 = a.flatten(0, -3), b.flatten(0, -3)
        product = torch.bmm(a3, b3) if bias is None else torch.baddbmm(bias.flatten(0, -3), a3, b3)
        return product.view(*b.shape[:-2], *product.shape[-2:])
    products = []
    for r in range(runs):
        ar = a[r] if a.dim() == b.dim() else a
        if b.dim() == 4:
            products.append(torch.bmm(ar, b[r]) if bias is None else torch.baddbmm(bias[r], ar, b[r]))
        else:
            products.append(torch.mm(ar, b[r]) if bias is None else torch.addmm(bias[r], ar, b[r]))
    return torch.stack(products)


def mlp_forward(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Logits ``(R, B, C)`` of R ReLU networks and the input of every layer.

    ``x`` is ``(R, B, in)`` (each run its own mini-batch) or ``(B, in)`` (shared, e.g. a test set);
    ``weights`` are the transmitted weights ``(R, out, in)``, ``biases`` ``(R, out)``. With a sample axis
    (:func:`run_matmul`), ``x`` is ``(R, K, B, in)``, ``weights`` ``(R, K, out, in)``, ``biases`` ``(R, K, out)``.
    """
    inputs = []
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        inputs.append(h)
        h = run_matmul(h, w.mT, b.unsqueeze(-2))
        if i < len(weights) - 1:
            h = h.relu()
    return h, inputs


def mlp_backward(
    dlogits: Tensor, inputs: Sequence[Tensor], weights: Sequence[Tensor], *, squared_per_example: bool = False,
    to_input: bool = False,
) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
    """Gradients w.r.t. the transmitted weights and the biases, by hand-written backprop.

    ``dlogits`` is :math:`\\partial L / \\partial z_{out}`, ``(R, B, C)``. For a layer with input
    :math:`h` and output gradient :math:`\\delta`, :math:`\\partial L/\\partial W = \\delta^\\top h`,
    :math:`\\partial L/\\partial b = \\sum_n \\delta_n`, and :math:`(\\delta W) \\odot [h > 0]` flows down.
    With ``squared_per_example`` it returns :math:`\\sum_n (\\delta_n h_n^\\top)^2 = (\\delta^2)^\\top h^2` and
    :math:`\\sum_n \\delta_n^2` instead: the summed squares of the per-example gradients (Fisher information).
    The third value is, with ``to_input``, :math:`(\\delta W_1) \\odot [h_1 > 0]`: the gradient w.r.t. the
    pre-activation of the layer below ``inputs[0]`` (``inputs[0]`` being a ReLU output; BGD's input
    layer), and ``None`` otherwise.
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
            grads_w[i] = run_matmul(delta.square().mT, h.square())
            grads_b[i] = delta.square().sum(-2)
        else:
            grads_w[i] = run_matmul(delta.mT, h)
            grads_b[i] = delta.sum(-2)
        if i > 0 or to_input:
            delta = run_matmul(delta, weights[i]) * (h > 0)
    return grads_w, grads_b, delta if to_input else None


def release_probabilities(probs: Sequence[Tensor], hp: dict[str, Tensor]) -> list[Tensor]:
    """Per layer, the probability with which synapses actually release: :math:`p`, except for ghost
    runs, which release with their fixed ``release_p`` (``hp`` as held by :class:`StochasticMLP`)."""
    return [torch.where(hp["ghost"] > 0, hp["release_p"], p) for p in probs]


@torch.no_grad()
def diagonal_fisher(
    weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, y: Tensor, *, labels: str = "true",
    generators: Sequence[torch.Generator] | None = None, batch: int = 1000,
) -> tuple[list[Tensor], list[Tensor]]:
    """Diagonal Fisher information of R deterministic networks (weights ``(R, out, in)``) on ``x``.

    :math:`F_i = \\frac1N\\sum_n (\\partial_{\\theta_i} \\log q(y_n|x_n))^2` for every weight and bias.
    ``labels="true"`` uses the data's labels (the empirical Fisher); ``labels="model"`` draws
    :math:`y_n` from the network's own output with each run's generator (the Fisher proper, in
    expectation). Per-example gradients are outer products :math:`\\delta_n h_n^\\top`, so their
    squares sum to :math:`(\\delta^2)^\\top h^2` without a loop over examples.
    """
    if labels not in ("true", "model"):
        raise ValueError(f"labels must be 'true' or 'model', got {labels!r}")
    if labels == "model" and (generators is None or len(generators) != weights[0].shape[0]):
        raise ValueError("labels='model' needs one generator per run")
    fisher_w = [torch.zeros_like(w) for w in weights]
    fisher_b = [torch.zeros_like(b) for b in biases]
    for start in range(0, x.shape[0], batch):
        logits, inputs = mlp_forward(x[start:start + batch], weights, biases)
        probs = torch.softmax(logits, -1)
        if labels == "true":
            target = y[start:start + batch].expand(probs.shape[:2])
        else:
            # a diverged run (non-finite outputs) samples uniform labels: its Fisher is as broken as its
            # weights, but it must not stop the runs trained beside it (its draws are its own)
            sampled = torch.where(torch.isfinite(probs).all(-1, keepdim=True), probs, 1.0 / probs.shape[-1])
            target = torch.stack([torch.multinomial(q, 1, generator=g)[:, 0] for q, g in zip(sampled, generators)])
        # gradient of log q(y|x) w.r.t. the logits, per example: onehot(y) - softmax
        delta = (-probs).scatter_add_(-1, target.unsqueeze(-1), torch.ones_like(probs[..., :1]))
        squares_w, squares_b, _ = mlp_backward(delta, inputs, weights, squared_per_example=True)
        for f, s in zip(fisher_w + fisher_b, squares_w + squares_b):
            f += s
    return [f / x.shape[0] for f in fisher_w], [f / x.shape[0] for f in fisher_b]


def accumulate_path_integral(path: Tensor, grad: Tensor, before: Tensor, after: Tensor) -> Tensor:
    """One step of synaptic intelligence's path integral, in place: :math:`\\omega \\mathrel{-}= g\\,(\\theta_{after} -
    \\theta_{before})`.

    Summed over the steps of a task, :math:`\\omega_k = -\\sum_t g_k(t)\\,\\Delta\\theta_k(t)` approximates
    :math:`-\\int g_k\\,\\mathrm d\\theta_k`, parameter k's share of the decrease of the task's loss along the
    path training took (Zenke et al. 2017, eqs. 2-3). For plain gradient steps
    :math:`\\Delta\\theta = -\\eta g` it is :math:`\\eta\\sum_t g_k(t)^2`.
    """
    return path.sub_(grad * (after - before))


def consolidate_path_integral(
    importance: Tensor, path: Tensor, anchor: Tensor, param: Tensor, xi: Tensor | float,
) -> None:
    """Synaptic intelligence at a task boundary, in place: :math:`\\Omega \\mathrel{+}= \\omega / (\\Delta^2 + \\xi)`
    (Zenke et al. 2017, eq. 5), where :math:`\\Delta = \\theta - \\theta^*` is how far the parameter moved
    during the task (``anchor`` holds :math:`\\theta^*`, its value when the task began); then the path
    integral restarts, :math:`\\omega \\leftarrow 0`, and the anchor moves to the task's end,
    :math:`\\theta^* \\leftarrow \\theta`: the start of the next task and the centre of the penalty.

    As in the paper and van de Ven et al.'s implementation, :math:`\\Omega` is not clipped; Zenke et al.'s
    code (``ganguli-lab/pathint``) clips it at 0.
    """
    importance.add_(path / ((param - anchor).square() + xi))
    path.zero_()
    anchor.copy_(param)


def rank_matched(signal: Tensor, values: Tensor) -> Tensor:
    """``values`` rearranged into the order of ``signal``: the element of ``signal`` of rank k (counted
    over the whole tensor, from the smallest) gets the k-th smallest of ``values``, and tied elements of
    ``signal`` share the mean of the values of their ranks (as tied ranks do in Spearman's correlation).
    The result has the ranking of ``signal`` and, without ties, the distribution of ``values``; a
    constant ``signal`` gives every element the mean of ``values``."""
    flat = signal.flatten()
    order = torch.argsort(flat, stable=True)
    _, counts = torch.unique_consecutive(flat[order], return_counts=True)
    group = torch.repeat_interleave(torch.arange(len(counts), device=flat.device), counts)
    sums = torch.zeros(len(counts), dtype=values.dtype, device=flat.device)
    sums.index_add_(0, group, torch.sort(values.flatten()).values)
    out = torch.empty_like(values.flatten())
    out[order] = (sums / counts)[group]
    return out.view_as(values)


class StochasticMLP:
    """R runs of an MLP with stochastic synapses, ReLU hidden units and a softmax output.

    Attributes (lists over layers, each tensor with a leading run axis):
        weights: expected strengths :math:`\\bar w`, ``(R, out, in)``.
        biases: ``(R, out)``, never masked, excluded from the energy.
        probs: release probabilities :math:`p`, ``(R, out, in)``.
        hp: per-run hyperparameters as ``(R, 1, 1)`` tensors (see :class:`SynapseConfig`), plus
            ``bias_lr`` and ``bias_decay`` as ``(R, 1)`` (zero learning rate for unlearned biases).
        generators: one generator per run for initialisation and batch order.
        mask_seeds, eval_mask_seeds: ``(R,)`` int64, each run's streams of training and of evaluation
            masks (:func:`release_uniforms`).
        masks_drawn, eval_masks_drawn: int64 scalars, masks drawn so far from each (the position in the
            streams). Evaluating more or less often never changes training.
    """

    def __init__(self, sizes: Sequence[int], runs: Sequence[SynapseConfig], device: str | torch.device = "cpu"):
        if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
        if not runs:
            raise ValueError("at least one run is needed")
        if len({c.optimizer for c in runs}) > 1:
            raise ValueError("all runs of one network must share the optimizer")
        self.sizes = [int(s) for s in sizes]
        self.runs = list(runs)
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(c.seed) for c in self.runs]
        self.mask_seeds = self._stream_seeds(TRAINING_MASK_STREAM)
        self.eval_mask_seeds = self._stream_seeds(EVALUATION_MASK_STREAM)
        self.masks_drawn = torch.zeros((), dtype=torch.int64, device=self.device)
        self.eval_masks_drawn = torch.zeros((), dtype=torch.int64, device=self.device)
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
        self.state = self._optimizer_state()
        # EWC samples the labels of its Fisher information from a stream of its own, so that the
        # course of training does not depend on it.
        self.fisher_generators = [
            torch.Generator(self.device).manual_seed(derived_seed(c.seed, FISHER_LABEL_STREAM)) for c in self.runs
        ] if "fisher_w" in self.state else []

    def _stream_seeds(self, stream: int) -> Tensor:
        """Every run's seed of its ``stream``, ``(R,)`` int64."""
        return torch.tensor([derived_seed(c.seed, stream) for c in self.runs], dtype=torch.int64, device=self.device)

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
            "ghost": [float(c.release_p is not None) for c in self.runs],
            "release_p": [1.0 if c.release_p is None else c.release_p for c in self.runs],
            "ewc_lambda": [c.ewc_lambda for c in self.runs],
            "ewc_online": [float(c.ewc_mode == "online") for c in self.runs],
            "ewc_gamma": [c.ewc_gamma for c in self.runs],
            "si_c": [c.si_c for c in self.runs],
            "si_xi": [c.si_xi for c in self.runs],
            "own_signal": [float(c.consolidation_signal != "p") for c in self.runs],
        }
        hp = {k: torch.tensor(v, dtype=torch.float32, device=self.device)[:, None, None] for k, v in cols.items()}
        hp["bias_lr"] = (hp["lr"] * hp["learn_bias"])[:, :, 0]  # (R, 1), to broadcast over biases (R, out)
        hp["bias_decay"] = hp["weight_decay"][:, :, 0]
        hp["bias_ewc_lambda"] = hp["ewc_lambda"][:, :, 0]
        hp["bias_si_c"] = hp["si_c"][:, :, 0]
        hp["bias_si_xi"] = hp["si_xi"][:, :, 0]
        return hp

    def _optimizer_state(self) -> dict[str, list[Tensor]]:
        """Initial state of Adam (moments ``m_*``, ``v_*`` and the step count), of EWC and of SI.

        EWC keeps two tensors per parameter, :math:`A` and :math:`B`, such that the penalty's gradient is
        :math:`\\lambda (A \\bar w - B)`: for offline EWC the summed Fisher information of the past tasks
        :math:`A = \\sum_t F^{(t)}` and :math:`B = \\sum_t F^{(t)} \\bar w^{(t)}`; for online EWC the running
        Fisher information :math:`A = F^*` and :math:`B = F^* \\bar w^*` (see :meth:`end_task`).

        SI keeps three: the path integral of the current task :math:`\\omega` (``si_path_*``), the importance
        of the past tasks :math:`\\Omega` (``si_importance_*``), both zero at first, and the parameters at the
        last task boundary :math:`\\theta^*` (``si_anchor_*``), at first the initial parameters. The penalty
        :math:`c\\sum_k\\Omega_k(\\theta_k - \\theta^*_k)^2` has the gradient :math:`2c\\,\\Omega(\\theta - \\theta^*)`.
        """
        adam = self.runs[0].optimizer == "adam"
        names = ["m_w", "v_w", "m_b", "v_b"] if adam else []
        if any(c.ewc_lambda > 0 for c in self.runs):
            names += ["fisher_w", "anchor_w", "fisher_b", "anchor_b"]
        signals = {c.consolidation_signal for c in self.runs}
        if "fisher" in signals:
            names += ["signal_fisher_w"]
        state = {n: [torch.zeros_like(t) for t in (self.weights if n.endswith("w") else self.biases)] for n in names}
        if any(c.si_c > 0 for c in self.runs) or "path_integral" in signals:
            state |= self._path_integral_state()
        if signals != {"p"}:
            state["signal_w"] = [p.clone() for p in self.probs]
        if adam:
            state["adam_step"] = [torch.zeros((), device=self.device)]
        return state

    def _path_integral_state(self) -> dict[str, list[Tensor]]:
        """SI's state at the start: path integrals and importances zero, anchors at the parameters."""
        zeros = {f"si_{kind}_{name}": [torch.zeros_like(t) for t in params] for kind in ("path", "importance")
                 for name, params in (("w", self.weights), ("b", self.biases))}
        return zeros | {"si_anchor_w": [w.clone() for w in self.weights], "si_anchor_b": [b.clone() for b in self.biases]}

    def track_path_integral(self) -> None:
        """Accumulate synaptic intelligence's path integral :math:`\\omega` (and fold it into :math:`\\Omega`
        at task boundaries) for every run, also those without SI's penalty (``si_c = 0``, whose training
        this leaves bit for bit as it was): the importance signal of chapter 7. Call it before training."""
        if "si_path_w" not in self.state:
            self.state |= self._path_integral_state()
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
    def next_mask(self, evaluation: bool = False) -> tuple[Tensor, Tensor]:
        """The next release mask of training (or of ``evaluation``), for :func:`release_masks`: the runs'
        stream seeds ``(R,)`` and the mask's index; the stream advances by one mask."""
        seeds, drawn = (self.eval_mask_seeds, self.eval_masks_drawn) if evaluation else (self.mask_seeds, self.masks_drawn)
        draw = drawn.clone()
        drawn += 1
        return seeds, draw

    def skip_evaluation_passes(self, n: int) -> None:
        """Move the evaluation stream past ``n`` passes as if they had been drawn, so that the passes
        after them get the masks they would have had (:func:`~lib.train.fit` skipping the tasks not
        seen yet)."""
        if self.stochastic:
            self.eval_masks_drawn += n

    def diverged_runs(self) -> Tensor:
        """``(R,)`` bool: the runs that no training step can change any more, so that :func:`~lib.train.fit`
        may skip the steps of a network whose every run is one. The presynaptic engine claims none;
        :meth:`lib.bgd.BayesianMLP.diverged_runs` does."""
        return torch.zeros(self.n_runs, dtype=torch.bool, device=self.device)

    def ghost_release(self) -> list[Tensor | None]:
        """Per layer, the release probability that differs from :math:`p` (ghost runs), else ``None``."""
        return release_probabilities(self.probs, self.hp) if self.any_run("ghost") else [None] * self.n_layers

    def transmitted(self, evaluation: bool = False, compile: bool = False) -> list[Tensor]:
        """Weights transmitted with the next release mask of training (or of ``evaluation``),
        :math:`r\\bar w / p`; a deterministic network transmits :math:`\\bar w` and draws nothing.

        ``compile`` runs :func:`release_masks` through :func:`torch.compile` (the same bits)."""
        if not self.stochastic:
            return self.weights
        return compiled_or_eager(release_masks, self.weights, self.probs, self.ghost_release(),
                                 self.next_mask(evaluation), compile=compile)[0]

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, weights: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """:func:`mlp_forward` with this network's biases; ``weights`` default to :math:`\\bar w`."""
        return mlp_forward(x, self.weights if weights is None else weights, self.biases)

    def sample_pass(self, x: Tensor, compile: bool = False) -> tuple[Tensor, list[Tensor]]:
        """One stochastic forward pass with the next evaluation mask (one mask for all of ``x``)."""
        return self.forward(x, self.transmitted(evaluation=True, compile=compile))

    # ------------------------------------------------------------------ task boundaries
    @torch.no_grad()
    def end_task(self, train_x: Tensor, train_y: Tensor) -> None:
        """Called after each task (EWC and SI use the boundary): fold what the task left into their state.

        SI (:func:`consolidate_path_integral`): :math:`\\Omega \\mathrel{+}= \\omega / (\\Delta^2 + \\xi)` with
        :math:`\\Delta` the change of the parameter over the task; :math:`\\omega` restarts at 0 and the
        anchor :math:`\\theta^*` moves to the task's end. Every weight and bias has its own; a bias that is
        not learned never moves and gets :math:`\\Omega = 0`.

        EWC: fold the Fisher information :math:`F` of the
        task just learned and the parameters :math:`\\bar w` it ended with into EWC's state (the Fisher of
        :func:`diagonal_fisher`, labels sampled from the network: the Fisher proper, not the empirical one).

        Offline EWC adds one penalty per task: :math:`A \\mathrel{+}= F`, :math:`B \\mathrel{+}= F \\bar w`.
        Online EWC (Schwarz et al. 2018) decays the running Fisher information and moves its anchor to
        the latest parameters: :math:`A \\leftarrow \\gamma A + F`, then :math:`B \\leftarrow A \\bar w`.
        After one task the two agree. Offline runs have :math:`\\gamma = 1`, so :math:`\\gamma A + F` is
        their sum too, bit for bit.
        """
        if "si_path_w" in self.state:
            for name, params, xi in (("w", self.weights, self.hp["si_xi"]), ("b", self.biases, self.hp["bias_si_xi"])):
                si = [self.state[f"si_{kind}_{name}"] for kind in ("importance", "path", "anchor")]
                for importance, path, anchor, param in zip(*si, params):
                    consolidate_path_integral(importance, path, anchor, param, xi)
        if "signal_w" in self.state:
            self._update_signals(train_x, train_y)
        if "fisher_w" not in self.state:
            return
        fisher_w, fisher_b = diagonal_fisher(self.weights, self.biases, train_x, train_y, labels="model",
                                             generators=self.fisher_generators)
        online, gamma = self.hp["ewc_online"] > 0, self.hp["ewc_gamma"]
        for name, params, fishers in (("w", self.weights, fisher_w), ("b", self.biases, fisher_b)):
            run_online, run_gamma = (online, gamma) if name == "w" else (online[:, :, 0], gamma[:, :, 0])
            for a, b, f, w in zip(self.state[f"fisher_{name}"], self.state[f"anchor_{name}"], fishers, params):
                a.mul_(run_gamma).add_(f)
                b.copy_(torch.where(run_online, a * w, b + f * w))

    def _update_signals(self, train_x: Tensor, train_y: Tensor) -> None:
        """At a task boundary, each run's consolidation signal :math:`s` of the next task (see
        ``consolidation_signal`` of :class:`SynapseConfig`): its raw signal, ranked per layer, takes the
        layer's values of :math:`p` in the same order (:func:`rank_matched`); where :math:`s` had reached
        ``p_freeze`` it stays. With ``"p_at_boundaries"`` that is :math:`p` itself (a synapse frozen in
        :math:`s` is frozen in :math:`p`); runs with ``"p"`` keep :math:`s = p` too, unused."""
        kinds = [c.consolidation_signal for c in self.runs]
        if "fisher" in kinds:  # the empirical Fisher information of the task, added to that of the earlier ones
            fisher_w, _ = diagonal_fisher(self.weights, self.biases, train_x, train_y, labels="true")
            for total, f in zip(self.state["signal_fisher_w"], fisher_w):
                total.add_(f)
        for i, (s, p) in enumerate(zip(self.state["signal_w"], self.probs)):
            for r, kind in enumerate(kinds):
                if kind in ("p", "p_at_boundaries"):  # (p ranked by itself takes its own values)
                    s[r] = p[r]
                    continue
                raw = {"magnitude": lambda: self.weights[i][r].abs(),
                       "fisher": lambda: self.state["signal_fisher_w"][i][r],
                       "path_integral": lambda: self.state["si_importance_w"][i][r]}[kind]()
                s[r] = torch.where(s[r] >= self.hp["p_freeze"][r], s[r], rank_matched(raw, p[r]))

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
