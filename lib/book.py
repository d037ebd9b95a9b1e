"""Helpers that the book's chapters share: summaries over seeds, significance tests, numbers in the
text, library source on the page, figure style.

Every chapter averages its runs over seeds and shows mean ± standard error of the mean (s.e.m., the
error the paper's figure legends give); :func:`mean_sem` and :func:`mean_sem_text` are the one
definition of both, :func:`seeds_text` says when seeds are missing. Differences are compared by the
authors' test, a two-sample t-test with equal variances (:func:`ttest`, :func:`stars`). :func:`task_matrices`
draws the task-by-task heat maps of chapters 5 and 6. :func:`style` sets the look and the size of every figure: at most
:data:`FIGURE_WIDTH` inches wide with text of at least 9 points, drawn at :data:`DPI` dots per inch,
so that the smallest text of a figure is 9 px or more and sharp when the page is 1,280 px wide.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy import stats

FIGURE_WIDTH = 8.0  # inches: the widest figure that fits the text column without shrinking below 9-pt text
DPI = 200           # dots per inch of the PNG images (sharp on high-density screens too)

STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def mean_sem(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean (``ddof=1``) along ``axis`` (the seeds).

    With a single value along ``axis`` the error is 0 (not NaN), so that a one-seed smoke run plots.
    """
    values = np.asarray(values, dtype=float)
    mean = values.mean(axis)
    if values.shape[axis] < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.sem(values, axis=axis, ddof=1)


def mean_sem_text(values, digits: int = 2, scale: float = 1.0, axis: int = 0) -> str:
    """``"mean ± s.e.m."`` of ``scale * values`` with ``digits`` decimals."""
    mean, sem = mean_sem(scale * np.asarray(values, dtype=float), axis=axis)
    return f"{float(mean):.{digits}f} ± {float(sem):.{digits}f}"


def seeds_text(values, n_seeds: int, digits: int = 2) -> str:
    """:func:`mean_sem_text` of one value per stored seed, with ``"(k of n seeds)"`` when only ``k`` of
    the ``n_seeds`` seeds are stored, and a dash when none is."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "—"
    note = f" ({len(values)} of {n_seeds} seeds)" if len(values) < n_seeds else ""
    return mean_sem_text(values, digits) + note


def number(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals and a typographic minus sign."""
    return f"{x:.{digits}f}".replace("-", "−")


def signed(x: float, digits: int = 2) -> str:
    """``x`` with its sign (``+`` or ``−``) and ``digits`` decimals: a difference."""
    return f"{x:+.{digits}f}".replace("-", "−")


def measurements_markdown(records: dict[str, dict]) -> str:
    """Measurement records side by side as a Markdown table: one column per record (``{"CPU": {...},
    "GPU": {...}}``), one row per measurement that any record holds, in the order first met; integers
    with thousands separators, a measurement that a record lacks as "—"."""
    def text(value) -> str:
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    keys = list(dict.fromkeys(k for measured in records.values() for k in measured))
    return (f"| measurement | {' | '.join(records)} |\n|---|{'---|' * len(records)}\n"
            + "\n".join(f"| {k} | {' | '.join(text(m.get(k, '—')) for m in records.values())} |" for k in keys))


def ttest(a, b):
    """The two-sample t-test with equal variances (the authors' test) of ``a`` against ``b``, or None
    when a side has fewer than two values. A side of equal values (e.g. runs that all diverged to a
    constant guess) makes scipy warn of precision loss; the test is still defined, and the warning is
    not shown."""
    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        return stats.ttest_ind(a, b)


def stars(test) -> str:
    """``"**"`` for :math:`p < 0.01`, ``"*"`` for :math:`p < 0.05`, ``"n.s."`` otherwise, and nothing
    without a test (:func:`ttest`) or with an undefined p-value."""
    if test is None or not np.isfinite(test.pvalue):
        return ""
    return "**" if test.pvalue < 0.01 else "*" if test.pvalue < 0.05 else "n.s."


def show_source(obj) -> None:
    """Display the library code of a function or class, so that an equation has its code beside it."""
    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


