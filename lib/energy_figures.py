"""The panels of Fig. 1 (information against energy, best information per energy), shared by the
chapters that show energy experiments (chapter 2 on MNIST, chapter 7 on Fashion-MNIST), and the lesion
curves of the experiment's networks (chapter 4's importance measures, chapter 7's importance signals)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .book import log_ticks, mean_sem

MODEL_LABELS = {"presynaptic": "presynaptic", "fixed": "fixed $p$", "deterministic": "deterministic"}
MODEL_COLORS = {"presynaptic": "C3", "fixed": "C0", "deterministic": "C7"}


def information_energy(ax, arrays: Mapping[str, Mapping[str, np.ndarray]], weight_decays: Sequence[float],
                       energy_key: str = "energy", xlabel: str = r"synaptic energy $\sum_i |\bar w_i|$ (a.u.)",
                       legend: bool = True) -> None:
    """Fig. 1a: per model, the mutual information against the energy at every lambda (mean ± s.e.m.
    over seeds), the presynaptic points labelled with their lambda. ``arrays``: per model, the arrays
    ``(lambdas, seeds)`` of :func:`lib.energy.sweep_arrays`."""
    for model, label in MODEL_LABELS.items():
        if model not in arrays:
            continue
        (e, e_sem), (i, i_sem) = (mean_sem(arrays[model][k], axis=-1) for k in (energy_key, "mutual_information"))
        ax.errorbar(e, i, xerr=e_sem, yerr=i_sem, fmt="o-", ms=4, color=MODEL_COLORS[model], label=label)
        if model == "presynaptic":
            for wd, x, y in zip(weight_decays, e, i):
                ax.annotate(f"$\\lambda$={wd:g}", (x, y), textcoords="offset points", xytext=(4, -11), fontsize=9, color="gray")
    ax.set(xscale="log", xlabel=xlabel, ylabel=r"mutual information $I(Y;\hat Y)$ (bits)")
    log_ticks(ax)
    if legend:
        ax.legend(frameon=False)


def ratio_bars(ax, ratios: Mapping[str, np.ndarray], ylabel: str) -> None:
    """Fig. 1b: per model, a bar of the mean over seeds (error bar: s.e.m.) and a dot per seed."""
    for k, (model, values) in enumerate(ratios.items()):
        mean, sem = mean_sem(values, axis=-1)
        ax.bar(k, mean, yerr=sem, color=MODEL_COLORS[model], capsize=4)
        ax.plot(np.full(len(values), k), values, "k.", ms=4)
    ax.set_xticks(range(len(ratios)), [MODEL_LABELS[m] for m in ratios], rotation=20, ha="right", rotation_mode="anchor")
    ax.set(ylabel=ylabel)


def lesion_curves(ax, fractions: Sequence[float], curves: Mapping[str, np.ndarray],
                  styles: Mapping[str, tuple[str, str]]) -> None:
    """Test accuracy against the fraction of synapses removed, least important first: per lesion order
    of ``styles`` (its colour and label), the mean ± s.e.m. over seeds of ``curves[order]``
    ``(seeds, fractions)``; ``fractions`` and the curves in %."""
    for order, (color, label) in styles.items():
        mean, sem = mean_sem(curves[order])
        ax.plot(fractions, mean, "o-", ms=3, color=color, label=label)
        ax.fill_between(fractions, mean - sem, mean + sem, color=color, alpha=0.2)
    ax.set(xlabel="synapses removed, least important first (%)", ylabel="test accuracy (%)")
