"""Learning rules of the presynaptic model: release probabilities (eq. 4) and modulated SGD (eq. 5).

All functions work on tensors of any shape; hyperparameters are floats or tensors that broadcast
against the synapse tensors (the training engine passes one value per run, shaped ``(R, 1, 1)``,
so that runs with different settings are updated in one call). Updates happen in place: these
functions sit in the inner loop of training.
"""
from __future__ import annotations

import torch
from torch import Tensor

Scalar = float | Tensor


def update_release_probability(
    p: Tensor,
    grad: Tensor,
    *,
    p_up: Scalar,
    p_down: Scalar,
    g_lim: Scalar,
    p_min: Scalar = 0.25,
    p_max: Scalar = 1.0,
    p_freeze: Scalar | None = None,
    scaled: Scalar = 1.0,
) -> Tensor:
    r"""Update release probabilities in place from the gradient magnitude (paper eq. 4).

    A synapse whose gradient is large, :math:`|g_i| \ge g_{lim}`, is important for the task and
    becomes more reliable; all others drift towards unreliable release:

    .. math::
        \delta_i = \begin{cases} +p_{up} & |g_i| \ge g_{lim} \\ -p_{down} & \text{otherwise}\end{cases},
        \qquad
        p_i \leftarrow \operatorname{clip}\big(p_i + s_i\,\delta_i\,(1-\varphi_i),\ p_{min},\ p_{max}\big)

    with :math:`\varphi_i = [p_i \ge p_{freeze}]` (a frozen synapse never changes again, since it
    cannot fall back below the threshold; ``p_freeze=None`` means no freezing) and the step scale
    :math:`s_i`:

    * ``scaled=1`` (default, the authors' code): :math:`s_i = p_{max} - p_i`, so steps shrink as
      :math:`p_i` approaches :math:`p_{max}`;
    * ``scaled=0`` (the paper's eq. 4 as printed): :math:`s_i = 1`, constant additive steps.

    ``scaled`` may be a per-run tensor of zeros and ones; ``p_freeze = inf`` freezes nothing.
    The code's ``>=`` against the threshold is used (the paper writes ``>``; immaterial).
    """
    delta = torch.where(grad.abs() >= g_lim, p_up, -p_down)
    if p_freeze is not None:
        delta.mul_(p < p_freeze)
    if isinstance(scaled, Tensor):  # per run: p_max - p where scaled, 1 elsewhere
        delta.mul_(torch.where(scaled > 0, p_max - p, 1.0))
    elif scaled:
        delta.mul_(p_max - p)
    p.add_(delta)
    return p.clamp_(p_min, p_max)


def learning_rate_factor(p: Tensor, *, modulation: Scalar = 1.0, p_max: Scalar = 1.0) -> Tensor:
    r"""Per-synapse factor of the learning rate (paper eq. 5): :math:`\eta(p_i) = \eta_0 (1 - p_i)`.

    The code writes :math:`p_{max} - p_i`, identical for :math:`p_{max}=1`. ``modulation`` is 1 to
    switch the modulation on and 0 to switch it off (factor 1); per-run tensors mix both.
    """
    return 1 - modulation * (1 - p_max + p)


def sgd_step(
    weight: Tensor,
    grad: Tensor,
    *,
    lr: Scalar,
    weight_decay: Scalar = 0.0,
    lr_factor: Tensor | None = None,
) -> Tensor:
    r"""One step of (modulated) SGD with L2 weight decay on the expected strength, in place.

    .. math:: \bar w_i \leftarrow \bar w_i - \eta\,\big(f_i\, g_i + \lambda\, \bar w_i\big)

    where :math:`g_i = \partial L / \partial \bar w_i`, :math:`f_i` is the learning-rate factor of
    eq. 5 (1 without modulation) and :math:`\lambda` the L2 strength. As in the authors' code the
    decay is not modulated by :math:`f_i`.
    """
    if isinstance(weight_decay, Tensor) or weight_decay != 0:
        weight.mul_(1 - lr * weight_decay)
    scale = -lr if lr_factor is None else lr_factor * -lr
    if isinstance(scale, Tensor):
        return weight.addcmul_(grad, scale)
    return weight.add_(grad, alpha=scale)


def adam_step(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    step: Tensor,
    *,
    lr: Scalar,
    weight_decay: Scalar = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Tensor:
    r"""One step of Adam (Kingma & Ba 2015) with L2 decay added to the gradient, as ``torch.optim.Adam``.

    .. math::
        g \leftarrow g + \lambda\theta,\quad m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        \theta \leftarrow \theta - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    ``step`` is :math:`t`, already counting this step (a tensor, so that a compiled step does not
    specialise on it). ``param``, ``m`` and ``v`` are updated in place.
    """
    beta1, beta2 = betas
    if isinstance(weight_decay, Tensor) or weight_decay != 0:
        grad = grad + weight_decay * param
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
    return param.sub_(lr * (m / (1 - beta1**step)) / denom)
