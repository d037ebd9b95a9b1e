"""Chapter 5's tuning protocol: every method compared gets the same search budget.

The paper found the presynaptic model's metaplasticity parameters by a random search on Permuted
MNIST, one seed per trial, and used the values found unchanged on the other benchmarks (Methods).
The baselines get the same treatment here: a :class:`Search` draws :data:`TRIALS` settings of each
method of :data:`TUNED_METHODS` from its space (:mod:`lib.search`: the presynaptic model's
:math:`p_{up}, p_{down}, p_{freeze}, \\eta_0`; EWC's variant, :math:`\\lambda`, optimiser and learning
rate; BGD's :math:`\\sigma_0`, :math:`\\eta`, initial means and batch size), trains each on
:data:`TUNING_BENCHMARK` with run seed 0, and adds the method's own settings as one more candidate.
The best candidate's settings then transfer unchanged to every benchmark: the method's *tuned*
runs. A drawn trial replaces the method's own settings only when it beats them by more than
:data:`MIN_GAIN`: one seed per trial cannot resolve less. An *oracle* search of the same budget on a benchmark itself gives the best each method
reaches there at that budget, a choice the paper's protocol allows no method.

A search's trials are ordinary cached runs, so a search is resumable trial by trial, and the
tuned runs follow from the stored trials: nothing chosen by hand is written into the code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .continual import METHOD_LABELS, LifelongProtocol, RunSpec, check_method, method_config, run_specs, settings_text
from .search import Trial, default_space, trial_specs

TUNING_BENCHMARK = "perm_mnist"
TUNED_METHODS = ("presynaptic", "ewc", "bgd")  # chapter 5's comparison
# Every method with a tuning search: chapter 5's and Synaptic Intelligence, chapter 7's extra baseline.
SEARCHED_METHODS = TUNED_METHODS + ("si",)
TRIALS = 16
# Benchmarks with an oracle search of every tuned method: the cheap ones, and the tuning benchmark,
# whose oracle is the tuning search itself. (On the other permuted benchmarks an oracle search costs
# as much as the tuning search, BGD's about five worker-hours each.)
ORACLE_BENCHMARKS = ("split_mnist", "split_fmnist", "perm_mnist")
# The margin by which a drawn trial must beat the method's own settings to replace them: half a
# point of average accuracy, one to two standard deviations of a single seed's result at paper scale
# (three seeds of the tuned runs: 0.2-0.3 points on Permuted MNIST, twelve seeds of the presynaptic
# model on Split MNIST: 0.6). Within it, which candidate wins is decided by the seed, not the settings.
MIN_GAIN = 0.005


@dataclass(frozen=True)
class Search:
    """A random search of ``method``'s settings on ``protocol``'s benchmark: ``n_trials`` draws
    (generator seed ``seed``) and the method's own settings, each one run with seed 0."""

    protocol: LifelongProtocol
    method: str
    n_trials: int = TRIALS
    seed: int = 0

    def __post_init__(self) -> None:
        check_method(self.method)
        if self.method not in SEARCHED_METHODS:
            raise ValueError(f"no tuning of method {self.method!r}; tuned methods: {', '.join(SEARCHED_METHODS)}")
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ValueError(f"n_trials must be a positive integer, got {self.n_trials!r}")

    @property
    def specs(self) -> list[RunSpec]:
        """The candidates' runs: the drawn trials, then the method's own settings."""
        return trial_specs(self.n_trials, self.method, seed=self.seed)

    def averages(self) -> list[float]:
        """Each candidate's average accuracy after the last task (``nan`` where not stored), in the
        order of :attr:`specs`."""
        results = run_specs(self.protocol, self.specs, train=False)
        return [math.nan if r is None else r["average"] for r in results]

    def n_stored(self) -> int:
        """How many of the ``n_trials + 1`` candidates are stored."""
        return sum(not math.isnan(a) for a in self.averages())

    def best(self, averages: list[float] | None = None) -> Trial | None:
        """The settings of the best drawn trial (the first of equals) if it beats the method's own
        settings by more than :data:`MIN_GAIN`, else ``()`` (the own settings); None until every
        candidate is stored. ``averages``: those of :meth:`averages`, when the caller has them already."""
        averages = self.averages() if averages is None else averages
        if any(math.isnan(a) for a in averages):
            return None
        *drawn, own = averages
        best = max(range(len(drawn)), key=lambda k: (drawn[k], -k))
        return self.specs[best].overrides if drawn[best] > own + MIN_GAIN else ()


def tuning_search(method: str, protocol: LifelongProtocol, n_trials: int = TRIALS) -> Search:
    """The search whose best settings ``method`` uses on every benchmark: on :data:`TUNING_BENCHMARK`,
    with ``protocol``'s scale (epochs, subset, test passes)."""
    return Search(LifelongProtocol(TUNING_BENCHMARK, epochs=protocol.epochs, subset=protocol.subset,
                                   eval_samples=protocol.eval_samples), method, n_trials)


def oracle_search(method: str, protocol: LifelongProtocol, n_trials: int = TRIALS) -> Search | None:
    """The search of ``method`` on ``protocol``'s own benchmark (None where none is made)."""
    if protocol.benchmark not in ORACLE_BENCHMARKS:
        return None
    return Search(protocol, method, n_trials)



