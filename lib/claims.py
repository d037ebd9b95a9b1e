"""The paper's claims that the book tests, with the paper's value and ours, from the stored runs.

:func:`claims` reads the runs of every chapter (at the chapters' default settings) from the results
folder without training anything, and compares each with :mod:`lib.paper`. A number *agrees within
the errors* when ours and the paper's differ by at most twice their combined standard error
(:func:`within_errors`); a claim without a number (an ordering) *holds* or *does not hold*. A claim
whose runs are not stored is reported as such. :func:`markdown_table` writes the introduction's table.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lib import continual as cl
from lib import analysis, cache, energy, energy_analysis, paper, tuning
from lib import perceptron as pc
from lib.book import mean_sem, mean_sem_text, number, signed
from lib.energy_analysis import ANALYSED_WEIGHT_DECAY

# Where a row of Appendix 1-table 1 that differs is explained (the others: chapter 5).
EXPLAINED = {"sgd": "disagree-no-consolidation", "no_consolidation": "disagree-no-consolidation", "bgd": "disagree-bgd"}
# The chapters' default settings (the stored, paper-scale runs).
ENERGY_WEIGHT_DECAYS = energy.PAPER_WEIGHT_DECAYS
SEEDS = (0, 1, 2)
NAMES = cl.BENCHMARK_NAMES
TABLE_METHODS = ("presynaptic", "sgd", "no_consolidation", "ewc", "bgd", "joint")  # the rows, in this order
METHODS = {m: cl.METHOD_LABELS[m] for m in TABLE_METHODS}
TUNED_BASELINES = ("ewc", "bgd")  # with rows of their tuned runs too


@dataclass(frozen=True)
class Claim:
    """One row of the table: what is claimed, the paper's value, ours, their difference and the verdict."""

    claim: str
    paper: str
    ours: str
    difference: str
    verdict: str          # "agrees within the errors", "differs", "holds", "does not hold" or "not stored"
    where: str            # what explains it: a chapter (document name) or a label on the disagreements page


def within_errors(ours: Sequence[float], published: paper.Published) -> bool:
    """``|mean(ours) − published|`` ≤ 2 × the combined s.e.m. of both (the paper's counts 0 when not given)."""
    mean, sem = mean_sem(ours)
    combined = np.hypot(float(sem), published.sem or 0.0)
    return bool(abs(float(mean) - published.mean) <= 2 * combined)


def _numeric(claim: str, ours: Sequence[float] | None, published: paper.Published, digits: int, where: str) -> Claim:
    if ours is None or len(ours) == 0:
        return Claim(claim, published.text(digits), "not stored", "—", "not stored", where)
    verdict = "agrees within the errors" if within_errors(ours, published) else "differs"
    return Claim(claim, published.text(digits), mean_sem_text(ours, digits),
                 signed(float(np.mean(ours)) - published.mean, digits), verdict, where)


def energy_claims(benchmark: str = "mnist") -> list[Claim]:
    """Fig. 1b: the ranking of the best information per unit of synaptic energy; on ``"fmnist"``, the same
    experiment beyond the paper (chapter 7), which has no published value."""
    protocol = energy.EnergyProtocol(benchmark=benchmark)
    runs = energy.model_sweeps(ENERGY_WEIGHT_DECAYS, SEEDS, protocol, train=False)
    if benchmark == "mnist":
        claim, published, where = ("Fig. 1b: best information per energy, presynaptic > deterministic > fixed $p$",
                                   " > ".join(paper.ENERGY_RANKING), "02_energy")
    else:
        claim, published, where = (f"Beyond the paper: Fig. 1b's ranking on {energy.DATASET_NAMES[benchmark]}",
                                   "— (MNIST only)", "07_beyond")
    if any(r is None for rs in runs.values() for r in rs):
        return [Claim(claim, published if benchmark != "mnist" else "ranking", "not stored", "—", "not stored", where)]
    best = {m: 1000 * energy.best_information_per_energy(energy.sweep_arrays(rs, len(ENERGY_WEIGHT_DECAYS)))
            for m, rs in runs.items()}  # mbit per unit of energy, per seed
    order = energy.efficiency_ranking(best)
    ours = ", ".join(f"{m} {mean_sem_text(best[m], 3)}" for m in order) + " mbit"
    verdict = "holds" if tuple(order) == paper.ENERGY_RANKING else "does not hold"
    return [Claim(claim, published, ours, "—", verdict, where)]


