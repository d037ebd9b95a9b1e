"""Metrics of the paper: cross-entropy, accuracy, soft confusion and mutual information (Box 1)."""
from __future__ import annotations

import numpy as np
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


# ---------------------------------------------------------------------------------------- continual learning
def _accuracy_matrix(accuracy) -> np.ndarray:
    """``accuracy[i, j]``, the accuracy on task ``j`` after learning task ``i`` (T × T, T >= 2)."""
    a = np.asarray(accuracy, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"an accuracy matrix must be T x T with T >= 2 tasks (after each task, every task), "
                         f"got shape {a.shape}")
    return a


def learning_accuracy(accuracy) -> float:
    """Accuracy on each task right after it was learned, averaged over the tasks (Riemer et al. 2019):
    :math:`\\mathrm{LA} = \\frac1T \\sum_{i=1}^T a_{i,i}`, where :math:`a_{i,j}` is the accuracy on task
    :math:`j` after learning task :math:`i`. It measures plasticity."""
    return float(np.diag(_accuracy_matrix(accuracy)).mean())


def average_over_seen_tasks(accuracy) -> np.ndarray:
    """After each task :math:`i`, the average accuracy over the tasks learned so far,
    :math:`\\frac1i \\sum_{j=1}^{i} a_{i,j}` (one value per task; the last is the usual average accuracy)."""
    a = _accuracy_matrix(accuracy)
    return np.array([a[i, :i + 1].mean() for i in range(len(a))])


def backward_transfer(accuracy) -> float:
    """Backward transfer (BWT, Lopez-Paz & Ranzato 2017): how learning the later tasks changed the
    accuracy on each earlier one, :math:`\\mathrm{BWT} = \\frac{1}{T-1} \\sum_{i=1}^{T-1} (a_{T,i} - a_{i,i})`.

    Negative values are forgetting; :math:`-\\mathrm{BWT}` is the drop from learned to final accuracy.
    """
    a = _accuracy_matrix(accuracy)
    return float((a[-1, :-1] - np.diag(a)[:-1]).mean())


def forgetting(accuracy) -> float:
    """Average forgetting after the last task (Chaudhry et al. 2018): for each earlier task, the drop
    from its best accuracy at any earlier time to its final accuracy,

    .. math:: F = \\frac{1}{T-1} \\sum_{j=1}^{T-1} \\Big(\\max_{l \\in \\{1, \\dots, T-1\\}} a_{l,j} - a_{T,j}\\Big).

    Where no task gains from later ones, :math:`F = -\\mathrm{BWT}`; otherwise :math:`F \\ge -\\mathrm{BWT}`.
    """
    a = _accuracy_matrix(accuracy)
    return float((a[:-1, :-1].max(0) - a[-1, :-1]).mean())
