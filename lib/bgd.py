"""Bayesian Gradient Descent (BGD; Zeno, Golan, Hoffer & Soudry 2018), a continual-learning baseline.

BGD keeps a factorised Gaussian posterior :math:`q(\\theta) = \\prod_i \\mathcal N(\\mu_i, \\sigma_i^2)` over
every parameter (weights and biases) and updates it online, one mini-batch :math:`D_n` at a time,
without being told where tasks begin or end. With :math:`L_n(\\theta) = -\\log p(D_n \\mid \\theta)`, the
cross-entropy *summed* over the mini-batch, and the reparameterisation
:math:`\\theta = \\mu + \\sigma \\odot \\varepsilon`, :math:`\\varepsilon \\sim \\mathcal N(0, I)`, the
update rule of Zeno et al. (2018, arXiv:1803.10123) is

.. math::
    \\mu_i &\\leftarrow \\mu_i - \\eta\\, \\sigma_i^2\\, \\mathbb E_\\varepsilon\\!\\left[\\frac{\\partial L_n}{\\partial\\theta_i}\\right],\\\\
    \\sigma_i &\\leftarrow \\sigma_i \\sqrt{1 + \\left(\\tfrac12 \\sigma_i\\, \\mathbb E_\\varepsilon\\!\\left[\\frac{\\partial L_n}{\\partial\\theta_i}\\,\\varepsilon_i\\right]\\right)^2}
        - \\tfrac12 \\sigma_i^2\\, \\mathbb E_\\varepsilon\\!\\left[\\frac{\\partial L_n}{\\partial\\theta_i}\\,\\varepsilon_i\\right],

both expectations estimated from the same K Monte-Carlo samples (each gradient paired with the
:math:`\\varepsilon` that produced its sample). The step size :math:`\\eta\\sigma_i^2` shrinks as a
parameter becomes certain (small :math:`\\sigma_i`), which is how BGD protects what earlier tasks taught.

As in the reference implementation (``igolan/bgd``, used by the paper's authors), the gradient is that
of the mini-batch *sum*, i.e. ``batch_size`` times the gradient of the mean loss: the benchmark
settings below (:data:`BGD_SETTINGS`) assume it, and the effective learning rate grows with the batch.

A training step needs K fresh :math:`\\varepsilon` for every parameter (per run 2 million normal numbers for
K = 10 and the 784-200-200-10 network). They come from counter-based streams (:mod:`lib.noise`), so
the compiled step draws them inside the loops that use them, on every thread, rather than a
sequential generator filling a buffer first, which cost as much as a third of the step.

Differences from the reference implementation
---------------------------------------------
Compared line by line with ``igolan/bgd`` (``optimizers_lib/bgd_optimizer.py``, ``nn_utils/NNTrainer.py``,
``nn_utils/init_utils.py``, ``utils/datasets.py``, ``main.py``) as the authors ran it (their fork
``smonsays/bgd``, ``exp_comparison.sh``). Switches are later fields: at their defaults stored runs keep
their keys. ``benchmarks/bgd_reference_comparison.md`` adds what each difference was measured to change.

| item | reference | here | switch |
|---|---|---|---|
| update of :math:`\\mu, \\sigma` | as above (``BGD.step``) | the same; :math:`\\sigma` in its asinh form | none (equal algebraically, tested) |
| gradient over the batch | mean loss times the batch's size | gradient of the summed loss | none (the same) |
| gradient over the K samples | their mean (``grad_sum / mc_iters_taken``) | their mean | none (the same) |
| draw of :math:`\\theta` | one per sample, shared by the batch | one per sample, shared by the batch | none (the same) |
| initial :math:`\\sigma` | ``std_init``, weights and biases | ``std_init``, weights and biases | none (the same) |
| initial :math:`\\mu` | Xavier-normal weights and biases | PyTorch's ``nn.Linear`` default | ``BGDConfig.mean_init="reference"`` |
| test inference | ``test_mc``: accuracy of each of 10 passes, averaged | softmax of 10 passes averaged (the reference's ``agg_softmax``) | ``BGDConfig.mc_inference="average_accuracy"`` |
| test examples per draw | one test batch (128) | 100 | ``LifelongProtocol.eval_batch`` |
| mini-batch size | 128 | 100 | ``LifelongProtocol.batch_size`` |
| last incomplete mini-batch | trained (its own size in the sum) | dropped | ``LifelongProtocol.drop_last=False`` |
| task 1 of Permuted MNIST | the original images | permuted like every task | ``LifelongProtocol.permute_first_task=False`` |
| epochs per task, K, test passes | 10, 10, 10 | 10, 10, 10 | none (the same) |
| input scaling | standardised (0.1307, 0.3081) in the fork; ``igolan/bgd`` leaves 784-pixel MNIST in [0, 1] | standardised (0.1307, 0.3081) | none (the authors' fork) |
| random numbers | one global generator, drawn by the tests too | a counter-based stream per run | none (the same distribution) |
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal, Sequence

import torch
from torch import Tensor

from .compilation import compiled_or_eager
from .metrics import cross_entropy
from .model import (BGD_MEAN_INIT_STREAM, BGD_NOISE_STREAM, EVALUATION_STREAM, StochasticMLP,
                    derived_seed, deterministic, mlp_backward, mlp_forward, run_matmul)
from .noise import standard_normal


TRAINING_NOISE = "splitmix64 box-muller"  # the stream of :func:`training_noise` (lib.noise)
MeanInit = Literal["torch", "reference"]
MCInference = Literal["average_softmax", "average_accuracy"]


@dataclass(frozen=True, kw_only=True)
class BGDConfig:
    """Everything that may differ between BGD runs trained together (one run = one config).

    Attributes:
        seed: seeds the run's initialisation of :math:`\\mu`, mini-batch order and all noise :math:`\\varepsilon`.
        std_init: initial :math:`\\sigma` of every weight and bias.
        mean_eta: :math:`\\eta`, the scale of the mean's step :math:`\\eta\\sigma^2`.
        mc_samples: K, Monte-Carlo samples of :math:`\\theta` per training step (equal for all runs
            of one network).
        mean_init: how :math:`\\mu` starts. ``"torch"``: PyTorch's ``nn.Linear`` default,
            :math:`U(-1/\\sqrt{n_{in}}, 1/\\sqrt{n_{in}})` for weights and biases. ``"reference"``: as the
            reference code ``igolan/bgd`` (its default ``init_params``; the means start at the model's
            initial parameters): Xavier-normal weights :math:`\\mathcal N(0, 2/(n_{in} + n_{out}))` and biases
            :math:`\\mathcal N(0, 2/(1 + n_{out}))`, for a layer of :math:`n_{in}` inputs and :math:`n_{out}` units.
        mc_inference: what the test's Monte-Carlo passes average (:func:`lib.train.evaluate`).
            ``"average_softmax"``: the softmax of the S passes, then the argmax (the book's inference, the
            reference's ``agg_softmax``). ``"average_accuracy"``: the accuracy of each pass alone (the
            reference's ``test_mc``, which the authors' BGD runs used). Both use the same passes; this
            chooses which one is the run's ``accuracy``.
    """

    seed: int = 0
    std_init: float
    mean_eta: float = 1.0
    mc_samples: int = 10
    mean_init: MeanInit = "torch"
    mc_inference: MCInference = "average_softmax"

    # Fields added after the first results were stored: they enter a run's description (and so its
    # cache key) only when they differ from their default, which keeps earlier keys valid.
    LATER_FIELDS = ("mean_init", "mc_inference")

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.std_init) and self.std_init > 0):
            problems.append(f"std_init={self.std_init} must be positive and finite")
        if not (math.isfinite(self.mean_eta) and self.mean_eta > 0):
            problems.append(f"mean_eta={self.mean_eta} must be positive and finite")
        if isinstance(self.mc_samples, bool) or not isinstance(self.mc_samples, int) or self.mc_samples < 1:
            problems.append(f"mc_samples={self.mc_samples!r} must be a positive integer")
        if self.mean_init not in ("torch", "reference"):
            problems.append(f"mean_init={self.mean_init!r} must be 'torch' or 'reference'")
        if self.mc_inference not in ("average_softmax", "average_accuracy"):
            problems.append(f"mc_inference={self.mc_inference!r} must be 'average_softmax' or 'average_accuracy'")
        if problems:
            raise ValueError("invalid BGDConfig: " + "; ".join(problems))

    def describe(self) -> dict:
        """The run's settings as a plain dict (for cache keys and result files), with the generator of
        its training noise: runs drawn from another generator are other runs."""
        defaults = {f.name: f.default for f in fields(self)}
        settings = {k: v for k, v in asdict(self).items() if k not in self.LATER_FIELDS or v != defaults[k]}
        return {**settings, "training_noise": TRAINING_NOISE}


# The authors' final BGD comparison (``exp_comparison.sh`` of their BGD fork): 2x200 hidden
# units, batch 128 (which matters, the gradient being a sum over the batch), 10 Monte-Carlo samples in
# training and 10 at test; (std_init, mean_eta) from a grid std_init in {1e-4, 1e-3, 1e-2, 5e-2} x
# mean_eta in {0.1, 1, 10} at seed 2019. Use ``dataclasses.replace(BGD_SETTINGS[name], seed=...)``.
BGD_SETTINGS: dict[str, BGDConfig] = {
    "perm_mnist": BGDConfig(std_init=0.05, mean_eta=1.0, mc_samples=10),
    "perm_fmnist": BGDConfig(std_init=0.05, mean_eta=0.1, mc_samples=10),
    "split_mnist": BGDConfig(std_init=0.001, mean_eta=1.0, mc_samples=10),
    "split_fmnist": BGDConfig(std_init=0.001, mean_eta=1.0, mc_samples=10),
}


def bgd_update(
    mu: Tensor, sigma: Tensor, mean_grad: Tensor, mean_grad_eps: Tensor, eta: float | Tensor
) -> tuple[Tensor, Tensor]:
    """One BGD step of the Gaussian :math:`\\mathcal N(\\mu, \\sigma^2)` of each parameter (Zeno et al. 2018).

    ``mean_grad`` is :math:`\\mathbb E_\\varepsilon[\\partial L_n/\\partial\\theta]` and ``mean_grad_eps``
    :math:`\\mathbb E_\\varepsilon[(\\partial L_n/\\partial\\theta)\\,\\varepsilon]`; ``eta`` broadcasts
    against the parameters (one value per run). Returns the new :math:`(\\mu, \\sigma)`:

    .. math::
        \\mu' = \\mu - \\eta\\sigma^2\\,\\mathbb E[g], \\qquad
        \\sigma' = \\sigma\\sqrt{1 + a^2} - \\sigma a = \\sigma\\, e^{-\\operatorname{asinh} a},
        \\quad a = \\tfrac12 \\sigma\\,\\mathbb E[g\\varepsilon].

    The two forms of :math:`\\sigma'` are equal (:math:`\\operatorname{asinh} a = \\log(a + \\sqrt{1+a^2})`);
    the second has no cancellation for large :math:`a`, so :math:`\\sigma'` stays positive in
    floating point too. By Stein's lemma :math:`\\mathbb E[g\\varepsilon] = \\sigma\\,\\mathbb E[\\partial^2 L_n/\\partial\\theta^2]`:
    :math:`\\sigma` shrinks where the loss is curved, i.e. where the data pin the parameter down.
    """
    new_mu = mu - eta * sigma.square() * mean_grad
    new_sigma = sigma * torch.exp(-torch.asinh(0.5 * sigma * mean_grad_eps))
    return new_mu, new_sigma


def training_noise(seeds: Tensor, step: Tensor, shapes: Sequence[torch.Size], samples: int) -> list[Tensor]:
    """The noise :math:`\\varepsilon_1 \\dots \\varepsilon_K` of one training step of R runs, one tensor
    ``(R, K, *shape)`` per parameter tensor of ``shapes`` (the shapes of one run's parameters).

    Run r's numbers are those of its own stream ``seeds[r]`` (:func:`lib.noise.standard_normal`), laid
    out step after step, sample after sample, and within a sample the parameters in the order of
    ``shapes`` (weights of every layer, then biases): :math:`\\varepsilon_k` of parameter i at step t
    is the number at position :math:`(tK + k)P + i` of P parameters. So a run's noise never depends on
    the other runs, and a step's noise on nothing but its index ``step`` (an int64 scalar tensor).
    """
    total = sum(math.prod(shape) for shape in shapes)
    sample = torch.arange(samples, device=seeds.device).view(1, samples) + step * samples
    noise, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        index = torch.arange(offset, offset + size, device=seeds.device)
        position = sample[..., None] * total + index  # (1, K, size)
        noise.append(standard_normal(seeds.view(-1, 1, 1), position).unflatten(2, shape))
        offset += size
    return noise


def bgd_step(
    means_w: list[Tensor], means_b: list[Tensor], std_w: list[Tensor], std_b: list[Tensor],
    seeds: Tensor, step: Tensor, eta_w: Tensor, eta_b: Tensor, x: Tensor, y: Tensor, samples: int,
) -> Tensor:
    """One BGD update of R runs in place with K = ``samples`` Monte-Carlo samples; returns the loss ``(R,)``.

    The noise of the K samples is :func:`training_noise` of the runs' ``seeds`` ``(R,)`` at training
    step ``step``. The K samples
    :math:`\\theta_k = \\mu + \\sigma\\varepsilon_k` of every run go through the network side by side: the
    first layer as one product per run (its input is the same for all K), the layers above through
    :func:`mlp_forward` with a sample axis. Backpropagating the mini-batch *sum* of the cross-entropy gives
    every :math:`g_k`, and :func:`bgd_update` moves every :math:`(\\mu, \\sigma)` with the averages
    :math:`\\mathbb E[g]` and :math:`\\mathbb E[g\\varepsilon]` over k. ``x`` is ``(R, B, in)``, ``y``
    ``(R, B)``; ``eta_w`` ``(R, 1, 1)`` and ``eta_b`` ``(R, 1)`` are the runs' :math:`\\eta`. The loss is
    the mean cross-entropy per example, averaged over the K samples.
    """
    means, stds = [*means_w, *means_b], [*std_w, *std_b]
    eps = training_noise(seeds, step, [m.shape[1:] for m in means], samples)
    runs = x.shape[0]
    theta = [torch.addcmul(m.unsqueeze(1), s.unsqueeze(1), e) for m, s, e in zip(means, stds, eps)]
    n_layers = len(means_w)
    theta_w, theta_b = theta[:n_layers], theta[n_layers:]
    # First layer: its input is the same for the K samples of a run, so one product per run covers
    # them all (the K weight matrices stacked, K * out rows); faster than K small products.
    hidden, inputs_dim = theta_w[0].shape[2:]
    z = run_matmul(x, theta_w[0].reshape(runs, samples * hidden, inputs_dim).transpose(1, 2))
    z = z.view(runs, -1, samples, hidden).transpose(1, 2) + theta_b[0].unsqueeze(2)
    h = z.relu()  # (R, K, B, hidden): the K samples of every run side by side
    logits, inputs = mlp_forward(h, theta_w[1:], theta_b[1:])
    y = y.unsqueeze(1).expand(runs, samples, y.shape[1]).flatten(0, 1)
    loss, dlogits = cross_entropy(logits.flatten(0, 1), y)
    dlogits = dlogits.view_as(logits) * logits.shape[2]  # gradient of the summed loss L_n, not of the mean
    grads_w, grads_b, delta = mlp_backward(dlogits, inputs, theta_w[1:], to_input=True)
    first_w = run_matmul(delta.mT.reshape(runs, samples * hidden, -1), x)
    grads_w = [first_w, *grads_w]
    grads_b = [delta.sum(2), *grads_b]
    etas = [eta_w] * n_layers + [eta_b] * n_layers
    for mu, sigma, g, e, eta in zip(means, stds, [*grads_w, *grads_b], eps, etas):
        g = g.view_as(e)
        new_mu, new_sigma = bgd_update(mu, sigma, g.mean(1), (g * e).mean(1), eta)
        mu.copy_(new_mu)
        sigma.copy_(new_sigma)
    return loss.view(runs, samples).mean(1)


class BayesianMLP(StochasticMLP):
    """R independent BGD runs of one ReLU MLP, batched with a leading run axis.

    The inherited ``weights`` and ``biases`` are the means :math:`\\mu` (initialised as each run's
    ``mean_init`` says, :class:`BGDConfig`), so every summary of :class:`StochasticMLP` applies to them
    (e.g. the synaptic energy :math:`\\sum|\\mu|`); the base network is deterministic (:math:`p = 1`,
    learned biases).

    Attributes (besides those of :class:`StochasticMLP`):
        bgd_runs: the :class:`BGDConfig` of every run (``runs`` holds the deterministic base configs).
        mc_samples: K, shared by all runs.
        weight_std, bias_std: :math:`\\sigma` of every weight ``(R, out, in)`` and bias ``(R, out)``.
        hp: gains ``mean_eta`` ``(R, 1, 1)`` and ``bias_mean_eta`` ``(R, 1)``.
        noise_seeds: ``(R,)`` int64, each run's stream of training noise (:func:`training_noise`;
            evaluation draws from ``eval_generators``).
        eval_generators: one ``torch.Generator`` per run for the parameter draws of test passes.
        steps_taken: int64 scalar, training steps so far (the position in the noise streams).
    """

    def __init__(self, sizes: Sequence[int], runs: Sequence[BGDConfig], device: str | torch.device = "cpu"):
        runs = list(runs)
        samples = {c.mc_samples for c in runs}
        if len(samples) > 1:
            raise ValueError(f"all runs of one network need the same mc_samples, got {sorted(samples)}")
        super().__init__(sizes, [deterministic(seed=c.seed, bias="learned") for c in runs], device)
        self.bgd_runs = runs
        for r, config in enumerate(runs):
            if config.mean_init == "reference":
                self._initialise_means_as_reference(r)
        self.mc_samples = samples.pop()
        std_init = torch.tensor([c.std_init for c in runs], dtype=torch.float32, device=self.device)
        self.weight_std = [std_init[:, None, None].expand_as(w).clone() for w in self.weights]
        self.bias_std = [std_init[:, None].expand_as(b).clone() for b in self.biases]
        self.hp["mean_eta"] = torch.tensor(
            [c.mean_eta for c in runs], dtype=torch.float32, device=self.device
        )[:, None, None]
        self.hp["bias_mean_eta"] = self.hp["mean_eta"][:, :, 0]
        self.noise_seeds = self._stream_seeds(BGD_NOISE_STREAM)
        self.eval_generators = [
            torch.Generator(self.device).manual_seed(derived_seed(c.seed, EVALUATION_STREAM)) for c in runs
        ]
        self.steps_taken = torch.zeros((), dtype=torch.int64, device=self.device)

    def _initialise_means_as_reference(self, run: int) -> None:
        """Draw run ``run``'s means as the reference code does (``mean_init="reference"``), layer by layer,
        weights then biases, from a stream of the run's own: its mini-batch order stays that of the
        ``"torch"`` initialisation, and its numbers never depend on the other runs."""
        g = torch.Generator(self.device).manual_seed(derived_seed(self.bgd_runs[run].seed, BGD_MEAN_INIT_STREAM))
        for w, b in zip(self.weights, self.biases):
            fan_out, fan_in = w.shape[1:]
            w[run].normal_(0.0, math.sqrt(2 / (fan_in + fan_out)), generator=g)
            b[run].normal_(0.0, math.sqrt(2 / (1 + fan_out)), generator=g)

    def _sample_parameters(self, generators: Sequence[torch.Generator]) -> tuple[list[Tensor], list[Tensor]]:
        """One draw :math:`\\theta = \\mu + \\sigma\\varepsilon` of every run's weights and biases.

        Run r draws its noise from ``generators[r]`` alone, layer by layer, first the weights' then
        the biases' :math:`\\varepsilon`, so its numbers never depend on the other runs.
        """
        eps_w = [torch.empty_like(w) for w in self.weights]
        eps_b = [torch.empty_like(b) for b in self.biases]
        for r, g in enumerate(generators):
            for ew, eb in zip(eps_w, eps_b):
                ew[r].normal_(generator=g)
                eb[r].normal_(generator=g)
        weights = [torch.addcmul(m, s, e) for m, s, e in zip(self.weights, self.weight_std, eps_w)]
        biases = [torch.addcmul(m, s, e) for m, s, e in zip(self.biases, self.bias_std, eps_b)]
        return weights, biases

    def train_step(self, x: Tensor, y: Tensor, compile: bool = False) -> Tensor:
        """One BGD update (:func:`bgd_update`) of every run on its mini-batch; returns the loss ``(R,)``.

        ``x`` is ``(R, B, in)`` and ``y`` ``(R, B)``. :func:`bgd_step` backpropagates
        :math:`g_k = \\partial L_n/\\partial\\theta` at each :math:`\\theta_k = \\mu + \\sigma\\varepsilon_k`
        (the noise of step ``steps_taken``) and updates :math:`\\mu` and :math:`\\sigma` in place with the
        averages over the K samples. With ``compile`` set, it runs through :func:`torch.compile`
        (:func:`lib.compilation.compiled_or_eager`), which draws the noise inside the loops that use it, on
        all threads. The returned loss is the mean cross-entropy per example, averaged over the K samples.
        """
        loss = compiled_or_eager(
            bgd_step, self.weights, self.biases, self.weight_std, self.bias_std, self.noise_seeds,
            self.steps_taken, self.hp["mean_eta"], self.hp["bias_mean_eta"], x, y, self.mc_samples,
            compile=compile,
        )
        self.steps_taken += 1
        return loss

    @property
    def stochastic(self) -> bool:
        """Always: every pass draws its own parameters (the base class sees only deterministic synapses)."""
        return True

    @torch.no_grad()
    def skip_evaluation_passes(self, n: int) -> None:
        """Draw and drop ``n`` passes' parameters (the evaluation generators are sequential)."""
        for _ in range(n):
            self._sample_parameters(self.eval_generators)

    @torch.no_grad()
    def sample_pass(self, x: Tensor, compile: bool = False) -> tuple[Tensor, list[Tensor]]:
        """One stochastic forward pass with :math:`\\theta = \\mu + \\sigma\\varepsilon`, one draw per run.

        The draw is shared by all of ``x`` (``(R, B, in)`` or ``(B, in)``); ``eval_generators[r]`` supplies
        run r's noise (``compile`` is ignored: these draws are sequential). Returns :func:`mlp_forward`'s logits ``(R, B, C)`` and layer inputs. Averaging
        the softmax of several passes gives Monte-Carlo inference (the reference code's ``test_mc``
        inference averages the accuracies of single passes instead).
        """
        weights, biases = self._sample_parameters(self.eval_generators)
        return mlp_forward(x, weights, biases)

    def diverged_runs(self) -> Tensor:
        """``(R,)`` bool: runs whose every mean and :math:`\\sigma` is NaN. A BGD step maps that state to
        itself (every :math:`\\theta`, loss, gradient and update is NaN), and NaN parameters give the same
        test predictions whatever the draw, so skipping such a run's further steps changes no number
        recorded (a diverging search trial then costs its evaluations, not its training)."""
        params = [*self.weights, *self.biases, *self.weight_std, *self.bias_std]
        return torch.stack([torch.isnan(t).flatten(1).all(1) for t in params]).all(0)

    def end_task(self, train_x: Tensor, train_y: Tensor) -> None:
        """Nothing to do: BGD is task-agnostic and never needs to know that a task ended."""