def analysis_claims() -> list[Claim]:
    """Figs. 2b and 3: lesions by release probability, and the sparsity of important inputs per neuron."""
    protocol = energy.EnergyProtocol()
    analyses = [energy_analysis.analyse_energy_run(energy.energy_config("presynaptic", ANALYSED_WEIGHT_DECAY, s), protocol,
                                               train=False) for s in SEEDS]
    lesion = "Fig. 2b: removing the half of the synapses with the lowest $p$ costs less accuracy than a random half"
    ks = "Fig. 3a: important inputs per neuron vs. shuffled, Kolmogorov-Smirnov $D$ (second hidden layer)"
    corr = "Fig. 3c: important inputs vs. outputs per neuron, Pearson $r$ (first hidden layer)"
    if any(a is None for a in analyses):
        return [Claim(c, "—", "not stored", "—", "not stored", "03_sparsity") for c in (lesion, ks, corr)]
    half = analysis.LESION_FRACTIONS.index(0.5)
    by_p = [100 * a["lesion"]["p"][half] for a in analyses]
    random = [100 * a["lesion"]["random"][half] for a in analyses]
    verdict = "holds" if np.mean(by_p) > np.mean(random) else "does not hold"
    rows = [Claim(lesion, "lowest $p$ first > random", f"{mean_sem_text(by_p, 1)} % > {mean_sem_text(random, 1)} % accuracy",
                  signed(float(np.mean(by_p) - np.mean(random)), 1) + " points", verdict, "03_sparsity")]
    ks_claim = _numeric(ks, [a["neurons"][1]["ks_statistic"] for a in analyses], paper.KS_DISTANCE, 3, "03_sparsity")
    largest_p = max(a["neurons"][1]["ks_pvalue"] for a in analyses)
    rows.append(Claim(ks_claim.claim, ks_claim.paper + f" ($p$ < {paper.KS_P_BELOW:g})",
                      ks_claim.ours + f" ($p$ ≤ {largest_p:.1g})", ks_claim.difference, ks_claim.verdict, ks_claim.where))
    rows.append(_numeric(corr, [a["neurons"][0]["correlation"] for a in analyses], paper.IN_OUT_CORRELATION, 3,
                         "03_sparsity"))
    return rows


def _averages(benchmark: str, what: str, overrides: cl.Overrides = ()) -> list[float] | None:
    """Average accuracy (%) after the last task of each seed's stored run (with ``overrides`` of the
    method's settings), or None if any is missing."""
    protocol = cl.LifelongProtocol(benchmark)
    specs = [cl.RunSpec(what, s, overrides) for s in SEEDS]
    found = cl.run_specs(protocol, specs, train=False)
    return None if any(r is None for r in found) else [100 * r["average"] for r in found]


def continual_claims() -> list[Claim]:
    """Appendix 1-table 1 (MNIST), the Split MNIST ranking of Fig. 4c, the ghost control and continuous pMNIST."""
    rows = []
    for benchmark, published in paper.APPENDIX_TABLE_1.items():
        for method, label in METHODS.items():
            rows.append(_numeric(f"Appendix 1-table 1, {NAMES[benchmark]}: {label} (%)", _averages(benchmark, method),
                                 published[paper.TABLE_ROW[method]], 2, EXPLAINED.get(method, "05_continual")))
        for method in TUNED_BASELINES:  # the paper's tuning protocol, given to the baselines too (chapter 5)
            chosen = tuning.tuning_search(method, cl.LifelongProtocol(benchmark)).best()
            rows.append(_numeric(f"Appendix 1-table 1, {NAMES[benchmark]}: {METHODS[method]} tuned on "
                                 f"{NAMES[tuning.TUNING_BENCHMARK]} (%)",
                                 None if chosen is None else _averages(benchmark, method, chosen),
                                 published[paper.TABLE_ROW[method]], 2, "05_continual"))
    ranking = "Fig. 4c: on Split MNIST the presynaptic model beats standard, EWC and BGD"
    ours = {m: _averages("split_mnist", m) for m in ("presynaptic", *paper.SPLIT_MNIST_BEATEN)}
    if any(v is None for v in ours.values()):
        rows.append(Claim(ranking, "presynaptic best", "not stored", "—", "not stored", "05_continual"))
    else:
        best = max(ours, key=lambda m: np.mean(ours[m]))
        rows.append(Claim(ranking, "presynaptic best", f"{METHODS[best]} best", "—",
                          "holds" if best == "presynaptic" else "does not hold", "05_continual"))
    for benchmark, published in paper.GHOST_DROP.items():
        ghost, full = _averages(benchmark, "ghost"), _averages(benchmark, "full")
        claim = f"Fig. 5a, {NAMES[benchmark]}: ghost control − full model (points)"
        if ghost is None or full is None:
            rows.append(Claim(claim, published.text(1), "not stored", "—", "not stored", "05_continual"))
            continue
        drop = float(np.mean(ghost) - np.mean(full))
        sem = float(np.hypot(mean_sem(ghost)[1], mean_sem(full)[1]))
        t = stats.ttest_ind(full, ghost).statistic
        agrees = abs(drop - published.mean) <= 2 * sem
        rows.append(Claim(claim, f"{published.text(1)} ($t$ = {paper.GHOST_T[benchmark]:.2f})",
                          f"{drop:.1f} ± {sem:.1f} ($t$ = {t:.2f})".replace("-", "−"), signed(drop - published.mean, 1),
                          "agrees within the errors" if agrees else "differs", "disagree-ghost"))
    rows.append(_numeric("Appendix: continuous Permuted MNIST, presynaptic (%)", _averages("perm_mnist_cont", "presynaptic"),
                         paper.CONTINUOUS_PERM_MNIST, 2, "05_continual"))
    return rows


