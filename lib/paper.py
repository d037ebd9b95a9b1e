"""The published numbers of Schug, Benzing & Steger (eLife 2021) that the book compares with.

Every number the paper (or the authors' perceptron notebook) gives and the book reproduces lives
here, with where it comes from; chapters, the claims table of the introduction and the tests read
them from this module instead of typing them again. Accuracies are in %, except the perceptron's,
which the notebook prints as fractions.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """A published value: ``mean`` with its error ``sem`` (s.e.m.; None where none is given)."""

    mean: float
    sem: float | None
    source: str

    def text(self, digits: int = 2, sem_digits: int | None = None) -> str:
        """``"mean ± sem"`` (just the mean when no error is given) with ``digits`` decimals (``sem_digits``
        for the error, default the same), and a typographic minus sign."""
        sem = "" if self.sem is None else f" ± {self.sem:.{digits if sem_digits is None else sem_digits}f}"
        return f"{self.mean:.{digits}f}{sem}".replace("-", "−")


_TABLE = "Appendix 1-table 1"
# Average test accuracy (%) over all tasks after the last task, mean ± s.e.m. over 3 repetitions;
# the MNIST columns. "No consolidation" is the table's label (see the book's page on disagreements).
APPENDIX_TABLE_1: dict[str, dict[str, Published]] = {
    "split_mnist": {
        "presynaptic": Published(82.90, 0.01, _TABLE),
        "no consolidation": Published(77.68, 0.31, _TABLE),
        "bgd": Published(80.44, 0.45, _TABLE),
        "ewc": Published(70.41, 4.20, _TABLE),
        "joint": Published(98.55, 0.10, _TABLE),
    },
    "perm_mnist": {
        "presynaptic": Published(86.14, 0.67, _TABLE),
        "no consolidation": Published(79.60, 0.43, _TABLE),
        "bgd": Published(89.73, 0.52, _TABLE),
        "ewc": Published(89.58, 0.53, _TABLE),
        "joint": Published(97.33, 0.08, _TABLE),
    },
}
# The book's methods that stand for each row of the table (both of its models without consolidation
# are compared with the one row "No consolidation").
TABLE_ROW = {"presynaptic": "presynaptic", "no_consolidation": "no consolidation", "sgd": "no consolidation",
             "ewc": "ewc", "bgd": "bgd", "joint": "joint"}

# Fig. 5a, Results: accuracy of the ghost control minus the full model (points), with the t statistic.
GHOST_DROP = {
    "split_mnist": Published(-1.4, None, "Results (Fig. 5a): t = 3.44, p < 0.05"),
    "perm_mnist": Published(-5.6, None, "Results (Fig. 5a): t = 6.72, p < 0.01"),
}
GHOST_T = {"split_mnist": 3.44, "perm_mnist": 6.72}
GHOST_P_BELOW = {"split_mnist": 0.05, "perm_mnist": 0.01}


def ghost_text(benchmark: str) -> str:
    """The ghost control's published drop with its test, e.g. ``"−1.4 (t = 3.44, p < 0.05)"``."""
    return f"{GHOST_DROP[benchmark].text(1)} (t = {GHOST_T[benchmark]:.2f}, p < {GHOST_P_BELOW[benchmark]:g})"

# Appendix, continuous Permuted MNIST: mean accuracy over all tasks (error type and seeds not stated).
CONTINUOUS_PERM_MNIST = Published(85.39, 0.6, "Methods, continuous permuted MNIST (0.8539 ± 0.006)")

# Fig. 3 and Results: neuron-level sparsity of the energy-trained MNIST network.
KS_DISTANCE = Published(0.505, None, "Results (Fig. 3a): Kolmogorov-Smirnov D = 0.505, p < 0.01")
KS_P_BELOW = 0.01
IN_OUT_CORRELATION = Published(0.93, None, "Results (Fig. 3c); 0.9390 in the legend")

# Fig. 1b: the ranking of the best mutual information per unit of synaptic energy.
ENERGY_RANKING = ("presynaptic", "deterministic", "fixed")

# Fig. 4c and Results: on Split MNIST the presynaptic model beats every other continual learner.
SPLIT_MNIST_BEATEN = ("sgd", "ewc", "bgd")

# The perceptron of Figs. 5b-c: saved outputs of the authors' notebook run_lifelong-perceptron.ipynb
# (10 seeds; ± is the s.e.m.). Accuracies are fractions.
_NOTEBOOK = "authors' run_lifelong-perceptron.ipynb"
PERCEPTRON_TASK1 = {"standard": (1.000, 0.927, 0.889, 0.850, 0.824),
                    "presynaptic": (1.000, 0.989, 0.960, 0.924, 0.878)}
PERCEPTRON_FINAL = {"standard": Published(0.8862, 0.0046, _NOTEBOOK),
                    "presynaptic": Published(0.9174, 0.0046, _NOTEBOOK)}
PERCEPTRON_T = Published(-4.54, None, _NOTEBOOK + " (p = 0.00025)")
PERCEPTRON_P = 0.00025  # the p-value of that t-test
