"""The helpers the chapters share (lib/book.py)."""
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