def tuned_results(method: str, protocol: LifelongProtocol, seeds: Sequence[int], n_trials: int = TRIALS, *,
                  train: bool = False) -> list[dict | None] | None:
    """The runs of ``method`` with the settings its tuning search chose (:func:`tuning_search` at
    ``protocol``'s scale) on ``protocol``'s benchmark, one per seed (``None`` where not stored); None
    while the search is incomplete. ``train=True`` trains the search's missing trials, then the runs."""
    search = tuning_search(method, protocol, n_trials)
    if train:
        run_specs(search.protocol, search.specs)
    chosen = search.best()
    if chosen is None:
        return None
    return run_specs(protocol, [RunSpec(method, s, chosen) for s in seeds], train=train)


def compared_tuned(method: str) -> bool:
    """Whether chapter 7 compares ``method`` with the settings its search chose (the baselines) rather
    than its own (the presynaptic model, whose own settings are the paper's)."""
    return method in SEARCHED_METHODS and method != "presynaptic"


def compared_specs(methods: Sequence[str], protocol: LifelongProtocol, seeds: Sequence[int],
                   n_trials: int = TRIALS) -> list[RunSpec] | None:
    """The runs of ``methods`` for ``seeds`` as chapter 7 compares them: a method with a tuning search
    (:data:`SEARCHED_METHODS`, the presynaptic model aside: it keeps the paper's settings) with the
    settings its search at ``protocol``'s scale chose, any other with its own; None while one of the
    searches is incomplete."""
    specs = []
    for method in methods:
        chosen = tuning_search(method, protocol, n_trials).best() if compared_tuned(method) else ()
        if chosen is None:
            return None
        specs += [RunSpec(method, s, chosen) for s in seeds]
    return specs


def spaces_markdown() -> str:
    """What each tuned method's search draws, and its own settings on the tuning benchmark, one bullet
    each (MyST Markdown)."""
    names = {"presynaptic": ("p_up", "p_down", "p_freeze", "lr"), "ewc": ("ewc_mode", "ewc_lambda", "optimizer", "lr"),
             "si": ("si_c", "si_xi", "lr"), "bgd": ("std_init", "mean_eta", "mean_init")}
    lines = []
    for method in TUNED_METHODS:
        own = method_config(method, TUNING_BENCHMARK, 0)
        extra = ", batch_size = 100" if method == "bgd" else ""
        lines.append(f"* **{METHOD_LABELS[method]}**: {default_space(method).describe()}. Its own settings: "
                     f"{settings_text(tuple((k, getattr(own, k)) for k in names[method]))}{extra}.")
    return "\n".join(lines)


@dataclass(frozen=True)
class ChapterSearches:
    """Chapter 5's searches: ``tuning[method]`` on the tuning benchmark, and ``oracles[benchmark][method]``
    on each benchmark of :data:`ORACLE_BENCHMARKS` shown (the tuning benchmark's is its tuning search)."""

    tuning: dict[str, Search]
    oracles: dict[str, dict[str, Search]]

    @property
    def tuned(self) -> dict[str, Trial]:
        """Each method's settings on every benchmark: the best of its tuning search, where that is complete."""
        return {m: best for m, search in self.tuning.items() if (best := search.best()) is not None}

    @property
    def oracle(self) -> dict[str, dict[str, Trial]]:
        """Per benchmark, each method's settings from the search on that benchmark, where complete."""
        return {b: {m: best for m, search in searches.items() if (best := search.best()) is not None}
                for b, searches in self.oracles.items()}

    def markdown(self) -> str:
        """A table of the tuning searches (MyST Markdown): per method, the candidates stored, the
        accuracy of the method's own settings, that of the best drawn trial, and the settings chosen."""
        rows = ["| method | runs stored | own settings (%) | best of the drawn trials (%) | chosen |", "|---|---|---|---|---|"]
        for method, search in self.tuning.items():
            averages = search.averages()
            own, drawn = averages[-1], [a for a in averages[:-1] if not math.isnan(a)]
            best = search.best(averages)
            chosen = ("not yet: the search is incomplete" if best is None else "its own settings" if best == ()
                      else settings_text(best))
            rows.append(f"| {METHOD_LABELS[method]} | {len(drawn) + (not math.isnan(own))} of {search.n_trials + 1} | "
                        f"{'—' if math.isnan(own) else f'{100 * own:.2f}'} | "
                        f"{f'{100 * max(drawn):.2f}' if drawn else '—'} | {chosen} |")
        return "\n".join(rows)


def chapter_searches(protocols: list[LifelongProtocol], n_trials: int = TRIALS, *, train: bool = False) -> ChapterSearches:
    """The searches of every tuned method for the chapter's ``protocols`` (their scale: epochs, subset,
    test passes); ``train=True`` trains the runs of those not complete first."""
    tuning = {m: tuning_search(m, protocols[0], n_trials) for m in TUNED_METHODS}
    oracles = {}
    for protocol in protocols:
        found = {m: oracle_search(m, protocol, n_trials) for m in TUNED_METHODS}
        if all(search is not None for search in found.values()):
            oracles[protocol.benchmark] = found
    if train:
        for search in [*tuning.values(), *(s for found in oracles.values() for s in found.values())]:
            run_specs(search.protocol, search.specs)
    return ChapterSearches(tuning, oracles)
