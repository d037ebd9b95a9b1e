"""Train EWC with Avalanche (PyPI ``avalanche-lib``, its ``EWC`` strategy with ``EWCPlugin``) on tasks exported by crosscheck.py.

Runs inside its own virtual environment and never imports the book's ``lib``. The consolidation is
Avalanche's own: after each experience ``EWCPlugin`` estimates the importance of every parameter as
the squared gradient of the mini-batch mean loss with the true labels, averaged over the
experience's mini-batches, and adds :math:`\\lambda \\sum_i \\Omega_i (\\theta_i - \\theta^*_i)^2` per past
experience (``mode="separate"``) to the loss. The adapter builds the tasks from the exported arrays
(one experience per permutation, one shared 10-way head, no task labels used), a plain
784-200-200-10 ReLU network with PyTorch's default initialisation, and Adam; it reads the accuracy
of every task after each task from the network itself (argmax of its deterministic output).

The book's EWC penalty is :math:`\\frac{\\lambda}{2}\\sum_i F_i(\\theta_i-\\theta^*_i)^2` with the Fisher per
example; Avalanche's importance squares a mini-batch's mean gradient, which near a minimum is about the
per-example Fisher divided by the batch size B. So Avalanche's :math:`\\lambda` matching the book's is about
:math:`\\lambda_{book} B / 2`; ``--ewc-lambda`` takes any number of values, each trained from scratch.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from peer_arguments import peer_parser


def network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(784, 200), torch.nn.ReLU(), torch.nn.Linear(200, 200), torch.nn.ReLU(),
                               torch.nn.Linear(200, 10))


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()) for i in range(0, len(x), 1000))
    model.train()
    return correct / len(x)


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--ewc-lambda", type=float, nargs="+", required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    from avalanche.benchmarks.scenarios.deprecated.generic_benchmark_creation import (
        create_generic_benchmark_from_tensor_lists)
    from avalanche.training import EWC
    from avalanche.training.determinism.rng_manager import RNGManager
    from avalanche.training.plugins import EvaluationPlugin
    import avalanche

    arrays = {name: torch.from_numpy(np.load(args.data / f"{name}.npy")) for name in
              ("train_x", "train_y", "test_x", "test_y", "permutations")}
    perms = arrays["permutations"]
    train = [[arrays["train_x"][:, p], arrays["train_y"]] for p in perms]
    test = [[arrays["test_x"][:, p], arrays["test_y"]] for p in perms]
    scenario = create_generic_benchmark_from_tensor_lists(train, test, task_labels=[0] * len(perms))
    runs = {}
    for lam in args.ewc_lambda:
        RNGManager.set_random_seeds(args.seed)
        model = network()
        strategy = EWC(model, torch.optim.Adam(model.parameters(), lr=args.lr), torch.nn.CrossEntropyLoss(),
                       ewc_lambda=lam, mode="separate", train_mb_size=args.batch_size, train_epochs=args.epochs,
                       eval_mb_size=1000, evaluator=EvaluationPlugin(loggers=[]))
        start = time.perf_counter()
        after_task = []
        for experience in scenario.train_stream:
            strategy.train(experience)
            after_task.append([accuracy(model, x, y) for x, y in test])
        runs[str(lam)] = {"ewc_lambda": lam, "accuracy": after_task, "average": float(np.mean(after_task[-1])),
                          "seconds": time.perf_counter() - start}
        print(f"Avalanche EWC lambda={lam}: average accuracy after the last task {runs[str(lam)]['average']:.4f}",
              flush=True)
    result = {"implementation": f"avalanche-lib {avalanche.__version__} (avalanche.training.EWC, EWCPlugin, "
                                "mode='separate')",
              "torch": torch.__version__,
              "settings": {"optimizer": "adam", "lr": args.lr, "batch_size": args.batch_size, "epochs": args.epochs,
                           "seed": args.seed},
              "runs": runs}
    args.out.write_text(json.dumps(result, indent=1))
    print("Avalanche EWC: " + ", ".join(f"lambda={k}: {v['average']:.4f}" for k, v in runs.items()))


if __name__ == "__main__":
    main()
