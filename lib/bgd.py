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
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .metrics import cross_entropy
from .model import StochasticMLP, deterministic, mlp_backward, mlp_forward


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
    """

    def __init__(self, sizes: Sequence[int], runs: Sequence[BGDConfig], device: str | torch.device = "cpu"):
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

    def _sample_parameters(
        self, generators: Sequence[torch.Generator]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """One draw :math:`\\theta = \\mu + \\sigma\\varepsilon` of every run's weights and biases.

        Run r draws its noise from ``generators[r]`` alone, layer by layer, first the weights' then
        the biases' :math:`\\varepsilon`, so its numbers never depend on the other runs. Returns the
        sampled weights and biases and their noise :math:`\\varepsilon` (same shapes).
        """
        eps_w = [torch.empty_like(w) for w in self.weights]
        eps_b = [torch.empty_like(b) for b in self.biases]
        for r, g in enumerate(generators):
            for ew, eb in zip(eps_w, eps_b):
                ew[r].normal_(generator=g)
                eb[r].normal_(generator=g)
        weights = [torch.addcmul(m, s, e) for m, s, e in zip(self.weights, self.weight_std, eps_w)]
        biases = [torch.addcmul(m, s, e) for m, s, e in zip(self.biases, self.bias_std, eps_b)]
        return weights, biases, eps_w, eps_b

    def train_step(self, x: Tensor, y: Tensor) -> Tensor:
        """One BGD update (:func:`bgd_update`) of every run on its mini-batch; returns the loss ``(R,)``.

        ``x`` is ``(R, B, in)`` and ``y`` ``(R, B)`` (or shared ``(B, in)`` and ``(B,)``). For each of the
        K samples :math:`\\theta_k = \\mu + \\sigma\\varepsilon_k` (drawn one after the other) it backpropagates
        :math:`g_k = \\partial L_n/\\partial\\theta` at :math:`\\theta_k` and accumulates
        :math:`\\mathbb E[g] = \\frac1K\\sum_k g_k` and :math:`\\mathbb E[g\\varepsilon] = \\frac1K\\sum_k g_k\\varepsilon_k`.
        (One sample at a time is faster on the CPU than stacking the K samples on the run axis: its
        tensors stay in cache.) The returned loss is the mean cross-entropy per example, averaged over
        the K samples.
        """
        means = [*self.weights, *self.biases]
        stds = [*self.weight_std, *self.bias_std]
        etas = [self.hp["mean_eta"]] * self.n_layers + [self.hp["bias_mean_eta"]] * self.n_layers
        sum_g = [torch.zeros_like(m) for m in means]
        sum_g_eps = [torch.zeros_like(m) for m in means]
        loss_sum = torch.zeros(self.n_runs, device=self.device)
        for _ in range(self.mc_samples):
            weights, biases, eps_w, eps_b = self._sample_parameters(self.generators)
            logits, inputs = mlp_forward(x, weights, biases)
            loss, dlogits = cross_entropy(logits, y)
            dlogits.mul_(logits.shape[1])  # gradient of the summed loss L_n, not of the mean
            grads_w, grads_b = mlp_backward(dlogits, inputs, weights)
            for acc, acc_eps, g, eps in zip(sum_g, sum_g_eps, [*grads_w, *grads_b], [*eps_w, *eps_b]):
                acc.add_(g)
                acc_eps.addcmul_(g, eps)
            loss_sum += loss
        for mu, sigma, acc, acc_eps, eta in zip(means, stds, sum_g, sum_g_eps, etas):
            new_mu, new_sigma = bgd_update(mu, sigma, acc / self.mc_samples, acc_eps / self.mc_samples, eta)
            mu.copy_(new_mu)
            sigma.copy_(new_sigma)
        return loss_sum / self.mc_samples

    @torch.no_grad()
    def sample_pass(self, x: Tensor, generators: Sequence[torch.Generator]) -> tuple[Tensor, list[Tensor]]:
        """One stochastic forward pass with :math:`\\theta = \\mu + \\sigma\\varepsilon`, one draw per run.

        The draw is shared by all of ``x`` (``(R, B, in)`` or ``(B, in)``); ``generators[r]`` supplies
        run r's noise. Returns :func:`mlp_forward`'s logits ``(R, B, C)`` and layer inputs. Averaging
        the softmax of several passes gives Monte-Carlo inference (the reference code's ``test_mc``
        inference averages the accuracies of single passes instead).
        """
        weights, biases, _, _ = self._sample_parameters(generators)
        return mlp_forward(x, weights, biases)

    def end_task(self, train_x: Tensor, train_y: Tensor) -> None:
        """Nothing to do: BGD is task-agnostic and never needs to know that a task ended."""