def style() -> None:
    """The figure style of the book (fonts of 9 points or more, 200-dpi PNG, no top and right spines)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)


def log_ticks(ax) -> None:
    """Ticks of a log-scaled x axis at 1, 2 and 5 times the powers of ten inside its range, labelled
    in plain numbers."""
    from matplotlib.ticker import NullFormatter

    lo, hi = ax.get_xlim()
    ticks = [m * 10.0**k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1) for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:,.0f}" if t >= 1 else f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def panel_grid(n: int, width: float = 4.0, height: float = 3.2):
    """A figure of ``n`` panels of ``width`` × ``height`` inches, at most two in a row (at most
    :data:`FIGURE_WIDTH` wide); the figure and its ``n`` axes."""
    import matplotlib.pyplot as plt

    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(width * cols, FIGURE_WIDTH), height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.remove()
    return fig, axes.flat[:n]


def figsize(height: float, width: float = FIGURE_WIDTH) -> tuple[float, float]:
    """A figure size in inches, at most :data:`FIGURE_WIDTH` wide."""
    return min(width, FIGURE_WIDTH), height


def task_ticks(n: int, most: int = 5) -> list[int]:
    """Tick positions for tasks 1 to ``n``, at most ``most`` of them, so that 9-point labels stay apart in a
    panel about 2 inches wide: every task when there are at most ``most``, else the first task, the last one
    and evenly spaced ones between (10 tasks: 1, 4, 7, 10), or, where no integer step leads from the first
    to the last task in three ticks or more, evenly spaced ones from the first (20 tasks: 1, 6, 11, 16)."""
    if n <= most:
        return list(range(1, n + 1))
    step = next((s for s in range(2, n) if (n - 1) % s == 0 and (n - 1) // s + 1 <= most and (n - 1) // s >= 2), None)
    if step is None:  # no step reaches the last task with three ticks or more: evenly spaced from the first
        step = -(-(n - 1) // (most - 1))
    return list(range(1, n + 1, step))


def task_matrices(first: tuple[str, np.ndarray], second: tuple[str, np.ndarray], difference: tuple[str, np.ndarray],
                  *, label: str = "accuracy (%)", limits: tuple[float, float] = (0.0, 100.0),
                  difference_label: str = "difference (points)", least_difference: float = 1.0,
                  xlabel: str = "tasks learned", xticks: list[int] | None = None, height: float = 3.0):
    """Two matrices of a value per tested task (rows) after each task learned (or each step, columns) as heat
    maps side by side with one colour bar (``label``, ``limits``), and a difference of the two in a third
    panel with a colour bar of its own, symmetric about 0 and reaching at least ``least_difference``. Each
    of ``first``, ``second`` and ``difference`` is (title, matrix).

    The figure is laid out by matplotlib's constrained layout, so that each colour bar and its label keep
    clear of the next panel. Its text is at the style's 9 points or more: every tested task is labelled (up
    to 10), the columns at ``xticks`` or, by default, at :func:`task_ticks` (at most 5 labels across a
    panel). Returns the figure and its three heat-map axes.
    """
    import matplotlib.pyplot as plt

    matrices = [np.asarray(m, dtype=float) for _, m in (first, second, difference)]
    if matrices[0].ndim != 2 or any(m.shape != matrices[0].shape for m in matrices):
        raise ValueError(f"three matrices of the same shape are needed, got {[m.shape for m in matrices]}")
    n_tested, n_columns = matrices[0].shape
    extent = (0.5, n_columns + 0.5, n_tested + 0.5, 0.5)
    fig, axes = plt.subplots(1, 3, figsize=figsize(height), sharey=True, layout="constrained")
    bound = max(float(np.nanmax(np.abs(matrices[2]), initial=0.0)), least_difference)
    for ax, matrix, (title, _), (vmin, vmax), cmap in zip(axes, matrices, (first, second, difference),
                                                          (limits, limits, (-bound, bound)),
                                                          ("viridis", "viridis", "RdBu_r")):
        image = ax.imshow(matrix, extent=extent, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest",
                          aspect="auto")
        ax.set_title(title, loc="left")
        ax.set_xticks(task_ticks(n_columns) if xticks is None else xticks)
        ax.set_yticks(task_ticks(n_tested, most=10))  # rows are 9-point lines apart: every one of 10 tasks fits
        ax.set_xlabel(xlabel)
        if ax is axes[1]:
            fig.colorbar(image, ax=axes[:2], label=label)
    fig.colorbar(image, ax=axes[2], label=difference_label)
    axes[0].set_ylabel("tested task")
    return fig, list(axes)
