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
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .metrics import cross_entropy
from .model import StochasticMLP, backprop, derived_seed, deterministic, mlp_forward, run_matmul
from .train import compiled_or_eager


@dataclass(frozen=True, kw_only=True)
class BGDConfig:
    """Everything that may differ between BGD runs trained together (one run = one config).

    Attributes:
        seed: seeds the run's initialisation of :math:`\\mu`, mini-batch order and all noise :math:`\\varepsilon`.
        std_init: initial :math:`\\sigma` of every weight and bias.
        mean_eta: :math:`\\eta`, the scale of the mean's step :math:`\\eta\\sigma^2`.
        mc_samples: K, Monte-Carlo samples of :math:`\\theta` per training step (equal for all runs
            of one network).
    """

    seed: int = 0
    std_init: float
    mean_eta: float = 1.0
    mc_samples: int = 10

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.std_init) and self.std_init > 0):
            problems.append(f"std_init={self.std_init} must be positive and finite")
        if not (math.isfinite(self.mean_eta) and self.mean_eta > 0):
            problems.append(f"mean_eta={self.mean_eta} must be positive and finite")
        if isinstance(self.mc_samples, bool) or not isinstance(self.mc_samples, int) or self.mc_samples < 1:
            problems.append(f"mc_samples={self.mc_samples!r} must be a positive integer")
        if problems:
            raise ValueError("invalid BGDConfig: " + "; ".join(problems))


# The authors' final BGD comparison (spec 4.5, ``exp_comparison.sh`` of their BGD fork): 2x200 hidden
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


_pool: ThreadPoolExecutor | None = None


