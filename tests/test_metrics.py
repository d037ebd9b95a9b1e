"""Mutual information (Box 1), soft confusion, cross-entropy and the continual-learning measures on known cases."""
import math

import numpy as np
import pytest
import torch

from lib.metrics import (
    average_over_seen_tasks,
    backward_transfer,
    cross_entropy,
    forgetting,
    learning_accuracy,
    mutual_information,
    soft_confusion,
)


@pytest.mark.parametrize("k", [2, 10])
def test_perfect_classifier_gives_log2_k_bits(k):
    assert mutual_information(torch.eye(k) * 7).item() == pytest.approx(math.log2(k), abs=1e-5)


def test_independent_prediction_gives_zero_bits():
    p_y = torch.tensor([0.1, 0.3, 0.6])
    q_k = torch.tensor([0.5, 0.25, 0.25])
    assert mutual_information(torch.outer(p_y, q_k) * 1000).item() == pytest.approx(0.0, abs=1e-6)


def test_binary_symmetric_channel():
    eps = 0.1
    c = torch.tensor([[1 - eps, eps], [eps, 1 - eps]]) * 50
    h = -(eps * math.log2(eps) + (1 - eps) * math.log2(1 - eps))
    assert mutual_information(c).item() == pytest.approx(1 - h, abs=1e-5)


def test_batched_confusions_and_empty_rows_are_finite():
    c = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.0]])])
    mi = mutual_information(c)
    assert mi.shape == (2,)
    assert mi[0].item() == pytest.approx(math.log2(3), abs=1e-5)
    assert mi[1].item() == pytest.approx(1.0, abs=1e-5)


def test_soft_confusion_sums_softmax_rows_by_true_label():
    probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
    labels = torch.tensor([0, 1, 0])
    c = soft_confusion(probs, labels, 2)
    assert torch.allclose(c, torch.tensor([[[1.5, 0.5], [0.2, 0.8]]]))


def test_cross_entropy_value_and_gradient_match_autograd():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, requires_grad=True)
    labels = torch.randint(0, 4, (3, 5))
    loss, grad = cross_entropy(logits.detach(), labels)
    ref = torch.stack([torch.nn.functional.cross_entropy(logits[r], labels[r]) for r in range(3)])
    ref.sum().backward()
    assert torch.allclose(loss, ref.detach(), atol=1e-6)
    assert torch.allclose(grad, logits.grad, atol=1e-6)


# after task i (rows), accuracy on task j (columns): task 0 is forgotten, then partly recovered; task 1 gains
CONTINUAL = np.array([[90.0, 10.0, 12.0],
                      [60.0, 80.0, 15.0],
                      [70.0, 85.0, 95.0]])


def test_average_over_seen_tasks_ignores_the_tasks_not_learned_yet():
    assert average_over_seen_tasks(CONTINUAL) == pytest.approx([90.0, (60 + 80) / 2, (70 + 85 + 95) / 3])


def test_learning_accuracy_is_the_mean_of_the_diagonal():
    assert learning_accuracy(CONTINUAL) == pytest.approx((90 + 80 + 95) / 3)


def test_backward_transfer_is_the_mean_change_from_learned_to_final():
    assert backward_transfer(CONTINUAL) == pytest.approx(((70 - 90) + (85 - 80)) / 2)
    assert backward_transfer(np.eye(4)) == pytest.approx(-1.0)  # every earlier task fully forgotten


def test_forgetting_is_the_mean_drop_from_the_best_earlier_accuracy():
    assert forgetting(CONTINUAL) == pytest.approx(((90 - 70) + (80 - 85)) / 2)
    no_gains = np.array([[90.0, 0.0], [50.0, 80.0]])
    assert forgetting(no_gains) == pytest.approx(-backward_transfer(no_gains)) == pytest.approx(40.0)
    assert forgetting(CONTINUAL) >= -backward_transfer(CONTINUAL)


@pytest.mark.parametrize("bad", [np.ones((2, 3)), np.ones((1, 1)), np.ones(3)])
def test_forgetting_measures_need_a_square_matrix_of_two_tasks_or_more(bad):
    for measure in (learning_accuracy, backward_transfer, forgetting):
        with pytest.raises(ValueError, match="T x T"):
            measure(bad)
