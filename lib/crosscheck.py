"""The cross-check table: the book's baselines against implementations written elsewhere.

``benchmarks/crosscheck.py`` trains the book's BGD, EWC and presynaptic model and implementations of
the same methods that nobody here wrote (the BGD reference code, Avalanche's EWC, the authors' own
presynaptic model) on the same Permuted MNIST tasks, several seeds each, and stores every run in
``results/benchmarks/crosscheck.json`` with the list of comparisons to make. :func:`table` turns that
file into one row per comparison.

For each comparison, with :math:`a_s` the average accuracy over all tasks after the last task of our
run with seed :math:`s` (:math:`n_a` seeds) and :math:`b_s` the peer's (:math:`n_b` seeds), the row gives
both means :math:`\\bar a, \\bar b` with their standard errors :math:`s_a/\\sqrt{n_a}`, :math:`s_b/\\sqrt{n_b}`
(:math:`s` the standard deviation over seeds, ``ddof=1``), the difference :math:`\\bar a - \\bar b` in
percentage points, and the two-sided p-value of Welch's t-test, which does not assume equal variances:

.. math::

    t = \\frac{\\bar a - \\bar b}{\\sqrt{s_a^2/n_a + s_b^2/n_b}},\\qquad
    \\nu = \\frac{(s_a^2/n_a + s_b^2/n_b)^2}{\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}},

:math:`p = 2\\,P(T_\\nu > |t|)` (``scipy.stats.ttest_ind(a, b, equal_var=False)``). With fewer than two
seeds on a side, or no spread on both, p is NaN.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .book import mean_sem, signed
from .cache import results_root

COLUMNS = ("comparison", "method", "ours", "peer", "ours_mean", "ours_sem", "peer_mean", "peer_sem",
           "difference", "p", "ours_seeds", "peer_seeds")


def default_path() -> Path:
    """Where ``benchmarks/crosscheck.py`` stores its result."""
    return results_root() / "benchmarks" / "crosscheck.json"


def load(path: str | Path | None = None) -> dict:
    """The stored cross-check (``path``, default :func:`default_path`) as a dict."""
    return json.loads(Path(path or default_path()).read_text())


def measure(result: Mapping, path: str) -> float:
    """The number at ``path`` (keys joined by ``/``, e.g. ``final_by_inference/test_mc/average``) of one seed's result."""
    value = result
    for key in path.split("/"):
        value = value[key]
    return float(value)


def per_seed(report: Mapping, side: Mapping) -> dict[int, float]:
    """One side of a comparison (its ``implementation``, ``run`` and ``measure``): the measure per seed."""
    seeds = report["implementations"].get(side["implementation"], {}).get(side["run"], {})
    return {int(seed): measure(result, side["measure"]) for seed, result in sorted(seeds.items(), key=lambda kv: int(kv[0]))}


def training_seconds(report: Mapping) -> float:
    """The wall-clock seconds of all stored runs added up (each seed's ``wall_seconds``; runs of ours that
    trained as one batch share its time)."""
    return float(sum(result.get("wall_seconds", 0.0) for runs in report["implementations"].values()
                     for seeds in runs.values() for result in seeds.values()))


def welch(a, b) -> float:
    """Two-sided p of Welch's t-test of ``a`` against ``b``; NaN with fewer than two values on a side."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def table(report: Mapping | str | Path | None = None) -> pd.DataFrame:
    """One row per comparison of the stored cross-check (a dict as :func:`load` returns, or its path):
    the comparison's name and method, the two implementations, their mean and s.e.m. over seeds of the
    average accuracy after the last task (in percent), the difference ours minus peer (points), Welch's
    p and the number of seeds of each side. A side without runs has NaN numbers and 0 seeds."""
    if not isinstance(report, Mapping):
        report = load(report)
    rows = []
    for comparison in report["comparisons"]:
        sides = {name: per_seed(report, comparison[name]) for name in ("ours", "peer")}
        row = {"comparison": comparison["name"], "method": comparison["method"],
               "ours": f"{comparison['ours']['implementation']}: {comparison['ours']['run']}",
               "peer": f"{comparison['peer']['implementation']}: {comparison['peer']['run']} "
                       f"({comparison['peer']['measure']})"}
        for name, values in sides.items():
            values = 100 * np.array(list(values.values()), dtype=float)
            mean, sem = mean_sem(values) if len(values) else (np.nan, np.nan)
            row |= {f"{name}_mean": float(mean), f"{name}_sem": float(sem) if len(values) > 1 else np.nan,
                    f"{name}_seeds": len(values)}
        row["difference"] = row["ours_mean"] - row["peer_mean"]
        row["p"] = welch(list(sides["ours"].values()), list(sides["peer"].values()))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def cells(frame: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """The table as the book shows it: "mean ± s.e.m." per side (percent), the difference in points, p."""
    def text(mean: float, sem: float) -> str:
        if not np.isfinite(mean):
            return "–"
        return f"{mean:.{digits}f} ± {sem:.{digits}f}" if np.isfinite(sem) else f"{mean:.{digits}f}"
    return pd.DataFrame({
        "comparison": frame["comparison"],
        "ours (%)": [text(m, s) for m, s in zip(frame["ours_mean"], frame["ours_sem"])],
        "peer (%)": [text(m, s) for m, s in zip(frame["peer_mean"], frame["peer_sem"])],
        "difference (points)": [signed(d, digits) if np.isfinite(d) else "–" for d in frame["difference"]],
        "Welch's p": [f"{p:.2g}" if np.isfinite(p) else "–" for p in frame["p"]],
        "seeds": [f"{a} / {b}" for a, b in zip(frame["ours_seeds"], frame["peer_seeds"])],
    })


def markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """:func:`cells` as a Markdown table."""
    shown = cells(frame, digits)
    lines = ["| " + " | ".join(shown.columns) + " |", "|---" * len(shown.columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in shown.astype(str).itertuples(index=False)]
    return "\n".join(lines)


def findings_markdown(frame: pd.DataFrame, alpha: float = 0.05, digits: int = 2) -> str:
    """One bullet per comparison of :func:`table`: both means, the difference, Welch's p, and whether the
    two implementations differ beyond the spread of the seeds (:math:`p <` ``alpha``) or not (a difference
    that few seeds cannot separate from their spread is not shown to be absent)."""
    lines = []
    for row in frame.itertuples(index=False):
        if not (np.isfinite(row.ours_mean) and np.isfinite(row.peer_mean)):
            lines.append(f"* **{row.comparison}:** not stored for both implementations.")
            continue
        numbers = (f"ours {row.ours_mean:.{digits}f} %, theirs {row.peer_mean:.{digits}f} % "
                   f"({signed(row.difference, digits)} points")
        if not np.isfinite(row.p):
            lines.append(f"* **{row.comparison}:** {numbers}; too few seeds for a test).")
        elif row.p >= alpha:
            lines.append(f"* **{row.comparison}:** {numbers}, p = {row.p:.2g}): no difference beyond the spread "
                         "of the seeds.")
        else:
            lines.append(f"* **{row.comparison}:** {numbers}, p = {row.p:.2g}): differ beyond the spread of the seeds.")
    return "\n".join(lines)