def _noise_pool() -> ThreadPoolExecutor:
    """One thread, shared by all BGD networks, that draws training noise ahead of the steps."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(1, thread_name_prefix="bgd-noise")
    return _pool


def bgd_step(
    means_w: list[Tensor], means_b: list[Tensor], std_w: list[Tensor], std_b: list[Tensor],
    eps_w: list[Tensor], eps_b: list[Tensor], eta_w: Tensor, eta_b: Tensor, x: Tensor, y: Tensor,
) -> Tensor:
    """One BGD update of R runs in place, given the noise of its K samples; returns the loss ``(R,)``.

    ``eps_w[l]`` is ``(R, K, out, in)`` and ``eps_b[l]`` ``(R, K, out)``. The K samples
    :math:`\\theta_k = \\mu + \\sigma\\varepsilon_k` of every run go through the network side by side: the
    first layer as one product per run (its input is the same for all K), the layers above as R·K runs
    of :func:`mlp_forward`. Backpropagating the mini-batch *sum* of the cross-entropy gives
    every :math:`g_k`, and :func:`bgd_update` moves every :math:`(\\mu, \\sigma)` with the averages
    :math:`\\mathbb E[g]` and :math:`\\mathbb E[g\\varepsilon]` over k. ``x`` is ``(R, B, in)`` or shared
    ``(B, in)``, ``y`` ``(R, B)`` or ``(B,)``; ``eta_w`` ``(R, 1, 1)`` and ``eta_b`` ``(R, 1)`` are the runs'
    :math:`\\eta`. The loss is the mean cross-entropy per example, averaged over the K samples.
    """
    runs, samples = eps_w[0].shape[:2]
    means, stds, eps = [*means_w, *means_b], [*std_w, *std_b], [*eps_w, *eps_b]
    theta = [torch.addcmul(m.unsqueeze(1), s.unsqueeze(1), e) for m, s, e in zip(means, stds, eps)]
    n_layers = len(means_w)
    theta_w, theta_b = theta[:n_layers], theta[n_layers:]
    # First layer: its input is the same for the K samples of a run, so one product per run covers
    # them all (the K weight matrices stacked, K * out rows); faster than K small products.
    hidden, inputs_dim = theta_w[0].shape[2:]
    z = run_matmul(x, theta_w[0].reshape(runs, samples * hidden, inputs_dim).transpose(1, 2))
    z = z.view(runs, -1, samples, hidden).transpose(1, 2) + theta_b[0].unsqueeze(2)
    h = z.relu().flatten(0, 1)  # (R*K, B, hidden): the K samples of every run side by side
    upper_w = [w.flatten(0, 1) for w in theta_w[1:]]
    logits, inputs = mlp_forward(h, upper_w, [b.flatten(0, 1) for b in theta_b[1:]])
    if y.dim() == 2:
        y = y.unsqueeze(1).expand(runs, samples, y.shape[1]).flatten(0, 1)
    loss, dlogits = cross_entropy(logits, y)
    dlogits = dlogits * logits.shape[1]  # gradient of the summed loss L_n, not of the mean
    grads_w, grads_b, delta = backprop(dlogits, inputs, upper_w, to_input=True)
    delta = delta.view(runs, samples, -1, hidden)
    first_w = run_matmul(delta.transpose(2, 3).reshape(runs, samples * hidden, -1), x)
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

    The inherited ``weights`` and ``biases`` are the means :math:`\\mu` (initialised as PyTorch's
    ``nn.Linear``), so every summary of :class:`StochasticMLP` applies to them (e.g. the synaptic
    energy :math:`\\sum|\\mu|`); the base network is deterministic (:math:`p = 1`, learned biases).

    Attributes (besides those of :class:`StochasticMLP`):
        bgd_runs: the :class:`BGDConfig` of every run (``runs`` holds the deterministic base configs).
        mc_samples: K, shared by all runs.
        weight_std, bias_std: :math:`\\sigma` of every weight ``(R, out, in)`` and bias ``(R, out)``.
        hp: gains ``mean_eta`` ``(R, 1, 1)`` and ``bias_mean_eta`` ``(R, 1)``.
        noise_generators: one per run for the training noise (evaluation draws from ``eval_generators``).
        compile: whether :meth:`train_step` runs through :func:`torch.compile`.
    """

    def __init__(self, sizes: Sequence[int], runs: Sequence[BGDConfig], device: str | torch.device = "cpu",
                 compile: bool = False):
        runs = list(runs)
        samples = {c.mc_samples for c in runs}
        if len(samples) > 1:
            raise ValueError(f"all runs of one network need the same mc_samples, got {sorted(samples)}")
        super().__init__(sizes, [deterministic(seed=c.seed, bias="learned") for c in runs], device)
        self.bgd_runs = runs
        self.mc_samples = samples.pop()
        std_init = torch.tensor([c.std_init for c in runs], dtype=torch.float32, device=self.device)
        self.weight_std = [std_init[:, None, None].expand_as(w).clone() for w in self.weights]
        self.bias_std = [std_init[:, None].expand_as(b).clone() for b in self.biases]
        self.hp["mean_eta"] = torch.tensor(
            [c.mean_eta for c in runs], dtype=torch.float32, device=self.device
        )[:, None, None]
        self.hp["bias_mean_eta"] = self.hp["mean_eta"][:, :, 0]
        # The training noise comes from a stream of its own per run (drawn ahead on the CPU).
        self.noise_generators = [torch.Generator(self.device).manual_seed(derived_seed(c.seed, 3)) for c in runs]
        n_parameters = sum(p[0].numel() for p in [*self.weights, *self.biases])
        self._noise = [self.weights[0].new_empty(self.n_runs, self.mc_samples, n_parameters) for _ in range(2)]
        self._pending: tuple[int, Future] | None = None  # (buffer, its drawing)
        self.compile = compile

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

    def draw_training_noise(self, out: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Fill ``out`` ``(R, K, P)`` (P parameters per run) with the noise :math:`\\varepsilon_1 \\dots
        \\varepsilon_K` of one training step; return its views per layer, weights ``(R, K, out, in)`` and
        biases ``(R, K, out)``.

        Run r draws its K·P numbers from ``noise_generators[r]`` alone (sample by sample, the weights of
        every layer before the biases), so its numbers never depend on the other runs.
        """
        for r, g in enumerate(self.noise_generators):
            out[r].normal_(generator=g)
        views, offset = [], 0
        for p in [*self.weights, *self.biases]:
            size = p[0].numel()
            views.append(out[:, :, offset:offset + size].unflatten(2, p.shape[1:]))
            offset += size
        return views[:self.n_layers], views[self.n_layers:]

    def _next_noise(self) -> tuple[list[Tensor], list[Tensor]]:
        """The noise of this training step. On the CPU it was drawn on a second thread while the
        previous step ran, and that thread now draws the next step's noise into the other of two
        buffers (the noise does not depend on the parameters, so the numbers are the same as drawn
        in turn). Drawing normal numbers costs about half as much as the rest of a step on one core."""
        if self.device.type != "cpu":
            return self.draw_training_noise(self._noise[0])
        if self._pending is None:
            self._pending = (0, _noise_pool().submit(self.draw_training_noise, self._noise[0]))
        index, drawing = self._pending
        current = drawing.result()
        self._pending = (1 - index, _noise_pool().submit(self.draw_training_noise, self._noise[1 - index]))
        return current

    def train_step(self, x: Tensor, y: Tensor) -> Tensor:
        """One BGD update (:func:`bgd_update`) of every run on its mini-batch; returns the loss ``(R,)``.

        ``x`` is ``(R, B, in)`` and ``y`` ``(R, B)`` (or shared ``(B, in)`` and ``(B,)``). With the noise of
        :meth:`draw_training_noise`, :func:`bgd_step` backpropagates :math:`g_k = \\partial L_n/\\partial\\theta`
        at each :math:`\\theta_k = \\mu + \\sigma\\varepsilon_k` and updates :math:`\\mu` and :math:`\\sigma`
        in place with the averages over the K samples. With ``compile`` set, that step runs through
        :func:`torch.compile` (fused element-wise work; :func:`lib.train.compiled_or_eager`). On the CPU the step leaves one core to the
        thread that draws the next step's noise. The returned loss is the mean cross-entropy per
        example, averaged over the K samples.
        """
        args = (self.weights, self.biases, self.weight_std, self.bias_std, *self._next_noise(),
                self.hp["mean_eta"], self.hp["bias_mean_eta"], x, y)
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and threads > 1:
            torch.set_num_threads(threads - 1)
        try:
            return compiled_or_eager(bgd_step, *args, compile=self.compile)
        finally:
            torch.set_num_threads(threads)

    @property
    def stochastic(self) -> bool:
        """Always: every pass draws its own parameters (the base class sees only deterministic synapses)."""
        return True

    @torch.no_grad()
    def sample_pass(self, x: Tensor, generators: Sequence[torch.Generator]) -> tuple[Tensor, list[Tensor]]:
        """One stochastic forward pass with :math:`\\theta = \\mu + \\sigma\\varepsilon`, one draw per run.

        The draw is shared by all of ``x`` (``(R, B, in)`` or ``(B, in)``); ``generators[r]`` supplies
        run r's noise. Returns :func:`mlp_forward`'s logits ``(R, B, C)`` and layer inputs. Averaging
        the softmax of several passes gives Monte-Carlo inference (the reference code's ``test_mc``
        inference averages the accuracies of single passes instead).
        """
        weights, biases = self._sample_parameters(generators)
        return mlp_forward(x, weights, biases)

    def end_task(self, train_x: Tensor, train_y: Tensor) -> None:
        """Nothing to do: BGD is task-agnostic and never needs to know that a task ended."""
