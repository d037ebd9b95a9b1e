"""The helpers the chapters share (lib/book.py)."""
import warnings

import numpy as np
import pytest

from lib import book


def test_mean_sem_is_the_standard_error_over_seeds():
    values = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 60.0]])  # (seeds, quantities)
    mean, sem = book.mean_sem(values)
    np.testing.assert_allclose(mean, [7 / 3, 30.0])
    np.testing.assert_allclose(sem, values.std(0, ddof=1) / np.sqrt(3))


def test_mean_sem_along_another_axis_and_of_one_seed():
    values = np.arange(6.0).reshape(2, 3)
    mean, sem = book.mean_sem(values, axis=-1)
    np.testing.assert_allclose(mean, [1.0, 4.0])
    np.testing.assert_allclose(sem, [1 / np.sqrt(3)] * 2)
    mean, sem = book.mean_sem([[0.5, 0.7]])
    np.testing.assert_allclose(mean, [0.5, 0.7])
    assert np.all(sem == 0)


def test_mean_sem_text():
    assert book.mean_sem_text([0.8, 0.9, 1.0], digits=1, scale=100) == "90.0 ± 5.8"


def test_style_keeps_text_at_9_points_or_more():
    sizes = [v for k, v in book.STYLE.items() if k.endswith("size") and isinstance(v, (int, float))]
    assert sizes and min(sizes) >= 9
    assert book.DPI >= 150
    assert book.figsize(3.0, width=12.0) == (book.FIGURE_WIDTH, 3.0)


def test_show_source_displays_the_code_as_markdown(monkeypatch):
    display = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    book.show_source(book.figsize)
    assert shown[0].data.startswith("```python\ndef figsize(")


def test_seeds_text_notes_missing_seeds_and_nothing_stored():
    assert book.seeds_text([80.0, 82.0, 84.0], 3) == "82.00 ± 1.15"
    assert book.seeds_text([80.0, 82.0], 3, digits=1) == "81.0 ± 1.0 (2 of 3 seeds)"
    assert book.seeds_text([], 3) == "—"


def test_numbers_in_the_text_use_the_minus_sign():
    assert book.number(-1.234) == "−1.23" and book.number(2.5, 1) == "2.5"
    assert book.signed(1.25, 1) == "+1.2" and book.signed(-0.5) == "−0.50"


def test_ttest_needs_two_seeds_a_side_and_stars_grade_the_p_value():
    assert book.ttest([1.0], [2.0, 3.0]) is None and book.stars(None) == ""
    far = book.ttest([1.0, 1.1, 0.9], [5.0, 5.1, 4.9])
    assert far.pvalue < 0.01 and book.stars(far) == "**"
    assert book.stars(book.ttest([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])) == "n.s."
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a side of equal values (diverged runs) tests without a warning
        assert book.stars(book.ttest([50.0, 50.0, 50.0], [90.1, 90.3, 90.5])) == "**"


def test_panel_grid_puts_at_most_two_panels_in_a_row():
    import matplotlib

    matplotlib.use("Agg")
    fig, axes = book.panel_grid(3, width=5.0)
    assert len(axes) == 3 and len(fig.axes) == 3  # the fourth place of the 2 x 2 grid is removed
    assert fig.get_size_inches()[0] == book.FIGURE_WIDTH


@pytest.mark.parametrize("n, most, ticks", [
    (1, 5, [1]), (3, 5, [1, 2, 3]), (5, 5, [1, 2, 3, 4, 5]), (10, 5, [1, 4, 7, 10]), (10, 10, list(range(1, 11))),
    (11, 5, [1, 6, 11]), (13, 5, [1, 4, 7, 10, 13]), (20, 5, [1, 6, 11, 16]),
])
def test_task_ticks_label_every_task_or_evenly_spaced_ones_from_the_first(n, most, ticks):
    assert book.task_ticks(n, most) == ticks


def _texts(fig):
    """Every visible, non-empty text of the figure's axes (colour bars included) and the axes it belongs to."""
    for ax in fig.axes:
        texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                 *ax.get_xticklabels(), *ax.get_yticklabels()]
        for text in texts:
            if text.get_visible() and text.get_text().strip():
                yield ax, text


@pytest.mark.parametrize("n", [3, 5, 10])
def test_task_matrices_keep_every_label_clear_of_the_others_and_at_9_points(n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    book.style()
    rng = np.random.default_rng(0)
    a, b = 100 * rng.random((n, n)), 100 * rng.random((n, n))
    fig, axes = book.task_matrices(("presynaptic", a), ("standard (deterministic)", b), ("presynaptic − standard", a - b))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [(ax, t, t.get_window_extent(renderer)) for ax, t in _texts(fig)]
    assert min(t.get_fontsize() for _, t, _ in texts) >= 9
    figure_box = fig.bbox
    for k, (ax, text, box) in enumerate(texts):
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 + 0.5, f"{text.get_text()!r} leaves the figure"
        for other_ax, other, other_box in texts[k + 1:]:
            assert not box.overlaps(other_box), f"{text.get_text()!r} overlaps {other.get_text()!r}"
        for panel in fig.axes:  # heat maps and colour bars
            if panel is not ax:
                assert not box.overlaps(panel.get_window_extent(renderer)), f"{text.get_text()!r} overlaps another panel"
    assert len(fig.axes) == 5  # three heat maps and two colour bars
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [str(k) for k in range(1, n + 1)]
    assert [round(x) for x in axes[2].get_xticks()] == book.task_ticks(n)
    np.testing.assert_allclose(axes[2].images[0].get_array(), a - b)
    assert axes[2].images[0].get_clim() == pytest.approx((-np.abs(a - b).max(), np.abs(a - b).max()))
    plt.close(fig)
    with pytest.raises(ValueError, match="same shape"):
        book.task_matrices(("a", a), ("b", b[:-1]), ("a − b", a - b))


def test_log_ticks_are_1_2_5_times_powers_of_ten_inside_the_range():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(0.3, 2500)
    book.log_ticks(ax)
    assert ax.get_xticks().tolist() == [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert [t.get_text() for t in ax.get_xticklabels()][:4] == ["0.5", "1", "2", "5"]
    assert ax.get_xticklabels()[-1].get_text() == "2,000"
    plt.close(fig)


def test_measurements_markdown_puts_the_records_side_by_side():
    table = book.measurements_markdown({"CPU": {"samples/s": 107710, "threads": 2, "note": "idle"},
                                        "GPU": {"samples/s": 2500000, "device": "H200"}})
    assert table.splitlines() == ["| measurement | CPU | GPU |", "|---|---|---|",
                                  "| samples/s | 107,710 | 2,500,000 |", "| threads | 2 | — |",
                                  "| note | idle | — |", "| device | — | H200 |"]
