"""Train the authors' presynaptic model (a checkout of smonsays/presynaptic-stochasticity) on tasks exported by crosscheck.py.

Runs inside its own virtual environment (torch, torchvision, scipy, tensorboard: what the authors'
modules import) and never imports the book's ``lib`` (the authors' package is also called ``lib``; only
theirs is on the path here). Everything that learns is the authors' own: the routine
``run_dyn_continual`` of their ``run_dyn_continual.py`` with their Permuted MNIST configuration
``etc/dyn_perm_mnist.json`` (as their ``load_default_config("perm_mnist")`` reads it), which builds their
``nets.MultilayerPerceptron`` and ``ddc.DynamicDropConnect``, seeds torch with ``--seed``, trains every task
``epochs`` epochs with their ``train.train`` and tests every task after each task with their
``test.accuracy`` (the softmax of ``test_samples`` stochastic passes averaged). The adapter changes three
things only, none of which touches learning:

* the configuration's ``epochs`` and ``seed`` are set from the command line, and the batch size and
  number of tasks of its data set;
* their ``data.create_dataloader``, which downloads MNIST and draws its own permutations, is replaced by
  loaders of the exported arrays under the exported permutations, built with their
  ``data._create_dataloader`` (shuffled training batches, the last incomplete one dropped, as theirs);
* their TensorBoard writer (``config.writer``, set up by their command-line entry point) is one that
  writes nothing, and the two diagnostics that only feed their logs, the neuron activation
  (``test.activation``, 10 stochastic passes over the test set after every epoch) and the mutual
  information between labels and outputs (``metric.mutual_information``), are not computed: on a busy
  machine they cost more than the training. They draw release masks from torch's generator, so
  skipping them changes which random numbers the training gets, not how they are drawn.

Writes a JSON with the accuracy of every task after each task (their ``task_acc``), the average after the
last task, the mean release probability and the fraction of frozen synapses after each epoch.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time

import numpy as np
import torch

from peer_arguments import peer_parser


class NoWriter:
    """Stands in for TensorBoard's ``SummaryWriter``: accepts every call, writes nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0], checkout_of="smonsays/presynaptic-stochasticity", epochs=10)
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    if not (checkout / "run_dyn_continual.py").is_file():
        sys.exit(f"error: {checkout} is not a checkout of smonsays/presynaptic-stochasticity (no run_dyn_continual.py)")
    sys.path.insert(0, str(checkout))
    import run_dyn_continual as authors  # noqa: E402  (the authors' script and package, importable only now)

    os.chdir(checkout)  # their configuration is read from a path relative to the checkout
    cfg = authors.load_default_config("perm_mnist")
    arrays = {name: np.load(args.data / f"{name}.npy") for name in
              ("train_x", "train_y", "test_x", "test_y", "permutations")}
    perms = arrays["permutations"]
    cfg["epochs"], cfg["seed"] = args.epochs, args.seed
    cfg["dataset"]["kwargs"] = {"batch_size": args.batch_size, "num_tasks": len(perms)}
    # Switches of their command line that ``run_dyn_continual`` reads, at the command line's defaults.
    cfg.update(random_hyperparameter=False, relative_parameter_noise=None, log_dir="", experiment_clamp=False,
               experiment_fisher=False, experiment_lesion=False)

    def loaders(x: np.ndarray, y: np.ndarray, is_train: bool) -> list:
        labels = torch.from_numpy(y).long()
        return [authors.data._create_dataloader(torch.utils.data.TensorDataset(torch.from_numpy(x[:, p]), labels),
                                                is_train, args.batch_size, num_workers=0) for p in perms]

    def exported_tasks(name: str, **kwargs) -> tuple[list, list]:
        if name != "perm_mnist":
            raise ValueError(f"only the exported Permuted MNIST tasks are available here, not {name!r}")
        return loaders(arrays["train_x"], arrays["train_y"], True), loaders(arrays["test_x"], arrays["test_y"], False)

    authors.data.create_dataloader = exported_tasks
    authors.config.writer = NoWriter()
    authors.test.activation = lambda *args, **kwargs: float("nan")
    authors.metric.mutual_information = lambda *args, **kwargs: float("nan")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)

    start = time.perf_counter()
    # Their training loop logs every tenth of an epoch's batches, which needs at least ten batches.
    verbose = len(arrays["train_x"]) // args.batch_size >= 10
    results, model, _ = authors.run_dyn_continual(cfg, verbose=verbose)
    seconds = time.perf_counter() - start
    after_task = results["task_acc"].tolist()
    result = {
        "implementation": "smonsays/presynaptic-stochasticity (run_dyn_continual.py, lib/ddc.py, lib/nets.py, "
                          "etc/dyn_perm_mnist.json)",
        "torch": torch.__version__,
        "settings": {k: v for k, v in cfg.items() if k not in ("relative_parameter_noise", "log_dir")},
        "accuracy": after_task,
        "average": float(np.mean(after_task[-1])),
        "mean_p": results["mean_prob"].tolist(),
        "frozen": results["frozen_prob"].tolist(),
        "seconds": seconds,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"authors' presynaptic model: average accuracy after the last task {result['average']:.4f}; "
          f"trained in {seconds:.0f} s")


if __name__ == "__main__":
    main()
