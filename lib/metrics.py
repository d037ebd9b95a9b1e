"""Metrics of the paper: cross-entropy, accuracy, soft confusion and mutual information (Box 1)."""
from __future__ import annotations

import torch
from torch import Tensor


def cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    r"""Mean cross-entropy per run and its gradient w.r.t. the logits.

    ``logits`` ``(R, B, C)``, ``labels`` ``(R, B)`` or ``(B,)``. Returns the loss ``(R,)`` and
    :math:`\partial L / \partial z = (\mathrm{softmax}(z) - \mathrm{onehot}(y)) / B`.
    """
    labels = labels.expand(logits.shape[:2]).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1)
    loss = -logp.gather(-1, labels).squeeze(-1).mean(1)
    grad = logp.exp_()
    grad.scatter_add_(-1, labels, torch.full_like(labels, -1, dtype=grad.dtype))
    return loss, grad.div_(logits.shape[1])


def soft_confusion(probs: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    r"""Soft confusion matrix :math:`C[y, k] = \sum_{n: y_n = y} \mathrm{softmax}_k(f(x_n))`.

    As in the authors' ``lib/metric.py``.

    ``probs`` ``(..., N, K)`` are softmax outputs, ``labels`` ``(N,)``; returns ``(..., n_classes, K)``.
    """
    confusion = probs.new_zeros(*probs.shape[:-2], n_classes, probs.shape[-1])
    return confusion.index_add_(-2, labels, probs)


def mutual_information(confusion: Tensor) -> Tensor:
    r"""Mutual information :math:`I(Y;\hat Y)` in bits of a (soft) confusion matrix ``(..., K, K)``.

    With :math:`P(y,k) = C[y,k] / N`, :math:`P(y) = \sum_k P(y,k)` and :math:`P(k) = \sum_y P(y,k)`,

    .. math:: I(Y;\hat Y) = \sum_{y,k} P(y,k)\,\log_2 \frac{P(y,k)}{P(y)\,P(k)}
              = H(Y) - H(Y \mid \hat Y)

    which equals the authors' :math:`\sum P(y,k) \log_2 (P(k|y)/P(k))`. Terms with :math:`P(y,k)=0`
    contribute 0 (the limit :math:`x\log x \to 0`); the authors' code returns NaN there.
    A perfect classifier of K balanced classes gives :math:`\log_2 K` bits, an independent one 0.
    """
    joint = confusion / confusion.sum((-2, -1), keepdim=True)
    p_y = joint.sum(-1, keepdim=True)
    p_k = joint.sum(-2, keepdim=True)
    ratio = joint / (p_y * p_k)
    terms = torch.where(joint > 0, joint * torch.log2(torch.where(joint > 0, ratio, 1.0)), 0.0)
    return terms.sum((-2, -1))
