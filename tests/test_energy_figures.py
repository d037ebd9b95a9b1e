import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lib.energy_figures import lesion_curves


def test_lesion_curves_draw_each_orders_mean_over_seeds_with_its_colour_and_label():
    fractions = [0, 50, 90]
    curves = {"p": np.array([[90.0, 80.0, 40.0], [92.0, 84.0, 50.0]]), "random": np.array([[90.0, 30.0, 10.0], [92.0, 34.0, 12.0]])}
    fig, ax = plt.subplots()
    lesion_curves(ax, fractions, curves, {"p": ("C3", "release probability"), "random": ("k", "random")})
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["release probability", "random"]
    np.testing.assert_allclose(lines[0].get_ydata(), [91.0, 82.0, 45.0])
    np.testing.assert_allclose(lines[1].get_ydata(), [91.0, 32.0, 11.0])
    assert lines[1].get_color() == "k" and len(ax.collections) == 2  # one s.e.m. band per order
    assert ax.get_xlabel().startswith("synapses removed")
    plt.close(fig)
