"""presynaptic-book: the library behind the executable reproduction of Schug, Benzing & Steger (eLife 2021).

Modules, one concept each: ``data`` (raw MNIST / Fashion-MNIST files), ``tasks`` (Split and Permuted
benchmarks), ``model`` (stochastic synapses, R runs batched), ``plasticity`` (learning rules, eqs. 4-5),
``metrics`` (cross-entropy, mutual information), ``train`` (the training engine), ``experiments``
(energy experiment and the results cache), ``analysis`` (sparsity, lesions, Fisher information),
``continual`` (continual-learning methods and sweeps), ``bgd`` (Bayesian gradient descent),
``perceptron`` (the lifelong perceptron) and ``reproduce`` (every training run of the book, as jobs
on several processes).
"""

__version__ = "0.1.0"
