"""Two results folders compared run by run (``python -m lib compare``): how many runs are equal bit for bit.

``make reproduce`` trains every run of the book again into a second folder; :func:`compare_results`
pairs each of its runs with the stored run of the same key (the same configuration, :mod:`lib.cache`)
and counts, per experiment, the runs whose results and stored networks are identical.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .cache import TIMINGS
from .data import write_atomic


@dataclass(frozen=True)
class Agreement:
    """How the runs of one experiment stored in a second results folder compare with a reference folder.

    A run is *identical* when every number of its result (all but the training ``seconds``) and every
    array of its stored network state are equal bit for bit. ``largest_difference`` is the largest
    absolute difference of one number among the runs that differ (0 when none does).
    """

    experiment: str
    compared: int
    identical: int
    largest_difference: float
    missing: int  # runs of the reference folder that the other one lacks


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


def _result_difference(a: dict, b: dict) -> float | None:
    """None when the results ``a`` and ``b`` are equal bit for bit, else the largest absolute difference
    of a number (infinite when their structure or a non-numeric entry differs)."""
    left, right = list(_numbers(a)), list(_numbers(b))
    if [p for p, _ in left] != [p for p, _ in right]:
        return float("inf")
    differences = [(x, y) for (_, x), (_, y) in zip(left, right) if x != y]
    if not differences:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for pair in differences for v in pair):
        return float("inf")
    return max(abs(x - y) for x, y in differences)


def _state_difference(a: Path, b: Path) -> float | None:
    """As :func:`_result_difference`, for two stored network states (``.npz``)."""
    with np.load(a) as x, np.load(b) as y:  # each array read once (an NpzFile reads on every access)
        left, right = dict(x.items()), dict(y.items())
    if sorted(left) != sorted(right) or any(left[k].shape != right[k].shape for k in left):
        return float("inf")
    differing = [k for k in left if not np.array_equal(left[k], right[k])]
    if not differing:
        return None
    return max(float(np.max(np.abs(left[k].astype(np.float64) - right[k]))) for k in differing)


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
        compared = identical = missing = 0
        largest = 0.0
        for path in sorted(folder.glob("*.json")):
            twin = other / folder.name / path.name
            if not twin.is_file():
                missing += 1
                continue
            differences = [_result_difference(json.loads(path.read_text())["result"], json.loads(twin.read_text())["result"])]
            state, state_twin = path.with_suffix(".npz"), twin.with_suffix(".npz")
            if state.is_file() and state_twin.is_file():
                differences.append(_state_difference(state, state_twin))
            differences = [d for d in differences if d is not None]
            compared += 1
            identical += not differences
            largest = max([largest, *differences])
        agreements.append(Agreement(folder.name, compared, identical, largest, missing))
    return agreements


def save_agreement(path: Path, agreements: Sequence[Agreement]) -> None:
    """Write :func:`compare_results`'s table to ``path`` (JSON), e.g. before the compared runs replace the reference."""
    write_atomic(Path(path), json.dumps([asdict(a) for a in agreements], indent=1).encode())


def load_agreement(path: Path) -> list[Agreement]:
    """The table written by :func:`save_agreement`."""
    return [Agreement(**a) for a in json.loads(Path(path).read_text())]


def describe_agreement(agreements: Sequence[Agreement]) -> str:
    """A Markdown table of :func:`compare_results`."""
    lines = ["| experiment | runs compared | identical bit for bit | largest difference | stored only in the reference |",
             "|---|---|---|---|---|"]
    for a in agreements:
        lines.append(f"| {a.experiment} | {a.compared} | {a.identical} | {a.largest_difference:.3g} | {a.missing} |")
    return "\n".join(lines)