def perceptron_claims() -> list[Claim]:
    """Figs. 5b-c against the saved outputs of the authors' perceptron notebook."""
    config = pc.PerceptronConfig()
    result = cache.load_cached(pc.EXPERIMENT, pc.run_description(config, pc.PAPER_SEEDS))
    names = ("Fig. 5c: average final accuracy, standard perceptron", "Fig. 5c: average final accuracy, presynaptic perceptron",
             "Fig. 5c: the presynaptic perceptron is better, t-test ($t$, standard vs. presynaptic)", "Fig. 5b: task-1 accuracy after the last task, standard",
             "Fig. 5b: task-1 accuracy after the last task, presynaptic")
    if result is None:
        return [Claim(n, "—", "not stored", "—", "not stored", "06_perceptron") for n in names]
    final = {m: pc.final_average(result, m) for m in pc.MODELS}
    rows = [_numeric(names[0], final["standard"], paper.PERCEPTRON_FINAL["standard"], 4, "06_perceptron"),
            _numeric(names[1], final["presynaptic"], paper.PERCEPTRON_FINAL["presynaptic"], 4, "06_perceptron")]
    test = stats.ttest_ind(final["standard"], final["presynaptic"])  # equal variances, as the authors
    t = float(test.statistic)
    same_sign = np.sign(t) == np.sign(paper.PERCEPTRON_T.mean)
    rows.append(Claim(names[2], paper.PERCEPTRON_T.text(2), number(t, 2),
                      signed(t - paper.PERCEPTRON_T.mean, 2),
                      "holds" if same_sign and test.pvalue < 0.05 else "does not hold", "06_perceptron"))
    for name, model in zip(names[3:], ("standard", "presynaptic")):
        task1 = np.asarray(result[model])[:, -1, 0]  # each seed's accuracy on task 1 after the last pass
        published = paper.Published(paper.PERCEPTRON_TASK1[model][-1], None, "authors' notebook")
        rows.append(_numeric(name, task1, published, 3, "06_perceptron"))
    return rows


def claims() -> list[Claim]:
    """Every claim of the paper that the book tests, from the stored runs (nothing is trained), and last
    the one claim that chapter 7 tests beyond the paper."""
    return energy_claims() + analysis_claims() + continual_claims() + perceptron_claims() + energy_claims("fmnist")


def markdown_table(rows: Sequence[Claim]) -> str:
    """The claims as a MyST Markdown table, each verdict linked to the page or section that explains it."""
    lines = ["| claim | paper | this book (mean ± s.e.m.) | difference | verdict |", "|---|---|---|---|---|"]
    for c in rows:
        mark = {"agrees within the errors": "✓", "holds": "✓", "differs": "✗", "does not hold": "✗"}.get(c.verdict, "·")
        short = "agrees" if c.verdict == "agrees within the errors" else c.verdict
        role = "ref" if c.where.startswith("disagree") else "doc"
        lines.append(f"| {c.claim} | {c.paper} | {c.ours} | {c.difference} | {mark}&nbsp;{{{role}}}`{short} <{c.where}>` |")
    return "\n".join(lines)