@torch.no_grad()
def largest_std(configs: Sequence[BGDConfig], sizes: Sequence[int], x: Tensor, y: Tensor, steps: int,
                batch_size: int) -> Tensor:
    """The largest :math:`\\sigma` of each layer's weights, before and after each of BGD's first
    ``steps`` updates of one network per config (batched), on the mini-batches of ``x``, ``y`` in
    their order (``steps * batch_size`` examples are used). Returns ``(steps + 1, runs, layers)``.

    Shows how a setting fails when it does: :math:`\\sigma` should shrink where the data pin a
    parameter down, but the Monte-Carlo estimate of :math:`\\mathbb E[g\\varepsilon]` (K samples) can be
    negative, and then :math:`\\sigma' = \\sigma e^{-\\operatorname{asinh} a}` grows by
    :math:`e^{\\operatorname{asinh}|a|}` with :math:`a = \\tfrac12\\sigma\\,\\mathbb E[g\\varepsilon]`:
    with a large :math:`\\sigma_0` and the gradient of a summed loss, :math:`|a|` can exceed 1 in one
    step, a larger :math:`\\sigma` gives larger gradients, and within a few steps the parameters
    overflow (:meth:`BayesianMLP.diverged_runs`).
    """
    if steps < 1 or batch_size < 1 or steps * batch_size > len(x):
        raise ValueError(f"{steps} steps of {batch_size} examples need more than the {len(x)} examples given")
    net = BayesianMLP(sizes, configs, device=x.device)
    runs = len(configs)
    largest = [torch.stack([s.flatten(1).amax(1) for s in net.weight_std], 1)]
    for k in range(steps):
        batch = slice(k * batch_size, (k + 1) * batch_size)
        net.train_step(x[batch].expand(runs, -1, -1), y[batch].expand(runs, -1))
        largest.append(torch.stack([s.flatten(1).amax(1) for s in net.weight_std], 1))
    return torch.stack(largest)
