"""presynaptic-book: the library behind the executable reproduction of Schug, Benzing & Steger (eLife 2021).

Modules, one concept each:

* ``data`` (raw MNIST / Fashion-MNIST files), ``tasks`` (Split and Permuted benchmarks, the continuous stream);
* ``model`` (stochastic synapses, R runs batched, release masks, EWC's Fisher information, SI's path
  integrals), ``noise`` (counter-based random numbers), ``compilation`` (when steps go through ``torch.compile``),
  ``plasticity`` (learning rules, eqs. 4-5), ``metrics`` (cross-entropy, mutual information), ``train``
  (the training engine);
* ``cache`` (the results cache: every run stored under a hash of its configuration; ``lib.results_frame()``
  gives every stored run as a pandas DataFrame), ``energy`` (the
  energy experiment, Fig. 1), ``analysis`` (sparsity, lesions, neuron importance, Fisher information),
  ``energy_analysis`` (those analyses of the energy experiment's networks, chapters 3-4);
* ``continual`` (continual-learning methods, ablations and sweeps), ``search`` (random search of a
  method's settings), ``bgd`` (Bayesian gradient descent), ``perceptron`` (the lifelong perceptron);
* ``reproduce`` (every training run of the book, as jobs on a Dask cluster), ``compare`` (two results
  folders compared run by run), ``mask_generators`` (stored runs of the two mask generators compared),
  ``crosscheck`` (the book's baselines against implementations written elsewhere, as a table);
* ``paper`` (the published numbers), ``claims`` (the paper's claims against the stored runs), ``book``
  (helpers the chapters share), ``cli_common``, ``cli_data``, ``cli_experiments`` (``python -m lib``).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``lib.results_frame``: every stored run as a pandas DataFrame (:func:`lib.cache.results_frame`),
    imported on first use so that ``import lib`` stays light."""
    if name == "results_frame":
        from .cache import results_frame

        return results_frame
    raise AttributeError(f"module 'lib' has no attribute {name!r}")
