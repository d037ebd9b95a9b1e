"""Two results folders compared run by run (``python -m lib compare``): how many runs are equal bit for bit.

``make reproduce`` trains every run of the book again into a second folder; :func:`compare_results`
pairs each of its runs with the stored run of the same key (the same configuration, :mod:`lib.cache`)
and counts, per experiment, the runs whose results and stored networks are identical. Of the runs
that differ it keeps the one number that differs most: where it is (a result's entry or an element of
a stored network's array), its value in both folders, and so its unit (:data:`QUANTITIES`) and its
relative difference; and, since what a chapter reports of a run is its accuracy at the end of
training, the final test accuracy that differs most too (:func:`is_final_accuracy`).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .cache import TIMINGS
from .data import write_atomic

STATE = "state"  # the first part of the place of a number in a stored network state: "state/w1/3/17"


@dataclass(frozen=True)
class Quantity:
    """What a stored number is: a description, its unit, and whether a relative difference means something
    (``ratio_scale``: a non-negative amount with a true zero, as an energy, a count or an accuracy; not a
    correlation, a p-value, a seed or a signed weight)."""

    label: str
    unit: str
    ratio_scale: bool
    test_accuracy: bool = False  # an accuracy on a test set: what a chapter reports of a run


# Every number a run stores, by its place with the indices left out (a regular expression, matched in
# full): the results of lib.energy (chapter 2), lib.energy_analysis (chapters 3-4), lib.continual
# (chapter 5), lib.perceptron (chapter 6) and lib.importance (chapter 7), and the arrays of a stored
# network state (lib.energy).
# Labels and units go into Markdown tables: no "|" in them.
QUANTITIES: tuple[tuple[str, Quantity], ...] = (
    ("accuracy", Quantity("test accuracy", "fraction", True, test_accuracy=True)),
    ("average", Quantity("average test accuracy after the last task", "fraction", True, test_accuracy=True)),
    ("mutual_information", Quantity("mutual information", "bits", True)),
    ("energy", Quantity("synaptic energy (sum of the absolute expected weights)", "a.u.", True)),
    ("activity", Quantity("activity energy (summed hidden activity per example)", "a.u.", True)),
    ("mean_p", Quantity("mean release probability", "probability", True)),
    ("frozen", Quantity("fraction of frozen synapses", "fraction", True)),
    ("fraction_important", Quantity("fraction of synapses with p ≥ 0.9", "fraction", True)),
    ("train_loss", Quantity("training loss (cross-entropy) of an epoch", "nats", True)),
    ("p_histogram", Quantity("share of the synapses in a bin of p", "fraction", True)),
    ("important_per_layer", Quantity("fraction of a layer's synapses with p ≥ 0.9", "fraction", True)),
    ("log_w_histogram/(important|other)", Quantity("share of the synapses in a bin of log₁₀ of the absolute expected weight", "fraction", True)),
    ("energy_share_important", Quantity("share of the synaptic energy in synapses with p ≥ 0.9", "fraction", True)),
    ("mean_w/(important|other)", Quantity("mean absolute expected weight", "a.u.", True)),
    ("lesion/[a-z_]+", Quantity("test accuracy after a lesion", "fraction", True, test_accuracy=True)),
    ("neurons/inputs", Quantity("important incoming synapses of a neuron", "synapses", True)),
    ("neurons/outputs", Quantity("important outgoing synapses of a neuron", "synapses", True)),
    ("neurons/shuffled_histogram", Quantity("neurons with a number of important inputs, shuffled", "neurons", True)),
    ("neurons/n_(high|low)", Quantity("neurons with unusually many or few important inputs", "neurons", True)),
    ("neurons/ks_statistic", Quantity("Kolmogorov-Smirnov statistic", "fraction", False)),
    ("neurons/ks_pvalue", Quantity("Kolmogorov-Smirnov p-value", "probability", False)),
    ("neurons/correlation", Quantity("correlation of a neuron's important inputs and outputs", "Pearson r", False)),
    ("fisher/[a-z]+/log_histogram/(important|other)",
     Quantity("share of the synapses in a bin of log₁₀ F", "fraction", True)),
    ("fisher/[a-z]+/spearman", Quantity("rank correlation of p and the Fisher information", "Spearman ρ", False)),
    ("fisher/[a-z]+/pearson", Quantity("correlation of p and the Fisher information", "Pearson r", False)),
    ("fisher/[a-z]+/median_ratio",
     Quantity("median Fisher information, synapses with p ≥ 0.9 over the others", "ratio", True)),
    ("spearman/[a-z_]+/[a-z_]+", Quantity("rank correlation of two importance signals", "Spearman ρ", False)),
    ("top_overlap/[a-z_]+/[a-z_]+",
     Quantity("share of one importance signal's top 10 % of the synapses among another's", "fraction", True)),
    ("(standard|presynaptic)", Quantity("test accuracy of a perceptron", "fraction", True, test_accuracy=True)),
    ("seeds", Quantity("seed", "integer label", False)),
    (rf"{STATE}/w\d+", Quantity("expected weight w̄ of the stored network", "a.u.", False)),
    (rf"{STATE}/b\d+", Quantity("bias of the stored network", "a.u.", False)),
    (rf"{STATE}/p\d+", Quantity("release probability of the stored network", "probability", True)),
)
UNLISTED = Quantity("a number not listed in lib.compare.QUANTITIES", "unit not known", False)


def quantity(place: str) -> Quantity:
    """What the number at ``place`` is (``"train_loss/79"``, ``"neurons/0/inputs/150"``, ``"state/w1/3/17"``)."""
    name = re.sub(r"(^|/)\d+(?=/|$)", "", place.strip("/")).strip("/")
    return next((q for pattern, q in QUANTITIES if re.fullmatch(pattern, name)), UNLISTED)


def is_final_accuracy(place: str) -> bool:
    """Whether the number at ``place`` is a run's final test accuracy: a test accuracy stored as a single
    number (``"average"`` of a lifelong run, ``"accuracy"`` of an energy run), not an entry of a curve or a
    matrix of accuracies (``"accuracy/2/0"``: task 0 after task 2; ``"lesion/p/4"``)."""
    return quantity(place).test_accuracy and not re.search(r"(^|/)\d+(/|$)", place)


@dataclass(frozen=True)
class Difference:
    """The number of one run that differs most between two folders: ``size`` is the absolute difference
    (infinite where the structure, a non-numeric entry or a NaN differs; then the values are None)."""

    size: float
    place: str
    reference: float | None = None
    other: float | None = None


def _largest(differences: Sequence[Difference | None]) -> Difference | None:
    found = [d for d in differences if d is not None]
    return max(found, key=lambda d: d.size) if found else None


@dataclass(frozen=True)
class Agreement:
    """How the runs of one experiment stored in a second results folder compare with a reference folder.

    A run is *identical* when every number of its result (all but the training ``seconds``) and every
    array of its stored network state are equal bit for bit. ``largest_difference`` is the largest
    absolute difference of one number among the runs that differ (0 when none does); ``place`` says
    which number it is (``"energy"``, ``"train_loss/79"``, ``"state/w1/3/17"``: see :func:`quantity`),
    and ``reference_value`` and ``other_value`` are that number in the two folders (None where no
    number is compared, and in tables saved before they were recorded). The ``accuracy_…`` fields say
    the same of the final test accuracy that differs most (:func:`is_final_accuracy`; None when none
    differs). ``copies`` counts the runs stored as the same file in both folders, byte for byte, with a
    training time: one run copied into the other folder, not trained twice (two trainings do not take
    the same ``seconds`` to the last bit; a result without a training time, an analysis computed again,
    may be the same file); they are not among the ``compared`` runs.
    """

    experiment: str
    compared: int
    identical: int
    largest_difference: float
    missing: int  # runs of the reference folder that the other one lacks
    place: str | None = None
    reference_value: float | None = None
    other_value: float | None = None
    accuracy_difference: float | None = None
    accuracy_place: str | None = None
    accuracy_reference: float | None = None
    accuracy_other: float | None = None
    copies: int = 0

    @property
    def quantity(self) -> Quantity | None:
        """What the number that differs most is, or None when no run differs (or it was not recorded)."""
        return quantity(self.place) if self.place is not None else None

    @property
    def relative_difference(self) -> float | None:
        """``(other - reference) / |reference|`` of the number that differs most, where its quantity has a
        true zero (:attr:`Quantity.ratio_scale`) and the reference is not 0; else None."""
        return _relative(self.quantity, self.reference_value, self.other_value)


def _relative(q: Quantity | None, a: float | None, b: float | None) -> float | None:
    if q is None or not q.ratio_scale or a is None or b is None or a == 0:
        return None
    return (b - a) / abs(a)


def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of a stored result as (path, value) pairs, its training times left out."""
    if isinstance(value, dict):
        for key in sorted(value):
            if key != "seconds":
                yield from _numbers(value[key], f"{path}/{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield from _numbers(item, f"{path}/{k}")
    else:
        yield path, value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(x: Any, y: Any) -> bool:
    """Equal, NaN counting as equal to NaN (as its stored bits are)."""
    return x == y or (_is_number(x) and _is_number(y) and math.isnan(x) and math.isnan(y))


def _result_differences(a: dict, b: dict) -> list[Difference]:
    """Every number in which the results ``a`` and ``b`` differ (none when they are equal bit for bit), or
    the first place where their structures part."""
    left, right = list(_numbers(a)), list(_numbers(b))
    places, twins = [p for p, _ in left], [p for p, _ in right]
    if places != twins:  # the first place where the structures part
        place = next((p for p, q in zip(places, twins) if p != q), max(places, twins, key=len)[min(len(places), len(twins))])
        return [Difference(float("inf"), place.strip("/"))]

    def difference(p: str, x: Any, y: Any) -> Difference:
        if not (_is_number(x) and _is_number(y)) or math.isnan(x) or math.isnan(y):
            return Difference(float("inf"), p.strip("/"))
        return Difference(abs(x - y), p.strip("/"), x, y)

    return [difference(p, x, y) for (p, x), (_, y) in zip(left, right) if not _same(x, y)]


def _state_difference(a: Path, b: Path) -> Difference | None:
    """The number that differs most between two stored network states (``.npz``), None when they are
    equal bit for bit (as :func:`_result_differences`)."""
    with np.load(a) as x, np.load(b) as y:  # each array read once (an NpzFile reads on every access)
        left, right = dict(x.items()), dict(y.items())
    if sorted(left) != sorted(right):
        return Difference(float("inf"), STATE)
    differences = []
    for k in sorted(left):
        if left[k].shape != right[k].shape:
            differences.append(Difference(float("inf"), f"{STATE}/{k}"))
            continue
        if np.array_equal(left[k], right[k], equal_nan=left[k].dtype.kind in "fc"):
            continue
        u, v = left[k].astype(np.float64), right[k].astype(np.float64)
        size = np.where(np.isnan(u) & np.isnan(v), 0.0, np.abs(u - v))
        size = np.where(np.isnan(u) ^ np.isnan(v), np.inf, size)
        at = np.unravel_index(int(np.argmax(size)), size.shape)
        place = "/".join([STATE, k, *map(str, at)])
        if np.isinf(size[at]):
            differences.append(Difference(float("inf"), place))
        else:
            differences.append(Difference(float(size[at]), place, float(u[at]), float(v[at])))
    return _largest(differences)


def compare_results(reference: Path, other: Path) -> list[Agreement]:
    """Compare every run stored in ``other`` with the run of the same key in ``reference``, per experiment.

    The key hashes a run's full configuration and library version, so equal names mean equal
    configurations. Timing records (``benchmarks/``) are not runs and are skipped.
    """
    reference, other = Path(reference), Path(other)
    for folder in (reference, other):
        if not folder.is_dir():
            raise FileNotFoundError(f"no results folder at {folder}")
    agreements = []
    for folder in sorted(p for p in reference.iterdir() if p.is_dir() and p.name != TIMINGS):
        compared = identical = missing = copies = 0
        largest: Difference | None = None
        accuracy: Difference | None = None
        for path in sorted(folder.glob("*.json")):
            twin = other / folder.name / path.name
            if not twin.is_file():
                missing += 1
                continue
            text, twin_text = path.read_bytes(), twin.read_bytes()
            result, twin_result = json.loads(text)["result"], json.loads(twin_text)["result"]
            if text == twin_text and "seconds" in result:
                copies += 1
                continue
            differences = _result_differences(result, twin_result)
            accuracy = _largest([accuracy] + [d for d in differences if is_final_accuracy(d.place)])
            state, state_twin = path.with_suffix(".npz"), twin.with_suffix(".npz")
            if state.is_file() and state_twin.is_file():
                differences.append(_state_difference(state, state_twin))
            run = _largest(differences)
            compared += 1
            identical += run is None
            largest = _largest([largest, run])
        found = {} if accuracy is None else dict(accuracy_difference=accuracy.size, accuracy_place=accuracy.place,
                                                 accuracy_reference=accuracy.reference, accuracy_other=accuracy.other)
        if largest is None:
            agreements.append(Agreement(folder.name, compared, identical, 0.0, missing, copies=copies))
        else:
            agreements.append(Agreement(folder.name, compared, identical, largest.size, missing, largest.place,
                                        largest.reference, largest.other, **found, copies=copies))
    return agreements


def save_agreement(path: Path, agreements: Sequence[Agreement]) -> None:
    """Write :func:`compare_results`'s table to ``path`` (JSON), e.g. before the compared runs replace the reference."""
    write_atomic(Path(path), json.dumps([asdict(a) for a in agreements], indent=1).encode())


def load_agreement(path: Path) -> list[Agreement]:
    """The table written by :func:`save_agreement` (the place of the largest difference and its values are
    None in a table saved before they were recorded)."""
    return [Agreement(**a) for a in json.loads(Path(path).read_text())]


def _value(x: float) -> str:
    return f"{x:.4g}".replace("-", "−")


def _difference_row(experiment: str, what: str, place: str | None, size: float, a: float | None, b: float | None) -> str:
    q = quantity(place) if place is not None else None
    what = f"{what}{q.label}, `{place}` ({q.unit})" if q is not None else "not recorded"
    if a is None or b is None:
        values = "—"
        difference = "structure or a non-numeric entry differs" if math.isinf(size) else _value(size) + " (absolute)"
    else:
        values = f"{_value(a)} → {_value(b)}"
        difference = f"{b - a:+.3g}".replace("-", "−")
        if (relative := _relative(q, a, b)) is not None:
            difference += f" ({100 * relative:+.2g}\u00a0%)".replace("-", "−")  # no line break before the %
    return f"| {experiment} | {what} | {values} | {difference} |"


def describe_agreement(agreements: Sequence[Agreement]) -> str:
    """Two Markdown tables of :func:`compare_results`: the runs compared per experiment, and for each
    experiment with a run that differs, the number that differs most with its unit, its value in the
    reference and in the compared folder, and their difference (compared − reference), with its size
    relative to the reference where that means something; a second row gives the final test accuracy
    that differs most, where another number differs more. At most five columns, the unit beside the
    number: the tables fit the book's text column."""
    lines = ["| experiment | runs compared | identical bit for bit | the same file in both (a copy) | stored only in the reference |",
             "|---|---|---|---|---|"]
    lines += [f"| {a.experiment} | {a.compared} | {a.identical} | {a.copies} | {a.missing} |" for a in agreements]
    differing = [a for a in agreements if a.identical < a.compared]
    if not differing:
        return "\n".join(lines)
    lines += ["", "| experiment | number that differs most (unit) | reference → compared | difference (relative) |",
              "|---|---|---|---|"]
    for a in differing:
        lines.append(_difference_row(a.experiment, "", a.place, a.largest_difference, a.reference_value, a.other_value))
        if a.accuracy_place is not None and a.accuracy_place != a.place:
            lines.append(_difference_row(a.experiment, "of the final test accuracies: ", a.accuracy_place, a.accuracy_difference,
                                         a.accuracy_reference, a.accuracy_other))
    return "\n".join(lines)


@dataclass(frozen=True)
class RunPair:
    """One lifelong run stored in two results folders (e.g. trained on the CPU and on a GPU): what it
    is, and each folder's machine, average accuracy after the last task and training seconds."""

    benchmark: str
    method: str
    seed: int
    machines: tuple[str, str]
    averages: tuple[float, float]
    seconds: tuple[float, float]


def lifelong_pairs(reference: Path, other: Path) -> list[RunPair]:
    """Every lifelong run of ``other`` that ``reference`` stores too (the same key), in key order."""
    pairs = []
    for twin in sorted((Path(other) / "lifelong").glob("*.json")):
        path = Path(reference) / "lifelong" / twin.name
        if not path.is_file():
            continue
        runs = [json.loads(p.read_text()) for p in (path, twin)]
        config = runs[0]["config"]
        pairs.append(RunPair(config["protocol"]["benchmark"], config["method"], config["run"]["seed"],
                             tuple(r["machine"] for r in runs), tuple(100 * r["result"]["average"] for r in runs),
                             tuple(r["result"]["seconds"] for r in runs)))
    return pairs


def pairs_markdown(pairs: Sequence[RunPair]) -> str:
    """:func:`lifelong_pairs` as a Markdown table, one row per benchmark and method: the average accuracy
    (%, mean ± s.e.m. over the seeds, their number in brackets) in each folder, their difference with
    the two-sample t-test's p (the seeds' runs in the two folders as two samples), and how many times
    faster the second folder's machine trained (the ratio of the mean training seconds per run)."""
    from .book import mean_sem_text, signed, ttest
    from .continual import BENCHMARK_NAMES, METHOD_LABELS

    if not pairs:
        return "No run is stored in both folders."
    groups: dict[tuple[str, str], list[RunPair]] = {}
    for pair in pairs:
        groups.setdefault((pair.benchmark, pair.method), []).append(pair)
    lines = ["| benchmark | method (seeds) | reference (%) | compared (%) | difference, points (p) | speed-up |",
             "|---|---|---|---|---|---|"]
    for (benchmark, method), group in groups.items():
        ref, new = (np.array([p.averages[k] for p in group]) for k in (0, 1))
        test = ttest(new, ref)
        speed = np.mean([p.seconds[0] for p in group]) / np.mean([p.seconds[1] for p in group])
        p_text = "" if test is None else f" (p = {test.pvalue:.2g})"
        lines.append(f"| {BENCHMARK_NAMES.get(benchmark, benchmark)} | {METHOD_LABELS.get(method, method)} ({len(group)}) | "
                     f"{mean_sem_text(ref)} | {mean_sem_text(new)} | {signed(new.mean() - ref.mean())}{p_text} | {speed:.0f}× |")
    return "\n".join(lines)
